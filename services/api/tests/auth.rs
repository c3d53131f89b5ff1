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

/// 400 sign-ins at once (half for a real address, half for unknown ones):
/// every answer is a refusal the client can act on, never a 500. Before the
/// fix each attempt held a pooled connection through its password hash, the
/// pool ran dry and the rest answered 500.
#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn a_flood_of_logins_gets_401_429_or_503_never_500(db: PgPool) {
    // The pool the binary makes (its size and acquire timeout), not the test's.
    let pool = tickiti_store::connect(&tickiti_testkit::database_url(&db), 10, None)
        .await
        .unwrap();
    let app = TestApp::spawn(pool).await;
    let org = app.org("Acme").await;
    let started = std::time::Instant::now();
    let mut flood = tokio::task::JoinSet::new();
    for i in 0..400 {
        let client = reqwest::Client::new();
        let url = app.url("/api/v1/auth/login");
        let email = if i % 2 == 0 {
            org.admin_email.clone()
        } else {
            format!("nobody{i}@example.com")
        };
        flood.spawn(async move {
            let response = client
                .post(url)
                .json(&json!({ "email": email, "password": "not the password" }))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let retry_after = response.headers().contains_key("retry-after");
            (status, retry_after)
        });
    }
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    while let Some(joined) = flood.join_next().await {
        let (status, retry_after) = joined.unwrap();
        *statuses.entry(status).or_default() += 1;
        if status == 429 || status == 503 {
            assert!(retry_after, "{status} without Retry-After");
        }
    }
    assert!(
        statuses.keys().all(|s| [401, 429, 503].contains(s)),
        "{statuses:?}"
    );
    assert!(statuses.contains_key(&401), "{statuses:?}");
    println!(
        "400 sign-ins at once: {statuses:?} in {:?}",
        started.elapsed()
    );
}

async fn login_status(app: &TestApp, email: &str, password: &str, forwarded: Option<&str>) -> u16 {
    let mut request = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({ "email": email, "password": password }));
    if let Some(hop) = forwarded {
        request = request.header("x-forwarded-for", hop);
    }
    request.send().await.unwrap().status().as_u16()
}

/// Guesses sent in parallel get no more tries than guesses in a row (before:
/// all 20 were checked, since each failure was recorded only afterwards),
/// and the throttle is one for every spelling of the address (before: keyed
/// on the untrimmed e-mail while the look-up trimmed it).
#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn parallel_and_respelled_guesses_share_one_throttle(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let org = app.org("Acme").await;
    let guesses = (0..20).map(|_| login_status(&app, &org.admin_email, "guess", None));
    let statuses = futures::future::join_all(guesses).await;
    let checked = statuses.iter().filter(|s| **s == 401).count();
    assert_eq!(checked, 5, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );

    let other = "carla@example.com";
    for spelling in [
        "carla@example.com",
        " Carla@Example.com",
        "CARLA@EXAMPLE.COM  ",
        "carla@example.COM",
        "\tcarla@example.com",
    ] {
        assert_eq!(
            login_status(&app, spelling, "guess", None).await,
            401,
            "{spelling:?}"
        );
    }
    assert_eq!(
        login_status(&app, &other.to_uppercase(), "guess", None).await,
        429
    );
}

/// Two api processes on one database keep one throttle.
#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn the_throttle_is_shared_between_api_processes(db: PgPool) {
    let first = TestApp::spawn(db.clone()).await;
    let second = TestApp::spawn(db).await;
    for app in [&first, &second, &first, &second, &first] {
        assert_eq!(
            login_status(app, "dan@example.com", "guess", None).await,
            401
        );
    }
    assert_eq!(
        login_status(&second, "dan@example.com", "guess", None).await,
        429
    );
    assert_eq!(
        login_status(&first, "dan@example.com", "guess", None).await,
        429
    );
}

/// Behind a trusted proxy the client is the forwarded address: a guesser
/// elsewhere does not lock the right password out of the user's own
/// address. Without trusted proxies a forged `X-Forwarded-For` changes nothing.
#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn limits_key_on_the_client_behind_trusted_proxies_only(db: PgPool) {
    let proxied = TestApp::spawn_with(db.clone(), |config| {
        config.access.trusted_proxies = tickiti_api::config::parse_proxies("127.0.0.1").unwrap();
    })
    .await;
    let org = proxied.org("Acme").await;
    let attacker = Some("198.51.100.66");
    for _ in 0..5 {
        assert_eq!(
            login_status(&proxied, &org.admin_email, "guess", attacker).await,
            401
        );
    }
    assert_eq!(
        login_status(&proxied, &org.admin_email, "guess", attacker).await,
        429
    );
    let user = Some("203.0.113.10");
    assert_eq!(
        login_status(&proxied, &org.admin_email, &org.admin_password, user).await,
        200
    );

    let direct = TestApp::spawn(db).await;
    for hop in [
        "192.0.2.1",
        "192.0.2.2",
        "192.0.2.3",
        "192.0.2.4",
        "192.0.2.5",
    ] {
        assert_eq!(
            login_status(&direct, "erin@example.com", "guess", Some(hop)).await,
            401
        );
    }
    assert_eq!(
        login_status(&direct, "erin@example.com", "guess", Some("192.0.2.6")).await,
        429,
        "a forged X-Forwarded-For is not believed without trusted proxies"
    );
}

/// An unknown session cookie or a made-up token gets no budget of its own:
/// it spends its client address's (before: each new cookie was a fresh bucket).
#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn unknown_credentials_spend_the_client_addresses_budget(db: PgPool) {
    let app = TestApp::spawn_with(db, |config| {
        config.rate_limit = tickiti_api::config::parse_rate_limit("5/min").unwrap();
    })
    .await;
    let org = app.org("Acme").await;
    let mut statuses = Vec::new();
    for i in 0..6 {
        let request = app.client.get(app.url("/api/v1/tickets"));
        let request = if i % 2 == 0 {
            request.header("cookie", format!("tickiti_session=made-up-{i}"))
        } else {
            request.bearer_auth(format!("tk_made_up_{i}"))
        };
        statuses.push(request.send().await.unwrap().status().as_u16());
    }
    assert_eq!(statuses[..5], [401; 5], "{statuses:?}");
    assert_eq!(statuses[5], 429, "{statuses:?}");
    // A real token still has its own budget.
    assert_eq!(app.get("/api/v1/tickets", &org.token).await.status, 200);
}
