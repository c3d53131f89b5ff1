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
    /// The key is ours: run the request in the same transaction, then
    /// [`complete`] and commit (or roll back to give the key back).
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
/// After this long a committed claim without an answer (left by a version
/// that committed claims before the work) is presumed dead and may be
/// claimed again.
pub const STALE_CLAIM_SECONDS: i32 = 120;

/// Claims a key for a request with this body hash, in the transaction that
/// will do the request's work and store its answer ([`complete`]).
///
/// The claim is not visible to others until that transaction commits, so a
/// transaction-scoped advisory lock on the key tells a concurrent duplicate
/// that the first is still running ([`Claim::InFlight`]) instead of letting
/// it wait on the uncommitted row. The lock is released at commit or
/// rollback; a crash rolls back the claim and the work together.
pub async fn claim(
    conn: &mut PgConnection,
    scope: &KeyScope,
    request_hash: &[u8],
) -> Result<Claim> {
    let locked = sqlx::query_scalar!(
        r#"SELECT pg_try_advisory_xact_lock(
                  hashtextextended($1::uuid::text || ' ' || $2 || ' ' || $3 || ' ' || $4, 0)
              ) AS "locked!""#,
        scope.organization_id,
        scope.principal,
        scope.route,
        scope.key
    )
    .fetch_one(&mut *conn)
    .await?;
    if !locked {
        return Ok(Claim::InFlight);
    }
    // Insert, or take over a row that expired (or, from a version that
    // committed claims on their own, whose claim went stale); in both cases
    // the row is ours. Otherwise read what is there.
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
        // Deleted (pruned) between our insert and our read: the caller may retry.
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
