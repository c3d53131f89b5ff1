//! Queues, time entries, users, tokens, perspectives and mentions over HTTP.
#![allow(clippy::unwrap_used)]

use serde_json::json;
use sqlx::PgPool;
use tickiti_domain::{Ability, Role};
use tickiti_testkit::TestApp;

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn queues(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let org = app.org("Acme Inc").await;
    let (_, _, agent) = app.user(&org, "Bob", Role::Agent, &[Ability::All]).await;

    let q = app.post("/api/v1/queues", &org.token, json!({"name": "Billing", "description": "money"})).await;
    assert_eq!(q.status, 201, "{}", q.body);
    let id = q.body["id"].as_str().unwrap().to_owned();
    let dup = app.post("/api/v1/queues", &org.token, json!({"name": "billing"})).await;
    assert_eq!((dup.status, dup.code()), (409, "QUEUE_NAME_TAKEN"), "{}", dup.body);
    assert_eq!(app.post("/api/v1/queues", &agent, json!({"name": "X"})).await.status, 403);
    let list = app.get("/api/v1/queues", &agent).await;
    assert_eq!(list.status, 200);
    assert_eq!(list.body["data"].as_array().unwrap().len(), 1);
    let p = app.patch(&format!("/api/v1/queues/{id}"), &org.token, json!({"description": null})).await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(p.body["description"], json!(null));
    assert_eq!(p.body["name"], "Billing");
    let bad = app.patch("/api/v1/queues/nope", &org.token, json!({})).await;
    assert_eq!((bad.status, bad.code()), (404, "QUEUE_NOT_FOUND"));
    let unknown = app.patch(&format!("/api/v1/queues/{id}"), &org.token, json!({"x": 1})).await;
    assert_eq!(unknown.status, 422);

    let t = app
        .post(
            "/api/v1/tickets",
            &org.token,
            json!({"subject": "s", "contact": {"email": "c@example.com"}, "queue_id": id}),
        )
        .await;
    assert_eq!(t.status, 201, "{}", t.body);
    let busy = app.delete(&format!("/api/v1/queues/{id}"), &org.token).await;
    assert_eq!((busy.status, busy.code()), (409, "QUEUE_IN_USE"), "{}", busy.body);
    let tid = t.body["id"].as_str().unwrap();
    app.patch(&format!("/api/v1/tickets/{tid}"), &org.token, json!({"queue_id": null})).await;
    assert_eq!(app.delete(&format!("/api/v1/queues/{id}"), &org.token).await.status, 204);
    assert_eq!(app.delete(&format!("/api/v1/queues/{id}"), &org.token).await.status, 404);
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn time_entries(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let org = app.org("Acme Inc").await;
    let other = app.org("Other").await;
    let ticket = app.ticket(&org.token, "T").await;
    let tid = ticket["id"].as_str().unwrap();
    let path = format!("/api/v1/tickets/{tid}/time-entries");

    let e = app.post(&path, &org.token, json!({"minutes": 30, "note": "call"})).await;
    assert_eq!(e.status, 201, "{}", e.body);
    assert_eq!(e.body["user_id"], json!(org.admin_id));
    assert_eq!(e.body["ticket_id"], json!(tid));
    let eid = e.body["id"].as_str().unwrap().to_owned();
    let bad = app.post(&path, &org.token, json!({"minutes": 0, "user_id": other.admin_id})).await;
    assert_eq!(bad.status, 422);
    let fields: Vec<_> = bad.body["errors"].as_array().unwrap().iter().map(|e| e["field"].clone()).collect();
    assert_eq!(fields, vec![json!("minutes"), json!("user_id")], "{}", bad.body);
    let too_long = app.post(&path, &org.token, json!({"minutes": 5, "note": "x".repeat(2001)})).await;
    assert_eq!(too_long.status, 422);

    let upd = app.patch(&format!("/api/v1/time-entries/{eid}"), &org.token, json!({"minutes": 45, "note": null})).await;
    assert_eq!(upd.status, 200, "{}", upd.body);
    assert_eq!(upd.body["minutes"], 45);
    assert_eq!(upd.body["note"], json!(null));
    let cross = app.patch(&format!("/api/v1/time-entries/{eid}"), &other.token, json!({"minutes": 1})).await;
    assert_eq!((cross.status, cross.code()), (404, "TIME_ENTRY_NOT_FOUND"));
    let list = app.get(&path, &org.token).await;
    assert_eq!(list.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(app.get(&format!("/api/v1/tickets/{tid}/time-entries"), &other.token).await.status, 404);
    assert_eq!(app.delete(&format!("/api/v1/time-entries/{eid}"), &org.token).await.status, 204);
    assert_eq!(app.delete(&format!("/api/v1/time-entries/{eid}"), &org.token).await.status, 404);
    let audit = app.get(&format!("/api/v1/tickets/{tid}/audit"), &org.token).await;
    let actions: Vec<_> = audit.body["data"].as_array().unwrap().iter().map(|a| a["action"].clone()).collect();
    assert_eq!(
        actions,
        vec![json!("ticket.created"), json!("time_entry.created"), json!("time_entry.updated"), json!("time_entry.deleted")]
    );
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn users_and_me(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let org = app.org("Acme Inc").await;
    let (bob, _, agent) = app.user(&org, "Bob", Role::Agent, &[Ability::All]).await;

    let me = app.get("/api/v1/me", &agent).await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.body["id"], json!(bob));
    assert_eq!(me.body["organization"]["name"], "Acme Inc");
    assert!(me.body.get("password_hash").is_none());
    assert!(!me.body["abilities"].as_array().unwrap().contains(&json!("admin")));
    let users = app.get("/api/v1/users", &agent).await;
    assert_eq!(users.body["data"].as_array().unwrap().len(), 2);

    let own = app.patch(&format!("/api/v1/users/{bob}"), &agent, json!({"realtime_notifications": true, "name": "Bobby"})).await;
    assert_eq!(own.status, 200, "{}", own.body);
    assert_eq!(own.body["realtime_notifications"], true);
    let other = app.patch(&format!("/api/v1/users/{}", org.admin_id), &agent, json!({"name": "X"})).await;
    assert_eq!(other.status, 403);
    let promote = app.patch(&format!("/api/v1/users/{bob}"), &agent, json!({"role": "admin"})).await;
    assert_eq!(promote.status, 403);
    let last = app.patch(&format!("/api/v1/users/{}", org.admin_id), &org.token, json!({"role": "agent"})).await;
    assert_eq!((last.status, last.code()), (409, "LAST_ADMIN"));
    let promote = app.patch(&format!("/api/v1/users/{bob}"), &org.token, json!({"role": "admin"})).await;
    assert_eq!(promote.body["role"], "admin");
    let demote = app.patch(&format!("/api/v1/users/{}", org.admin_id), &org.token, json!({"role": "agent"})).await;
    assert_eq!(demote.status, 200, "{}", demote.body);
    let missing = app.patch("/api/v1/users/zzz", &org.token, json!({})).await;
    assert_eq!((missing.status, missing.code()), (404, "USER_NOT_FOUND"));
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn tokens(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let org = app.org("Acme Inc").await;
    let (_, _, agent) = app.user(&org, "Bob", Role::Agent, &[Ability::All]).await;

    let t = app.post("/api/v1/tokens", &agent, json!({"name": "ci", "abilities": ["tickets:read"]})).await;
    assert_eq!(t.status, 201, "{}", t.body);
    let secret = t.body["token"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("tkt_"));
    assert_eq!(t.body["prefix"], json!(&secret[..8]));
    assert_eq!(app.get("/api/v1/tickets", &secret).await.status, 200);
    assert_eq!(app.post("/api/v1/tickets", &secret, json!({"subject": "s", "contact": {"email": "c@example.com"}})).await.status, 403);
    let beyond = app.post("/api/v1/tokens", &agent, json!({"name": "x", "abilities": ["admin"]})).await;
    assert_eq!(beyond.status, 422, "{}", beyond.body);
    let star = app.post("/api/v1/tokens", &agent, json!({"name": "x", "abilities": ["*"]})).await;
    assert_eq!(star.status, 422);
    let unknown = app.post("/api/v1/tokens", &agent, json!({"name": "x", "abilities": ["root"]})).await;
    assert_eq!(unknown.status, 422);
    let narrow = app.post("/api/v1/tokens", &secret, json!({"name": "x", "abilities": ["tickets:write"]})).await;
    assert_eq!(narrow.status, 422);
    let list = app.get("/api/v1/tokens", &agent).await;
    assert_eq!(list.body["data"].as_array().unwrap().len(), 2, "{}", list.body);
    assert!(list.body["data"][1].get("token").is_none());
    let id = t.body["id"].as_str().unwrap();
    assert_eq!(app.delete(&format!("/api/v1/tokens/{id}"), &org.token).await.status, 404);
    assert_eq!(app.delete(&format!("/api/v1/tokens/{id}"), &agent).await.status, 204);
    assert_eq!(app.get("/api/v1/tickets", &secret).await.status, 401);
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn perspectives(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let org = app.org("Acme Inc").await;
    let (bob, _, agent) = app.user(&org, "Bob", Role::Agent, &[Ability::All]).await;
    let t = app.ticket(&org.token, "one").await;
    app.ticket(&org.token, "two").await;
    let tid = t["id"].as_str().unwrap();
    app.patch(&format!("/api/v1/tickets/{tid}"), &org.token, json!({"assignee_id": bob})).await;

    let list = app.get("/api/v1/perspectives", &agent).await;
    assert_eq!(list.status, 200, "{}", list.body);
    let names: Vec<_> = list.body["data"].as_array().unwrap().iter().map(|p| p["name"].clone()).collect();
    assert_eq!(names, vec![json!("All open"), json!("Mine"), json!("Unassigned")]);
    let counts = app.get("/api/v1/perspectives/counts", &agent).await;
    assert_eq!(counts.status, 200, "{}", counts.body);
    let n: Vec<_> = counts.body["data"].as_array().unwrap().iter().map(|c| c["count"].clone()).collect();
    assert_eq!(n, vec![json!(2), json!(1), json!(1)]);

    let shared = app.post("/api/v1/perspectives", &agent, json!({"name": "S", "shared": true})).await;
    assert_eq!(shared.status, 403);
    let bad = app.post("/api/v1/perspectives", &agent, json!({"name": "P", "filters": {"status": "nope", "queue_id": "x"}})).await;
    assert_eq!(bad.status, 422);
    assert_eq!(bad.body["errors"][0]["field"], "filters.status", "{}", bad.body);
    let unknown = app.post("/api/v1/perspectives", &agent, json!({"name": "P", "filters": {"colour": "red"}})).await;
    assert_eq!(unknown.status, 422, "{}", unknown.body);
    let mine = app.post("/api/v1/perspectives", &agent, json!({"name": "Urgent", "filters": {"priority": "urgent"}})).await;
    assert_eq!(mine.status, 201, "{}", mine.body);
    assert_eq!(mine.body["shared"], false);
    assert_eq!(mine.body["position"], 3);
    let pid = mine.body["id"].as_str().unwrap().to_owned();
    assert_eq!(app.get("/api/v1/perspectives", &org.token).await.body["data"].as_array().unwrap().len(), 3);
    let cross = app.patch(&format!("/api/v1/perspectives/{pid}"), &org.token, json!({"name": "x"})).await;
    assert_eq!((cross.status, cross.code()), (404, "PERSPECTIVE_NOT_FOUND"));
    let upd = app.patch(&format!("/api/v1/perspectives/{pid}"), &agent, json!({"filters": {"assignee_id": "me"}})).await;
    assert_eq!(upd.status, 200, "{}", upd.body);
    assert_eq!(upd.body["filters"], json!({"assignee_id": "me"}));
    let shared_id = list.body["data"][0]["id"].as_str().unwrap();
    assert_eq!(app.patch(&format!("/api/v1/perspectives/{shared_id}"), &agent, json!({"name": "x"})).await.status, 403);
    assert_eq!(app.patch(&format!("/api/v1/perspectives/{shared_id}"), &org.token, json!({"name": "Open"})).await.status, 200);
    assert_eq!(app.delete(&format!("/api/v1/perspectives/{pid}"), &agent).await.status, 204);
    assert_eq!(app.delete("/api/v1/perspectives/counts", &agent).await.status, 405);
    let paged = app.get("/api/v1/perspectives?limit=2", &agent).await;
    assert_eq!(paged.body["data"].as_array().unwrap().len(), 2);
    let cursor = paged.body["next_cursor"].as_str().unwrap();
    let rest = app.get(&format!("/api/v1/perspectives?limit=2&cursor={cursor}"), &agent).await;
    assert_eq!(rest.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(rest.body["next_cursor"], json!(null));
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn mentions(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let org = app.org("Acme Inc").await;
    let (_, bob_email, bob) = app.user(&org, "Bob", Role::Agent, &[Ability::All]).await;
    let t = app.ticket(&org.token, "T").await;
    let tid = t["id"].as_str().unwrap();
    for i in 0..3 {
        let m = app
            .post(&format!("/api/v1/tickets/{tid}/messages"), &org.token, json!({"body": format!("hi @{bob_email} {i}"), "visibility": "internal"}))
            .await;
        assert_eq!(m.status, 201, "{}", m.body);
    }
    let list = app.get("/api/v1/mentions?limit=2", &bob).await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(list.body["data"].as_array().unwrap().len(), 2);
    let cursor = list.body["next_cursor"].as_str().unwrap();
    let rest = app.get(&format!("/api/v1/mentions?limit=2&cursor={cursor}"), &bob).await;
    assert_eq!(rest.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(rest.body["next_cursor"], json!(null));
    let oldest = rest.body["data"][0]["id"].as_str().unwrap().to_owned();
    let ack = app.post(&format!("/api/v1/mentions/{oldest}/ack"), &bob, json!({})).await;
    assert_eq!(ack.status, 200, "{}", ack.body);
    assert!(ack.body["acknowledged_at"].is_string());
    let again = app.post(&format!("/api/v1/mentions/{oldest}/ack"), &bob, json!({})).await;
    assert_eq!(again.body["acknowledged_at"], ack.body["acknowledged_at"]);
    let theirs = app.post(&format!("/api/v1/mentions/{oldest}/ack"), &org.token, json!({})).await;
    assert_eq!((theirs.status, theirs.code()), (404, "MENTION_NOT_FOUND"));
    let list = app.get("/api/v1/mentions", &bob).await;
    assert_eq!(list.body["data"][2]["id"], json!(oldest));
    assert_eq!(app.get("/api/v1/mentions", &org.token).await.body["data"], json!([]));
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn openapi_lists_them(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let org = app.org("Acme Inc").await;
    let doc = app.get("/api/v1/openapi.json", &org.token).await;
    assert_eq!(doc.status, 200);
    for path in ["/queues", "/queues/{id}", "/tickets/{id}/time-entries", "/time-entries/{id}", "/me", "/users", "/users/{id}",
                 "/tokens", "/tokens/{id}", "/perspectives", "/perspectives/counts", "/perspectives/{id}", "/mentions", "/mentions/{id}/ack"] {
        assert!(doc.body["paths"].get(format!("/api/v1{path}")).is_some(), "{path} missing: {:?}", doc.body["paths"].as_object().unwrap().keys().collect::<Vec<_>>());
    }
    let me = &doc.body["components"]["schemas"]["MeOut"];
    assert!(me.to_string().contains("abilities"), "{me}");
    println!("{}", serde_json::to_string(me).unwrap());
}
