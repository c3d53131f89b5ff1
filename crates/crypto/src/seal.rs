//! Sealing of stored secrets (webhook secrets, remote bearer tokens) with
//! AES-256-GCM under the master key (`TICKITI_MASTER_KEY`).
//!
//! Layout of a sealed value: `version (1) | key id (1) | nonce (12) | ciphertext + tag (16)`.
//! The key id is derived from the key itself, so a value names the key that
//! sealed it: after a rotation the new key seals, and the old one, handed in
//! with [`SecretBox::with_retired`], still opens what it sealed. Nonces are 96
//! random bits per value (NIST SP 800-38D §8.2.2); at the handful of values a
//! helpdesk seals, a collision is out of reach.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use sha2::{Digest as _, Sha256};

/// Format version of a sealed value (the first byte).
const VERSION: u8 = 1;
/// Bytes before the ciphertext: version, key id, nonce.
const HEADER: usize = 2 + 12;
/// Associated data bound into every tag, so a value sealed for something else never opens here.
const AAD: &[u8] = b"tickiti-sealed-secret-v1";

/// The development master key, used when `TICKITI_MASTER_KEY` is unset outside
/// production. Public: it protects nothing.
pub const DEVELOPMENT_KEY: [u8; 32] = *b"tickiti-development-key-32-bytes";

/// Keys published somewhere (in this code, in an old `docker-compose.yml`):
/// they protect nothing, so production refuses them.
const PUBLIC_KEYS: [[u8; 32]; 3] = [
    DEVELOPMENT_KEY,
    *b"tickiti-dev-key-not-for-prod!!!!",
    [0; 32],
];

/// The master key a process runs with (see [`resolve_master_key`]), warning
/// loudly when it is a public one: the one call every service makes.
pub fn master_key(encoded: Option<&str>, production: bool) -> Result<[u8; 32], String> {
    let (key, public) = resolve_master_key(encoded, production)?;
    if public {
        tracing::warn!(
            "TICKITI_MASTER_KEY is not set or publicly known: stored secrets are NOT protected"
        );
    }
    Ok(key)
}

/// The master key a process runs with, from `TICKITI_MASTER_KEY` (unset or
/// empty: none). In production a key is required and a publicly known one
/// is refused; in development none means [`DEVELOPMENT_KEY`]. The flag says
/// the key is public.
pub fn resolve_master_key(
    encoded: Option<&str>,
    production: bool,
) -> Result<([u8; 32], bool), String> {
    let key = match encoded.map(str::trim).filter(|text| !text.is_empty()) {
        Some(encoded) => parse_master_key(encoded)?,
        None if production => {
            return Err("TICKITI_MASTER_KEY is required when TICKITI_ENV=production".into());
        }
        None => DEVELOPMENT_KEY,
    };
    let public = PUBLIC_KEYS.contains(&key);
    if public && production {
        return Err(
            "TICKITI_MASTER_KEY is a publicly known development key: set your own \
             (`openssl rand -base64 32`) when TICKITI_ENV=production"
                .into(),
        );
    }
    Ok((key, public))
}

/// Decodes `TICKITI_MASTER_KEY` (base64 of 32 bytes).
pub fn parse_master_key(encoded: &str) -> Result<[u8; 32], String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|e| format!("TICKITI_MASTER_KEY is not base64: {e}"))?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        format!(
            "TICKITI_MASTER_KEY must decode to 32 bytes, got {}",
            bytes.len()
        )
    })
}

/// Opening a sealed value failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    /// Too short or an unknown format version.
    #[error("not a sealed value")]
    Malformed,
    /// Sealed under a key this process does not have.
    #[error("sealed under an unknown key (id {0})")]
    UnknownKey(u8),
    /// The tag does not verify: tampered, or the wrong key.
    #[error("the sealed value does not verify")]
    Corrupt,
    /// The plaintext was not UTF-8 (for [`SecretBox::open_string`]).
    #[error("the sealed value is not text")]
    NotText,
}

/// Seals and opens stored secrets; cheap to share behind an `Arc`.
#[derive(Clone)]
pub struct SecretBox {
    /// The key that seals (and its id).
    current: (u8, Aes256Gcm),
    /// Older keys that still open what they sealed.
    retired: Vec<(u8, Aes256Gcm)>,
}

impl std::fmt::Debug for SecretBox {
    // Never prints key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretBox")
            .field("key_id", &self.current.0)
            .field("retired", &self.retired.len())
            .finish()
    }
}

/// The one-byte id of a key: the first byte of SHA-256 over a label and the key.
pub fn key_id(key: &[u8; 32]) -> u8 {
    let mut hash = Sha256::new();
    hash.update(b"tickiti-master-key-id");
    hash.update(key);
    hash.finalize()[0]
}

