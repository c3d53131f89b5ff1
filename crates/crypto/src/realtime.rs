//! Realtime ("Tonic", CONTRACT §5): the node key and pin of a pairing, and
//! the short-lived browser tokens the api signs with the node key and the
//! realtime service verifies.
//!
//! Token layout: `base64url(claims JSON) "." base64url(HMAC-SHA256(node key,
//! "tickiti-realtime-token.v1." + first part))`, both without padding. The
//! claims name the install (pairing) whose key signed them, so a token made
//! before an unbind or a new pairing never verifies afterwards.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

type HmacSha256 = Hmac<Sha256>;

/// Domain separation: a MAC made for anything else never verifies as a token.
const TOKEN_CONTEXT: &[u8] = b"tickiti-realtime-token.v1.";
/// Domain separation of the proof the api sends to unbind.
const UNBIND_CONTEXT: &[u8] = b"tickiti-realtime-unbind.v1.";
/// Longest token accepted before any decoding (claims are a few hundred bytes).
pub const MAX_TOKEN_LEN: usize = 4096;

/// What a browser may see, carried in its token.
pub mod scope {
    /// Ticket, message, time entry and intervention events, perspective
    /// counts, locks and escalations (`tickets:read`).
    pub const TICKETS: &str = "tickets";
    /// System health frames (mailbox errors, worker health) (`admin`).
    pub const ADMIN: &str = "admin";
}

/// The claims of a browser token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrowserClaims {
    /// The pairing (install id) whose node key signed the token.
    pub iid: Uuid,
    /// The user's organization: the only one whose frames the socket gets.
    pub org: Uuid,
    /// The user.
    pub sub: Uuid,
    /// The user's display name (shown with the locks they take).
    pub name: String,
    /// What the user may see (see [`scope`]).
    pub scopes: Vec<String>,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Expires at, Unix seconds.
    pub exp: i64,
}

impl BrowserClaims {
    /// Whether the claims grant `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// Why a token was refused (the socket closes with 4401 whatever the reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not two base64url parts, too long, or claims that do not parse.
    #[error("malformed token")]
    Malformed,
    /// The signature does not verify under this key.
    #[error("bad signature")]
    BadSignature,
    /// Past its expiry.
    #[error("expired token")]
    Expired,
}

fn mac(key: &[u8], context: &[u8], message: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length (RFC 2104 §2): `new_from_slice` cannot fail.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable_hmac(),
    };
    mac.update(context);
    mac.update(message);
    mac
}

#[cold]
fn unreachable_hmac() -> ! {
    panic!("HMAC rejected a key length")
}

/// Signs `claims` with the node key.
pub fn sign_token(key: &[u8; 32], claims: &BrowserClaims) -> String {
    // Serializing a struct of strings, numbers and UUIDs cannot fail.
    let json = serde_json::to_vec(claims).unwrap_or_default();
    let payload = URL_SAFE_NO_PAD.encode(json);
    let tag = mac(key, TOKEN_CONTEXT, payload.as_bytes())
        .finalize()
        .into_bytes();
    format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag))
}

