//! Time limits on every request: Postgres `statement_timeout` on the api's
//! pool and the request time-out. A request stuck behind a lock answers 503
//! with `Retry-After` (never hangs, never 500) and changes nothing.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::PgPool;
use tickiti_testkit::{TestApp, database_url};

/// Holds the ticket's row lock in a transaction of its own until dropped.
async fn lock_ticket(db: &PgPool, id: &str) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut tx = db.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM tickets WHERE id = $1::uuid FOR UPDATE")
        .bind(id)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn a_statement_past_its_time_out_answers_503_and_changes_nothing(db: PgPool) {
    let pool = tickiti_store::connect(&database_url(&db), 10, Some(Duration::from_millis(500)))
        .await
        .unwrap();
    let app = TestApp::spawn(pool).await;
    let org = app.org("Acme").await;
    let ticket = app.ticket(&org.token, "Stuck").await;
    let id = ticket["id"].as_str().unwrap();
    let path = format!("/api/v1/tickets/{id}");

    let lock = lock_ticket(&db, id).await;
    let started = Instant::now();
    let reply = app
        .patch(&path, &org.token, json!({ "status": "pending" }))
        .await;
    assert_eq!(
        (reply.status, reply.code()),
        (503, "BUSY"),
        "{}",
        reply.body
    );
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    drop(lock);

    assert_eq!(
        app.get(&path, &org.token).await.body["status"],
        ticket["status"]
    );
    let again = app
        .patch(&path, &org.token, json!({ "status": "pending" }))
        .await;
    assert_eq!(again.status, 200, "{}", again.body);
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn a_request_past_its_time_limit_answers_503_and_rolls_back(db: PgPool) {
    let app = TestApp::spawn_with(db.clone(), |config| {
        config.request_timeout = Duration::from_secs(1);
    })
    .await;
    let org = app.org("Acme").await;
    let ticket = app.ticket(&org.token, "Slow").await;
    let id = ticket["id"].as_str().unwrap();
    let path = format!("/api/v1/tickets/{id}");

    let lock = lock_ticket(&db, id).await;
    let started = Instant::now();
    let reply = app
        .post(
            &format!("{path}/messages"),
            &org.token,
            json!({ "body": "Never half-posted." }),
        )
        .await;
    let took = started.elapsed();
    assert_eq!(
        (reply.status, reply.code()),
        (503, "TIMEOUT"),
        "{}",
        reply.body
    );
    assert!(reply.header("retry-after").is_some());
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "{took:?}"
    );
    drop(lock);

    let messages = app.get(&format!("{path}/messages"), &org.token).await;
    let bodies: Vec<_> = messages.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].clone())
        .collect();
    assert!(!bodies.contains(&json!("Never half-posted.")), "{bodies:?}");
    // Nothing of it reached the outbox either.
    let events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE event_type = 'message.created'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(events, 0);
}
