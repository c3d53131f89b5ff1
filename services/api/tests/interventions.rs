//! Interventions through the api (CONTRACT §4): definitions and their
//! validation, the write-only sealed bearer token, `POST /intervention-tickets`
//! with its idempotency and refusals, the ticket's intervention view, and
//! the staff submit that queues the epilog command. The dispatcher side is
//! in services/dispatcher/tests/epilog.rs.
#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use sqlx::PgPool;
use tickiti_domain::{Ability, Role};
use tickiti_testkit::{TestApp, TestOrg};

const TOKEN: &str = "remote-bearer-SECRET-4711";

fn definition(name: &str) -> Value {
    json!({
        "name": name,
        "title": "Address change",
        "queue_name": "Remote",
        "remote_name": "crm",
        "remote_epilog_url": "http://127.0.0.1:9/epilog",
        "remote_bearer_token": TOKEN,
        "remote_enabled": true,
        "fields": [
            { "type": "label", "label": "Customer {{ data.name }} on {{ ticket.code }}" },
            { "type": "text", "key": "street", "label": "Street" },
            { "type": "checkbox", "key": "verified", "label": "Verified" },
            { "type": "hr" }
        ],
        "templates": {
            "private": "New request from {{ data.name }} ({{ intervention.uid }})",
            "public": "We changed the street to {{ data.street }}.",
            "final": "Done: {{ reference }}"
        }
    })
}

async fn setup(app: &TestApp, org: &TestOrg, name: &str) -> Value {
    let queue = app
        .post("/api/v1/queues", &org.token, json!({ "name": "Remote" }))
        .await;
    assert!(queue.status == 201 || queue.status == 409, "{}", queue.body);
    let reply = app
        .post("/api/v1/interventions", &org.token, definition(name))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.body
}

fn ticket_request(uid: &str) -> Value {
    json!({
        "originator_email_address": "ann@example.com",
        "intervention": "address-change",
        "uid": uid,
        "data": { "data": { "name": "Ann", "street": "Old Road 1" } }
    })
}

