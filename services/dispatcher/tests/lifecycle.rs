//! The dispatcher's life around the deliveries: waiting for the api's
//! migrations, a fresh broker, event types it does not know, and pruning
//! the delivery log.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{WAIT, create_endpoint};
use serde_json::{Value, json};
use sqlx::PgPool;
use tickiti_testkit::webhooks::{Receiver, TestDispatcher};
use tickiti_testkit::{TestApp, poll_until};

/// A dispatcher started against an older schema (the api not upgraded yet)
/// waits, not ready, until the newest migration it knows has been applied.
#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn waits_for_the_newest_migration_it_knows(db: PgPool) {
    let prefix = tickiti_testkit::unique_prefix();
    // As if the last migration had not run yet.
    sqlx::query(
        "UPDATE _sqlx_migrations SET success = false
         WHERE version = (SELECT max(version) FROM _sqlx_migrations)",
    )
    .execute(&db)
    .await
    .unwrap();
    let config = tickiti_testkit::webhooks::dispatcher_config(&prefix);
    let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let dispatcher =
        tickiti_dispatcher::serve(listener, db.clone(), config, shutdown.clone()).unwrap();
    let readyz = format!("http://{}/readyz", dispatcher.addr);
    let status = || async {
        let reply = reqwest::get(&readyz).await.unwrap();
        (
            reply.status().as_u16(),
            reply.text().await.unwrap_or_default(),
        )
    };
    // It has looked at the schema and decided to wait.
    let (code, body) = poll_until(Duration::from_secs(30), status, |(_, body)| {
        body.contains("waiting for the api's migrations")
    })
    .await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("waiting for the api's migrations"), "{body}");

    sqlx::query("UPDATE _sqlx_migrations SET success = true")
        .execute(&db)
        .await
        .unwrap();
    let ready = poll_until(Duration::from_secs(30), status, |(code, _)| *code == 200).await;
    assert_eq!(ready.0, 200, "{}", ready.1);
    shutdown.cancel();
    let _ = dispatcher.finished.await;
    TestDispatcher::cleanup(&prefix).await;
}

/// A fresh install whose api starts before any dispatcher has run (compose's
/// start order, a new broker): the changes made meanwhile wait in the
/// dispatcher's durable queue, which the api's publisher declared, and are
/// delivered once the dispatcher starts. (Before the fix the broker dropped
/// them: nothing had declared the queue yet.)
#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn changes_made_before_the_first_dispatcher_start_are_delivered(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let receiver = Receiver::start().await;
    let org = app.org("Early").await;
    create_endpoint(
        &app,
        &org,
        json!({ "url": receiver.url("/early"), "events": ["ticket.created"] }),
    )
    .await;
    for i in 0..5 {
        app.ticket(&org.token, &format!("before the dispatcher {i}"))
            .await;
    }
    assert_eq!(
        poll_until(WAIT, || app.unpublished_events(), |n| *n == 0).await,
        0,
        "the events reached the broker"
    );
    let dispatcher = TestDispatcher::spawn(&app).await;
    let got = receiver.wait_until(WAIT, |r| r.len() >= 5).await;
    assert_eq!(got.len(), 5, "every change made before the start arrived");
    dispatcher.stop().await;
    receiver.stop();
    TestDispatcher::cleanup(&app.prefix).await;
}

