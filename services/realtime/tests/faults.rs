//! RabbitMQ goes away under a running realtime service: its exclusive queue
//! goes with the connection, so events are missed meanwhile. When the broker
//! is back, sockets are closed with 1012 and resumes say `"recovered":
//! false` (the browser refetches over REST); events flow again. Stops the
//! shared broker, so it runs in the serial `fault_` group.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Client, Stack};
use serde_json::json;
use sqlx::PgPool;
use tickiti_testkit::poll_until;

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
async fn fault_broker_loss_restarts_epochs_and_browsers_refetch(db: PgPool) {
    let (stack, org) = Stack::paired(db, |_| {}).await;
    let (mut client, welcome) = stack.client(&org.token).await;
    let (_, token) = stack.browser_token(&org.token).await;
    stack.app.ticket(&org.token, "before").await;
    let seen = client.event("ticket.created").await;

    let _restart = RestartOnDrop;
    rabbitmqctl("stop_app");
    let down = poll_until(
        Duration::from_secs(30),
        || async { stack.rt.ctx.bus.is_connected() },
        |up| !*up,
    )
    .await;
    assert!(!down, "the realtime process noticed the broker is gone");
    // Written while the broker is away: the outbox keeps it, this process's queue is gone.
    stack.app.ticket(&org.token, "during").await;
    rabbitmqctl("start_app");

    assert_eq!(
        client.closed(Duration::from_secs(60)).await,
        Some(1012),
        "sockets are asked to reconnect"
    );
    let mut back = Client::connect(&stack.rt.ws_url()).await;
    let resumed = back
        .hello(
            &token,
            Some(json!({ "epoch": welcome["epoch"], "offset": seen["offset"] })),
        )
        .await;
    assert_eq!(resumed["type"], "welcome", "{resumed}");
    assert_eq!(resumed["recovered"], false, "{resumed}");
    assert!(
        stack.rt.wait_subscribed(Duration::from_secs(30)).await,
        "subscribed again"
    );
    stack.app.ticket(&org.token, "after").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match back.next(left).await {
            common::Got::Frame(frame) if frame["data"]["subject"] == "after" => break,
            common::Got::Frame(_) => {}
            other => panic!("events did not flow again: {other:?}"),
        }
    }
}