async fn outbox_types(db: &PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT event_type FROM outbox ORDER BY id")
        .fetch_all(db)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn definitions_crud_with_an_immutable_name_and_a_sealed_write_only_token(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let org = app.org("Acme").await;
    let created = setup(&app, &org, "address-change").await;
    assert_eq!(created["name"], "address-change");
    assert_eq!(created["queue_name"], "Remote");
    assert_eq!(created["remote_timeout_seconds"], 10);
    assert_eq!(created["remote_bearer_token_set"], true);
    assert_eq!(created["enabled"], true);
    assert_eq!(created["fields"].as_array().unwrap().len(), 4);
    assert_eq!(created["templates"]["final"], "Done: {{ reference }}");
    assert!(!created.to_string().contains(TOKEN));

    // Never returned: not on read, not in the list.
    let got = app
        .get("/api/v1/interventions/address-change", &org.token)
        .await;
    assert_eq!(got.status, 200);
    assert!(got.body.get("remote_bearer_token").is_none());
    let list = app.get("/api/v1/interventions", &org.token).await;
    assert_eq!(list.body["data"].as_array().unwrap().len(), 1);
    assert!(!list.body.to_string().contains(TOKEN));

    // Stored sealed: no plaintext anywhere in the row; it opens with the key.
    let (sealed, row): (Vec<u8>, String) = sqlx::query_as(
        "SELECT remote_bearer_token_sealed, row_to_json(i)::text FROM interventions i",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert!(!row.contains(TOKEN));
    assert!(!sealed.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()));
    let opened = tickiti_crypto::SecretBox::new(*b"tickiti-development-key-32-bytes")
        .open_string(&sealed)
        .unwrap();
    assert_eq!(opened, TOKEN);

    // A taken name.
    let again = app
        .post(
            "/api/v1/interventions",
            &org.token,
            definition("address-change"),
        )
        .await;
    assert_eq!(again.status, 409);
    assert_eq!(again.code(), "INTERVENTION_EXISTS");

    // The name is immutable; repeating it is fine.
    let renamed = app
        .patch(
            "/api/v1/interventions/address-change",
            &org.token,
            json!({ "name": "other" }),
        )
        .await;
    assert_eq!(renamed.status, 422, "{}", renamed.body);
    assert_eq!(renamed.code(), "VALIDATION_FAILED");
    assert_eq!(renamed.body["errors"][0]["field"], "name");
    let patched = app
        .patch(
            "/api/v1/interventions/address-change",
            &org.token,
            json!({ "name": "address-change", "title": "Moves", "remote_timeout_seconds": 3,
                    "remote_bearer_token": null, "templates": { "final": null } }),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.body["title"], "Moves");
    assert_eq!(patched.body["remote_timeout_seconds"], 3);
    assert_eq!(patched.body["remote_bearer_token_set"], false);
    assert_eq!(patched.body["templates"]["final"], Value::Null);
    assert_eq!(
        patched.body["templates"]["private"],
        created["templates"]["private"]
    );

    // Other organizations see nothing.
    let other = app.org("Other").await;
    let hidden = app
        .get("/api/v1/interventions/address-change", &other.token)
        .await;
    assert_eq!(hidden.status, 404);
    assert_eq!(hidden.code(), "INTERVENTION_NOT_FOUND");

    // Managing needs interventions:manage.
    let (_, _, agent) = app.user(&org, "Agent", Role::Agent, &[Ability::All]).await;
    assert_eq!(app.get("/api/v1/interventions", &agent).await.status, 403);

    let deleted = app
        .delete("/api/v1/interventions/address-change", &org.token)
        .await;
    assert_eq!(deleted.status, 204);
    let gone = app
        .get("/api/v1/interventions/address-change", &org.token)
        .await;
    assert_eq!(gone.status, 404);
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn templates_and_fields_are_checked_when_saved(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let org = app.org("Acme").await;
    setup(&app, &org, "address-change").await;

    let mut bad = definition("bad-private");
    bad["templates"]["private"] = json!("Hello\n{% if data.name %}\nno end");
    let reply = app.post("/api/v1/interventions", &org.token, bad).await;
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert_eq!(reply.code(), "INVALID_TEMPLATE");
    assert_eq!(
        reply.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(
        reply.body["template_error"]["template"],
        "templates.private"
    );
    assert!(reply.body["template_error"]["line"].as_u64().unwrap() >= 2);
    assert!(
        !reply.body["template_error"]["reason"]
            .as_str()
            .unwrap()
            .is_empty()
    );

    let patched = app
        .patch(
            "/api/v1/interventions/address-change",
            &org.token,
            json!({ "templates": { "final": "ok\nstill ok\n{{ reference " } }),
        )
        .await;
    assert_eq!(patched.status, 422);
    assert_eq!(
        patched.body["template_error"]["template"],
        "templates.final"
    );
    assert_eq!(patched.body["template_error"]["line"], 3);

    let mut no_private = definition("no-private");
    no_private["templates"] = json!({ "public": "x" });
    let reply = app
        .post("/api/v1/interventions", &org.token, no_private)
        .await;
    assert_eq!(reply.status, 422);
    assert_eq!(reply.code(), "VALIDATION_FAILED");

    let mut unknown = definition("unknown-field");
    unknown["colour"] = json!("red");
    let reply = app.post("/api/v1/interventions", &org.token, unknown).await;
    assert_eq!(reply.status, 422);

    let mut bad_fields = definition("bad-fields");
    bad_fields["fields"] = json!([{ "type": "text" }, { "type": "radio", "key": "x" }]);
    let reply = app
        .post("/api/v1/interventions", &org.token, bad_fields)
        .await;
    assert_eq!(reply.status, 422);
    assert_eq!(reply.code(), "VALIDATION_FAILED");

    let mut bad_label = definition("bad-label");
    bad_label["fields"] =
        json!([{ "type": "text", "key": "a" }, { "type": "label", "label": "{{ data.a" }]);
    let reply = app
        .post("/api/v1/interventions", &org.token, bad_label)
        .await;
    assert_eq!(reply.status, 422);
    assert_eq!(reply.body["errors"][0]["field"], "fields[1].label");

    let mut nul = definition("nul");
    nul["title"] = json!("a\u{0}b");
    let reply = app.post("/api/v1/interventions", &org.token, nul).await;
    assert_eq!(reply.status, 422);

    let mut bad_name = definition("has space");
    bad_name["name"] = json!("has space");
    let reply = app
        .post("/api/v1/interventions", &org.token, bad_name)
        .await;
    assert_eq!(reply.status, 422);
    assert_eq!(reply.body["errors"][0]["field"], "name");

    let mut bad_timeout = definition("slow");
    bad_timeout["remote_timeout_seconds"] = json!(0);
    let reply = app
        .post("/api/v1/interventions", &org.token, bad_timeout)
        .await;
    assert_eq!(reply.status, 422);
    assert_eq!(reply.body["errors"][0]["field"], "remote_timeout_seconds");

    let mut no_queue = definition("no-queue");
    no_queue["queue_name"] = json!("Nowhere");
    let reply = app
        .post("/api/v1/interventions", &org.token, no_queue)
        .await;
    assert_eq!(reply.status, 422);
    assert_eq!(reply.body["errors"][0]["field"], "queue_name");
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn intervention_tickets_need_a_key_and_replay_it(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let org = app.org("Acme").await;
    setup(&app, &org, "address-change").await;
    let (_, _, remote) = app
        .user(&org, "Remote", Role::Agent, &[Ability::CreateTicket])
        .await;

    let without = app
        .post(
            "/api/v1/intervention-tickets",
            &remote,
            ticket_request("u-1"),
        )
        .await;
    assert_eq!(without.status, 400);
    assert_eq!(without.code(), "IDEMPOTENCY_KEY_REQUIRED");

    let first = app
        .post_with_key(
            "/api/v1/intervention-tickets",
            &remote,
            "k-1",
            ticket_request("u-1"),
        )
        .await;
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(first.body["intervention"], "address-change");
    assert_eq!(first.body["uid"], "u-1");
    assert_eq!(first.body["status"], "pending");
    assert_eq!(first.body["ticket_number"], 1);
    let ticket_id = first.body["ticket_id"].as_str().unwrap().to_owned();

    let replay = app
        .post_with_key(
            "/api/v1/intervention-tickets",
            &remote,
            "k-1",
            ticket_request("u-1"),
        )
        .await;
    assert_eq!(replay.status, 201);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(replay.body, first.body);
    let tickets: i64 = sqlx::query_scalar("SELECT count(*) FROM tickets")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(tickets, 1);

    // The ticket: in the intervention's queue, for the originator, with the private note.
    let ticket = app
        .get(&format!("/api/v1/tickets/{ticket_id}"), &org.token)
        .await;
    assert_eq!(ticket.body["contact"]["email"], "ann@example.com");
    let queues = app.get("/api/v1/queues", &org.token).await;
    assert_eq!(ticket.body["queue_id"], queues.body["data"][0]["id"]);
    let messages = app
        .get(&format!("/api/v1/tickets/{ticket_id}/messages"), &org.token)
        .await;
    let note = &messages.body["data"][0];
    assert_eq!(note["visibility"], "internal");
    assert_eq!(note["body"], "New request from Ann (u-1)");

    // The view: pending, data bag, labels resolved.
    let view = app
        .get(
            &format!("/api/v1/tickets/{ticket_id}/intervention"),
            &org.token,
        )
        .await;
    assert_eq!(view.status, 200, "{}", view.body);
    assert_eq!(view.body["status"], "pending");
    assert_eq!(view.body["data"]["street"], "Old Road 1");
    let code = ticket.body["code"].as_str().unwrap();
    assert_eq!(
        view.body["fields"][0]["text"],
        format!("Customer Ann on {code}")
    );
    assert_eq!(view.body["fields"][1]["value"], "Old Road 1");
    assert_eq!(view.body["epilog_attempts"], json!([]));

    let types = outbox_types(&db).await;
    assert!(
        types.contains(&"intervention.created".to_owned()),
        "{types:?}"
    );
    assert!(types.contains(&"ticket.created".to_owned()));
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn intervention_tickets_refuse_big_bags_duplicates_unknown_and_disabled(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let org = app.org("Acme").await;
    setup(&app, &org, "address-change").await;
    let post = |key: &'static str, body: Value| {
        let app = &app;
        let token = org.token.clone();
        async move {
            app.post_with_key("/api/v1/intervention-tickets", &token, key, body)
                .await
        }
    };

    let mut big = ticket_request("u-big");
    big["data"]["data"]["blob"] = json!("x".repeat(33 * 1024));
    let reply = post("k-big", big).await;
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert_eq!(reply.code(), "DATA_BAG_TOO_LARGE");
    let mut fits = ticket_request("u-fits");
    fits["data"]["data"]["blob"] = json!("x".repeat(31 * 1024));
    assert_eq!(post("k-fits", fits).await.status, 201);

    let first = post("k-1", ticket_request("u-1")).await;
    assert_eq!(first.status, 201);
    let dup = post("k-2", ticket_request("u-1")).await;
    assert_eq!(dup.status, 409);
    assert_eq!(dup.code(), "INTERVENTION_UID_EXISTS");
    assert_eq!(dup.body["ticket_id"], first.body["ticket_id"]);

    let mut unknown = ticket_request("u-2");
    unknown["intervention"] = json!("nope");
    let reply = post("k-3", unknown).await;
    assert_eq!(reply.status, 422);
    assert_eq!(reply.code(), "UNKNOWN_INTERVENTION");

    let disabled = app
        .patch(
            "/api/v1/interventions/address-change",
            &org.token,
            json!({ "enabled": false }),
        )
        .await;
    assert_eq!(disabled.status, 200);
    let reply = post("k-4", ticket_request("u-3")).await;
    assert_eq!(reply.status, 422);
    assert_eq!(reply.code(), "INTERVENTION_DISABLED");

    let mut extra = ticket_request("u-4");
    extra["data"]["other"] = json!(1);
    assert_eq!(post("k-5", extra).await.status, 422);
    let mut no_bag = ticket_request("u-5");
    no_bag["data"] = json!({ "data": [1, 2] });
    assert_eq!(post("k-6", no_bag).await.status, 422);

    // In use: deleting the definition is refused.
    let reply = app
        .delete("/api/v1/interventions/address-change", &org.token)
        .await;
    assert_eq!(reply.status, 409);
    assert_eq!(reply.code(), "INTERVENTION_IN_USE");

    let (_, _, reader) = app
        .user(&org, "Reader", Role::Agent, &[Ability::TicketsRead])
        .await;
    let reply = app
        .post_with_key(
            "/api/v1/intervention-tickets",
            &reader,
            "k-7",
            ticket_request("u-6"),
        )
        .await;
    assert_eq!(reply.status, 403);
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn submit_posts_the_response_and_queues_the_epilog_in_one_transaction(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let org = app.org("Acme").await;
    setup(&app, &org, "address-change").await;
    let created = app
        .post_with_key(
            "/api/v1/intervention-tickets",
            &org.token,
            "k-1",
            ticket_request("u-1"),
        )
        .await;
    let ticket_id = created.body["ticket_id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/tickets/{ticket_id}/intervention/submit");

    let reply = app
        .post(
            &path,
            &org.token,
            json!({ "data": { "name": "Ann", "street": "New Street 5", "verified": true } }),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["status"], "submitted");
    assert_eq!(reply.body["data"]["street"], "New Street 5");
    let response_id = reply.body["response_id"].as_str().unwrap().to_owned();
    assert_eq!(reply.body["epilogs"][0]["status"], "pending");
    assert_eq!(reply.body["epilogs"][0]["response_id"], response_id);

    let messages = app
        .get(&format!("/api/v1/tickets/{ticket_id}/messages"), &org.token)
        .await;
    let response = &messages.body["data"][1];
    assert_eq!(response["id"], response_id);
    assert_eq!(response["visibility"], "public");
    assert_eq!(response["body"], "We changed the street to New Street 5.");

    // The command row sits in the outbox beside the events of the same change.
    let (payload,): (Value,) = sqlx::query_as(
        "SELECT payload FROM outbox WHERE event_type = 'command.intervention.epilog'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(payload["epilog_id"], reply.body["epilogs"][0]["id"]);
    let types = outbox_types(&db).await;
    assert!(types.contains(&"intervention.submitted".to_owned()));

    // Bad input.
    let reply = app
        .post(&path, &org.token, json!({ "data": {}, "extra": 1 }))
        .await;
    assert_eq!(reply.status, 422);
    let reply = app
        .post(
            &path,
            &org.token,
            json!({ "data": { "blob": "x".repeat(33 * 1024) } }),
        )
        .await;
    assert_eq!(reply.status, 413);
    let plain = app.ticket(&org.token, "No intervention").await;
    let reply = app
        .post(
            &format!(
                "/api/v1/tickets/{}/intervention/submit",
                plain["id"].as_str().unwrap()
            ),
            &org.token,
            json!({ "data": {} }),
        )
        .await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.code(), "INTERVENTION_NOT_FOUND");

    // Without a public template the message is required and posted as is;
    // with the remote disabled no epilog is queued.
    app.patch(
        "/api/v1/interventions/address-change",
        &org.token,
        json!({ "remote_enabled": false, "templates": { "public": null } }),
    )
    .await;
    let reply = app.post(&path, &org.token, json!({ "data": {} })).await;
    assert_eq!(reply.status, 422);
    assert_eq!(reply.body["errors"][0]["field"], "message");
    let reply = app
        .post(
            &path,
            &org.token,
            json!({ "data": { "street": "x" }, "message": "Thanks!" }),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["epilogs"].as_array().unwrap().len(), 1);
    // The call for the earlier response is superseded.
    assert_eq!(reply.body["epilogs"][0]["status"], "failed");
    assert_eq!(
        reply.body["epilogs"][0]["last_error"],
        "superseded by a later submit"
    );
    let commands: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox WHERE event_type = 'command.intervention.epilog'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(commands, 1);
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn every_intervention_route_is_in_the_openapi_document(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let doc: Value = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/api/v1/interventions",
        "/api/v1/interventions/{name}",
        "/api/v1/intervention-tickets",
        "/api/v1/tickets/{id}/intervention",
        "/api/v1/tickets/{id}/intervention/submit",
    ] {
        assert!(paths.contains_key(path), "{path} missing");
    }
    let methods: Vec<&String> = paths["/api/v1/interventions/{name}"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    for method in ["get", "patch", "delete"] {
        assert!(methods.iter().any(|m| *m == method), "{methods:?}");
    }
}

/// Moving the epilog to another URL while a bearer token is set needs the
/// token decided in the same patch: the old URL's token is never sent to the
/// new one. (Before the fix the old token silently went along.)
#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn a_new_epilog_url_does_not_inherit_the_old_token(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let org = app.org("Acme").await;
    setup(&app, &org, "moved").await;
    let path = "/api/v1/interventions/moved";
    let before = app.get(path, &org.token).await;

    let moved = app
        .patch(
            path,
            &org.token,
            json!({ "remote_epilog_url": "http://127.0.0.1:9/elsewhere" }),
        )
        .await;
    assert_eq!(moved.status, 422, "{}", moved.body);
    assert_eq!(moved.body["errors"][0]["field"], "remote_bearer_token");
    assert_eq!(
        app.get(path, &org.token).await.body,
        before.body,
        "nothing changed"
    );

    // The same URL again is no change; a new URL with a new token, or with none, is.
    let same = app
        .patch(
            path,
            &org.token,
            json!({ "remote_epilog_url": "http://127.0.0.1:9/epilog" }),
        )
        .await;
    assert_eq!(same.status, 200, "{}", same.body);
    let with_new = app
        .patch(
            path,
            &org.token,
            json!({ "remote_epilog_url": "http://127.0.0.1:9/elsewhere",
                    "remote_bearer_token": "another-bearer-token-0815" }),
        )
        .await;
    assert_eq!(with_new.status, 200, "{}", with_new.body);
    assert_eq!(with_new.body["remote_bearer_token_set"], true);
    let without = app
        .patch(
            path,
            &org.token,
            json!({ "remote_epilog_url": "http://127.0.0.1:9/third", "remote_bearer_token": null }),
        )
        .await;
    assert_eq!(without.status, 200, "{}", without.body);
    assert_eq!(without.body["remote_bearer_token_set"], false);
    // Without a token there is nothing to leak: the URL moves freely.
    let free = app
        .patch(
            path,
            &org.token,
            json!({ "remote_epilog_url": "http://127.0.0.1:9/fourth" }),
        )
        .await;
    assert_eq!(free.status, 200, "{}", free.body);
}

/// `fma_inbox_managers` raises a new intervention ticket to the queue's
/// managers at once: a `manager_attention` escalation, written with the
/// ticket; without the flag, none.
#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn for_manager_attention_raises_the_ticket_to_the_queues_managers(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let org = app.org("Acme").await;
    let (manager, _, _) = app.user(&org, "Mia", Role::Agent, &[Ability::All]).await;
    let queue = app
        .post(
            "/api/v1/queues",
            &org.token,
            json!({ "name": "Remote", "manager_ids": [manager] }),
        )
        .await;
    assert_eq!(queue.status, 201, "{}", queue.body);
    let mut urgent = definition("address-change");
    urgent["fma_inbox_managers"] = json!(true);
    let created = app.post("/api/v1/interventions", &org.token, urgent).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let mut quiet = definition("quiet");
    quiet["name"] = json!("quiet");
    assert_eq!(
        app.post("/api/v1/interventions", &org.token, quiet)
            .await
            .status,
        201
    );
    let (_, _, remote) = app
        .user(&org, "Remote", Role::Agent, &[Ability::CreateTicket])
        .await;
    let raised = app
        .post_with_key(
            "/api/v1/intervention-tickets",
            &remote,
            "k-1",
            ticket_request("u-1"),
        )
        .await;
    assert_eq!(raised.status, 201, "{}", raised.body);
    let mut plain = ticket_request("u-2");
    plain["intervention"] = json!("quiet");
    let not_raised = app
        .post_with_key("/api/v1/intervention-tickets", &remote, "k-2", plain)
        .await;
    assert_eq!(not_raised.status, 201, "{}", not_raised.body);

    let frames: Vec<Value> = sqlx::query_scalar(
        "SELECT payload->'data' FROM outbox WHERE event_type = 'system.escalation'",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0]["ticket_id"], raised.body["ticket_id"]);
    assert_eq!(frames[0]["stage"], "manager_attention");
    assert_eq!(frames[0]["manager_ids"], json!([manager]));
    assert_eq!(frames[0]["queue_id"], queue.body["id"]);

    // Notifications (§8): the raised one tells the manager of an
    // intervention; the quiet definition's ticket is only a new ticket in
    // their queue.
    let told: Vec<(String, String)> = sqlx::query_as(
        "SELECT ticket_id::text, kind FROM notifications WHERE user_id = $1 ORDER BY id",
    )
    .bind(manager)
    .fetch_all(&db)
    .await
    .unwrap();
    let id = |reply: &Value| reply["ticket_id"].as_str().unwrap().to_owned();
    assert_eq!(
        told,
        [
            (id(&raised.body), "intervention.created".to_owned()),
            (id(&not_raised.body), "ticket.created".to_owned()),
        ]
    );
}
