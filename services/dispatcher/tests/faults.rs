//! At least once, never lost: the dispatcher killed (SIGKILL, the real
//! binary) or RabbitMQ restarted in the middle of a burst, and every event
//! still reaches the receiver, a duplicate always with its delivery's stable
//! `X-Tickiti-Delivery`. Both stop shared things or processes, so they are in
//! the serial `fault_` group.
#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::time::Duration;

use serde_json::json;
use sqlx::PgPool;
use tickiti_testkit::webhooks::{Behaviour, Receiver, TestDispatcher};
use tickiti_testkit::{TestApp, TestOrg};

const BURST: usize = 60;

async fn subscribe(app: &TestApp, org: &TestOrg, receiver: &Receiver) {
    let reply = app
        .post(
            "/api/v1/webhooks",
            &org.token,
            json!({ "url": receiver.url("/in"), "events": ["ticket.created"] }),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
}

/// Every ticket arrived; each delivery id always names the same ticket.
fn check_all_arrived(receiver: &Receiver, subjects: &HashSet<String>) {
    let mut by_subject: HashMap<String, HashSet<String>> = HashMap::new();
    for request in receiver.received() {
        let subject = request.json()["data"]["subject"]
            .as_str()
            .unwrap()
            .to_owned();
        let delivery = request.header("x-tickiti-delivery").unwrap().to_owned();
        by_subject.entry(subject).or_default().insert(delivery);
    }
    let missing: Vec<_> = subjects
        .iter()
        .filter(|s| !by_subject.contains_key(*s))
        .collect();
    assert!(missing.is_empty(), "lost: {missing:?}");
    for (subject, ids) in &by_subject {
        assert_eq!(
            ids.len(),
            1,
            "{subject}: duplicates carry the same delivery id"
        );
    }
}

fn arrived(receiver: &Receiver) -> HashSet<String> {
    receiver
        .received()
        .iter()
        .filter_map(|r| r.json()["data"]["subject"].as_str().map(str::to_owned))
        .collect()
}

/// The real binary, against the test's database and prefix.
async fn spawn_binary(db: &PgPool, prefix: &str) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_tickiti-dispatcher"))
        .env("DATABASE_URL", tickiti_testkit::database_url(db))
        .env("AMQP_URL", tickiti_testkit::amqp_url())
        .env("TICKITI_BUS_PREFIX", prefix)
        .env("DISPATCHER_LISTEN", "127.0.0.1:0")
        .env("WEBHOOK_ALLOW_PRIVATE_NETWORKS", "true")
        .env("WEBHOOK_RETRY_SCHEDULE", "0s,1s,1s,1s,1s,1s")
        .env("WEBHOOK_TIMEOUT", "2s")
        .env("RUST_LOG", "info")
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn fault_dispatcher_killed_mid_burst_loses_nothing(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let receiver = Receiver::start().await;
    // Slow answers keep many deliveries in flight when the process dies:
    // sending, and claimed but waiting for the endpoint's turn (those come
    // back when their claim runs out).
    receiver.behave(Behaviour::Hang(Duration::from_millis(300)));
    let org = app.org("Burst").await;
    subscribe(&app, &org, &receiver).await;
    TestDispatcher::declare_queues(&app.prefix).await;
    let mut child = spawn_binary(&db, &app.prefix).await;

    let mut subjects = HashSet::new();
    for i in 0..BURST {
        let subject = format!("burst {i}");
        app.ticket(&org.token, &subject).await;
        subjects.insert(subject);
    }
    receiver
        .wait_until(Duration::from_secs(30), |r| r.len() >= BURST / 4)
        .await;
    child.start_kill().unwrap(); // SIGKILL: no goodbye, nothing acked
    let _ = child.wait().await;
    let before = arrived(&receiver).len();
    assert!(before < BURST, "killed in the middle ({before} arrived)");

    let mut child = spawn_binary(&db, &app.prefix).await;
    receiver
        .wait_until(Duration::from_secs(60), |_| {
            arrived(&receiver).len() == subjects.len()
        })
        .await;
    check_all_arrived(&receiver, &subjects);
    child.start_kill().unwrap();
    let _ = child.wait().await;
    TestDispatcher::cleanup(&app.prefix).await;
}

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
async fn fault_broker_restart_mid_burst_loses_nothing(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let dispatcher = TestDispatcher::spawn(&app).await;
    let receiver = Receiver::start().await;
    receiver.behave(Behaviour::Hang(Duration::from_millis(100)));
    let org = app.org("Burst").await;
    subscribe(&app, &org, &receiver).await;

    let mut subjects = HashSet::new();
    for i in 0..BURST / 2 {
        let subject = format!("before {i}");
        app.ticket(&org.token, &subject).await;
        subjects.insert(subject);
    }
    receiver
        .wait_until(Duration::from_secs(30), |r| r.len() >= 5)
        .await;
    let _restart = RestartOnDrop;
    rabbitmqctl("stop_app");
    for i in 0..BURST / 2 {
        let subject = format!("during {i}");
        app.ticket(&org.token, &subject).await;
        subjects.insert(subject);
    }
    rabbitmqctl("start_app");
    receiver
        .wait_until(Duration::from_secs(90), |_| {
            arrived(&receiver).len() == subjects.len()
        })
        .await;
    check_all_arrived(&receiver, &subjects);
    dispatcher.stop().await;
    TestDispatcher::cleanup(&app.prefix).await;
}
