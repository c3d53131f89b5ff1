//! The outbox as the relays use it, against the real Postgres: only
//! committed events, oldest first, two relays never the same row, and
//! pruning only what was published.
#![allow(clippy::unwrap_used)]

mod common;

use common::seed;
use serde_json::json;
use sqlx::PgPool;
use tickiti_domain::{EventEnvelope, EventType};
use tickiti_store::outbox;
use uuid::Uuid;

fn event(org: Uuid, n: u32) -> EventEnvelope {
    EventEnvelope::new(EventType::TicketUpdated, org, json!({ "n": n }))
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn relays_claim_committed_events_oldest_first_and_never_the_same(db: PgPool) {
    let (org, _, _) = seed(&db).await;
    let events: Vec<EventEnvelope> = (0..5).map(|n| event(org, n)).collect();
    let mut writer = db.begin().await.unwrap();
    outbox::append(&mut writer, &events, None).await.unwrap();
    writer.commit().await.unwrap();
    // A change still in its transaction: invisible to the relays.
    let mut open = db.begin().await.unwrap();
    let uncommitted = event(org, 99);
    outbox::append(&mut open, std::slice::from_ref(&uncommitted), None)
        .await
        .unwrap();

    let mut first = db.begin().await.unwrap();
    let mut second = db.begin().await.unwrap();
    let a = outbox::claim_batch(&mut first, 3).await.unwrap();
    let b = outbox::claim_batch(&mut second, 10).await.unwrap();
    let ids = |batch: &[outbox::Pending]| batch.iter().map(|p| p.id).collect::<Vec<_>>();
    let all: Vec<Uuid> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids(&a), all[..3], "the oldest three");
    assert_eq!(
        ids(&b),
        all[3..],
        "the rest, not the locked ones nor the uncommitted"
    );
    assert_eq!(a[0].event_type, "ticket.updated");
    assert_eq!(a[0].payload["data"]["n"], 0);

    outbox::mark_published(&mut first, &ids(&a)).await.unwrap();
    first.commit().await.unwrap();
    // The second relay failed to publish: its rows go back to waiting.
    second.rollback().await.unwrap();
    let mut conn = db.acquire().await.unwrap();
    assert_eq!(outbox::backlog(&mut conn).await.unwrap(), 2);
    open.commit().await.unwrap();
    assert_eq!(outbox::backlog(&mut conn).await.unwrap(), 3);
    let mut third = db.begin().await.unwrap();
    let c = outbox::claim_batch(&mut third, 10).await.unwrap();
    assert_eq!(ids(&c), [all[3], all[4], uncommitted.id]);
    third.rollback().await.unwrap();

    // Pruning keeps what waits; published rows go once older than the window.
    assert_eq!(outbox::prune_published(&mut conn, 1).await.unwrap(), 0);
    assert_eq!(outbox::prune_published(&mut conn, 0).await.unwrap(), 3);
    assert_eq!(outbox::backlog(&mut conn).await.unwrap(), 3);
}

/// A worker's command rides the outbox too, with its id, name and
/// organization in the payload.
#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn a_command_is_relayed_like_an_event(db: PgPool) {
    let (org, _, _) = seed(&db).await;
    let mut tx = db.begin().await.unwrap();
    let mut fields = serde_json::Map::new();
    fields.insert("delivery_ids".into(), json!([]));
    outbox::append_command(&mut tx, org, "command.webhook.dispatch", fields)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut relay = db.begin().await.unwrap();
    let batch = outbox::claim_batch(&mut relay, 10).await.unwrap();
    assert_eq!(batch.len(), 1);
    let command = &batch[0];
    assert_eq!(command.event_type, "command.webhook.dispatch");
    assert_eq!(command.payload["id"], command.id.to_string());
    assert_eq!(command.payload["command"], "command.webhook.dispatch");
    assert_eq!(command.payload["organization_id"], org.to_string());
    assert_eq!(command.payload["delivery_ids"], json!([]));
}
