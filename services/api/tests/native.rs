//! The real `tickiti-api` binary, as an operator runs it natively: migrate,
//! the admin commands (JSON on stdout), serve, and a graceful SIGTERM.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgPool;

const BIN: &str = env!("CARGO_BIN_EXE_tickiti-api");

fn api(db_url: &str, prefix: &str) -> Command {
    let mut command = Command::new(BIN);
    command
        .env("DATABASE_URL", db_url)
        .env("TICKITI_BUS_PREFIX", prefix)
        .env("API_RATE_LIMIT", "off")
        .env_remove("TICKITI_ENV");
    command
}

fn run_json(command: &mut Command) -> Value {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn the_binary_migrates_administers_serves_and_stops_gracefully(db: PgPool) {
    let url = tickiti_testkit::database_url(&db);
    let prefix = tickiti_testkit::unique_prefix();
    assert_eq!(
        run_json(api(&url, &prefix).arg("migrate"))["status"],
        "migrated"
    );
    let org = run_json(api(&url, &prefix).args([
        "admin",
        "create-org",
        "--name",
        "Native Co",
        "--admin-email",
        "root@native.example",
        "--admin-password",
        "s3cret-pass",
    ]));
    let org_id = org["organization_id"].as_str().unwrap();
    let user = run_json(api(&url, &prefix).args([
        "admin",
        "create-user",
        "--org",
        org_id,
        "--email",
        "ann@native.example",
        "--name",
        "Ann",
        "--password",
        "s3cret-pass",
    ]));
    assert!(user["user_id"].is_string());
    let token = run_json(api(&url, &prefix).args([
        "admin",
        "create-token",
        "--email",
        "root@native.example",
        "--name",
        "ci",
        "--abilities",
        "tickets:read,tickets:write",
    ]));
    let secret = token["token"].as_str().unwrap();
    assert!(secret.starts_with("tkt_"));
    let bad = api(&url, &prefix)
        .args([
            "admin",
            "create-token",
            "--email",
            "root@native.example",
            "--name",
            "x",
            "--abilities",
            "everything",
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());

    let (mut server, addr) =
        tickiti_testkit::spawn_listening(&mut api(&url, &prefix), "TICKITI_LISTEN");
    let client = reqwest::Client::new();
    let base = format!("http://{addr}");
    let mut up = false;
    for _ in 0..100 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "the server did not come up");
    let created = client
        .post(format!("{base}/api/v1/tickets"))
        .bearer_auth(secret)
        .json(&json!({ "subject": "From the binary", "contact": { "email": "c@example.com" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let ticket: Value = created.json().await.unwrap();
    assert_eq!(ticket["code"], "NATIVE-1");

    let killed = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let mut exited = None;
    for _ in 0..100 {
        if let Some(status) = server.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = exited.expect("tickiti-api did not stop on SIGTERM");
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
}

#[test]
fn help_and_an_unreachable_database() {
    let help = Command::new(BIN).arg("--help").output().unwrap();
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for word in [
        "DATABASE_URL",
        "AMQP_URL",
        "TICKITI_BUS_PREFIX",
        "API_RATE_LIMIT",
        "migrate",
        "admin",
    ] {
        assert!(text.contains(word), "--help does not mention {word}");
    }
    let unreachable = Command::new(BIN)
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/tickiti")
        .env("TICKITI_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!unreachable.status.success());
    let stderr = String::from_utf8_lossy(&unreachable.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "one clear line: {stderr}");
    assert!(stderr.contains("database unreachable"), "{stderr}");
}

/// Production refuses to start without a master key or with a publicly
/// known one (the key an older `docker-compose.yml` filled in, or the
/// built-in development key): one clear line, nothing served.
#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn production_refuses_a_missing_or_public_master_key(db: PgPool) {
    let db_url = tickiti_testkit::database_url(&db);
    let prefix = tickiti_testkit::unique_prefix();
    for key in [
        None,
        Some(""),
        Some("dGlja2l0aS1kZXYta2V5LW5vdC1mb3ItcHJvZCEhISE="),
        Some("dGlja2l0aS1kZXZlbG9wbWVudC1rZXktMzItYnl0ZXM="),
    ] {
        let mut command = api(&db_url, &prefix);
        command
            .env("TICKITI_ENV", "production")
            .env("TICKITI_LISTEN", "127.0.0.1:0");
        match key {
            Some(key) => command.env("TICKITI_MASTER_KEY", key),
            None => command.env_remove("TICKITI_MASTER_KEY"),
        };
        let output = tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap();
        assert!(!output.status.success(), "{key:?} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("TICKITI_MASTER_KEY"), "{key:?}: {stderr}");
    }
}
