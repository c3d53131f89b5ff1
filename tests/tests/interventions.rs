//! Issue 4's end-to-end path across real processes: the `tickiti-api` and
//! `tickiti-dispatcher` binaries, and a remote system that is a real HTTP
//! server in this test. The remote opens an intervention ticket, a staff
//! member submits, the remote receives the epilog call and answers with a
//! final object, and the ticket shows the final response and the audit text.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgPool;
use tickiti_testkit::poll_until;
use tickiti_testkit::webhooks::{Behaviour, Receiver, Responder, TestDispatcher};

const WAIT: Duration = Duration::from_secs(30);
const BEARER: &str = "remote-shop-bearer-4711";

/// A service binary built beside this test (`target/<profile>/<name>`).
fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} is missing: build the workspace first (scripts/test does)",
        bin.display()
    );
    bin
}

/// A service process with the variables both services share.
fn service(name: &str, db_url: &str, prefix: &str) -> Command {
    let mut command = Command::new(binary(name));
    command
        .env("DATABASE_URL", db_url)
        .env("AMQP_URL", tickiti_testkit::amqp_url())
        .env("TICKITI_BUS_PREFIX", prefix)
        .env("WEBHOOK_ALLOW_PRIVATE_NETWORKS", "true")
        .env("RUST_LOG", "warn")
        .env_remove("TICKITI_ENV")
        .stdout(Stdio::null());
    command
}

/// Kills the child when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn admin(db_url: &str, prefix: &str, args: &[&str]) -> Value {
    let output = service("tickiti-api", db_url, prefix)
        .arg("admin")
        .args(args)
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

async fn wait_ready(client: &reqwest::Client, url: &str) {
    let status = poll_until(
        WAIT,
        || async {
            client
                .get(url)
                .send()
                .await
                .map_or(0, |r| r.status().as_u16())
        },
        |s| *s == 200,
    )
    .await;
    assert_eq!(status, 200, "{url} did not get ready");
}

