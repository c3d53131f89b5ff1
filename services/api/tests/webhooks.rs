//! `/webhooks` management (CONTRACT §3): fields, secrets shown once and
//! stored sealed, every error code, rotation, test/resend/recover hand-off.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgPool;
use tickiti_domain::{Ability, Role};
use tickiti_testkit::{EventTap, TestApp};

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn create_shows_the_secret_once_and_stores_it_sealed(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let org = app.org("Acme").await;
    let reply = app
        .post(
            "/api/v1/webhooks",
            &org.token,
            json!({ "url": "https://hooks.example.com/in", "events": ["ticket.created", "message.created"] }),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let secret = reply.body["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let key = base64_decode(&secret["whsec_".len()..]);
    assert_eq!(key.len(), 24, "whsec_ + base64 of 24 random bytes");
    assert_eq!(reply.body["status"], "active");
    assert_eq!(reply.body["active"], true);
    assert_eq!(reply.body["payload_format"], "nested");
    let id = reply.body["id"].as_str().unwrap().to_owned();

    // Never again: not on read, not in the list.
    let got = app.get(&format!("/api/v1/webhooks/{id}"), &org.token).await;
    assert_eq!(got.status, 200);
    assert!(got.body.get("secret").is_none());
    let list = app.get("/api/v1/webhooks", &org.token).await;
    assert_eq!(list.body["data"].as_array().unwrap().len(), 1);
    assert!(!list.body.to_string().contains(&secret));

    // The table holds no plaintext, in any column.
    let rows: Vec<(Vec<u8>, String)> =
        sqlx::query_as("SELECT secret_sealed, row_to_json(w)::text FROM webhook_endpoints w")
            .fetch_all(&db)
            .await
            .unwrap();
    let (sealed, whole_row) = &rows[0];
    assert!(!whole_row.contains(&secret) && !whole_row.contains(&secret[6..]));
    assert!(!sealed.windows(secret.len()).any(|w| w == secret.as_bytes()));
    assert!(!sealed.windows(key.len()).any(|w| w == key.as_slice()));
    // It opens with the master key.
    let dev_key = *b"tickiti-development-key-32-bytes";
    let opened = tickiti_crypto::SecretBox::new(dev_key)
        .open_string(sealed)
        .unwrap();
    assert_eq!(opened, secret);

    // An idempotent create stores its answer sealed, and replays it.
    let key_body = json!({ "url": "https://hooks.example.com/idem", "events": ["*"] });
    let send = || {
        app.client
            .post(app.url("/api/v1/webhooks"))
            .bearer_auth(&org.token)
            .header("Idempotency-Key", "create-hook-1")
            .json(&key_body)
            .send()
    };
    let first = tickiti_testkit::Reply::read(send().await.unwrap()).await;
    assert_eq!(first.status, 201);
    assert_eq!(first.header("cache-control"), Some("no-store"));
    let again = tickiti_testkit::Reply::read(send().await.unwrap()).await;
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body["secret"], first.body["secret"]);
    let idem_secret = first.body["secret"].as_str().unwrap();
    let stored: Vec<String> =
        sqlx::query_scalar("SELECT encode(response_body, 'escape') FROM idempotency_keys")
            .fetch_all(&db)
            .await
            .unwrap();
    assert!(!stored.is_empty());
    assert!(stored.iter().all(|b| !b.contains(idem_secret)));

    // A given secret is kept (and also shown once).
    let reply = app
        .post(
            "/api/v1/webhooks",
            &org.token,
            json!({ "url": "https://hooks.example.com/b", "events": ["*"], "secret": "my-own-secret-1234",
                    "payload_format": "flat", "description": "flat one", "active": false,
                    "retry_schedule": ["0s", 5, "1m"], "rate_limit_per_second": 3,
                    "headers": { "X-Api-Key": "abc" } }),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["secret"], "my-own-secret-1234");
    assert_eq!(reply.body["status"], "disabled");
    assert_eq!(reply.body["payload_format"], "flat");
    assert_eq!(reply.body["retry_schedule"], json!([0, 5, 60]));
    assert_eq!(reply.body["rate_limit_per_second"], 3);
    assert_eq!(reply.body["headers"], json!({ "X-Api-Key": "abc" }));
}

fn base64_decode(text: &str) -> Vec<u8> {
    // A tiny independent decoder (standard alphabet, with padding).
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = alphabet.iter().position(|a| *a == c).unwrap() as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    out
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn every_error_code(db: PgPool) {
    let app = TestApp::spawn_full(db, |_, webhooks| {
        webhooks.allow_private_networks = false;
        webhooks.require_https = Some(true);
    })
    .await;
    let org = app.org("Acme").await;
    let create = |body: Value| app.post("/api/v1/webhooks", &org.token, body);

    for url in [
        "not a url",
        "ftp://example.com/x",
        "http://example.com/plain-http",
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://[::1]/hook",
        "https://[::ffff:169.254.169.254]/latest",
        "https://169.254.169.254/latest/meta-data",
        "https://10.0.0.7/x",
        "https://2130706433/",
        "https://[64:ff9b::7f00:1]/",
        "https://[2002:c0a8:101::1]/",
    ] {
        let reply = create(json!({ "url": url, "events": ["ticket.created"] })).await;
        assert_eq!(reply.status, 422, "{url}: {}", reply.body);
        assert_eq!(reply.code(), "INVALID_URL", "{url}: {}", reply.body);
    }
    for events in [
        json!(["ticket.exploded"]),
        json!(["ticket.created", "nope"]),
        json!(["mention.created"]),
        json!([]),
    ] {
        let reply = create(json!({ "url": "https://93.184.216.34/x", "events": events })).await;
        assert_eq!(reply.code(), "INVALID_EVENTS", "{events}: {}", reply.body);
    }
    // A public address literal is fine; unknown fields are refused.
    let ok = create(json!({ "url": "https://93.184.216.34/x", "events": ["*"] })).await;
    assert_eq!(ok.status, 201, "{}", ok.body);
    let reply =
        create(json!({ "url": "https://93.184.216.34/x", "events": ["*"], "colour": "red" })).await;
    assert_eq!(reply.code(), "VALIDATION_FAILED");
    let reply =
        create(json!({ "url": "https://93.184.216.34/x", "events": ["*"], "secret": "short" }))
            .await;
    assert_eq!(reply.code(), "VALIDATION_FAILED");
    let reply = create(json!({ "url": "https://93.184.216.34/x", "events": ["*"], "headers": {"X-Tickiti-Event": "x"} })).await;
    assert_eq!(reply.code(), "VALIDATION_FAILED");
    let id = ok.body["id"].as_str().unwrap();

    // PATCH checks the same.
    let reply = app
        .patch(
            &format!("/api/v1/webhooks/{id}"),
            &org.token,
            json!({ "url": "https://127.0.0.2/" }),
        )
        .await;
    assert_eq!(reply.code(), "INVALID_URL");
    let reply = app
        .patch(
            &format!("/api/v1/webhooks/{id}"),
            &org.token,
            json!({ "events": ["bogus"] }),
        )
        .await;
    assert_eq!(reply.code(), "INVALID_EVENTS");

    // WEBHOOK_NOT_FOUND: missing, malformed, another organization's.
    let other = app.org("Other").await;
    for (path, token) in [
        (
            format!("/api/v1/webhooks/{}", uuid::Uuid::now_v7()),
            &org.token,
        ),
        ("/api/v1/webhooks/not-an-id".to_owned(), &org.token),
        (format!("/api/v1/webhooks/{id}"), &other.token),
    ] {
        let reply = app.get(&path, token).await;
        assert_eq!(reply.status, 404);
        assert_eq!(reply.code(), "WEBHOOK_NOT_FOUND");
    }
    let reply = app
        .delete(&format!("/api/v1/webhooks/{id}"), &other.token)
        .await;
    assert_eq!(reply.code(), "WEBHOOK_NOT_FOUND");

    // WEBHOOK_DISABLED: test and resend on a disabled endpoint.
    let reply = app
        .patch(
            &format!("/api/v1/webhooks/{id}"),
            &org.token,
            json!({ "active": false }),
        )
        .await;
    assert_eq!(reply.body["status"], "disabled");
    let reply = app
        .post(
            &format!("/api/v1/webhooks/{id}/test"),
            &org.token,
            json!({}),
        )
        .await;
    assert_eq!(reply.status, 409);
    assert_eq!(reply.code(), "WEBHOOK_DISABLED");
    let reply = app
        .post(
            &format!(
                "/api/v1/webhooks/{id}/deliveries/{}/resend",
                uuid::Uuid::now_v7()
            ),
            &org.token,
            json!({}),
        )
        .await;
    assert_eq!(reply.code(), "WEBHOOK_DISABLED");

    // Without the ability: 403.
    let (_, _, agent_token) = app.user(&org, "Agent", Role::Agent, &[Ability::All]).await;
    let reply = app.get("/api/v1/webhooks", &agent_token).await;
    assert_eq!(reply.status, 403);

    // Delete.
    let reply = app
        .delete(&format!("/api/v1/webhooks/{id}"), &org.token)
        .await;
    assert_eq!(reply.status, 204);
    let reply = app.get(&format!("/api/v1/webhooks/{id}"), &org.token).await;
    assert_eq!(reply.code(), "WEBHOOK_NOT_FOUND");
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn rotation_keeps_the_old_secret_and_test_hands_off_to_the_dispatcher(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let tap = EventTap::bind(&app.prefix).await;
    let org = app.org("Acme").await;
    let reply = app
        .post(
            "/api/v1/webhooks",
            &org.token,
            json!({ "url": "http://127.0.0.1:9/hook", "events": ["ticket.created"], "secret": "first-secret-abcdef" }),
        )
        .await;
    let id = reply.body["id"].as_str().unwrap().to_owned();
    let reply = app
        .patch(
            &format!("/api/v1/webhooks/{id}"),
            &org.token,
            json!({ "secret": "second-secret-abcdef" }),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.body["secret_rotated_at"].is_string());
    assert!(reply.body.get("secret").is_none());
    let (current, previous): (Vec<u8>, Option<Vec<u8>>) = sqlx::query_as(
        "SELECT secret_sealed, previous_secret_sealed FROM webhook_endpoints WHERE id = $1::uuid",
    )
    .bind(&id)
    .fetch_one(&db)
    .await
    .unwrap();
    let sb = tickiti_crypto::SecretBox::new(*b"tickiti-development-key-32-bytes");
    assert_eq!(sb.open_string(&current).unwrap(), "second-secret-abcdef");
    assert_eq!(
        sb.open_string(&previous.unwrap()).unwrap(),
        "first-secret-abcdef"
    );

    // test: a pending test.ping delivery, and a dispatch command through the outbox.
    let reply = app
        .post(
            &format!("/api/v1/webhooks/{id}/test"),
            &org.token,
            json!({}),
        )
        .await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(reply.body["event"], "test.ping");
    assert_eq!(reply.body["status"], "pending");
    assert_eq!(reply.body["attempt"], 0);
    let delivery_id = reply.body["id"].as_str().unwrap().to_owned();
    let events = tap
        .wait_until(Duration::from_secs(10), |events| {
            events
                .iter()
                .any(|e| e["command"] == "command.webhook.dispatch")
        })
        .await;
    let command = events
        .iter()
        .find(|e| e["command"] == "command.webhook.dispatch")
        .unwrap();
    assert_eq!(command["delivery_ids"], json!([delivery_id]));

    let list = app
        .get(&format!("/api/v1/webhooks/{id}/deliveries"), &org.token)
        .await;
    assert_eq!(list.status, 200);
    let first = &list.body["data"][0];
    for field in [
        "id",
        "event",
        "event_id",
        "status",
        "attempt",
        "response_code",
        "response_time_ms",
        "error",
        "created_at",
        "next_attempt_at",
    ] {
        assert!(
            first.get(field).is_some(),
            "delivery field {field}: {first}"
        );
    }

    // resend and recover answer with what they queued.
    let reply = app
        .post(
            &format!("/api/v1/webhooks/{id}/deliveries/{delivery_id}/resend"),
            &org.token,
            json!({}),
        )
        .await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let reply = app
        .post(
            &format!(
                "/api/v1/webhooks/{id}/deliveries/{}/resend",
                uuid::Uuid::now_v7()
            ),
            &org.token,
            json!({}),
        )
        .await;
    assert_eq!(reply.status, 404);
    let reply = app
        .post(
            &format!("/api/v1/webhooks/{id}/recover"),
            &org.token,
            json!({ "since": "2020-01-01T00:00:00Z" }),
        )
        .await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(reply.body["recovered"], 0);
    tap.cleanup().await;
}

/// An organization has at most 50 endpoints: the 51st is a 409 and nothing
/// is stored, and creates racing for the last places never overshoot.
#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn an_organization_has_at_most_fifty_endpoints(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let org = app.org("Acme").await;
    let body = |i: usize| json!({ "url": format!("http://127.0.0.1:9/hook/{i}"), "events": ["ticket.created"] });
    for i in 0..45 {
        assert_eq!(
            app.post("/api/v1/webhooks", &org.token, body(i))
                .await
                .status,
            201
        );
    }
    let racing = (45..55).map(|i| app.post("/api/v1/webhooks", &org.token, body(i)));
    let statuses: Vec<u16> = futures::future::join_all(racing)
        .await
        .into_iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        5,
        "{statuses:?}"
    );
    let refused = app.post("/api/v1/webhooks", &org.token, body(99)).await;
    assert_eq!(
        (refused.status, refused.code()),
        (409, "LIMIT_REACHED"),
        "{}",
        refused.body
    );
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_endpoints")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(stored, 50);
    // Another organization has its own fifty.
    let other = app.org("Other").await;
    assert_eq!(
        app.post("/api/v1/webhooks", &other.token, body(0))
            .await
            .status,
        201
    );
}
