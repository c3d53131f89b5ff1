//! Sign-in attempts per throttle key, shared by every api process.
//!
//! Each attempt is counted when it starts (so attempts in flight count), in
//! one statement that also applies the policy: the first `free` attempts of
//! a window pass at once, after that each must wait `2^(n - free)` seconds
//! (at most `max_wait_secs`) after the previous one. The caller picks keys
//! and policies; this module counts atomically.

use sqlx::PgConnection;

use crate::Result;

/// How a key is throttled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Attempts allowed before any wait.
    pub free: i32,
    /// The longest wait between two attempts, in seconds.
    pub max_wait_secs: i32,
    /// A key whose last attempt is older than this starts again.
    pub window_secs: i32,
}

/// Counts an attempt of `key` starting now: Ok(the attempt's number), or
/// Err(seconds to wait) when the policy refuses it (nothing counted).
pub async fn begin(
    conn: &mut PgConnection,
    key: &str,
    policy: Policy,
) -> Result<std::result::Result<i32, i64>> {
    let counted = sqlx::query_scalar!(
        r#"INSERT INTO login_attempts AS a (key, attempts, last_attempt_at)
           VALUES ($1, 1, now())
           ON CONFLICT (key) DO UPDATE SET
               attempts = CASE
                   WHEN a.last_attempt_at <= now() - make_interval(secs => $4) THEN 1
                   ELSE a.attempts + 1 END,
               last_attempt_at = now()
           WHERE a.last_attempt_at <= now() - make_interval(secs => $4)
              OR a.attempts < $2
              OR a.last_attempt_at
                 + make_interval(secs => least(power(2, a.attempts - $2), $3)) <= now()
           RETURNING attempts"#,
        key,
        policy.free,
        f64::from(policy.max_wait_secs),
        f64::from(policy.window_secs),
    )
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(count) = counted {
        return Ok(Ok(count));
    }
    let wait = sqlx::query_scalar!(
        r#"SELECT ceil(extract(epoch FROM a.last_attempt_at
                + make_interval(secs => least(power(2, a.attempts - $2), $3)) - now()))::bigint
                AS "wait!"
           FROM login_attempts a WHERE key = $1"#,
        key,
        policy.free,
        f64::from(policy.max_wait_secs),
    )
    .fetch_optional(conn)
    .await?;
    Ok(Err(wait.unwrap_or(1).max(1)))
}

/// Forgets `key` (an account's record after its right password).
pub async fn clear(conn: &mut PgConnection, key: &str) -> Result<()> {
    sqlx::query!("DELETE FROM login_attempts WHERE key = $1", key)
        .execute(conn)
        .await?;
    Ok(())
}

/// Gives back one attempt of `key` (a client address's, after a success).
pub async fn refund(conn: &mut PgConnection, key: &str) -> Result<()> {
    sqlx::query!(
        "UPDATE login_attempts SET attempts = greatest(attempts - 1, 0) WHERE key = $1",
        key
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes records idle for longer than `window_secs`; how many.
pub async fn prune(conn: &mut PgConnection, window_secs: i32) -> Result<u64> {
    let done = sqlx::query!(
        "DELETE FROM login_attempts WHERE last_attempt_at <= now() - make_interval(secs => $1)",
        f64::from(window_secs)
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}
