//! Deliveries end to end: the api and the dispatcher in-process, a real
//! local receiver. Signatures are checked with code that shares nothing with
//! the signer (HMAC and base64 written out here from RFC 2104 / RFC 4648).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{WAIT, create_endpoint};
use serde_json::{Value, json};
use sqlx::PgPool;
use tickiti_testkit::webhooks::{Behaviour, Receiver, TestDispatcher};
use tickiti_testkit::{TestApp, TestOrg, poll_until};

// --- an independent verifier ---------------------------------------------

// --- an independent verifier ---------------------------------------------

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&ipad)
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(&opad)
        .chain_update(inner)
        .finalize()
        .to_vec()
}

const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn b64_decode(text: &str) -> Vec<u8> {
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|c| *c != b'=') {
        bits = (bits << 6) | B64.iter().position(|a| *a == c).unwrap() as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Standard Webhooks verification as the spec describes it.
fn standard_webhooks_valid(secret: &str, id: &str, ts: &str, body: &[u8], header: &str) -> bool {
    let key = match secret.strip_prefix("whsec_") {
        Some(rest) => b64_decode(rest),
        None => secret.as_bytes().to_vec(),
    };
    let mut signed = format!("{id}.{ts}.").into_bytes();
    signed.extend_from_slice(body);
    let expected = b64_encode(&hmac_sha256(&key, &signed));
    header
        .split(' ')
        .filter_map(|sig| sig.strip_prefix("v1,"))
        .any(|sig| sig == expected)
}

// --- helpers ----------------------------------------------------------------

async fn deliveries(app: &TestApp, org: &TestOrg, endpoint: &str) -> Vec<Value> {
    app.get(
        &format!("/api/v1/webhooks/{endpoint}/deliveries"),
        &org.token,
    )
    .await
    .body["data"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn endpoint_status(app: &TestApp, org: &TestOrg, endpoint: &str) -> String {
    app.get(&format!("/api/v1/webhooks/{endpoint}"), &org.token)
        .await
        .body["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

// --- tests ------------------------------------------------------------------

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn signed_nested_and_flat_deliveries_with_every_header(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let dispatcher = TestDispatcher::spawn(&app).await;
    let receiver = Receiver::start().await;
    let org = app.org("Acme").await;
    let nested = create_endpoint(
        &app,
        &org,
        json!({ "url": receiver.url("/nested"), "events": ["ticket.created"] }),
    )
    .await;
    let nested_secret = nested["secret"].as_str().unwrap().to_owned();
    create_endpoint(
        &app,
        &org,
        json!({ "url": receiver.url("/flat"), "events": ["*"], "secret": "plain-text-secret-123",
                "payload_format": "flat", "headers": { "X-Api-Key": "k1" } }),
    )
    .await;

    let ticket = app.ticket(&org.token, "Printer on fire").await;
    let got = receiver
        .wait_until(WAIT, |r| {
            r.iter().any(|x| x.path == "/nested")
                && r.iter().any(|x| {
                    x.path == "/flat" && x.header("x-tickiti-event") == Some("ticket.created")
                })
        })
        .await;
    let n = got.iter().find(|r| r.path == "/nested").unwrap();
    let f = got
        .iter()
        .find(|r| r.path == "/flat" && r.header("x-tickiti-event") == Some("ticket.created"))
        .unwrap();

    // Nested body and every header.
    let body = n.json();
    assert_eq!(body["event"], "ticket.created");
    assert_eq!(body["organization_id"], json!(org.id));
    assert_eq!(body["data"]["id"], ticket["id"]);
    assert!(body["timestamp"].is_string());
    assert_eq!(n.header("content-type"), Some("application/json"));
    assert!(
        n.header("user-agent")
            .unwrap()
            .starts_with("Tickiti-Webhooks/")
    );
    assert_eq!(n.header("x-tickiti-event"), Some("ticket.created"));
    let delivery_id = n.header("x-tickiti-delivery").unwrap();
    assert_eq!(n.header("webhook-id"), Some(delivery_id));
    let ts = n.header("x-tickiti-timestamp").unwrap();
    assert_eq!(n.header("webhook-timestamp"), Some(ts));
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!((now - ts.parse::<i64>().unwrap()).abs() < 60);
    let plain = format!(
        "sha256={}",
        hex(&hmac_sha256(nested_secret.as_bytes(), &n.body))
    );
    assert_eq!(n.header("x-tickiti-signature"), Some(plain.as_str()));
    assert_eq!(
        n.header("x-tickiti-signature-v1"),
        Some(format!("v1={}", &plain[7..]).as_str())
    );
    assert_eq!(n.header("x-tickiti-signature-version"), Some("v1"));
    assert!(standard_webhooks_valid(
        &nested_secret,
        delivery_id,
        ts,
        &n.body,
        n.header("webhook-signature").unwrap()
    ));
    assert!(n.header("traceparent").unwrap().starts_with("00-"));

    // Flat body, the plain secret (no whsec_ prefix), the static header.
    let body = f.json();
    assert_eq!(body["event_type"], "ticket.created");
    assert!(body["created_at"].is_string());
    assert_eq!(body["id"], ticket["id"]);
    assert_eq!(body["subject"], "Printer on fire");
    assert!(body.get("data").is_none());
    assert_eq!(f.header("x-api-key"), Some("k1"));
    assert!(standard_webhooks_valid(
        "plain-text-secret-123",
        f.header("webhook-id").unwrap(),
        f.header("webhook-timestamp").unwrap(),
        &f.body,
        f.header("webhook-signature").unwrap()
    ));

    // Rotation: both secrets sign for 24 h.
    let id = nested["id"].as_str().unwrap();
    let reply = app
        .patch(
            &format!("/api/v1/webhooks/{id}"),
            &org.token,
            json!({ "secret": "whsec_bmV3LXNlY3JldC1uZXctc2VjcmV0LTEyMzQ1Njc4" }),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = app
        .post(
            &format!("/api/v1/webhooks/{id}/test"),
            &org.token,
            json!({}),
        )
        .await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let test_id = reply.body["id"].as_str().unwrap().to_owned();
    let got = receiver
        .wait_until(WAIT, |r| {
            r.iter()
                .any(|x| x.header("x-tickiti-delivery") == Some(&test_id))
        })
        .await;
    let ping = got
        .iter()
        .find(|x| x.header("x-tickiti-delivery") == Some(&test_id))
        .unwrap();
    assert_eq!(ping.header("x-tickiti-event"), Some("test.ping"));
    let sigs = ping.header("webhook-signature").unwrap();
    assert_eq!(sigs.split(' ').count(), 2, "{sigs}");
    let ts = ping.header("webhook-timestamp").unwrap();
    for secret in [
        nested_secret.as_str(),
        "whsec_bmV3LXNlY3JldC1uZXctc2VjcmV0LTEyMzQ1Njc4",
    ] {
        assert!(
            standard_webhooks_valid(secret, &test_id, ts, &ping.body, sigs),
            "{secret}"
        );
    }
    // X-Tickiti-Signature uses the new secret.
    let plain = format!(
        "sha256={}",
        hex(&hmac_sha256(
            b"whsec_bmV3LXNlY3JldC1uZXctc2VjcmV0LTEyMzQ1Njc4",
            &ping.body
        ))
    );
    assert_eq!(ping.header("x-tickiti-signature"), Some(plain.as_str()));

    // The log shows the successes.
    let log = deliveries(&app, &org, id).await;
    assert!(log.iter().all(|d| d["status"] == "success"), "{log:?}");
    assert!(log.iter().any(|d| d["response_code"] == 200));

    dispatcher.stop().await;
    TestDispatcher::cleanup(&app.prefix).await;
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn the_whole_schedule_then_failed_then_reenabled(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let dispatcher = TestDispatcher::spawn(&app).await; // schedule 0s,1s,2s
    let receiver = Receiver::start().await;
    receiver.behave(Behaviour::Status(500));
    let org = app.org("Acme").await;
    let endpoint = create_endpoint(
        &app,
        &org,
        json!({ "url": receiver.url("/down"), "events": ["contact.created"] }),
    )
    .await;
    let id = endpoint["id"].as_str().unwrap();
    app.post(
        "/api/v1/contacts",
        &org.token,
        json!({ "email": "a@example.com" }),
    )
    .await;

    let got = receiver.wait_until(WAIT, |r| r.len() >= 3).await;
    assert_eq!(got.len(), 3, "{:?}", deliveries(&app, &org, id).await);
    let ids: Vec<_> = got
        .iter()
        .map(|r| r.header("x-tickiti-delivery").unwrap().to_owned())
        .collect();
    assert!(
        ids.iter().all(|i| *i == ids[0]),
        "one delivery id across retries"
    );
    let gap1 = got[1].at - got[0].at;
    let gap2 = got[2].at - got[1].at;
    assert!(
        gap1 >= Duration::from_millis(900) && gap1 < Duration::from_secs(4),
        "{gap1:?}"
    );
    assert!(
        gap2 >= Duration::from_millis(1900) && gap2 < Duration::from_secs(5),
        "{gap2:?}"
    );

    let status = poll_until(WAIT, || endpoint_status(&app, &org, id), |s| s == "failed").await;
    assert_eq!(status, "failed");
    // Admins' browsers hear of it once (a system event, never a webhook).
    let told: Vec<serde_json::Value> = sqlx::query_scalar(
        "SELECT payload FROM outbox WHERE event_type = 'system.endpoint_failed'",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0]["data"]["endpoint_id"], id);
    assert_eq!(told[0]["data"]["status"], "failed");
    let log = deliveries(&app, &org, id).await;
    assert_eq!(log[0]["status"], "failed");
    assert_eq!(log[0]["attempt"], 3);
    assert_eq!(log[0]["response_code"], 500);
    let attempts: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_attempts")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(attempts, 3, "every attempt is logged");
    let body: String = sqlx::query_scalar("SELECT response_body FROM webhook_attempts LIMIT 1")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(body, "status 500 on purpose");

    // A failed endpoint gets no new deliveries: once the event is settled,
    // none was stored for it and nothing was sent...
    let events = || dispatcher.counter("tickiti_dispatcher_events_total");
    let settled = events().await;
    app.post(
        "/api/v1/contacts",
        &org.token,
        json!({ "email": "b@example.com" }),
    )
    .await;
    let now_settled = poll_until(WAIT, events, |n| *n > settled).await;
    assert!(now_settled > settled, "the event was never settled");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(stored, 1, "only the failed delivery");
    assert_eq!(receiver.received().len(), 3);
    // ...until re-enabled; then recover resends the failed one.
    receiver.behave(Behaviour::Ok);
    let reply = app
        .patch(
            &format!("/api/v1/webhooks/{id}"),
            &org.token,
            json!({ "active": true }),
        )
        .await;
    assert_eq!(reply.body["status"], "active", "{}", reply.body);
    let reply = app
        .post(
            &format!("/api/v1/webhooks/{id}/recover"),
            &org.token,
            json!({ "since": "2020-01-01T00:00:00Z" }),
        )
        .await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(reply.body["recovered"], 1);
    let got = receiver.wait_until(WAIT, |r| r.len() >= 4).await;
    assert_eq!(got[3].header("x-tickiti-delivery"), Some(ids[0].as_str()));
    let log = poll_until(
        WAIT,
        || deliveries(&app, &org, id),
        |l| l.first().is_some_and(|d| d["status"] == "success"),
    )
    .await;
    assert_eq!(log[0]["status"], "success");

    dispatcher.stop().await;
    TestDispatcher::cleanup(&app.prefix).await;
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn gone_disables_and_retry_after_is_honoured_and_redirects_are_not_followed(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let dispatcher = TestDispatcher::spawn(&app).await;
    let receiver = Receiver::start().await;
    receiver.behave_at("/gone", Behaviour::Status(410));
    receiver.behave_at("/busy", Behaviour::RetryAfter(429, 3));
    receiver.behave_at("/moved", Behaviour::Redirect(receiver.url("/target")));
    let org = app.org("Acme").await;
    let gone = create_endpoint(
        &app,
        &org,
        json!({ "url": receiver.url("/gone"), "events": ["contact.created"] }),
    )
    .await;
    create_endpoint(
        &app,
        &org,
        json!({ "url": receiver.url("/busy"), "events": ["contact.created"], "retry_schedule": [0, 1, 5] }),
    )
    .await;
    let moved = create_endpoint(
        &app,
        &org,
        json!({ "url": receiver.url("/moved"), "events": ["contact.created"] }),
    )
    .await;
    app.post(
        "/api/v1/contacts",
        &org.token,
        json!({ "email": "a@example.com" }),
    )
    .await;

    let gone_id = gone["id"].as_str().unwrap();
    let status = poll_until(
        WAIT,
        || endpoint_status(&app, &org, gone_id),
        |s| s == "disabled",
    )
    .await;
    assert_eq!(status, "disabled", "410 disables at once");
    let reply = app
        .get(&format!("/api/v1/webhooks/{gone_id}"), &org.token)
        .await;
    assert!(
        reply.body["status_reason"]
            .as_str()
            .unwrap()
            .contains("410")
    );

    let busy = receiver
        .wait_until(WAIT, |r| {
            r.iter().filter(|x| x.path == "/busy").count() >= 2
        })
        .await;
    let busy: Vec<_> = busy.iter().filter(|x| x.path == "/busy").collect();
    let gap = busy[1].at - busy[0].at;
    assert!(
        gap >= Duration::from_millis(2900) && gap < Duration::from_secs(8),
        "Retry-After 3 s lengthens the 1 s step, within the schedule's 5 s: {gap:?}"
    );

    // The redirect's answer is what was logged (a followed redirect would
    // log the target's), and the target was never asked.
    let moved_id = moved["id"].as_str().unwrap();
    let log = poll_until(
        WAIT,
        || deliveries(&app, &org, moved_id),
        |log| log.first().is_some_and(|d| !d["response_code"].is_null()),
    )
    .await;
    assert_eq!(log[0]["response_code"], 302);
    assert!(
        receiver.received_at("/target").is_empty(),
        "redirects are not followed"
    );
    assert_eq!(receiver.received_at("/gone").len(), 1);

    // Deleting an endpoint deletes its delivery log with it.
    let moved_id: uuid::Uuid = moved_id.parse().unwrap();
    let log_of_moved = "SELECT (SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1),
                (SELECT count(*) FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id
                 WHERE d.endpoint_id = $1),
                (SELECT count(*) FROM webhook_attempts a
                 WHERE NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.id = a.delivery_id))";
    let (rows, attempts, _): (i64, i64, i64) = sqlx::query_as(log_of_moved)
        .bind(moved_id)
        .fetch_one(&db)
        .await
        .unwrap();
    assert!(
        rows >= 1 && attempts >= 1,
        "{rows} deliveries, {attempts} attempts"
    );
    let reply = app
        .delete(&format!("/api/v1/webhooks/{moved_id}"), &org.token)
        .await;
    assert_eq!(reply.status, 204);
    let left: (i64, i64, i64) = sqlx::query_as(log_of_moved)
        .bind(moved_id)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(
        left,
        (0, 0, 0),
        "deliveries, attempts and orphaned attempts left"
    );

    // Log retention: finished deliveries and their attempts are pruned, the rest kept.
    let mut conn = db.acquire().await.unwrap();
    let finished: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM webhook_deliveries WHERE status IN ('success', 'failed')",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert!(finished >= 1);
    // Until every finished one is older than the 1 s retention.
    let aged = poll_until(
        WAIT,
        || async {
            sqlx::query_scalar::<_, bool>(
                "SELECT coalesce(bool_and(updated_at < now() - interval '1.1 seconds'), true)
                 FROM webhook_deliveries WHERE status IN ('success', 'failed')",
            )
            .fetch_one(&db)
            .await
            .unwrap()
        },
        |aged| *aged,
    )
    .await;
    assert!(aged);
    let pruned = tickiti_store::webhooks::prune(&mut conn, 1, 1000)
        .await
        .unwrap();
    assert!(pruned as i64 >= finished, "{pruned} < {finished}");
    let orphans: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM webhook_attempts a
         WHERE NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.id = a.delivery_id)",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert_eq!(orphans, 0);
    // Each event's payload is stored once: kept while a delivery refers to
    // it, pruned with its last one.
    let (events_left, unreferenced, missing): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM webhook_events),
                (SELECT count(*) FROM webhook_events e
                 WHERE NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = e.id)),
                (SELECT count(*) FROM webhook_deliveries d
                 WHERE NOT EXISTS (SELECT 1 FROM webhook_events e WHERE e.id = d.event_id))",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert_eq!((unreferenced, missing), (0, 0), "{events_left} events left");

    dispatcher.stop().await;
    TestDispatcher::cleanup(&app.prefix).await;
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn private_addresses_are_refused_at_delivery_time(db: PgPool) {
    // The api allows the URL (tests allow private networks there), the dispatcher does not.
    let app = TestApp::spawn(db.clone()).await;
    let dispatcher = TestDispatcher::spawn_with(db.clone(), &app.prefix, |c| {
        c.allow_private_networks = false
    })
    .await;
    let receiver = Receiver::start().await;
    let org = app.org("Acme").await;
    let by_ip = create_endpoint(
        &app,
        &org,
        json!({ "url": receiver.url("/ip"), "events": ["contact.created"] }),
    )
    .await;
    let by_name = create_endpoint(
        &app,
        &org,
        json!({ "url": format!("http://localhost:{}/name", receiver.addr.port()), "events": ["contact.created"] }),
    )
    .await;
    app.post(
        "/api/v1/contacts",
        &org.token,
        json!({ "email": "a@example.com" }),
    )
    .await;
    for endpoint in [&by_ip, &by_name] {
        let id = endpoint["id"].as_str().unwrap();
        let log = poll_until(
            WAIT,
            || deliveries(&app, &org, id),
            |l| {
                l.first()
                    .is_some_and(|d| d["error"].as_str().is_some_and(|e| e.contains("refused")))
            },
        )
        .await;
        assert!(
            log[0]["error"].as_str().unwrap().contains("refused"),
            "{log:?}"
        );
        assert!(log[0]["response_code"].is_null());
    }
    assert!(
        receiver.received().is_empty(),
        "nothing reached the private address"
    );
    dispatcher.stop().await;
    TestDispatcher::cleanup(&app.prefix).await;
}
