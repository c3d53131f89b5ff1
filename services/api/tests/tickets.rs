//! Tickets over HTTP: create, read, filters, full text, pagination,
//! optimistic concurrency, audit, and organization isolation.
#![allow(clippy::unwrap_used)]

use serde_json::json;
use sqlx::PgPool;
use tickiti_testkit::TestApp;

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn create_read_update_delete_a_ticket(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let org = app.org("Acme Inc").await;

    let created = app
        .post(
            "/api/v1/tickets",
            &org.token,
            json!({
                "subject": "Printer on fire",
                "contact": { "email": "Ann@Example.com", "name": "Ann" },
                "message": "It is really on fire.",
                "priority": "urgent",
                "tags": ["Hardware", "hardware", " fire "]
            }),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let ticket = created.body;
    assert_eq!(ticket["number"], 1);
    assert_eq!(ticket["code"], "ACME-1");
    assert_eq!(ticket["status"], "new");
    assert_eq!(ticket["priority"], "urgent");
    assert_eq!(ticket["tags"], json!(["hardware", "fire"]));
    assert_eq!(ticket["contact"]["email"], "Ann@Example.com");
    assert_eq!(created.headers["etag"], "\"1\"");
    assert!(created.headers.contains_key("x-request-id"));

    // The same contact (case-insensitive) is found, not created again.
    let second = app
        .post(
            "/api/v1/tickets",
            &org.token,
            json!({ "subject": "Again", "contact": { "email": "ann@example.com" } }),
        )
        .await;
    assert_eq!(second.status, 201);
    assert_eq!(second.body["contact_id"], ticket["contact_id"]);
    assert_eq!(second.body["number"], 2);

    let id = ticket["id"].as_str().unwrap();
    let read = app.get(&format!("/api/v1/tickets/{id}"), &org.token).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.body, ticket);

    let messages = app
        .get(&format!("/api/v1/tickets/{id}/messages"), &org.token)
        .await;
    assert_eq!(messages.body["data"][0]["body"], "It is really on fire.");
    assert_eq!(
        messages.body["data"][0]["author_contact_id"],
        ticket["contact_id"]
    );

    let patched = app
        .patch(
            &format!("/api/v1/tickets/{id}"),
            &org.token,
            json!({ "status": "open", "assignee_id": org.admin_id }),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.body["status"], "open");
    assert_eq!(patched.body["version"], 2);

    let audit = app
        .get(&format!("/api/v1/tickets/{id}/audit"), &org.token)
        .await;
    let actions: Vec<_> = audit.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].clone())
        .collect();
    assert_eq!(
        actions,
        vec![json!("ticket.created"), json!("ticket.updated")]
    );
    assert_eq!(
        audit.body["data"][1]["changes"]["status"],
        json!({ "from": "new", "to": "open" })
    );
    assert_eq!(audit.body["data"][1]["actor_user_id"], json!(org.admin_id));

    let deleted = app
        .delete(&format!("/api/v1/tickets/{id}"), &org.token)
        .await;
    assert_eq!(deleted.status, 204);
    let gone = app.get(&format!("/api/v1/tickets/{id}"), &org.token).await;
    assert_eq!(gone.status, 404);
    assert_eq!(gone.code(), "TICKET_NOT_FOUND");
    assert_eq!(
        gone.header("content-type"),
        Some("application/problem+json")
    );
    assert!(gone.body["request_id"].is_string());
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn stale_if_match_answers_412_with_the_current_ticket(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let org = app.org("Acme").await;
    let ticket = app.ticket(&org.token, "Two agents").await;
    let path = format!("/api/v1/tickets/{}", ticket["id"].as_str().unwrap());

    // A colleague replies first: the ticket's version moves on.
    let reply = app
        .client
        .post(app.url(&format!("{path}/messages")))
        .bearer_auth(&org.token)
        .header("if-match", "\"1\"")
        .json(&json!({ "body": "On it" }))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 201);
    assert_eq!(reply.headers()["etag"], "\"2\"");

    // A reply written against version 1 is refused, with the ticket as it is now.
    let stale = app
        .client
        .post(app.url(&format!("{path}/messages")))
        .bearer_auth(&org.token)
        .header("if-match", "\"1\"")
        .json(&json!({ "body": "Me too" }))
        .send()
        .await
        .unwrap();
    let stale = tickiti_testkit::Reply::read(stale).await;
    assert_eq!(stale.status, 412);
    assert_eq!(stale.code(), "TICKET_CHANGED");
    assert_eq!(stale.body["ticket"]["version"], 2);

    let stale_patch = app
        .client
        .patch(app.url(&path))
        .bearer_auth(&org.token)
        .header("if-match", "W/\"1\"")
        .json(&json!({ "priority": "low" }))
        .send()
        .await
        .unwrap();
    assert_eq!(stale_patch.status(), 412);
    let fresh_patch = app
        .client
        .patch(app.url(&path))
        .bearer_auth(&org.token)
        .header("if-match", "\"2\"")
        .json(&json!({ "priority": "low" }))
        .send()
        .await
        .unwrap();
    assert_eq!(fresh_patch.status(), 200);
    let messages = app.get(&format!("{path}/messages"), &org.token).await;
    assert_eq!(
        messages.body["data"].as_array().unwrap().len(),
        1,
        "the stale reply was not stored"
    );
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn filters_full_text_and_pagination(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let org = app.org("Acme").await;
    for i in 0..7 {
        let t = app.ticket(&org.token, &format!("Ticket number {i}")).await;
        if i % 2 == 0 {
            app.patch(
                &format!("/api/v1/tickets/{}", t["id"].as_str().unwrap()),
                &org.token,
                json!({ "status": "pending", "tags": ["vip"] }),
            )
            .await;
        }
        if i == 3 {
            app.post(
                &format!("/api/v1/tickets/{}/messages", t["id"].as_str().unwrap()),
                &org.token,
                json!({ "body": "The flux capacitor is broken", "visibility": "internal" }),
            )
            .await;
        }
    }
    let pending = app.get("/api/v1/tickets?status=pending", &org.token).await;
    assert_eq!(pending.body["data"].as_array().unwrap().len(), 4);
    let several = app
        .get("/api/v1/tickets?status=pending,new&tag=VIP", &org.token)
        .await;
    assert_eq!(several.body["data"].as_array().unwrap().len(), 4);
    let text = app.get("/api/v1/tickets?q=capacitor", &org.token).await;
    assert_eq!(text.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(text.body["data"][0]["subject"], "Ticket number 3");
    let subject = app
        .get("/api/v1/tickets?q=%22number%205%22", &org.token)
        .await;
    assert_eq!(subject.body["data"][0]["subject"], "Ticket number 5");
    let unassigned = app
        .get("/api/v1/tickets?assignee_id=none", &org.token)
        .await;
    assert_eq!(unassigned.body["data"].as_array().unwrap().len(), 7);
    let mine = app.get("/api/v1/tickets?assignee_id=me", &org.token).await;
    assert_eq!(mine.body["data"].as_array().unwrap().len(), 0);

    // Pages of 3, newest first, every ticket exactly once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/tickets?limit=3&cursor={c}"),
            None => "/api/v1/tickets?limit=3".to_owned(),
        };
        let page = app.get(&path, &org.token).await;
        assert_eq!(page.status, 200, "{}", page.body);
        for t in page.body["data"].as_array().unwrap() {
            seen.push(t["number"].as_i64().unwrap());
        }
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, vec![7, 6, 5, 4, 3, 2, 1]);

    let bad = app
        .get("/api/v1/tickets?status=shut&limit=0&colour=red", &org.token)
        .await;
    assert_eq!(bad.status, 422);
    assert_eq!(bad.code(), "VALIDATION_FAILED");
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn another_organizations_rows_answer_404_like_missing_ones(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let acme = app.org("Acme").await;
    let globex = app.org("Globex").await;
    let ticket = app.ticket(&acme.token, "Secret").await;
    let id = ticket["id"].as_str().unwrap();
    let missing = uuid::Uuid::now_v7();

    for path in [
        format!("/api/v1/tickets/{id}"),
        format!("/api/v1/tickets/{missing}"),
    ] {
        let reply = app.get(&path, &globex.token).await;
        assert_eq!(reply.status, 404);
        assert_eq!(reply.code(), "TICKET_NOT_FOUND");
        assert_eq!(reply.body["detail"], "ticket not found");
    }
    let patch = app
        .patch(
            &format!("/api/v1/tickets/{id}"),
            &globex.token,
            json!({ "subject": "Mine now" }),
        )
        .await;
    assert_eq!(patch.status, 404);
    let reply = app
        .post(
            &format!("/api/v1/tickets/{id}/messages"),
            &globex.token,
            json!({ "body": "hi" }),
        )
        .await;
    assert_eq!(reply.status, 404);
    let delete = app
        .delete(&format!("/api/v1/tickets/{id}"), &globex.token)
        .await;
    assert_eq!(delete.status, 404);
    let contact = app
        .get(
            &format!(
                "/api/v1/contacts/{}",
                ticket["contact_id"].as_str().unwrap()
            ),
            &globex.token,
        )
        .await;
    assert_eq!(contact.status, 404);
    assert_eq!(
        app.get("/api/v1/tickets", &globex.token).await.body["data"],
        json!([])
    );

    // Acme's ticket is untouched; Globex numbers its own tickets from 1.
    let read = app.get(&format!("/api/v1/tickets/{id}"), &acme.token).await;
    assert_eq!(read.body["subject"], "Secret");
    assert_eq!(read.body["version"], 1);
    assert_eq!(app.ticket(&globex.token, "Ours").await["code"], "GLOBEX-1");
}

