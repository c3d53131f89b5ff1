//! Deliveries end to end: the api and the dispatcher in-process, a real
//! local receiver. Signatures are checked with code that shares nothing with
//! the signer (HMAC and base64 written out here from RFC 2104 / RFC 4648).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgPool;
use tickiti_testkit::webhooks::{Behaviour, Receiver, TestDispatcher};
use tickiti_testkit::{TestApp, TestOrg, poll_until};

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

async fn create_endpoint(app: &TestApp, org: &TestOrg, body: Value) -> Value {
    let reply = app.post("/api/v1/webhooks", &org.token, body).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.body
}

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

const WAIT: Duration = Duration::from_secs(20);

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

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn rate_limit_waits_and_a_hanging_endpoint_does_not_hold_up_others(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let dispatcher = TestDispatcher::spawn(&app).await; // WEBHOOK_TIMEOUT 2 s here
    let receiver = Receiver::start().await;
    receiver.behave_at("/hang", Behaviour::Hang(Duration::from_secs(10)));
    let slow_org = app.org("Slow").await;
    let fast_org = app.org("Fast").await;
    create_endpoint(
        &app,
        &slow_org,
        json!({ "url": receiver.url("/hang"), "events": ["contact.created"] }),
    )
    .await;
    create_endpoint(
        &app,
        &fast_org,
        json!({ "url": receiver.url("/limited"), "events": ["contact.created"], "rate_limit_per_second": 4 }),
    )
    .await;
    for i in 0..80 {
        app.post(
            "/api/v1/contacts",
            &slow_org.token,
            json!({ "email": format!("s{i}@example.com") }),
        )
        .await;
    }
    let started = std::time::Instant::now();
    for i in 0..8 {
        app.post(
            "/api/v1/contacts",
            &fast_org.token,
            json!({ "email": format!("f{i}@example.com") }),
        )
        .await;
    }
    let got = receiver
        .wait_until(WAIT, |r| {
            r.iter().filter(|x| x.path == "/limited").count() >= 8
        })
        .await;
    let limited: Vec<_> = got.iter().filter(|x| x.path == "/limited").collect();
    assert_eq!(
        limited.len(),
        8,
        "all delivered: over the limit waits, it does not fail"
    );
    let spread = limited[7].at - limited[0].at;
    assert!(
        spread >= Duration::from_millis(1650),
        "4/s: 8 requests take at least 1.75 s: {spread:?}"
    );
    let total = limited[7].at - started;
    assert!(
        total < Duration::from_secs(10),
        "the hanging endpoint did not hold them up: {total:?}"
    );
    let ok: i64 = poll_until(
        WAIT,
        || async {
            sqlx::query_scalar(
                "SELECT count(*) FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
                 WHERE e.url LIKE '%/limited' AND d.status = 'success'",
            )
            .fetch_one(&db)
            .await
            .unwrap()
        },
        |n| *n == 8,
    )
    .await;
    assert_eq!(ok, 8, "every one logged as a success");
    dispatcher.stop().await;
    receiver.stop();
    TestDispatcher::cleanup(&app.prefix).await;
}

