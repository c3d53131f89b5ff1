//! `Idempotency-Key`: replay, reuse with another body, and a key in flight.
#![allow(clippy::unwrap_used)]

use serde_json::json;
use sqlx::PgPool;
use tickiti_testkit::{Reply, TestApp};

async fn post_with_key(app: &TestApp, token: &str, key: &str, body: &serde_json::Value) -> Reply {
    let response = app
        .client
        .post(app.url("/api/v1/tickets"))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .unwrap();
    Reply::read(response).await
}

async fn ticket_count(db: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM tickets")
        .fetch_one(db)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn same_key_same_body_replays_other_body_is_refused(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let org = app.org("Acme").await;
    let body = json!({ "subject": "Once", "contact": { "email": "a@example.com" } });

    let first = post_with_key(&app, &org.token, "key-1", &body).await;
    assert_eq!(first.status, 201);
    assert_eq!(first.header("idempotent-replayed"), None);
    let again = post_with_key(&app, &org.token, "key-1", &body).await;
    assert_eq!(again.status, 201);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body, first.body);
    assert_eq!(ticket_count(&db).await, 1);

    let other = post_with_key(
        &app,
        &org.token,
        "key-1",
        &json!({ "subject": "Twice", "contact": { "email": "a@example.com" } }),
    )
    .await;
    assert_eq!(other.status, 422);
    assert_eq!(other.code(), "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(ticket_count(&db).await, 1);

    // Keys are scoped per principal: another token's same key is a new request.
    let (_, _, agent_token) = app
        .user(
            &org,
            "Bob",
            tickiti_domain::Role::Agent,
            &[tickiti_domain::Ability::All],
        )
        .await;
    let theirs = post_with_key(&app, &agent_token, "key-1", &body).await;
    assert_eq!(theirs.status, 201);
    assert_eq!(theirs.header("idempotent-replayed"), None);
    assert_eq!(ticket_count(&db).await, 2);

    // Errors are remembered too, except 5xx.
    let invalid = json!({ "subject": "", "contact": { "email": "a@example.com" } });
    assert_eq!(
        post_with_key(&app, &org.token, "key-2", &invalid)
            .await
            .status,
        422
    );
    let replayed = post_with_key(&app, &org.token, "key-2", &invalid).await;
    assert_eq!(replayed.status, 422);
    assert_eq!(replayed.header("idempotent-replayed"), Some("true"));
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn concurrent_requests_with_one_key_create_one_ticket(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let org = app.org("Acme").await;
    let body = json!({ "subject": "Race", "contact": { "email": "a@example.com" }, "message": "m".repeat(50_000) });

    let replies =
        futures::future::join_all((0..12).map(|_| post_with_key(&app, &org.token, "race", &body)))
            .await;
    let created = replies
        .iter()
        .filter(|r| r.status == 201 && r.header("idempotent-replayed").is_none())
        .count();
    let replayed = replies
        .iter()
        .filter(|r| r.header("idempotent-replayed") == Some("true"))
        .count();
    let in_flight = replies
        .iter()
        .filter(|r| r.status == 409 && r.code() == "IDEMPOTENCY_KEY_IN_USE")
        .count();
    assert_eq!(created, 1, "exactly one request did the work");
    assert_eq!(
        created + replayed + in_flight,
        12,
        "every other answer is a replay or 409 IN_USE"
    );
    assert_eq!(ticket_count(&db).await, 1);
    let ids: std::collections::HashSet<_> = replies
        .iter()
        .filter(|r| r.status == 201)
        .map(|r| r.body["id"].clone())
        .collect();
    assert_eq!(ids.len(), 1, "replays carry the same ticket");
}

/// A new token's secret is shown once, and a replay of its creation shows it
/// again, but the idempotency table never holds it in plain text (before the
/// fix only webhook secrets were sealed there; tokens, pairing pins and
/// realtime tickets were stored as they were).
#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn stored_answers_never_hold_a_secret_in_plain_text(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let org = app.org("Acme").await;
    let body = json!({ "name": "deploy", "abilities": ["tickets:read"] });
    let first = app
        .post_with_key("/api/v1/tokens", &org.token, "token-once", body.clone())
        .await;
    assert_eq!(first.status, 201, "{}", first.body);
    let secret = first.body["token"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("tkt_"));
    let again = app
        .post_with_key("/api/v1/tokens", &org.token, "token-once", body)
        .await;
    assert_eq!(again.status, 201);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(
        again.body["token"],
        secret.as_str(),
        "the replay shows the same token"
    );
    assert_eq!(again.header("cache-control"), Some("no-store"));
    let stored: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT response_body FROM idempotency_keys WHERE response_body IS NOT NULL",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(stored.len(), 1);
    let needle = secret.as_bytes();
    assert!(
        !stored[0].windows(needle.len()).any(|w| w == needle),
        "the secret is stored in plain text"
    );
}

/// The claim, the work and the stored answer are one commit: when the answer
/// cannot be stored, the work is undone and the client is told to retry, and
/// the retry with the same key does the work once. (Before the fix the claim
/// was committed first and the work on its own: the ticket stood, the client
/// got 201, the key stayed claimed without an answer, and a retry after the
/// stale-claim window created a second ticket.)
#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn an_answer_that_cannot_be_stored_undoes_its_work(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let org = app.org("Acme").await;
    let body = json!({ "subject": "Once only", "contact": { "email": "a@example.com" } });

    // Storing an answer is an UPDATE of the claimed row: make it fail, as a
    // full disk or a lost connection would at that moment.
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_answers() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN RAISE EXCEPTION 'no answer may be stored now'; END $$;
         CREATE TRIGGER refuse_answers BEFORE UPDATE ON idempotency_keys
           FOR EACH ROW EXECUTE FUNCTION refuse_answers();",
    )
    .execute(&db)
    .await
    .unwrap();
    let failed = post_with_key(&app, &org.token, "once", &body).await;
    assert_eq!(failed.status, 503, "{:?}", failed.body);
    assert_eq!(failed.header("retry-after"), Some("1"));
    assert_eq!(ticket_count(&db).await, 0, "the work went with the answer");
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(keys, 0, "and so did the claim");
    let outbox: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE event_type = 'ticket.created'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(outbox, 0, "no event of a ticket that does not exist");

    sqlx::raw_sql("DROP TRIGGER refuse_answers ON idempotency_keys")
        .execute(&db)
        .await
        .unwrap();
    let retried = post_with_key(&app, &org.token, "once", &body).await;
    assert_eq!(retried.status, 201);
    assert_eq!(retried.header("idempotent-replayed"), None);
    let replayed = post_with_key(&app, &org.token, "once", &body).await;
    assert_eq!(replayed.header("idempotent-replayed"), Some("true"));
    assert_eq!(replayed.body["id"], retried.body["id"]);
    assert_eq!(ticket_count(&db).await, 1, "the retry did the work once");
}

