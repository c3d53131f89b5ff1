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

fn dispatcher(db: &PgPool, prefix: &str) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tickiti-dispatcher"));
    command
        .env("DATABASE_URL", tickiti_testkit::database_url(db))
        .env("AMQP_URL", tickiti_testkit::amqp_url())
        .env("TICKITI_BUS_PREFIX", prefix)
        .env("WORKER_HEARTBEAT_INTERVAL", "300ms")
        .env("RUST_LOG", "warn");
    command
}

/// A dispatcher process (killed if the test ends first) and its process id,
/// which names the port it listens on.
struct Running {
    child: std::process::Child,
    port: u16,
}

impl Running {
    /// Started on port 0, its port read back from its log.
    fn start(db: &PgPool, prefix: &str) -> Running {
        let (child, addr) =
            tickiti_testkit::spawn_listening(&mut dispatcher(db, prefix), "DISPATCHER_LISTEN");
        Running {
            child,
            port: addr.port(),
        }
    }

    /// Started again at the port an earlier one had.
    fn restart(db: &PgPool, prefix: &str, port: u16) -> Running {
        let child = dispatcher(db, prefix)
            .env("DISPATCHER_LISTEN", format!("127.0.0.1:{port}"))
            .spawn()
            .unwrap();
        Running { child, port }
    }

    /// The id it reports in under (worker health).
    fn process_id(&self) -> String {
        format!(
            "dispatcher@{}:{}",
            tickiti_bus::heartbeat::hostname(),
            self.port
        )
    }

    /// Sends `signal` and waits until the process has exited.
    async fn stop(&mut self, signal: &str) {
        let sent = std::process::Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill {signal} failed");
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the dispatcher did not exit on {signal}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts another dispatcher, kills it (SIGKILL) and waits until it is
/// reported down: whoever fell silent before it has been judged by then.
async fn witness_goes_down(db: &PgPool, prefix: &str, tap: &EventTap) {
    let mut witness = Running::start(db, prefix);
    let id = witness.process_id();
    tap.wait_until(WAIT, |e| health_events(e, &id).len() == 1)
        .await;
    witness.stop("-KILL").await;
    let events = tap
        .wait_until(WAIT, |e| health_events(e, &id).len() == 2)
        .await;
    assert_eq!(health_events(&events, &id), ["up", "down"]);
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
    // The process id names its address: restarted there, it is the same process.
    let mut first = Running::start(&db, &app.prefix);
    let process = first.process_id();
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

    first.stop("-KILL").await;
    let events = tap
        .wait_until(WAIT, |e| health_events(e, &process).len() == 2)
        .await;
    assert_eq!(health_events(&events, &process), ["up", "down"]);
    assert_eq!(status().await.as_deref(), Some("down"));
    // Silent for longer than a witness that fell silent later: still one "down".
    witness_goes_down(&db, &app.prefix, &tap).await;
    assert_eq!(health_events(&tap.events().await, &process), ["up", "down"]);

    let mut second = Running::restart(&db, &app.prefix, first.port);
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
    second.stop("-TERM").await;
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