/// A rate-limited endpoint with more waiting than its limit lets through
/// within a first attempt's wait: the rest go to the work queue, and each
/// delivery still arrives, paced, with one attempt logged.
#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn a_rate_limited_backlog_longer_than_the_first_attempt_wait_arrives_once(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let receiver = Receiver::start().await;
    let org = app.org("Paced").await;
    create_endpoint(
        &app,
        &org,
        json!({ "url": receiver.url("/paced"), "events": ["contact.created"], "rate_limit_per_second": 2 }),
    )
    .await;
    // Written while no dispatcher runs, so they reach it as one backlog:
    // 30 at 2/s is 15 s, past the 10 s a first attempt may wait.
    TestDispatcher::declare_queues(&app.prefix).await;
    for i in 0..30 {
        app.post(
            "/api/v1/contacts",
            &org.token,
            json!({ "email": format!("p{i}@example.com") }),
        )
        .await;
    }
    assert!(
        poll_until(WAIT, || app.unpublished_events(), |n| *n == 0).await == 0,
        "the events reached the broker"
    );
    let dispatcher = TestDispatcher::spawn(&app).await;
    let got = receiver
        .wait_until(Duration::from_secs(60), |r| r.len() >= 30)
        .await;
    let ids: std::collections::HashSet<&str> = got
        .iter()
        .filter_map(|r| r.header("x-tickiti-delivery"))
        .collect();
    assert_eq!(ids.len(), 30, "every delivery arrived");
    let (succeeded, attempts): (i64, i64) = poll_until(
        WAIT,
        || async {
            sqlx::query_as(
                "SELECT (SELECT count(*) FROM webhook_deliveries WHERE status = 'success'),
                        (SELECT count(*) FROM webhook_attempts)",
            )
            .fetch_one(&db)
            .await
            .unwrap()
        },
        |(s, _)| *s == 30,
    )
    .await;
    assert_eq!(succeeded, 30);
    assert_eq!(
        attempts, 30,
        "one attempt each: none sent twice after a hand-over"
    );
    assert_eq!(
        got.len(),
        30,
        "no delivery arrived twice ({} requests)",
        got.len()
    );
    let metrics = dispatcher.metrics().await;
    assert!(
        !metrics.contains("tickiti_webhook_parked_total 0\n"),
        "the part beyond the wait went through the work queue:\n{metrics}"
    );
    let spread = got[29].at - got[0].at;
    assert!(
        spread >= Duration::from_millis(14_000),
        "paced at 2/s: {spread:?}"
    );
    dispatcher.stop().await;
    receiver.stop();
    TestDispatcher::cleanup(&app.prefix).await;
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn one_organizations_burst_keeps_anothers_p99_low(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let dispatcher = TestDispatcher::spawn(&app).await;
    let receiver = Receiver::start().await;
    // The busy organization's receiver is slow: 300 ms per request.
    receiver.behave_at("/busy", Behaviour::Hang(Duration::from_millis(300)));
    let busy = app.org("Busy").await;
    let quiet = app.org("Quiet").await;
    create_endpoint(
        &app,
        &busy,
        json!({ "url": receiver.url("/busy"), "events": ["contact.created"] }),
    )
    .await;
    create_endpoint(
        &app,
        &quiet,
        json!({ "url": receiver.url("/quiet"), "events": ["contact.created"] }),
    )
    .await;
    let mut sent = Vec::new();
    for i in 0..300 {
        let reply = app
            .post(
                "/api/v1/contacts",
                &busy.token,
                json!({ "email": format!("b{i}@example.com") }),
            )
            .await;
        assert_eq!(reply.status, 201);
        if i % 15 == 14 {
            let email = format!("q{i}@example.com");
            app.post("/api/v1/contacts", &quiet.token, json!({ "email": email }))
                .await;
            sent.push((email, std::time::Instant::now()));
        }
    }
    let got = receiver
        .wait_until(WAIT, |r| {
            r.iter().filter(|x| x.path == "/quiet").count() >= sent.len()
        })
        .await;
    let mut latencies: Vec<Duration> = sent
        .iter()
        .map(|(email, at)| {
            let arrived = got
                .iter()
                .find(|x| x.path == "/quiet" && x.json()["data"]["email"] == email.as_str())
                .unwrap_or_else(|| panic!("{email} never arrived"));
            arrived.at - *at
        })
        .collect();
    latencies.sort();
    let p99 = latencies[(latencies.len() * 99).div_ceil(100) - 1];
    let busy_done = got.iter().filter(|x| x.path == "/busy").count();
    assert!(
        busy_done < 300,
        "the busy organization still had a backlog ({busy_done} done)"
    );
    assert!(
        p99 < Duration::from_secs(3),
        "the quiet organization's p99 stays low: {p99:?} ({latencies:?})"
    );
    dispatcher.stop().await;
    receiver.stop();
    TestDispatcher::cleanup(&app.prefix).await;
}