/// Sends `request`; asserts the status; returns the JSON body.
async fn call(request: reqwest::RequestBuilder, want: u16) -> Value {
    let reply = request.send().await.unwrap();
    let status = reply.status().as_u16();
    let body: Value = reply.json().await.unwrap_or(Value::Null);
    assert_eq!(status, want, "{body}");
    body
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn remote_opens_staff_submits_remote_finalizes_across_processes(db: PgPool) {
    let db_url = tickiti_testkit::database_url(&db);
    let prefix = tickiti_testkit::unique_prefix();
    let http = reqwest::Client::new();

    // The two services, as an operator runs them.
    let org = admin(
        &db_url,
        &prefix,
        &[
            "create-org",
            "--name",
            "Shop Co",
            "--admin-email",
            "root@shop.example",
            "--admin-password",
            "s3cret-pass",
        ],
    );
    assert!(org["organization_id"].is_string(), "{org}");
    let token = |name: &str, abilities: &str| {
        admin(
            &db_url,
            &prefix,
            &[
                "create-token",
                "--email",
                "root@shop.example",
                "--name",
                name,
                "--abilities",
                abilities,
            ],
        )["token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let staff = token("staff", "*");
    let remote = token("shop", "create-ticket");
    let (api_child, api_addr) = tickiti_testkit::spawn_listening(
        service("tickiti-api", &db_url, &prefix)
            .env("API_RATE_LIMIT", "off")
            .arg("serve"),
        "TICKITI_LISTEN",
    );
    let _api = Running(api_child);
    let api = format!("http://{api_addr}");
    wait_ready(&http, &format!("{api}/readyz")).await;
    let (dispatcher_child, dispatcher_addr) = tickiti_testkit::spawn_listening(
        &mut service("tickiti-dispatcher", &db_url, &prefix),
        "DISPATCHER_LISTEN",
    );
    let _dispatcher = Running(dispatcher_child);
    wait_ready(&http, &format!("http://{dispatcher_addr}/readyz")).await;

    // The remote system: answers an epilog call with the final object.
    let shop = Receiver::start().await;
    shop.behave_at(
        "/epilog",
        Behaviour::Respond(Responder::new(|request| {
            let call = request.json();
            let answer = json!({
                "ok": true,
                "final": {
                    "response_id": call["response_id"],
                    "ticket_audit": "Refund booked by the shop",
                    "reference": "R-2026-11"
                }
            });
            (Duration::ZERO, 200, answer.to_string())
        })),
    );

    call(
        http.post(format!("{api}/api/v1/interventions"))
            .bearer_auth(&staff)
            .json(&json!({
                "name": "refund",
                "title": "Refund",
                "remote_name": "shop",
                "remote_epilog_url": shop.url("/epilog"),
                "remote_bearer_token": BEARER,
                "remote_timeout_seconds": 5,
                "remote_enabled": true,
                "fields": [{ "type": "text", "key": "amount", "label": "Amount" }],
                "templates": {
                    "private": "Refund asked for order {{ data.order }}",
                    "final": "Refund {{ reference }} for order {{ data.order }}"
                }
            })),
        201,
    )
    .await;

    // 1. The remote opens the ticket.
    let opened = call(
        http.post(format!("{api}/api/v1/intervention-tickets"))
            .bearer_auth(&remote)
            .header("Idempotency-Key", "refund-order-77")
            .json(&json!({
                "originator_email_address": "ann@example.com",
                "intervention": "refund",
                "uid": "order-77",
                "data": { "data": { "order": "77", "amount": "10" } }
            })),
        201,
    )
    .await;
    let ticket = opened["ticket_id"].as_str().unwrap().to_owned();

    // 2. Staff submit.
    let submitted = call(
        http.post(format!("{api}/api/v1/tickets/{ticket}/intervention/submit"))
            .bearer_auth(&staff)
            .json(&json!({ "data": { "order": "77", "amount": "12" }, "message": "Refunded 12." })),
        200,
    )
    .await;
    let response_id = submitted["response_id"].as_str().unwrap().to_owned();

    // 3. The remote got the epilog call, with its bearer token.
    let calls = shop
        .wait_until(WAIT, |r| r.iter().any(|x| x.path == "/epilog"))
        .await;
    let epilog = calls.iter().find(|x| x.path == "/epilog").unwrap();
    assert_eq!(
        epilog.header("authorization"),
        Some(format!("Bearer {BEARER}").as_str())
    );
    assert_eq!(epilog.json()["response_id"], response_id);
    assert_eq!(epilog.json()["data"]["amount"], "12");

    // 4. The final object is applied: the ticket shows it.
    let view = poll_until(
        WAIT,
        || async {
            http.get(format!("{api}/api/v1/tickets/{ticket}/intervention"))
                .bearer_auth(&staff)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        },
        |v| v["status"] == "accepted",
    )
    .await;
    assert_eq!(view["status"], "accepted", "{view}");
    let messages = call(
        http.get(format!("{api}/api/v1/tickets/{ticket}/messages"))
            .bearer_auth(&staff),
        200,
    )
    .await;
    let bodies: Vec<&str> = messages["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["body"].as_str())
        .collect();
    assert_eq!(
        bodies,
        [
            "Refund asked for order 77",
            "Refunded 12.",
            "Refund R-2026-11 for order 77"
        ]
    );
    let audit = call(
        http.get(format!("{api}/api/v1/tickets/{ticket}/audit"))
            .bearer_auth(&staff),
        200,
    )
    .await;
    assert!(
        audit["data"].as_array().unwrap().iter().any(|a| {
            a["action"] == "intervention.accepted"
                && a["changes"]["ticket_audit"] == "Refund booked by the shop"
        }),
        "{audit}"
    );
    TestDispatcher::cleanup(&prefix).await;
}