/// Creates are not wrapped in a transaction: a new contact's address taken by
/// a concurrent create is found on a second try, so racing creates for one
/// new address make one contact, one `contact.created`, and every ticket.
#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn concurrent_creates_for_one_new_contact_make_one_contact(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let org = app.org("Acme").await;
    let creates = (0..12).map(|n| {
        app.post(
            "/api/v1/tickets",
            &org.token,
            json!({
                "subject": format!("Race {n}"),
                "contact": { "email": "new.person@example.com", "name": "New Person" },
                "message": "Hello",
            }),
        )
    });
    let replies = futures::future::join_all(creates).await;
    let mut contacts = std::collections::HashSet::new();
    let mut numbers = std::collections::HashSet::new();
    for reply in &replies {
        assert_eq!(reply.status, 201, "{}", reply.body);
        contacts.insert(reply.body["contact_id"].clone());
        numbers.insert(reply.body["number"].as_i64().unwrap());
    }
    assert_eq!(contacts.len(), 1, "one contact for one address");
    assert_eq!(numbers.len(), 12, "every ticket has its own number");
    let count = |sql: &'static str| {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&db)
                .await
                .unwrap()
        }
    };
    assert_eq!(count("SELECT count(*) FROM contacts").await, 1);
    assert_eq!(count("SELECT count(*) FROM tickets").await, 12);
    assert_eq!(count("SELECT count(*) FROM messages").await, 12);
    assert_eq!(
        count("SELECT count(*) FROM ticket_audit WHERE action = 'ticket.created'").await,
        12
    );
    assert_eq!(
        count("SELECT count(*) FROM outbox WHERE event_type = 'contact.created'").await,
        1
    );
    assert_eq!(
        count("SELECT count(*) FROM outbox WHERE event_type = 'ticket.created'").await,
        12
    );
    // The events were built before the write and carry what was stored.
    let announced: serde_json::Value = sqlx::query_scalar(
        "SELECT payload->'data' FROM outbox WHERE event_type = 'contact.created'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    let contact_id = announced["id"].as_str().unwrap();
    let stored = app
        .get(&format!("/api/v1/contacts/{contact_id}"), &org.token)
        .await;
    assert_eq!(stored.status, 200, "{}", stored.body);
    assert_eq!(stored.body, announced);
    let ticket = &replies[0].body;
    let read = app
        .get(
            &format!("/api/v1/tickets/{}", ticket["id"].as_str().unwrap()),
            &org.token,
        )
        .await;
    assert_eq!(&read.body, ticket);
}