/// A handler that fails after writing (here: a message on a ticket that is
/// not there, after nothing) leaves nothing, and a 4xx inside the request's
/// transaction is stored and replayed like any answer; the next request with
/// another key works on a clean transaction.
#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn an_idempotent_request_that_fails_midway_leaves_nothing(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let org = app.org("Acme").await;
    // A contact id that does not exist: the handler refuses it after its
    // look-ups, inside the request's transaction.
    let bad = json!({ "subject": "S", "contact_id": uuid::Uuid::now_v7() });
    let refused = post_with_key(&app, &org.token, "bad", &bad).await;
    assert_eq!(refused.status, 422, "{:?}", refused.body);
    let replayed = post_with_key(&app, &org.token, "bad", &bad).await;
    assert_eq!(replayed.status, 422);
    assert_eq!(replayed.header("idempotent-replayed"), Some("true"));
    assert_eq!(ticket_count(&db).await, 0);

    // A reply with a key goes through the savepoint path and counts once.
    let ticket = post_with_key(
        &app,
        &org.token,
        "t",
        &json!({ "subject": "S", "contact": { "email": "a@example.com" } }),
    )
    .await;
    assert_eq!(ticket.status, 201);
    let id = ticket.body["id"].as_str().unwrap();
    for _ in 0..2 {
        let reply = app
            .client
            .post(app.url(&format!("/api/v1/tickets/{id}/messages")))
            .bearer_auth(&org.token)
            .header("idempotency-key", "reply-1")
            .json(&json!({ "body": "Hello", "visibility": "public" }))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 201);
    }
    let messages: i64 =
        sqlx::query_scalar("SELECT count(*) FROM messages WHERE ticket_id = $1::uuid")
            .bind(id)
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(messages, 1);
}
