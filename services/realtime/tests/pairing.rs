//! Pairing (CONTRACT §5, seed 000) through the real api and the realtime
//! service: pin, expiry, five tries, unbinding, and what each means for browsers.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Client, Stack, node_key};
use serde_json::json;
use sqlx::PgPool;
use tickiti_crypto::realtime::{BrowserClaims, generate_node_key, scope, sign_token};
use tickiti_realtime::pairing::{self, PairError};
use uuid::Uuid;

const CLOSED_4401: Option<u16> = Some(4401);

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn pairing_by_pin_binds_and_browsers_connect(db: PgPool) {
    let stack = Stack::start(db.clone(), |_| {}).await;
    let org = stack.app.org("Acme").await;
    let path = "/api/v1/realtime/registration";

    let before = stack.app.get(path, &org.token).await;
    assert_eq!(before.status, 200);
    assert_eq!(before.body, json!({ "status": "unbound" }));
    // Not paired: no browser token.
    let refused = stack
        .app
        .post("/api/v1/realtime/ticket", &org.token, json!({}))
        .await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert_eq!(refused.code(), "REALTIME_NOT_PAIRED");

    let started = stack.app.post(path, &org.token, json!({})).await;
    assert_eq!(started.status, 201, "{}", started.body);
    let pin = started.body["pin"].as_str().unwrap().to_owned();
    assert!(
        pin.len() == 8 && pin.bytes().all(|b| b.is_ascii_digit()),
        "{pin}"
    );
    assert_eq!(started.body["status"], "pending");
    let expires_at = time::OffsetDateTime::parse(
        started.body["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let left = expires_at - time::OffsetDateTime::now_utc();
    assert!(
        left > time::Duration::minutes(9) && left <= time::Duration::minutes(10),
        "{left}"
    );

    let pending = stack.app.get(path, &org.token).await;
    assert_eq!(pending.body["status"], "pending", "{}", pending.body);
    assert!(
        pending.body.get("pin").is_none(),
        "the pin is shown only once"
    );
    // The realtime service keeps only a slow hash of the pin.
    let stored: String =
        sqlx::query_scalar("SELECT pin_hash FROM realtime_pairings WHERE state = 'pending'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert!(stored.starts_with("$argon2id$") && !stored.contains(&pin));
    // ...and the api only the sealed node key.
    let sealed: Vec<u8> = sqlx::query_scalar("SELECT node_key_sealed FROM realtime_registrations")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_ne!(sealed.len(), 32);

    // The operator: `tickiti-realtime pair PIN`.
    let install_id = pairing::confirm(&db, &pin).await.unwrap();
    let bound = stack.app.get(path, &org.token).await;
    assert_eq!(bound.body["status"], "bound", "{}", bound.body);
    assert_eq!(bound.body["public_url"], stack.rt.ws_url());
    assert_eq!(bound.body["install_id"], json!(install_id));
    stack.wait_binding(&stack.rt, Some(install_id)).await;

    let ticket = stack
        .app
        .post("/api/v1/realtime/ticket", &org.token, json!({}))
        .await;
    assert_eq!(ticket.status, 200, "{}", ticket.body);
    assert_eq!(ticket.body["url"], stack.rt.ws_url());
    assert!(ticket.body["expires_at"].is_string());
    let mut client = Client::connect(ticket.body["url"].as_str().unwrap()).await;
    let welcome = client
        .hello(ticket.body["token"].as_str().unwrap(), None)
        .await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert!(welcome["epoch"].is_string());
    assert_eq!(welcome["offset"], 0);

    // Paired: a second registration must unbind first.
    let again = stack.app.post(path, &org.token, json!({})).await;
    assert_eq!(again.status, 409);
    assert_eq!(again.code(), "REALTIME_ALREADY_PAIRED");
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn only_admins_pair(db: PgPool) {
    let stack = Stack::start(db, |_| {}).await;
    let org = stack.app.org("Acme").await;
    let (_, _, agent) = stack
        .app
        .user(
            &org,
            "Ann",
            tickiti_domain::Role::Agent,
            &[tickiti_domain::Ability::All],
        )
        .await;
    for reply in [
        stack
            .app
            .post("/api/v1/realtime/registration", &agent, json!({}))
            .await,
        stack.app.get("/api/v1/realtime/registration", &agent).await,
        stack
            .app
            .delete("/api/v1/realtime/registration", &agent)
            .await,
    ] {
        assert_eq!(reply.status, 403, "{}", reply.body);
    }
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn guessed_pins_count_and_the_fifth_voids_the_pairing(db: PgPool) {
    let stack = Stack::start(db.clone(), |_| {}).await;
    let org = stack.app.org("Acme").await;
    let started = stack
        .app
        .post("/api/v1/realtime/registration", &org.token, json!({}))
        .await;
    let pin = started.body["pin"].as_str().unwrap().to_owned();
    let wrong = if pin == "00000000" {
        "11111111"
    } else {
        "00000000"
    };

    assert!(matches!(
        pairing::confirm(&db, "1234").await,
        Err(PairError::Malformed)
    ));
    for left in (1..=4).rev() {
        match pairing::confirm(&db, wrong).await {
            Err(PairError::WrongPin { attempts_left }) => assert_eq!(attempts_left, left),
            other => panic!("expected a wrong pin, got {other:?}"),
        }
    }
    assert!(matches!(
        pairing::confirm(&db, wrong).await,
        Err(PairError::Voided)
    ));
    // Void: even the right pin does nothing now.
    assert!(matches!(
        pairing::confirm(&db, &pin).await,
        Err(PairError::NoPending)
    ));
    let seen = stack
        .app
        .get("/api/v1/realtime/registration", &org.token)
        .await;
    assert_eq!(
        seen.body,
        json!({ "status": "unbound", "reason": "voided" })
    );
    assert!(stack.rt.ctx.hub.binding().is_none());
    let refused = stack
        .app
        .post("/api/v1/realtime/ticket", &org.token, json!({}))
        .await;
    assert_eq!(refused.status, 409);
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn an_expired_pin_binds_nothing(db: PgPool) {
    let stack = Stack::start(db.clone(), |_| {}).await;
    let org = stack.app.org("Acme").await;
    let started = stack
        .app
        .post("/api/v1/realtime/registration", &org.token, json!({}))
        .await;
    let pin = started.body["pin"].as_str().unwrap().to_owned();
    // Ten minutes pass.
    sqlx::query("UPDATE realtime_pairings SET expires_at = now() - interval '1 second'")
        .execute(&db)
        .await
        .unwrap();
    sqlx::query("UPDATE realtime_registrations SET pin_expires_at = now() - interval '1 second'")
        .execute(&db)
        .await
        .unwrap();
    assert!(matches!(
        pairing::confirm(&db, &pin).await,
        Err(PairError::Expired)
    ));
    let seen = stack
        .app
        .get("/api/v1/realtime/registration", &org.token)
        .await;
    assert_eq!(
        seen.body,
        json!({ "status": "unbound", "reason": "expired" })
    );
    // A new pairing can start at once.
    let again = stack
        .app
        .post("/api/v1/realtime/registration", &org.token, json!({}))
        .await;
    assert_eq!(again.status, 201, "{}", again.body);
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn an_unpaired_service_accepts_no_browser(db: PgPool) {
    let stack = Stack::start(db, |_| {}).await;
    let claims = BrowserClaims {
        iid: Uuid::now_v7(),
        org: Uuid::now_v7(),
        sub: Uuid::now_v7(),
        name: "Mallory".into(),
        scopes: vec![scope::TICKETS.into()],
        iat: 0,
        exp: i64::MAX,
    };
    let token = sign_token(&generate_node_key(), &claims);
    let mut client = Client::connect(&stack.rt.ws_url()).await;
    let answer = client.hello(&token, None).await;
    assert_eq!(answer, json!({ "closed": 4401 }));
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn unbinding_invalidates_every_token_at_once(db: PgPool) {
    let (stack, org) = Stack::paired(db.clone(), |_| {}).await;
    let (_, old_token) = stack.browser_token(&org.token).await;
    let (mut connected, _) = stack.client(&org.token).await;

    let deleted = stack
        .app
        .delete("/api/v1/realtime/registration", &org.token)
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    assert_eq!(connected.closed(Duration::from_secs(10)).await, CLOSED_4401);
    let mut late = Client::connect(&stack.rt.ws_url()).await;
    assert_eq!(
        late.hello(&old_token, None).await,
        json!({ "closed": 4401 })
    );
    let seen = stack
        .app
        .get("/api/v1/realtime/registration", &org.token)
        .await;
    assert_eq!(seen.body["status"], "unbound");
    let refused = stack
        .app
        .post("/api/v1/realtime/ticket", &org.token, json!({}))
        .await;
    assert_eq!(refused.status, 409);

    // Paired again: a new node key; tokens of the old pairing stay refused.
    stack.pair(&org).await;
    let mut old = Client::connect(&stack.rt.ws_url()).await;
    assert_eq!(old.hello(&old_token, None).await, json!({ "closed": 4401 }));
    let (_, welcome) = stack.client(&org.token).await;
    assert_eq!(welcome["type"], "welcome");
    assert_ne!(node_key(&db).await, [0; 32]);
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn an_unreachable_realtime_service_is_a_clear_conflict(db: PgPool) {
    // Nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = tickiti_testkit::TestApp::spawn_with(db, |config| {
        config.realtime.admin_url = format!("http://127.0.0.1:{port}");
    })
    .await;
    let org = app.org("Acme").await;
    let reply = app
        .post("/api/v1/realtime/registration", &org.token, json!({}))
        .await;
    assert_eq!(reply.status, 409, "{}", reply.body);
    assert_eq!(reply.code(), "REALTIME_UNREACHABLE");
    let seen = app.get("/api/v1/realtime/registration", &org.token).await;
    assert_eq!(seen.body, json!({ "status": "unbound" }));
    let gone = app
        .delete("/api/v1/realtime/registration", &org.token)
        .await;
    assert_eq!(gone.status, 404);
    assert_eq!(gone.code(), "REALTIME_NOT_PAIRED");
}
