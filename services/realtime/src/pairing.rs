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
//! Queries here are checked at run time (`sqlx::query_as::<_, T>` with
//! `FromRow`), not with `query!`: sqlx's macros check against one
//! `DATABASE_URL` per build, which is the api's database, and this one is
//! separate. The statements are few and static, and the tests run each one.

use std::time::Duration;

use sqlx::{FromRow, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::hub::Binding;

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
    let mut tx = db.begin().await?;
    sqlx::query(
        "UPDATE realtime_pairings SET state = 'replaced', ended_at = now(), pin_hash = ''
         WHERE state = 'pending'",
    )
    .execute(&mut *tx)
    .await?;
    let inserted = sqlx::query(
        "INSERT INTO realtime_pairings (install_id, node_key, pin_hash, state, expires_at)
         VALUES ($1, $2, $3, 'pending', $4) ON CONFLICT (install_id) DO NOTHING",
    )
    .bind(install_id)
    .bind(node_key.as_slice())
    .bind(pin_hash)
    .bind(expires_at)
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(PairError::Duplicate);
    }
    tx.commit().await?;
    Ok(expires_at)
}

/// A pairing by install id, with a pending one past its time shown as `expired`.
pub async fn view(db: &PgPool, install_id: Uuid) -> Result<Option<PairingView>, sqlx::Error> {
    sqlx::query_as::<_, PairingView>(
        "SELECT install_id,
                CASE WHEN state = 'pending' AND expires_at <= now() THEN 'expired' ELSE state END AS state,
                attempts, expires_at, bound_at
         FROM realtime_pairings WHERE install_id = $1",
    )
    .bind(install_id)
    .fetch_optional(db)
    .await
}

#[derive(FromRow)]
struct BoundRow {
    install_id: Uuid,
    node_key: Vec<u8>,
}

/// The bound pairing, if any.
pub async fn current(db: &PgPool) -> Result<Option<Binding>, sqlx::Error> {
    let row = sqlx::query_as::<_, BoundRow>(
        "SELECT install_id, node_key FROM realtime_pairings WHERE state = 'bound'",
    )
    .fetch_optional(db)
    .await?;
    Ok(row.and_then(|row| {
        let node_key = <[u8; 32]>::try_from(row.node_key.as_slice()).ok()?;
        Some(Binding {
            install_id: row.install_id,
            node_key,
        })
    }))
}

#[derive(FromRow)]
struct PendingRow {
    install_id: Uuid,
    pin_hash: String,
    attempts: i32,
    expires_at: OffsetDateTime,
}

/// Confirms the pending pairing with its pin (`tickiti-realtime pair PIN`); returns its install id.
pub async fn confirm(db: &PgPool, pin: &str) -> Result<Uuid, PairError> {
    let pin = pin.trim().to_owned();
    if !tickiti_crypto::realtime::is_pin(&pin) {
        return Err(PairError::Malformed);
    }
    let mut tx = db.begin().await?;
    // FOR UPDATE: concurrent guesses wait for each other, so none is lost
    // from the count and each costs a full argon2 verification.
    let pending = sqlx::query_as::<_, PendingRow>(
        "SELECT install_id, pin_hash, attempts, expires_at FROM realtime_pairings
         WHERE state = 'pending' FOR UPDATE",
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(PairError::NoPending)?;
    if pending.expires_at <= OffsetDateTime::now_utc() {
        sqlx::query(
            "UPDATE realtime_pairings SET state = 'expired', ended_at = now(), pin_hash = ''
             WHERE install_id = $1",
        )
        .bind(pending.install_id)
        .execute(&mut *tx)
        .await?;
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
        sqlx::query(
            "UPDATE realtime_pairings
             SET attempts = $2,
                 state = CASE WHEN $3 THEN 'voided' ELSE state END,
                 ended_at = CASE WHEN $3 THEN now() ELSE ended_at END,
                 pin_hash = CASE WHEN $3 THEN '' ELSE pin_hash END
             WHERE install_id = $1",
        )
        .bind(pending.install_id)
        .bind(attempts)
        .bind(voided)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        return Err(if voided {
            PairError::Voided
        } else {
            PairError::WrongPin {
                attempts_left: MAX_ATTEMPTS - attempts,
            }
        });
    }
    sqlx::query(
        "UPDATE realtime_pairings SET state = 'unbound', ended_at = now() WHERE state = 'bound'",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE realtime_pairings SET state = 'bound', bound_at = now(), pin_hash = ''
         WHERE install_id = $1",
    )
    .bind(pending.install_id)
    .execute(&mut *tx)
    .await?;
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

#[derive(FromRow)]
struct KeyRow {
    node_key: Vec<u8>,
}

/// Unbinds (or cancels) the pairing `install_id`, given proof of its node key.
pub async fn unbind(db: &PgPool, install_id: Uuid, proof: &str) -> Result<Unbound, sqlx::Error> {
    let mut tx = db.begin().await?;
    let Some(row) = sqlx::query_as::<_, KeyRow>(
        "SELECT node_key FROM realtime_pairings WHERE install_id = $1 FOR UPDATE",
    )
    .bind(install_id)
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(Unbound::NotFound);
    };
    let Ok(key) = <[u8; 32]>::try_from(row.node_key.as_slice()) else {
        return Ok(Unbound::Forbidden);
    };
    if !tickiti_crypto::realtime::verify_unbind_proof(&key, install_id, proof) {
        return Ok(Unbound::Forbidden);
    }
    sqlx::query(
        "UPDATE realtime_pairings
         SET state = CASE state WHEN 'bound' THEN 'unbound' ELSE 'cancelled' END,
             ended_at = now(), pin_hash = ''
         WHERE install_id = $1 AND state IN ('bound', 'pending')",
    )
    .bind(install_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Unbound::Done)
}

/// Unbinds whatever is bound or pending, without proof (`tickiti-realtime unpair`, run by the operator).
pub async fn unpair_all(db: &PgPool) -> Result<u64, sqlx::Error> {
    let mut tx = db.begin().await?;
    let done = sqlx::query(
        "UPDATE realtime_pairings
         SET state = CASE state WHEN 'bound' THEN 'unbound' ELSE 'cancelled' END,
             ended_at = now(), pin_hash = ''
         WHERE state IN ('bound', 'pending')",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(done.rows_affected())
}