/// One organization with 600 hanging deliveries over 40 endpoints wants
/// 320 requests at once, five times the dispatcher's 64 slots; the quiet
/// organization's first attempts still go out at once, since no tenant holds
/// more than its 32 (DISPATCHER_ORG_CONCURRENCY). With the organization cap
/// as large as the global one (as good as none: the code before) the quiet
/// tenant's deliveries took 1.8–2.0 s, queued behind the hanging ones.
#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn another_organizations_600_hanging_deliveries_do_not_delay_a_quiet_one(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let dispatcher = TestDispatcher::spawn(&app).await; // 64 slots, 32 per organization
    let receiver = Receiver::start().await;
    let noisy = app.org("Noisy").await;
    let quiet = app.org("Quiet").await;
    for i in 0..40 {
        let path = format!("/hang/{i}");
        receiver.behave_at(&path, Behaviour::Hang(Duration::from_secs(30)));
        create_endpoint(
            &app,
            &noisy,
            json!({ "url": receiver.url(&path), "events": ["contact.created"] }),
        )
        .await;
    }
    create_endpoint(
        &app,
        &quiet,
        json!({ "url": receiver.url("/quiet"), "events": ["contact.created"] }),
    )
    .await;
    for i in 0..15 {
        let reply = app
            .post(
                "/api/v1/contacts",
                &noisy.token,
                json!({ "email": format!("n{i}@example.com") }),
            )
            .await;
        assert_eq!(reply.status, 201);
    }
    // The noisy tenant's requests are out and hanging.
    receiver
        .wait_until(WAIT, |r| {
            r.iter().filter(|x| x.path.starts_with("/hang/")).count() >= 32
        })
        .await;
    let mut latencies = Vec::new();
    for i in 0..5 {
        let email = format!("q{i}@example.com");
        let sent = std::time::Instant::now();
        app.post("/api/v1/contacts", &quiet.token, json!({ "email": email }))
            .await;
        let got = receiver
            .wait_until(WAIT, |r| {
                r.iter()
                    .any(|x| x.path == "/quiet" && x.json()["data"]["email"] == email.as_str())
            })
            .await;
        let arrived = got
            .iter()
            .find(|x| x.path == "/quiet" && x.json()["data"]["email"] == email.as_str())
            .unwrap_or_else(|| panic!("{email} never arrived"));
        latencies.push(arrived.at - sent);
    }
    let seen = receiver
        .received()
        .iter()
        .filter(|x| x.path.starts_with("/hang/"))
        .count();
    println!("quiet tenant's first attempts: {latencies:?} ({seen} noisy requests seen)");
    assert!(
        latencies.iter().all(|l| *l < Duration::from_secs(1)),
        "each quiet delivery within the normal latency: {latencies:?}"
    );
    dispatcher.stop().await;
    receiver.stop();
    TestDispatcher::cleanup(&app.prefix).await;
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn two_dispatchers_share_the_work_without_double_attempts(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let first = TestDispatcher::spawn(&app).await;
    let second = TestDispatcher::spawn(&app).await;
    let receiver = Receiver::start().await;
    receiver.behave(Behaviour::Hang(Duration::from_millis(50)));
    let org = app.org("Acme").await;
    create_endpoint(
        &app,
        &org,
        json!({ "url": receiver.url("/in"), "events": ["contact.created"] }),
    )
    .await;
    for i in 0..40 {
        app.post(
            "/api/v1/contacts",
            &org.token,
            json!({ "email": format!("c{i}@example.com") }),
        )
        .await;
    }
    let got = receiver.wait_until(WAIT, |r| r.len() >= 40).await;
    assert_eq!(got.len(), 40);
    // Until every attempt has been answered and counted: 40 between them,
    // each dispatcher some, and the receiver saw no more.
    let success = "tickiti_webhook_attempts_total{outcome=\"success\"}";
    let counts = || async { (first.counter(success).await, second.counter(success).await) };
    let (a, b) = poll_until(WAIT, counts, |(a, b)| a + b >= 40).await;
    assert_eq!(a + b, 40, "no attempt was made twice: {a} + {b}");
    assert!(a > 0 && b > 0, "both dispatchers took work: {a} + {b}");
    assert_eq!(receiver.received().len(), 40, "no attempt was made twice");
    first.stop().await;
    second.stop().await;
    TestDispatcher::cleanup(&app.prefix).await;
}

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
