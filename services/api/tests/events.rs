//! Every change reaches `<prefix>.events` through the outbox, after its commit.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::json;
use sqlx::PgPool;
use tickiti_testkit::{EventTap, TestApp, poll_until};

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn changes_publish_their_events_once_confirmed(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let tap = EventTap::bind(&app.prefix).await;
    let org = app.org("Acme").await;
    let (agent_id, agent_email, _) = app
        .user(
            &org,
            "Ann Lee",
            tickiti_domain::Role::Agent,
            &[tickiti_domain::Ability::All],
        )
        .await;

    let ticket = app.ticket(&org.token, "Events").await;
    let id = ticket["id"].as_str().unwrap();
    app.patch(
        &format!("/api/v1/tickets/{id}"),
        &org.token,
        json!({ "assignee_id": agent_id, "status": "closed" }),
    )
    .await;
    let reply = app
        .post(
            &format!("/api/v1/tickets/{id}/messages"),
            &org.token,
            json!({ "body": format!("@annlee and @{agent_email}: look") }),
        )
        .await;
    assert_eq!(reply.status, 201);
    app.post(
        &format!("/api/v1/tickets/{id}/messages"),
        &org.token,
        json!({ "body": "internal", "visibility": "internal" }),
    )
    .await;
    app.delete(&format!("/api/v1/tickets/{id}"), &org.token)
        .await;

    let expected = [
        "contact.created",
        "ticket.created",
        "ticket.updated",
        "ticket.assigned",
        "ticket.status_changed",
        "ticket.closed",
        "message.created",
        "ticket.message.created",
        "mention.created",
        "message.created",
        "ticket.deleted",
        // Ann is told (§8) of the assignment, the mention (which outranks
        // its message) and the internal note on her ticket.
        "notification.created",
        "notification.created",
        "notification.created",
    ];
    let events = tap.wait_for(expected.len(), Duration::from_secs(15)).await;
    let mut kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    let mut want = expected.to_vec();
    kinds.sort_unstable();
    want.sort_unstable();
    assert_eq!(
        kinds, want,
        "exactly these events, each once (one mention for two handles of one user)"
    );
    for event in &events {
        assert_eq!(event["organization_id"], json!(org.id));
        assert!(event["id"].is_string() && event["occurred_at"].is_string());
    }
    let created = events
        .iter()
        .find(|e| e["event"] == "ticket.created")
        .unwrap();
    assert_eq!(created["data"]["contact"]["email"], "customer@example.com");
    assert_eq!(created["data"]["code"], ticket["code"]);

    // Rows are marked after the broker's confirm, which may trail the delivery.
    let unpublished = poll_until(
        Duration::from_secs(10),
        || app.unpublished_events(),
        |n| *n == 0,
    )
    .await;
    assert_eq!(unpublished, 0);
    tap.cleanup().await;
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn health_readiness_and_openapi(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(
        app.wait_ready(200).await,
        "ready once the broker connection is up"
    );

    let spec: serde_json::Value = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"));
    // The documented limits are the enforced ones.
    let schemas = &spec["components"]["schemas"];
    assert_eq!(
        schemas["TicketIn"]["properties"]["subject"]["maxLength"],
        json!(tickiti_domain::ticket::SUBJECT_MAX)
    );
    assert_eq!(
        schemas["TicketPatch"]["properties"]["subject"]["maxLength"],
        json!(tickiti_domain::ticket::SUBJECT_MAX)
    );
    assert_eq!(
        schemas["MessageIn"]["properties"]["body"]["maxLength"],
        json!(tickiti_domain::ticket::BODY_MAX)
    );
    assert_eq!(
        schemas["TicketIn"]["properties"]["tags"]["maxItems"],
        json!(tickiti_domain::ticket::TAGS_MAX)
    );
    let paths = spec["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/v1/tickets", "post"),
        ("/api/v1/tickets/{id}", "patch"),
        ("/api/v1/tickets/{id}/messages", "post"),
        ("/api/v1/tickets/{id}/audit", "get"),
        ("/api/v1/contacts/{id}", "delete"),
        ("/api/v1/tickets/{id}/time-entries", "post"),
        ("/api/v1/time-entries/{id}", "patch"),
        ("/api/v1/queues", "post"),
        ("/api/v1/me", "get"),
        ("/api/v1/users/{id}", "patch"),
        ("/api/v1/tokens", "post"),
        ("/api/v1/perspectives/counts", "get"),
        ("/api/v1/mentions/{id}/ack", "post"),
        ("/api/v1/auth/login", "post"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing from the OpenAPI document"
        );
    }
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn readyz_reports_a_broker_that_is_unreachable(db: PgPool) {
    let app = TestApp::spawn_with(db, |config| {
        config.amqp_url = "amqp://guest:guest@127.0.0.1:1/%2f".into()
    })
    .await;
    let org = app.org("Acme").await;
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["broker"], "down");
    assert_eq!(body["database"], "up");
    // Writes still work: the outbox holds the events.
    app.ticket(&org.token, "While the broker is away").await;
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn no_event_is_published_before_its_commit(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let tap = EventTap::bind(&app.prefix).await;
    let org = app.org("Acme").await;

    let mut tx = db.begin().await.unwrap();
    let event = tickiti_domain::EventEnvelope::new(
        tickiti_domain::EventType::TicketUpdated,
        org.id,
        json!({ "probe": true }),
    );
    tickiti_store::outbox::append(&mut tx, std::slice::from_ref(&event), None)
        .await
        .unwrap();
    // Other commits wake the relay meanwhile: three passes publish theirs.
    for i in 0..3 {
        let noise = app.ticket(&org.token, &format!("noise {i}")).await;
        let published = |events: &[serde_json::Value]| {
            events
                .iter()
                .any(|e| e["event"] == "ticket.created" && e["data"]["code"] == noise["code"])
        };
        let events = tap.wait_until(Duration::from_secs(10), published).await;
        assert!(published(&events), "noise {i} was never published");
    }
    let probe =
        |events: &[serde_json::Value]| events.iter().filter(|e| e["data"]["probe"] == true).count();
    assert_eq!(
        probe(&tap.events().await),
        0,
        "published before its transaction committed"
    );
    tx.commit().await.unwrap();
    let events = tap
        .wait_until(Duration::from_secs(5), |events| probe(events) > 0)
        .await;
    assert_eq!(probe(&events), 1, "published once after its commit");
    tap.cleanup().await;
}

#[tokio::test]
async fn healthz_answers_and_readyz_refuses_while_the_database_is_down() {
    let unreachable = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(1))
        .connect_lazy("postgres://postgres@127.0.0.1:1/tickiti")
        .unwrap();
    let app = TestApp::spawn(unreachable).await;
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200, "the process is alive");
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["database"], "down");
}