/// Verifies a token's signature (in constant time) and expiry at `now` (Unix seconds).
pub fn verify_token(key: &[u8; 32], token: &str, now: i64) -> Result<BrowserClaims, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed);
    }
    let (payload, tag) = token.split_once('.').ok_or(TokenError::Malformed)?;
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| TokenError::Malformed)?;
    mac(key, TOKEN_CONTEXT, payload.as_bytes())
        .verify_slice(&tag)
        .map_err(|_| TokenError::BadSignature)?;
    let json = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TokenError::Malformed)?;
    let claims: BrowserClaims = serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
    if claims.exp <= now {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

/// A new node key: 32 random bytes.
pub fn generate_node_key() -> [u8; 32] {
    crate::random_bytes::<32>()
}

/// The node key as sent to the realtime service's private listener (base64).
pub fn encode_node_key(key: &[u8; 32]) -> String {
    STANDARD.encode(key)
}

/// Decodes [`encode_node_key`]'s output; None unless it is 32 bytes of base64.
pub fn decode_node_key(text: &str) -> Option<[u8; 32]> {
    let bytes = STANDARD.decode(text.trim()).ok()?;
    <[u8; 32]>::try_from(bytes.as_slice()).ok()
}

/// A one-time pin: 8 decimal digits, uniformly drawn from the OS generator.
pub fn generate_pin() -> String {
    let n: u32 = rand::rngs::OsRng.gen_range(0..100_000_000);
    format!("{n:08}")
}

/// Whether `text` has the shape of a pin (8 ASCII digits).
pub fn is_pin(text: &str) -> bool {
    text.len() == 8 && text.bytes().all(|b| b.is_ascii_digit())
}

/// The slow hash of a pin (argon2id, PHC string): all the realtime service
/// ever stores of it, so a copy of its database does not give the pin away.
pub fn hash_pin(pin: &str) -> Result<String, crate::PasswordError> {
    crate::hash_password(pin)
}

/// Whether `pin` matches a [`hash_pin`] hash (a malformed hash never matches).
pub fn verify_pin(pin: &str, hash: &str) -> bool {
    is_pin(pin) && crate::verify_password(pin, hash)
}

/// Hex proof that the caller holds the node key of `install_id`, sent with
/// an unbind so that reaching the private listener alone is not enough.
pub fn unbind_proof(key: &[u8; 32], install_id: Uuid) -> String {
    hex::encode(
        mac(key, UNBIND_CONTEXT, install_id.as_bytes())
            .finalize()
            .into_bytes(),
    )
}

/// Checks an [`unbind_proof`] in constant time.
pub fn verify_unbind_proof(key: &[u8; 32], install_id: Uuid, proof: &str) -> bool {
    let Ok(bytes) = hex::decode(proof.trim()) else {
        return false;
    };
    mac(key, UNBIND_CONTEXT, install_id.as_bytes())
        .verify_slice(&bytes)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> BrowserClaims {
        BrowserClaims {
            iid: Uuid::now_v7(),
            org: Uuid::now_v7(),
            sub: Uuid::now_v7(),
            name: "Nathan".into(),
            scopes: vec![scope::TICKETS.into()],
            iat: 1_000,
            exp,
        }
    }

    #[test]
    fn tokens_round_trip_until_they_expire() {
        let key = generate_node_key();
        let c = claims(2_000);
        let token = sign_token(&key, &c);
        assert_eq!(verify_token(&key, &token, 1_999), Ok(c));
        assert_eq!(verify_token(&key, &token, 2_000), Err(TokenError::Expired));
    }

    #[test]
    fn forged_and_foreign_tokens_are_refused() {
        let key = generate_node_key();
        let token = sign_token(&key, &claims(2_000));
        // Another key (an old pairing) never verifies.
        assert_eq!(
            verify_token(&generate_node_key(), &token, 1_500),
            Err(TokenError::BadSignature)
        );
        // Changed claims with the old signature.
        let (_, tag) = token.split_once('.').unwrap();
        let mut forged = claims(9_999_999_999);
        forged.scopes.push(scope::ADMIN.into());
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        assert_eq!(
            verify_token(&key, &format!("{payload}.{tag}"), 1_500),
            Err(TokenError::BadSignature)
        );
        for junk in ["", ".", "abc", "a.b", &"x".repeat(MAX_TOKEN_LEN + 1)] {
            assert!(verify_token(&key, junk, 1_500).is_err(), "{junk}");
        }
    }

    #[test]
    fn pins_are_eight_digits_and_hash_slowly() {
        for _ in 0..50 {
            let pin = generate_pin();
            assert!(is_pin(&pin), "{pin}");
        }
        let hash = hash_pin("01234567").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_pin("01234567", &hash));
        assert!(!verify_pin("01234568", &hash));
        assert!(!verify_pin("1234567", &hash));
    }

    #[test]
    fn unbind_proofs_bind_key_and_install() {
        let key = generate_node_key();
        let id = Uuid::now_v7();
        let proof = unbind_proof(&key, id);
        assert!(verify_unbind_proof(&key, id, &proof));
        assert!(!verify_unbind_proof(&key, Uuid::now_v7(), &proof));
        assert!(!verify_unbind_proof(&generate_node_key(), id, &proof));
        assert!(!verify_unbind_proof(&key, id, "zz"));
        let encoded = encode_node_key(&key);
        assert_eq!(decode_node_key(&encoded), Some(key));
        assert_eq!(decode_node_key("c2hvcnQ="), None);
    }
}