impl SecretBox {
    /// A box that seals with `key` (32 bytes, the decoded `TICKITI_MASTER_KEY`).
    pub fn new(key: [u8; 32]) -> Self {
        Self {
            current: (key_id(&key), Aes256Gcm::new(&key.into())),
            retired: Vec::new(),
        }
    }

    /// Also opens values sealed under `key` (a master key being rotated out).
    pub fn with_retired(mut self, key: [u8; 32]) -> Self {
        self.retired
            .push((key_id(&key), Aes256Gcm::new(&key.into())));
        self
    }

    /// The id of the sealing key.
    pub fn key_id(&self) -> u8 {
        self.current.0
    }

    /// Encrypts `plaintext` with a fresh random nonce.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let nonce_bytes = crate::random_bytes::<12>();
        let (id, cipher) = &self.current;
        // Encryption with a valid key fails only for inputs over ~64 GiB.
        let ciphertext = cipher
            .encrypt(
                Nonce::from_slice(&nonce_bytes),
                Payload {
                    msg: plaintext,
                    aad: AAD,
                },
            )
            .unwrap_or_default();
        let mut out = Vec::with_capacity(HEADER + ciphertext.len());
        out.push(VERSION);
        out.push(*id);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&ciphertext);
        out
    }

    /// Decrypts a value made by [`SecretBox::seal`] (under the current or a retired key).
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < HEADER + 16 || sealed[0] != VERSION {
            return Err(SealError::Malformed);
        }
        let id = sealed[1];
        let (nonce, ciphertext) = sealed[2..].split_at(12);
        let mut tried = false;
        for (key_id, cipher) in std::iter::once(&self.current).chain(&self.retired) {
            // Two keys may share an id byte (1 in 256): try each that matches.
            if *key_id != id {
                continue;
            }
            tried = true;
            if let Ok(plain) = cipher.decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: AAD,
                },
            ) {
                return Ok(plain);
            }
        }
        Err(if tried {
            SealError::Corrupt
        } else {
            SealError::UnknownKey(id)
        })
    }

    /// Seals a text secret.
    pub fn seal_str(&self, plaintext: &str) -> Vec<u8> {
        self.seal(plaintext.as_bytes())
    }

    /// Opens a sealed text secret.
    pub fn open_string(&self, sealed: &[u8]) -> Result<String, SealError> {
        String::from_utf8(self.open(sealed)?).map_err(|_| SealError::NotText)
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn production_refuses_a_missing_or_public_key() {
        use base64::Engine as _;
        let b64 = |key: &[u8]| base64::engine::general_purpose::STANDARD.encode(key);
        assert!(resolve_master_key(None, true).is_err());
        assert!(resolve_master_key(Some(" "), true).is_err());
        assert!(resolve_master_key(Some(&b64(&DEVELOPMENT_KEY)), true).is_err());
        assert!(
            resolve_master_key(Some("dGlja2l0aS1kZXYta2V5LW5vdC1mb3ItcHJvZCEhISE="), true).is_err()
        );
        let own = [7u8; 32];
        assert_eq!(resolve_master_key(Some(&b64(&own)), true), Ok((own, false)));
        assert_eq!(resolve_master_key(None, false), Ok((DEVELOPMENT_KEY, true)));
        assert_eq!(
            resolve_master_key(Some(""), false),
            Ok((DEVELOPMENT_KEY, true))
        );
    }

    use super::*;

    #[test]
    fn round_trip_and_no_plaintext() {
        let sb = SecretBox::new([7; 32]);
        let secret = b"whsec_super-secret-value";
        let sealed = sb.seal(secret);
        assert_eq!(sealed.len(), HEADER + secret.len() + 16);
        assert!(!sealed.windows(secret.len()).any(|w| w == secret));
        assert_eq!(sb.open(&sealed).unwrap(), secret);
        // A fresh nonce each time.
        assert_ne!(sb.seal(secret), sealed);
    }

    #[test]
    fn tampering_and_wrong_keys_are_refused() {
        let sb = SecretBox::new([1; 32]);
        let mut sealed = sb.seal(b"abc");
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert_eq!(sb.open(&sealed), Err(SealError::Corrupt));
        let other = SecretBox::new([2; 32]);
        assert_eq!(
            other.open(&sb.seal(b"abc")),
            Err(SealError::UnknownKey(sb.key_id()))
        );
        assert_eq!(sb.open(b"short"), Err(SealError::Malformed));
    }

    #[test]
    fn rotation_keeps_old_values_readable() {
        let old = SecretBox::new([3; 32]);
        let sealed_old = old.seal(b"old");
        let rotated = SecretBox::new([4; 32]).with_retired([3; 32]);
        assert_eq!(rotated.open(&sealed_old).unwrap(), b"old");
        let sealed_new = rotated.seal(b"new");
        assert_eq!(sealed_new[1], rotated.key_id());
        assert_eq!(rotated.open(&sealed_new).unwrap(), b"new");
    }
}