/// Every page in `sort` order, following the cursors: the ticket numbers seen.
async fn walk(app: &TestApp, token: &str, sort: &str) -> Vec<i64> {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/tickets?limit=2&sort={sort}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = app.get(&path, token).await;
        assert_eq!(page.status, 200, "{}", page.body);
        for t in page.body["data"].as_array().unwrap() {
            seen.push(t["number"].as_i64().unwrap());
        }
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return seen,
        }
    }
}

/// The list is in last-activity order by default, and in each order `sort`
/// names; its cursors follow that order and are refused in another.
#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn the_list_sorts_by_last_activity_and_cursors_follow_the_order(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let org = app.org("Acme").await;
    let mut ids = Vec::new();
    for (i, priority) in ["low", "urgent", "normal", "high", "urgent"]
        .iter()
        .enumerate()
    {
        let t = app
            .post(
                "/api/v1/tickets",
                &org.token,
                json!({ "subject": format!("Sorted {i}"), "contact": {"email": "s@example.com"},
                        "priority": priority }),
            )
            .await;
        assert_eq!(t.status, 201, "{}", t.body);
        ids.push(t.body["id"].as_str().unwrap().to_owned());
    }
    // Activity on the second ticket moves it to the top; a reply on the first after it.
    let patched = app
        .patch(
            &format!("/api/v1/tickets/{}", ids[1]),
            &org.token,
            json!({ "status": "open" }),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    let replied = app
        .post(
            &format!("/api/v1/tickets/{}/messages", ids[0]),
            &org.token,
            json!({ "body": "On it", "visibility": "public" }),
        )
        .await;
    assert_eq!(replied.status, 201, "{}", replied.body);

    let default = app.get("/api/v1/tickets", &org.token).await;
    let numbers: Vec<i64> = default.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["number"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, [1, 2, 5, 4, 3], "last activity first");
    assert_eq!(walk(&app, &org.token, "-updated_at").await, [1, 2, 5, 4, 3]);
    assert_eq!(walk(&app, &org.token, "-created_at").await, [5, 4, 3, 2, 1]);
    assert_eq!(walk(&app, &org.token, "created_at").await, [1, 2, 3, 4, 5]);
    assert_eq!(walk(&app, &org.token, "-priority").await, [5, 2, 4, 3, 1]);

    // A cursor is for the order it came from.
    let page = app
        .get("/api/v1/tickets?limit=2&sort=created_at", &org.token)
        .await;
    let cursor = page.body["next_cursor"].as_str().unwrap();
    let wrong = app
        .get(
            &format!("/api/v1/tickets?limit=2&cursor={cursor}"),
            &org.token,
        )
        .await;
    assert_eq!(wrong.status, 422, "{}", wrong.body);
    let bad = app.get("/api/v1/tickets?sort=subject", &org.token).await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert!(bad.body.to_string().contains("sort"), "{}", bad.body);
}
