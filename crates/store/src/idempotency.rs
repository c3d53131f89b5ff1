//! `Idempotency-Key` records (CONTRACT §2): the first request with a key
//! claims it; later ones replay its stored answer.

use sqlx::PgConnection;
use uuid::Uuid;

use crate::Result;

/// Who a key belongs to: keys are scoped per organization, principal and route.
#[derive(Debug, Clone)]
pub struct KeyScope {
    /// Organization.
    pub organization_id: Uuid,
    /// `token:<id>` or `user:<id>`.
    pub principal: String,
    /// Method and route template, e.g. `POST /api/v1/tickets`.
    pub route: String,
    /// The client's key.
    pub key: String,
}

/// A stored answer.
#[derive(Debug, Clone)]
pub struct StoredResponse {
    /// HTTP status.
    pub status: u16,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Content type of the body.
    pub content_type: Option<String>,
}

/// What claiming a key found.
#[derive(Debug)]
pub enum Claim {
    /// The key is ours: run the request, then [`complete`] or [`release`].
    Claimed,
    /// The first request with this key is still running.
    InFlight,
    /// A request with this key and another body came first.
    BodyMismatch,
    /// The first request finished: answer with this.
    Done(StoredResponse),
}

/// How long a key is remembered.
pub const RETENTION_HOURS: i32 = 24;
/// After this long an in-flight claim is presumed dead (its process crashed)
/// and the key may be claimed again.
pub const STALE_CLAIM_SECONDS: i32 = 120;

/// Claims a key for a request with this body hash.
pub async fn claim(
    conn: &mut PgConnection,
    scope: &KeyScope,
    request_hash: &[u8],
) -> Result<Claim> {
    // Insert, or take over a row that expired or whose claim went stale; in
    // both cases the row is ours. Otherwise read what is there.
    let claimed = sqlx::query_scalar!(
        r#"INSERT INTO idempotency_keys (organization_id, principal, route, key, request_hash)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (organization_id, principal, route, key) DO UPDATE
             SET request_hash = EXCLUDED.request_hash, response_status = NULL,
                 response_body = NULL, response_content_type = NULL, created_at = now()
             WHERE idempotency_keys.created_at < now() - make_interval(hours => $6)
                OR (idempotency_keys.response_status IS NULL
                    AND idempotency_keys.created_at < now() - make_interval(secs => $7))
           RETURNING true AS "claimed!""#,
        scope.organization_id,
        scope.principal,
        scope.route,
        scope.key,
        request_hash,
        RETENTION_HOURS,
        f64::from(STALE_CLAIM_SECONDS)
    )
    .fetch_optional(&mut *conn)
    .await?;
    if claimed.is_some() {
        return Ok(Claim::Claimed);
    }
    let row = sqlx::query!(
        "SELECT request_hash, response_status, response_body, response_content_type
         FROM idempotency_keys
         WHERE organization_id = $1 AND principal = $2 AND route = $3 AND key = $4",
        scope.organization_id,
        scope.principal,
        scope.route,
        scope.key
    )
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else {
        // Released between our insert and our read: the caller may retry.
        return Ok(Claim::InFlight);
    };
    if row.request_hash != request_hash {
        return Ok(Claim::BodyMismatch);
    }
    Ok(match row.response_status {
        None => Claim::InFlight,
        Some(status) => Claim::Done(StoredResponse {
            status: u16::try_from(status).unwrap_or(500),
            body: row.response_body.unwrap_or_default(),
            content_type: row.response_content_type,
        }),
    })
}

/// Stores the answer of a claimed key.
pub async fn complete(
    conn: &mut PgConnection,
    scope: &KeyScope,
    response: &StoredResponse,
) -> Result<()> {
    sqlx::query!(
        "UPDATE idempotency_keys SET response_status = $5, response_body = $6, response_content_type = $7
         WHERE organization_id = $1 AND principal = $2 AND route = $3 AND key = $4",
        scope.organization_id,
        scope.principal,
        scope.route,
        scope.key,
        i16::try_from(response.status).unwrap_or(500),
        response.body,
        response.content_type
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Gives a claimed key back (the request failed in a way worth retrying).
pub async fn release(conn: &mut PgConnection, scope: &KeyScope) -> Result<()> {
    sqlx::query!(
        "DELETE FROM idempotency_keys
         WHERE organization_id = $1 AND principal = $2 AND route = $3 AND key = $4 AND response_status IS NULL",
        scope.organization_id,
        scope.principal,
        scope.route,
        scope.key
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Forgets keys older than the retention; how many.
pub async fn prune(conn: &mut PgConnection) -> Result<u64> {
    let done = sqlx::query!(
        "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(hours => $1)",
        RETENTION_HOURS
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}
