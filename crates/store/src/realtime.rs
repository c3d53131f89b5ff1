//! The install's pairing with its realtime service (one row at most).

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Result;

/// The registration row (the node key stays sealed here; the crypto crate opens it).
#[derive(Debug, Clone)]
pub struct Registration {
    /// The pairing's install id (also sent to the realtime service).
    pub install_id: Uuid,
    /// The organization whose admin paired (only its admins re-pair or unbind).
    pub organization_id: Uuid,
    /// The admin who started it.
    pub created_by: Option<Uuid>,
    /// `pending` (waiting for the pin) or `bound`.
    pub status: String,
    /// The node key, sealed.
    pub node_key_sealed: Vec<u8>,
    /// Until when the pin may be entered.
    pub pin_expires_at: OffsetDateTime,
    /// When the pairing was started.
    pub created_at: OffsetDateTime,
    /// When it was seen bound.
    pub bound_at: Option<OffsetDateTime>,
}

/// The registration, if any; `lock` takes a row lock until the transaction ends.
pub async fn get(conn: &mut PgConnection, lock: bool) -> Result<Option<Registration>> {
    let row = if lock {
        sqlx::query_as!(
            Registration,
            "SELECT install_id, organization_id, created_by, status, node_key_sealed,
                    pin_expires_at, created_at, bound_at
             FROM realtime_registrations FOR UPDATE"
        )
        .fetch_optional(conn)
        .await?
    } else {
        sqlx::query_as!(
            Registration,
            "SELECT install_id, organization_id, created_by, status, node_key_sealed,
                    pin_expires_at, created_at, bound_at
             FROM realtime_registrations"
        )
        .fetch_optional(conn)
        .await?
    };
    Ok(row)
}

/// Makes a new pending registration, replacing whatever was there.
pub async fn replace_pending(
    conn: &mut PgConnection,
    install_id: Uuid,
    organization_id: Uuid,
    created_by: Uuid,
    node_key_sealed: &[u8],
    pin_expires_at: OffsetDateTime,
) -> Result<Registration> {
    let row = sqlx::query_as!(
        Registration,
        "INSERT INTO realtime_registrations
             (install_id, organization_id, created_by, status, node_key_sealed, pin_expires_at)
         VALUES ($1, $2, $3, 'pending', $4, $5)
         ON CONFLICT (singleton) DO UPDATE SET
             install_id = EXCLUDED.install_id, organization_id = EXCLUDED.organization_id,
             created_by = EXCLUDED.created_by, status = 'pending',
             node_key_sealed = EXCLUDED.node_key_sealed, pin_expires_at = EXCLUDED.pin_expires_at,
             created_at = now(), bound_at = NULL
         RETURNING install_id, organization_id, created_by, status, node_key_sealed,
                   pin_expires_at, created_at, bound_at",
        install_id,
        organization_id,
        created_by,
        node_key_sealed,
        pin_expires_at
    )
    .fetch_one(conn)
    .await?;
    Ok(row)
}

/// Marks the pending registration `install_id` bound; None when it is not pending (any more).
pub async fn mark_bound(conn: &mut PgConnection, install_id: Uuid) -> Result<Option<Registration>> {
    let row = sqlx::query_as!(
        Registration,
        "UPDATE realtime_registrations SET status = 'bound', bound_at = now()
         WHERE install_id = $1 AND status = 'pending'
         RETURNING install_id, organization_id, created_by, status, node_key_sealed,
                   pin_expires_at, created_at, bound_at",
        install_id
    )
    .fetch_optional(conn)
    .await?;
    Ok(row)
}

/// Deletes the registration `install_id`; whether it existed.
pub async fn delete(conn: &mut PgConnection, install_id: Uuid) -> Result<bool> {
    let done = sqlx::query!(
        "DELETE FROM realtime_registrations WHERE install_id = $1",
        install_id
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() > 0)
}
