//! RabbitMQ goes away while the api takes writes: every event still arrives,
//! each once per publish, none lost. Stops the shared broker, so it runs in
//! the serial `fault_` group.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use serde_json::json;
use sqlx::PgPool;
use tickiti_testkit::{EventTap, TestApp, poll_until};

fn rabbitmqctl(action: &str) {
    let status = Command::new("rabbitmqctl")
        .arg(action)
        .status()
        .expect("rabbitmqctl is needed for fault tests");
    assert!(status.success(), "rabbitmqctl {action} failed");
}

/// Starts the broker's app again even when the test fails half-way.
struct RestartOnDrop;

impl Drop for RestartOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl").arg("start_app").status();
    }
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn fault_broker_stop_loses_no_events(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let tap = EventTap::bind(&app.prefix).await;
    let org = app.org("Faulty").await;
    assert!(app.wait_ready(200).await);

    let mut subjects = HashSet::new();
    for i in 0..10 {
        app.ticket(&org.token, &format!("before {i}")).await;
        subjects.insert(format!("before {i}"));
    }

    let _restart = RestartOnDrop;
    rabbitmqctl("stop_app");
    assert!(app.wait_ready(503).await, "readyz reports the broker down");
    for i in 0..40 {
        let reply = app
            .post(
                "/api/v1/tickets",
                &org.token,
                json!({ "subject": format!("during {i}"), "contact": { "email": format!("c{i}@example.com") } }),
            )
            .await;
        assert_eq!(
            reply.status, 201,
            "the api keeps accepting writes while the broker is down"
        );
        subjects.insert(format!("during {i}"));
    }
    let waiting = app.unpublished_events().await;
    assert!(
        waiting >= 40,
        "the outbox holds the events while the broker is down ({waiting})"
    );
    rabbitmqctl("start_app");
    assert!(app.wait_ready(200).await, "the api reconnects");
    for i in 0..10 {
        app.ticket(&org.token, &format!("after {i}")).await;
        subjects.insert(format!("after {i}"));
    }

    // Every ticket's event arrives (duplicates would be allowed; losses not).
    let created = |events: &[serde_json::Value]| -> HashSet<String> {
        events
            .iter()
            .filter(|e| e["event"] == "ticket.created")
            .map(|e| e["data"]["subject"].as_str().unwrap().to_owned())
            .collect()
    };
    let events = tap
        .wait_until(Duration::from_secs(60), |events| {
            created(events).len() == subjects.len()
        })
        .await;
    let received = created(&events);
    let missing: Vec<_> = subjects.difference(&received).collect();
    assert!(missing.is_empty(), "lost events: {missing:?}");
    // Rows are marked after the broker's confirm, which may trail the delivery.
    let unpublished = poll_until(
        Duration::from_secs(10),
        || app.unpublished_events(),
        |n| *n == 0,
    )
    .await;
    assert_eq!(unpublished, 0);
    // Event ids are unique per change; a re-published batch repeats ids, never invents them.
    let events = tap.events().await;
    let ids: HashSet<_> = events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    let outbox_ids: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(
        ids.len() as i64,
        outbox_ids,
        "one distinct event per outbox row"
    );
    tap.cleanup().await;
}