/// An event type this dispatcher does not know (an api newer than its
/// dispatcher, mid-upgrade) goes to the install's parking queue with where it
/// came from, and is counted; it is not acked away. (Before the fix it was
/// acked and dropped.)
#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn an_unknown_event_type_is_parked_and_counted(db: PgPool) {
    use tickiti_bus::{Bus, BusConfig, OutgoingMessage, PARKED_REASON, PARKED_ROUTING_KEY};

    let app = TestApp::spawn(db.clone()).await;
    let dispatcher = TestDispatcher::spawn(&app).await;
    let bus = Bus::connect_briefly(
        BusConfig {
            amqp_url: tickiti_testkit::amqp_url(),
            prefix: app.prefix.clone(),
            connection_name: "tickiti-test-future-api".into(),
        },
        Duration::from_secs(10),
    )
    .await
    .expect("RabbitMQ is reachable");
    let id = uuid::Uuid::now_v7();
    let payload = json!({
        "id": id, "type": "ticket.teleported", "organization_id": uuid::Uuid::now_v7(),
        "occurred_at": "2026-12-03T08:00:00Z", "data": { "ticket_id": uuid::Uuid::now_v7() },
    });
    bus.publish_confirmed(
        &bus.events_exchange(),
        &[OutgoingMessage {
            id,
            routing_key: "ticket.teleported".into(),
            payload: serde_json::to_vec(&payload).unwrap(),
            headers: vec![],
        }],
    )
    .await
    .unwrap();

    let parked = tickiti_bus::parked_queue(&app.prefix);
    let depth = poll_until(
        WAIT,
        || async { bus.queue_depth(&parked).await.unwrap_or(0) },
        |n| *n >= 1,
    )
    .await;
    assert_eq!(depth, 1, "the unknown event waits in {parked}");
    // The count follows the broker's confirm of the copy, so it can trail the
    // queue's depth by a moment: wait for it rather than read it once.
    let counted = "tickiti_bus_parked_total{reason=\"unknown-event\"} 1\n";
    let metrics = poll_until(WAIT, || dispatcher.metrics(), |m| m.contains(counted)).await;
    assert!(metrics.contains(counted), "{metrics}");

    // What was parked is the message as published, with where it came from.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let _reader = bus.consume(
        tickiti_bus::durable_queues(&app.prefix)
            .into_iter()
            .find(|spec| spec.queue == parked)
            .unwrap(),
        move |message: tickiti_bus::IncomingMessage| {
            let _ = tx.send(message);
            async { tickiti_bus::Outcome::Ack }
        },
    );
    let message = tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(message.id, Some(id));
    assert_eq!(message.header(PARKED_REASON), Some("unknown-event"));
    assert_eq!(
        message.header(PARKED_ROUTING_KEY),
        Some("ticket.teleported")
    );
    let body: Value = serde_json::from_slice(&message.payload).unwrap();
    assert_eq!(body, payload);
    dispatcher.stop().await;
    TestDispatcher::cleanup(&app.prefix).await;
}

/// One pruning round removes every expired delivery, however many there
/// are (before: 5 000 a minute, so a log filling faster never shrank), and
/// nothing that is recent or unfinished.
#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn one_pruning_round_keeps_up_with_any_delivery_rate(db: PgPool) {
    use uuid::{NoContext, Timestamp, Uuid};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let two_days_ago = now - 2 * 86_400;
    let old_ids: Vec<Uuid> = (0..12_345u32)
        .map(|i| Uuid::new_v7(Timestamp::from_unix(NoContext, two_days_ago, i * 1_000)))
        .collect();
    let recent_ids: Vec<Uuid> = (0..100).map(|_| Uuid::now_v7()).collect();
    let (endpoint, org) = (Uuid::now_v7(), Uuid::now_v7());
    // Old and finished (pruned), old and still retrying (kept), recent (kept).
    for (ids, status, age) in [
        (&old_ids[..12_300], "success", "2 days"),
        (&old_ids[12_300..], "retrying", "2 days"),
        (&recent_ids[..], "failed", "0 days"),
    ] {
        sqlx::query(
            "INSERT INTO webhook_deliveries (id, endpoint_id, organization_id, event_id, event_type, status, updated_at)
             SELECT id, $2, $3, gen_random_uuid(), 'ticket.created', $4, now() - $5::interval
             FROM UNNEST($1::uuid[]) AS id",
        )
        .bind(ids)
        .bind(endpoint)
        .bind(org)
        .bind(status)
        .bind(age)
        .execute(&db)
        .await
        .unwrap();
    }
    let shutdown = tokio_util::sync::CancellationToken::new();
    let pruned =
        tickiti_dispatcher::prune_delivery_log(&db, Duration::from_secs(86_400), &shutdown)
            .await
            .unwrap();
    assert_eq!(pruned, 12_300);
    let left: Vec<(String, i64)> = sqlx::query_as(
        "SELECT status, count(*) FROM webhook_deliveries GROUP BY status ORDER BY status",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(
        left,
        vec![("failed".to_owned(), 100), ("retrying".to_owned(), 45)]
    );
}
