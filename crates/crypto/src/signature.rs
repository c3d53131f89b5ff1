//! Webhook signatures (CONTRACT §3).
//!
//! - `X-Tickiti-Signature`: `sha256=` + hex HMAC-SHA256 over the raw body,
//!   keyed with the secret string's UTF-8 bytes (the scheme GitHub uses).
//! - Standard Webhooks (<https://www.standardwebhooks.com/>, spec §"Signature
//!   scheme"): `v1,` + base64 HMAC-SHA256 over `{id}.{timestamp}.{body}`,
//!   keyed with the base64-decoded part after `whsec_`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Prefix of Standard Webhooks secrets.
pub const WHSEC_PREFIX: &str = "whsec_";

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length (RFC 2104 §2), so this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable_hmac(),
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

#[cold]
fn unreachable_hmac() -> ! {
    // `InvalidLength` is never returned for HMAC; keep a clear message if it ever is.
    panic!("HMAC rejected a key length")
}

/// `sha256=<hex>`: HMAC-SHA256 of `body` keyed with the secret's UTF-8 bytes.
pub fn tickiti_signature(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac(secret.as_bytes(), &[body])))
}

/// The Standard Webhooks key of a secret: the base64-decoded part after
/// `whsec_`, or the secret's UTF-8 bytes when it has no such prefix (or the
/// rest is not base64).
pub fn standard_webhooks_key(secret: &str) -> Vec<u8> {
    secret
        .strip_prefix(WHSEC_PREFIX)
        .and_then(|rest| STANDARD.decode(rest).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// `v1,<base64>`: the Standard Webhooks signature of one message.
pub fn standard_webhooks_signature(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = standard_webhooks_key(secret);
    let ts = timestamp.to_string();
    let mac = hmac(&key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
    format!("v1,{}", STANDARD.encode(mac))
}

/// A new endpoint secret: `whsec_` + base64 of 24 random bytes (CONTRACT §3).
pub fn generate_webhook_secret() -> String {
    format!(
        "{WHSEC_PREFIX}{}",
        STANDARD.encode(crate::random_bytes::<24>())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickiti_signature_matches_githubs_published_vector() {
        // GitHub's "Validating webhook deliveries" test values.
        assert_eq!(
            tickiti_signature("It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn standard_webhooks_matches_the_spec_example() {
        // The example of the Standard Webhooks reference libraries.
        let sig = standard_webhooks_signature(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn standard_webhooks_without_prefix_uses_the_raw_secret() {
        // Independent computation: HMAC(K, m) = H((K^opad) || H((K^ipad) || m)), RFC 2104.
        use sha2::Digest as _;
        let key = b"plain-secret";
        let message = b"id1.42.{}";
        let mut padded = [0u8; 64];
        padded[..key.len()].copy_from_slice(key);
        let ipad: Vec<u8> = padded.iter().map(|b| b ^ 0x36).collect();
        let opad: Vec<u8> = padded.iter().map(|b| b ^ 0x5c).collect();
        let inner = Sha256::new()
            .chain_update(&ipad)
            .chain_update(message)
            .finalize();
        let outer = Sha256::new()
            .chain_update(&opad)
            .chain_update(inner)
            .finalize();
        assert_eq!(
            standard_webhooks_signature("plain-secret", "id1", 42, b"{}"),
            format!("v1,{}", STANDARD.encode(outer))
        );
    }

    #[test]
    fn generated_secrets() {
        let s = generate_webhook_secret();
        assert!(s.starts_with("whsec_"));
        assert_eq!(standard_webhooks_key(&s).len(), 24);
        assert_ne!(s, generate_webhook_secret());
    }
}
