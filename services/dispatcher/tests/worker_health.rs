//! Worker health (CONTRACT §8) with the real dispatcher binary: it reports
//! in and is listed; killed (SIGKILL) it is reported down once; started
//! again at its address it is reported up once; stopped with SIGTERM it is
//! forgotten without an alarm. Counted from the events on the broker.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::Value;
use sqlx::PgPool;
use tickiti_testkit::{EventTap, TestApp, poll_until};

const SILENCE: Duration = Duration::from_secs(2);
const WAIT: Duration = Duration::from_secs(20);

fn dispatcher(db: &PgPool, prefix: &str, port: u16) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_tickiti-dispatcher"))
        .env("DATABASE_URL", tickiti_testkit::database_url(db))
        .env("AMQP_URL", tickiti_testkit::amqp_url())
        .env("TICKITI_BUS_PREFIX", prefix)
        .env("DISPATCHER_LISTEN", format!("127.0.0.1:{port}"))
        .env("WORKER_HEARTBEAT_INTERVAL", "300ms")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts another dispatcher, kills it (SIGKILL) and waits until it is
/// reported down: whoever fell silent before it has been judged by then.
async fn witness_goes_down(db: &PgPool, prefix: &str, tap: &EventTap) {
    let port = free_port();
    let witness = format!("dispatcher@{}:{port}", tickiti_bus::heartbeat::hostname());
    let mut child = dispatcher(db, prefix, port);
    tap.wait_until(WAIT, |e| health_events(e, &witness).len() == 1)
        .await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let events = tap
        .wait_until(WAIT, |e| health_events(e, &witness).len() == 2)
        .await;
    assert_eq!(health_events(&events, &witness), ["up", "down"]);
}

fn health_events(events: &[Value], process: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["event"] == "system.worker_health" && e["data"]["process_id"] == process)
        .map(|e| e["data"]["status"].as_str().unwrap().to_owned())
        .collect()
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn a_killed_dispatcher_is_reported_down_once_and_up_once(db: PgPool) {
    let app = TestApp::spawn_with(db.clone(), |c| c.worker_silence = SILENCE).await;
    let tap = EventTap::bind(&app.prefix).await;
    let org = app.org("Acme").await;
    // The process id names its address: the restarted one is the same process.
    let port = free_port();
    let process = format!("dispatcher@{}:{port}", tickiti_bus::heartbeat::hostname());
    let status = || async {
        let listed = app.get("/api/v1/system/health", &org.token).await;
        assert_eq!(listed.status, 200, "{}", listed.body);
        listed.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["process_id"] == process.as_str())
            .map(|w| w["status"].as_str().unwrap().to_owned())
    };

    let mut first = dispatcher(&db, &app.prefix, port);
    assert_eq!(
        poll_until(WAIT, status, |s| s.as_deref() == Some("up"))
            .await
            .as_deref(),
        Some("up")
    );
    let events = tap
        .wait_until(WAIT, |e| health_events(e, &process).len() == 1)
        .await;
    assert_eq!(health_events(&events, &process), ["up"]);

    first.start_kill().unwrap();
    first.wait().await.unwrap();
    let events = tap
        .wait_until(WAIT, |e| health_events(e, &process).len() == 2)
        .await;
    assert_eq!(health_events(&events, &process), ["up", "down"]);
    assert_eq!(status().await.as_deref(), Some("down"));
    // Silent for longer than a witness that fell silent later: still one "down".
    witness_goes_down(&db, &app.prefix, &tap).await;
    assert_eq!(health_events(&tap.events().await, &process), ["up", "down"]);

    let mut second = dispatcher(&db, &app.prefix, port);
    let events = tap
        .wait_until(WAIT, |e| health_events(e, &process).len() == 3)
        .await;
    assert_eq!(health_events(&events, &process), ["up", "down", "up"]);
    assert_eq!(status().await.as_deref(), Some("up"));
    let event = events
        .iter()
        .rfind(|e| e["event"] == "system.worker_health")
        .unwrap();
    assert_eq!(event["organization_id"], org.id.to_string());
    assert_eq!(event["data"]["service"], "dispatcher");

    // A deliberate stop: forgotten, no alarm.
    let pid = second.id().unwrap();
    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    second.wait().await.unwrap();
    assert_eq!(poll_until(WAIT, status, Option::is_none).await, None);
    // Not reported down even once a witness that fell silent later was.
    witness_goes_down(&db, &app.prefix, &tap).await;
    assert_eq!(
        health_events(&tap.events().await, &process),
        ["up", "down", "up"]
    );

    // Only admins see it.
    let (_, _, agent) = app
        .user(
            &org,
            "Ada",
            tickiti_domain::Role::Agent,
            &[tickiti_domain::Ability::TicketsRead],
        )
        .await;
    assert_eq!(app.get("/api/v1/system/health", &agent).await.status, 403);
    tap.cleanup().await;
}
