//! Sign-in, sessions with CSRF, token abilities, and rate limits.
#![allow(clippy::unwrap_used)]

use serde_json::json;
use sqlx::PgPool;
use tickiti_domain::{Ability, Role};
use tickiti_testkit::{Reply, TestApp};

async fn login(app: &TestApp, email: &str, password: &str) -> (Reply, Option<String>) {
    let response = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .unwrap();
    let cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap().to_owned());
    (Reply::read(response).await, cookie)
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn session_cookie_needs_the_csrf_token_for_writes(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let org = app.org("Acme").await;
    let (reply, cookie) = login(&app, &org.admin_email, &org.admin_password).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let cookie = cookie.unwrap();
    assert!(reply.header("set-cookie").unwrap().contains("HttpOnly"));
    let csrf = reply.body["csrf_token"].as_str().unwrap().to_owned();
    assert_eq!(reply.body["user"]["email"], org.admin_email);
    assert!(reply.body["user"].get("password_hash").is_none());

    let me = app
        .client
        .get(app.url("/api/v1/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);

    let body = json!({ "subject": "From the browser", "contact": { "email": "c@example.com" } });
    let without = app
        .client
        .post(app.url("/api/v1/tickets"))
        .header("cookie", &cookie)
        .json(&body)
        .send()
        .await
        .unwrap();
    let without = Reply::read(without).await;
    assert_eq!((without.status, without.code()), (403, "CSRF_FAILED"));
    let with = app
        .client
        .post(app.url("/api/v1/tickets"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(with.status(), 201);

    let logout = app
        .client
        .post(app.url("/api/v1/auth/logout"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);
    let after = app
        .client
        .get(app.url("/api/v1/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401);
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn wrong_credentials_look_alike_and_repeated_failures_are_slowed(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let org = app.org("Acme").await;
    let (wrong_password, _) = login(&app, &org.admin_email, "not the password").await;
    let (unknown, _) = login(&app, "nobody@example.com", "whatever12").await;
    assert_eq!(
        (wrong_password.status, wrong_password.code()),
        (401, "INVALID_CREDENTIALS")
    );
    assert_eq!(
        (unknown.status, unknown.code()),
        (401, "INVALID_CREDENTIALS")
    );
    assert_eq!(wrong_password.body["detail"], unknown.body["detail"]);

    for _ in 0..5 {
        login(&app, "victim@example.com", "guess").await;
    }
    let (throttled, _) = login(&app, "victim@example.com", "guess").await;
    assert_eq!((throttled.status, throttled.code()), (429, "RATE_LIMITED"));
    assert!(throttled.header("retry-after").is_some());
    // Another address is not affected.
    let (ok, _) = login(&app, &org.admin_email, &org.admin_password).await;
    assert_eq!(ok.status, 200);
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn a_token_acts_with_its_abilities_and_its_users_role(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let org = app.org("Acme").await;
    let (_, _, reader) = app
        .user(&org, "Reader", Role::Agent, &[Ability::TicketsRead])
        .await;
    let (_, _, agent_star) = app.user(&org, "Star", Role::Agent, &[Ability::All]).await;

    assert_eq!(app.get("/api/v1/tickets", &reader).await.status, 200);
    let write = app
        .post(
            "/api/v1/tickets",
            &reader,
            json!({ "subject": "x", "contact": { "email": "a@example.com" } }),
        )
        .await;
    assert_eq!((write.status, write.code()), (403, "FORBIDDEN"));
    assert_eq!(app.get("/api/v1/contacts", &reader).await.status, 403);

    // `*` on an agent's token does not make an admin.
    let queue = app
        .post("/api/v1/queues", &agent_star, json!({ "name": "Billing" }))
        .await;
    assert_eq!(queue.status, 403);
    let me = app.get("/api/v1/me", &agent_star).await;
    let abilities = me.body["abilities"].as_array().unwrap();
    assert!(!abilities.contains(&json!("admin")));
    assert!(abilities.contains(&json!("tickets:write")));
    assert_eq!(
        app.post("/api/v1/queues", &org.token, json!({ "name": "Billing" }))
            .await
            .status,
        201
    );
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn rate_limit_headers_and_429(db: PgPool) {
    let app = TestApp::spawn_with(db, |config| {
        config.rate_limit = tickiti_api::config::parse_rate_limit("5/min").unwrap();
    })
    .await;
    let org = app.org("Acme").await;
    let (_, _, other) = app.user(&org, "Other", Role::Agent, &[Ability::All]).await;
    let mut remaining = Vec::new();
    for _ in 0..5 {
        let reply = app.get("/api/v1/tickets", &org.token).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("ratelimit-limit"), Some("5"));
        assert!(reply.header("ratelimit-reset").is_some());
        remaining.push(
            reply
                .header("ratelimit-remaining")
                .unwrap()
                .parse::<u32>()
                .unwrap(),
        );
    }
    assert_eq!(remaining, vec![4, 3, 2, 1, 0]);
    let limited = app.get("/api/v1/tickets", &org.token).await;
    assert_eq!((limited.status, limited.code()), (429, "RATE_LIMITED"));
    assert!(
        limited
            .header("retry-after")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert_eq!(limited.header("ratelimit-remaining"), Some("0"));
    // The budget is per token.
    assert_eq!(app.get("/api/v1/tickets", &other).await.status, 200);
}
