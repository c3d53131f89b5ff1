//! Log retention: finished deliveries, their attempts and unreferenced events.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Result;

/// Deletes finished deliveries (with their attempts and, once unreferenced,
/// their events) last changed before `retention_secs` ago, at most `limit`
/// per call; how many deliveries. Delivery ids are UUID v7, ordered by
/// creation time, and a delivery is created before it last changes: the
/// scan walks the primary key up to the cut-off instead of reading the
/// whole table.
pub async fn prune(conn: &mut PgConnection, retention_secs: i64, limit: i64) -> Result<u64> {
    let cutoff_ms = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000
        - i128::from(retention_secs) * 1000;
    let cutoff = first_v7_of_millisecond(cutoff_ms);
    let pruned = sqlx::query_scalar!(
        r#"WITH gone AS (
             DELETE FROM webhook_deliveries WHERE id IN (
                 SELECT id FROM webhook_deliveries
                 WHERE id < $3 AND status IN ('success', 'failed')
                   AND updated_at < now() - make_interval(secs => $1::bigint)
                 LIMIT $2)
             RETURNING id
           ), attempts AS (
             DELETE FROM webhook_attempts WHERE delivery_id IN (SELECT id FROM gone)
           )
         SELECT count(*) AS "count!" FROM gone"#,
        retention_secs,
        limit,
        cutoff
    )
    .fetch_one(&mut *conn)
    .await?;
    // Then the events no delivery refers to any more (those just pruned, and
    // those whose endpoint was deleted). Event ids are UUID v7 too.
    sqlx::query!(
        "DELETE FROM webhook_events WHERE id IN (
             SELECT e.id FROM webhook_events e
             WHERE e.id < $1
               AND NOT EXISTS (SELECT 1 FROM webhook_fanouts f WHERE f.event_id = e.id)
               AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = e.id)
             LIMIT $2)",
        cutoff,
        limit
    )
    .execute(conn)
    .await?;
    Ok(u64::try_from(pruned).unwrap_or(0))
}

/// The smallest UUID v7 of Unix millisecond `ms` (every id made at or after
/// that millisecond sorts after it).
fn first_v7_of_millisecond(ms: i128) -> Uuid {
    let ms = u64::try_from(ms.max(0)).unwrap_or(u64::MAX) & 0xFFFF_FFFF_FFFF;
    let mut bytes = [0u8; 16];
    if let Some(head) = bytes.get_mut(..6) {
        head.copy_from_slice(ms.to_be_bytes().get(2..).unwrap_or(&[0; 6]));
    }
    bytes[6] = 0x70; // version 7
    bytes[8] = 0x80; // RFC 9562 variant
    Uuid::from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v7_bounds_order_like_time() {
        let now = Uuid::now_v7();
        let ms = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        assert!(first_v7_of_millisecond(ms - 1_000) < now);
        assert!(first_v7_of_millisecond(ms + 1_000) > now);
        assert_eq!(first_v7_of_millisecond(ms).get_version_num(), 7);
    }
}
