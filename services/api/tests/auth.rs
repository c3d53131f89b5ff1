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

/// Managing tokens needs a session or a `*` token: a narrow token cannot
/// list, mint or revoke its user's tokens (before the fix a `create-ticket`
/// token could mint itself a `*` one). A new secret is never cacheable.
#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn a_narrow_token_cannot_manage_tokens_and_secrets_are_not_cached(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let org = app.org("Acme").await;
    let (_, _, narrow) = app
        .user(&org, "Form", Role::Agent, &[Ability::CreateTicket])
        .await;
    assert_eq!(app.get("/api/v1/tokens", &narrow).await.status, 403);
    let mint = app
        .post(
            "/api/v1/tokens",
            &narrow,
            json!({ "name": "wider", "abilities": ["create-ticket"] }),
        )
        .await;
    assert_eq!((mint.status, mint.code()), (403, "FORBIDDEN"));

    let created = app
        .post(
            "/api/v1/tokens",
            &org.token,
            json!({ "name": "CI", "abilities": ["tickets:read"] }),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.header("cache-control"), Some("no-store"));
    let id = created.body["id"].as_str().unwrap();
    let revoke = app.delete(&format!("/api/v1/tokens/{id}"), &narrow).await;
    assert_eq!(revoke.status, 403);
    let listed = app.get("/api/v1/tokens", &org.token).await;
    assert_eq!(listed.status, 200);
    assert!(
        listed.body.to_string().contains(id),
        "the token is still there"
    );
    // A browser session manages its user's tokens too.
    let (reply, cookie) = login(&app, &org.admin_email, &org.admin_password).await;
    assert_eq!(reply.status, 200);
    let by_session = app
        .client
        .get(app.url("/api/v1/tokens"))
        .header("cookie", cookie.unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(by_session.status(), 200);
}

/// `/healthz` and `/readyz` are neither authenticated nor rate limited: an
/// anonymous flood (a busy sign-in page) must not fail the probes. (Before
/// the fix they shared the anonymous budget and answered 429.)
#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn probes_are_not_rate_limited(db: PgPool) {
    let app = TestApp::spawn_with(db, |config| {
        config.rate_limit = tickiti_api::config::parse_rate_limit("5/min").unwrap();
    })
    .await;
    for _ in 0..6 {
        app.client.get(app.url("/api/v1/me")).send().await.unwrap();
    }
    let limited = app.client.get(app.url("/api/v1/me")).send().await.unwrap();
    assert_eq!(limited.status(), 429, "the anonymous budget is spent");
    for _ in 0..20 {
        let health = app.client.get(app.url("/healthz")).send().await.unwrap();
        assert_eq!(health.status(), 200);
        assert!(health.headers().get("ratelimit-limit").is_none());
    }
    assert!(
        app.wait_ready(200).await,
        "ready once the broker is connected"
    );
    for _ in 0..10 {
        assert_eq!(app.readyz().await, 200);
    }
}

/// An admin adds a colleague, who can then sign in; bad input and a taken
/// e-mail are problems that store nothing; agents cannot add users.
#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn an_admin_adds_a_user_who_can_sign_in(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let org = app.org("Acme").await;
    let users = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM users")
            .fetch_one(&db)
            .await
            .unwrap()
    };
    let body = json!({ "email": "grace@example.com", "name": "Grace", "password": "a long enough password" });
    let created = app.post("/api/v1/users", &org.token, body.clone()).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["role"], "agent");
    assert!(created.body.get("password").is_none() && created.body.get("password_hash").is_none());
    let (reply, _) = login(&app, "grace@example.com", "a long enough password").await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    let before = users().await;
    let taken = app.post("/api/v1/users", &org.token, body).await;
    assert_eq!((taken.status, taken.code()), (409, "EMAIL_TAKEN"));
    for bad in [
        json!({ "email": "not-an-address", "name": "X", "password": "a long enough password" }),
        json!({ "email": "x@example.com", "name": "X", "password": "short" }),
        json!({ "email": "x@example.com", "name": "X", "password": "a long enough password", "role": "owner" }),
        json!({ "email": "x@example.com", "name": "X", "password": "a long enough password", "colour": 1 }),
    ] {
        let reply = app.post("/api/v1/users", &org.token, bad.clone()).await;
        assert_eq!(reply.status, 422, "{bad}: {}", reply.body);
    }
    let (_, _, agent) = app.user(&org, "Agent", Role::Agent, &[Ability::All]).await;
    let refused = app
        .post(
            "/api/v1/users",
            &agent,
            json!({ "email": "y@example.com", "name": "Y", "password": "a long enough password" }),
        )
        .await;
    assert_eq!(refused.status, 403);
    assert_eq!(
        users().await,
        before + 1,
        "only the test's own agent was added"
    );
}
