//! Pairing (CONTRACT §5, seed 000), kept in the realtime service's own database.
//!
//! 1. The api sends a pairing request to the private listener: an install
//!    id, the node key and the argon2id hash of a one-time 8-digit pin. It
//!    waits as `pending` for 10 minutes; a newer request replaces it.
//! 2. The operator runs `tickiti-realtime pair PIN`: the pin is checked
//!    against the hash under a row lock (so guesses are serialized), a wrong
//!    one counts, the fifth wrong one voids the pairing; the right one binds
//!    it (and unbinds any earlier pairing).
//! 3. Every realtime process sharing this database re-reads the pairing
//!    every second (and at once when an unbind is announced on
//!    `<prefix>.realtime`) and installs the new key, closing sockets of the
//!    old pairing with 4401.
//!
//! The statements are in [`crate::store`]; this module holds the rules.

use std::time::Duration;

use sqlx::{FromRow, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::hub::Binding;
use crate::store;

/// How long a pin may be entered.
pub const PIN_TTL: Duration = Duration::from_secs(10 * 60);
/// Wrong pins that void a pairing.
pub const MAX_ATTEMPTS: i32 = 5;

/// Pairing failures.
#[derive(Debug, thiserror::Error)]
pub enum PairError {
    /// No pairing waits for a pin.
    #[error(
        "no pairing is waiting for a pin; start one from Tickiti (POST /api/v1/realtime/registration)"
    )]
    NoPending,
    /// The pin's 10 minutes are over.
    #[error("the pin has expired; start a new pairing from Tickiti")]
    Expired,
    /// Wrong pin.
    #[error("wrong pin; {attempts_left} attempt(s) left")]
    WrongPin {
        /// Tries left before the pairing is void.
        attempts_left: i32,
    },
    /// The fifth wrong pin: the pairing is void.
    #[error("wrong pin; too many wrong pins: this pairing is void, start a new one from Tickiti")]
    Voided,
    /// Not 8 digits.
    #[error("a pin is 8 digits")]
    Malformed,
    /// A pairing with this install id exists already.
    #[error("a pairing with this install id exists")]
    Duplicate,
    /// The database failed.
    #[error("database error")]
    Database(#[from] sqlx::Error),
}

/// One pairing as the api asks about it.
#[derive(Debug, Clone, PartialEq, Eq, FromRow, serde::Serialize)]
pub struct PairingView {
    /// Install id.
    pub install_id: Uuid,
    /// `pending`, `bound`, `expired`, `voided`, `replaced`, `unbound` or `cancelled`.
    pub state: String,
    /// Wrong pins so far.
    pub attempts: i32,
    /// Until when the pin may be entered.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// When it was bound.
    #[serde(with = "time::serde::rfc3339::option")]
    pub bound_at: Option<OffsetDateTime>,
}

/// Records a pairing request (replacing any pending one). Expiry is at most 10 minutes away.
pub async fn request(
    db: &PgPool,
    install_id: Uuid,
    node_key: &[u8; 32],
    pin_hash: &str,
    expires_at: OffsetDateTime,
) -> Result<OffsetDateTime, PairError> {
    let latest = OffsetDateTime::now_utc() + PIN_TTL;
    let expires_at = expires_at.min(latest);
    if !store::insert_pending(db, install_id, node_key, pin_hash, expires_at).await? {
        return Err(PairError::Duplicate);
    }
    Ok(expires_at)
}

/// A pairing by install id, with a pending one past its time shown as `expired`.
pub async fn view(db: &PgPool, install_id: Uuid) -> Result<Option<PairingView>, sqlx::Error> {
    store::view(db, install_id).await
}

/// The bound pairing, if any.
pub async fn current(db: &PgPool) -> Result<Option<Binding>, sqlx::Error> {
    Ok(store::bound(db).await?.and_then(|(install_id, node_key)| {
        let node_key = <[u8; 32]>::try_from(node_key.as_slice()).ok()?;
        Some(Binding {
            install_id,
            node_key,
        })
    }))
}

/// Confirms the pending pairing with its pin (`tickiti-realtime pair PIN`); returns its install id.
pub async fn confirm(db: &PgPool, pin: &str) -> Result<Uuid, PairError> {
    let pin = pin.trim().to_owned();
    if !tickiti_crypto::realtime::is_pin(&pin) {
        return Err(PairError::Malformed);
    }
    let mut tx = db.begin().await?;
    // Locked: concurrent guesses wait for each other, so none is lost from
    // the count and each costs a full argon2 verification.
    let pending = store::lock_pending(&mut tx)
        .await?
        .ok_or(PairError::NoPending)?;
    if pending.expires_at <= OffsetDateTime::now_utc() {
        store::expire(&mut tx, pending.install_id).await?;
        tx.commit().await?;
        return Err(PairError::Expired);
    }
    let hash = pending.pin_hash.clone();
    let candidate = pin.clone();
    let matches = tokio::task::spawn_blocking(move || {
        tickiti_crypto::realtime::verify_pin(&candidate, &hash)
    })
    .await
    .unwrap_or(false);
    if !matches {
        let attempts = pending.attempts + 1;
        let voided = attempts >= MAX_ATTEMPTS;
        store::record_wrong_pin(&mut tx, pending.install_id, attempts, voided).await?;
        tx.commit().await?;
        return Err(if voided {
            PairError::Voided
        } else {
            PairError::WrongPin {
                attempts_left: MAX_ATTEMPTS - attempts,
            }
        });
    }
    store::bind(&mut tx, pending.install_id).await?;
    tx.commit().await?;
    Ok(pending.install_id)
}

/// What an unbind did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unbound {
    /// The pairing was bound (or pending) and is not any more.
    Done,
    /// No such pairing.
    NotFound,
    /// The proof does not match the pairing's node key.
    Forbidden,
}

/// Unbinds (or cancels) the pairing `install_id`, given proof of its node key.
pub async fn unbind(db: &PgPool, install_id: Uuid, proof: &str) -> Result<Unbound, sqlx::Error> {
    let mut tx = db.begin().await?;
    let Some(node_key) = store::lock_node_key(&mut tx, install_id).await? else {
        return Ok(Unbound::NotFound);
    };
    let Ok(key) = <[u8; 32]>::try_from(node_key.as_slice()) else {
        return Ok(Unbound::Forbidden);
    };
    if !tickiti_crypto::realtime::verify_unbind_proof(&key, install_id, proof) {
        return Ok(Unbound::Forbidden);
    }
    store::end(&mut tx, Some(install_id)).await?;
    tx.commit().await?;
    Ok(Unbound::Done)
}

/// Unbinds whatever is bound or pending, without proof (`tickiti-realtime unpair`, run by the operator).
pub async fn unpair_all(db: &PgPool) -> Result<u64, sqlx::Error> {
    let mut conn = db.acquire().await?;
    store::end(&mut conn, None).await
}
