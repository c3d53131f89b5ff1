//! Perspectives and their counts, mentions, time entries, queues, users and tokens.
#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use sqlx::PgPool;
use tickiti_domain::{Ability, Role};
use tickiti_testkit::TestApp;

fn count_of(counts: &Value, perspectives: &Value, name: &str) -> i64 {
    let id = perspectives["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no perspective {name}"))["id"]
        .clone();
    counts["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["perspective_id"] == id)
        .unwrap()["count"]
        .as_i64()
        .unwrap()
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn default_perspectives_count_per_user(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let org = app.org("Acme").await;
    let (agent_id, _, agent) = app.user(&org, "Bob", Role::Agent, &[Ability::All]).await;
    let perspectives = app.get("/api/v1/perspectives", &org.token).await;
    let names: Vec<_> = perspectives.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].clone())
        .collect();
    assert_eq!(
        names,
        vec![
            json!("All open"),
            json!("Mine"),
            json!("Unassigned"),
            json!("Escalated")
        ]
    );

    let a = app.ticket(&org.token, "one").await;
    let b = app.ticket(&org.token, "two").await;
    app.ticket(&org.token, "three").await;
    app.patch(
        &format!("/api/v1/tickets/{}", a["id"].as_str().unwrap()),
        &org.token,
        json!({ "assignee_id": agent_id }),
    )
    .await;
    app.patch(
        &format!("/api/v1/tickets/{}", b["id"].as_str().unwrap()),
        &org.token,
        json!({ "status": "solved" }),
    )
    .await;

    let admin_counts = app.get("/api/v1/perspectives/counts", &org.token).await;
    assert_eq!(admin_counts.status, 200, "{}", admin_counts.body);
    assert_eq!(
        count_of(&admin_counts.body, &perspectives.body, "All open"),
        2
    );
    assert_eq!(count_of(&admin_counts.body, &perspectives.body, "Mine"), 0);
    assert_eq!(
        count_of(&admin_counts.body, &perspectives.body, "Unassigned"),
        1
    );
    let agent_counts = app.get("/api/v1/perspectives/counts", &agent).await;
    assert_eq!(
        count_of(&agent_counts.body, &perspectives.body, "Mine"),
        1,
        "Mine is per user"
    );

    // A private perspective with a filter; a bad filter is refused.
    let urgent = app
        .post(
            "/api/v1/perspectives",
            &agent,
            json!({ "name": "Urgent", "filters": { "priority": "urgent,high" } }),
        )
        .await;
    assert_eq!(urgent.status, 201, "{}", urgent.body);
    let bad = app
        .post(
            "/api/v1/perspectives",
            &agent,
            json!({ "name": "Bad", "filters": { "status": "shut" } }),
        )
        .await;
    assert_eq!(bad.status, 422);
    let unknown = app
        .post(
            "/api/v1/perspectives",
            &agent,
            json!({ "name": "Bad", "filters": { "colour": "red" } }),
        )
        .await;
    assert_eq!(unknown.status, 422);
    let shared_by_agent = app
        .post(
            "/api/v1/perspectives",
            &agent,
            json!({ "name": "Team", "shared": true }),
        )
        .await;
    assert_eq!(shared_by_agent.status, 403);
    let admin_list = app.get("/api/v1/perspectives", &org.token).await;
    assert_eq!(
        admin_list.body["data"].as_array().unwrap().len(),
        4,
        "the four shared ones: another user's private perspective is hidden"
    );
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn mentions_reach_the_named_colleague_and_can_be_acknowledged(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let org = app.org("Acme").await;
    let (ann_id, ann_email, ann) = app
        .user(&org, "Ann Lee", Role::Agent, &[Ability::All])
        .await;
    let (_, _, bob) = app
        .user(&org, "Bob Ray", Role::Agent, &[Ability::All])
        .await;
    let ticket = app.ticket(&org.token, "Help").await;
    let messages = format!(
        "/api/v1/tickets/{}/messages",
        ticket["id"].as_str().unwrap()
    );
    app.post(
        &messages,
        &org.token,
        json!({ "body": "@AnnLee please look", "visibility": "internal" }),
    )
    .await;
    app.post(
        &messages,
        &bob,
        json!({ "body": format!("cc @{ann_email}, and me @bobray") }),
    )
    .await;

    let mine = app.get("/api/v1/mentions", &ann).await;
    let list = mine.body["data"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert!(
        list.iter()
            .all(|m| m["user_id"] == json!(ann_id) && m["acknowledged_at"].is_null())
    );
    assert_eq!(
        app.get("/api/v1/mentions", &bob).await.body["data"],
        json!([]),
        "no self-mention"
    );

    let first = list[1]["id"].as_str().unwrap();
    let ack = app
        .post(&format!("/api/v1/mentions/{first}/ack"), &ann, json!({}))
        .await;
    assert_eq!(ack.status, 200, "{}", ack.body);
    assert!(ack.body["acknowledged_at"].is_string());
    let again = app
        .post(&format!("/api/v1/mentions/{first}/ack"), &ann, json!({}))
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["acknowledged_at"], ack.body["acknowledged_at"]);
    let theirs = app
        .post(&format!("/api/v1/mentions/{first}/ack"), &bob, json!({}))
        .await;
    assert_eq!((theirs.status, theirs.code()), (404, "MENTION_NOT_FOUND"));
    let order = app.get("/api/v1/mentions", &ann).await;
    assert!(
        order.body["data"][0]["acknowledged_at"].is_null(),
        "unacknowledged first"
    );
    assert!(order.body["data"][1]["acknowledged_at"].is_string());
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn time_entries_queues_users_and_tokens(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let org = app.org("Acme").await;
    let (agent_id, _, agent) = app.user(&org, "Bob", Role::Agent, &[Ability::All]).await;
    let ticket = app.ticket(&org.token, "Billable").await;
    let entries = format!(
        "/api/v1/tickets/{}/time-entries",
        ticket["id"].as_str().unwrap()
    );

    let entry = app
        .post(
            &entries,
            &agent,
            json!({ "minutes": 25, "note": "Called the customer" }),
        )
        .await;
    assert_eq!(entry.status, 201, "{}", entry.body);
    assert_eq!(entry.body["user_id"], json!(agent_id));
    assert_eq!(
        app.post(&entries, &agent, json!({ "minutes": 0 }))
            .await
            .status,
        422
    );
    let id = entry.body["id"].as_str().unwrap();
    let changed = app
        .patch(
            &format!("/api/v1/time-entries/{id}"),
            &agent,
            json!({ "minutes": 30, "note": null }),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    assert_eq!(changed.body["minutes"], 30);
    assert!(changed.body["note"].is_null());
    assert_eq!(
        app.get(&entries, &agent).await.body["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        app.delete(&format!("/api/v1/time-entries/{id}"), &agent)
            .await
            .status,
        204
    );
    assert_eq!(
        app.delete(&format!("/api/v1/time-entries/{id}"), &agent)
            .await
            .status,
        404
    );

    let queue = app
        .post("/api/v1/queues", &org.token, json!({ "name": "Billing" }))
        .await;
    assert_eq!(queue.status, 201);
    let twice = app
        .post("/api/v1/queues", &org.token, json!({ "name": "billing" }))
        .await;
    assert_eq!((twice.status, twice.code()), (409, "QUEUE_NAME_TAKEN"));
    let queue_id = queue.body["id"].as_str().unwrap();
    app.patch(
        &format!("/api/v1/tickets/{}", ticket["id"].as_str().unwrap()),
        &org.token,
        json!({ "queue_id": queue_id }),
    )
    .await;
    let in_use = app
        .delete(&format!("/api/v1/queues/{queue_id}"), &org.token)
        .await;
    assert_eq!((in_use.status, in_use.code()), (409, "QUEUE_IN_USE"));
    let filtered = app
        .get(&format!("/api/v1/tickets?queue_id={queue_id}"), &agent)
        .await;
    assert_eq!(filtered.body["data"].as_array().unwrap().len(), 1);

    let me = app.get("/api/v1/me", &agent).await;
    assert_eq!(me.body["role"], "agent");
    let quiet = app
        .patch(
            &format!("/api/v1/users/{agent_id}"),
            &agent,
            json!({ "realtime_notifications": true }),
        )
        .await;
    assert_eq!(quiet.status, 200, "{}", quiet.body);
    assert_eq!(quiet.body["realtime_notifications"], true);
    let promote = app
        .patch(
            &format!("/api/v1/users/{agent_id}"),
            &agent,
            json!({ "role": "admin" }),
        )
        .await;
    assert_eq!(promote.status, 403);
    let last_admin = app
        .patch(
            &format!("/api/v1/users/{}", org.admin_id),
            &org.token,
            json!({ "role": "agent" }),
        )
        .await;
    assert_eq!((last_admin.status, last_admin.code()), (409, "LAST_ADMIN"));
    assert_eq!(
        app.get("/api/v1/users", &agent).await.body["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let token = app
        .post(
            "/api/v1/tokens",
            &agent,
            json!({ "name": "script", "abilities": ["tickets:read"] }),
        )
        .await;
    assert_eq!(token.status, 201, "{}", token.body);
    let secret = token.body["token"].as_str().unwrap();
    assert_eq!(app.get("/api/v1/tickets", secret).await.status, 200);
    let listed = app.get("/api/v1/tokens", &agent).await;
    assert!(
        listed.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t.get("token").is_none()),
        "secrets are shown once"
    );
    let beyond = app
        .post(
            "/api/v1/tokens",
            &agent,
            json!({ "name": "x", "abilities": ["admin"] }),
        )
        .await;
    assert_eq!(beyond.status, 422);
    let token_id = token.body["id"].as_str().unwrap();
    assert_eq!(
        app.delete(&format!("/api/v1/tokens/{token_id}"), &agent)
            .await
            .status,
        204
    );
    assert_eq!(app.get("/api/v1/tickets", secret).await.status, 401);
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn two_admins_demoting_each_other_at_once_leave_one_admin(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let org = app.org("Acme").await;
    let (second_id, _, second) = app.user(&org, "Second", Role::Admin, &[Ability::All]).await;
    let first_path = format!("/api/v1/users/{}", org.admin_id);
    let second_path = format!("/api/v1/users/{second_id}");
    for _ in 0..5 {
        let demote_first = app.patch(&first_path, &second, json!({ "role": "agent" }));
        let demote_second = app.patch(&second_path, &org.token, json!({ "role": "agent" }));
        let (a, b) = tokio::join!(demote_first, demote_second);
        let statuses = [a.status, b.status];
        // The loser is refused as LAST_ADMIN (409), or as no longer an admin (403).
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            1,
            "exactly one demotion succeeds: {statuses:?}"
        );
        assert!(
            statuses.iter().all(|s| [200, 403, 409].contains(s)),
            "{statuses:?}"
        );
        let admins = app.get("/api/v1/users", &org.token).await;
        let count = admins.body["data"].as_array().map_or(0, |users| {
            users.iter().filter(|u| u["role"] == "admin").count()
        });
        assert_eq!(count, 1, "exactly one admin remains");
        // Restore both admins for the next round (whichever one is left promotes the other).
        for (id, token) in [(second_id, &org.token), (org.admin_id, &second)] {
            app.patch(
                &format!("/api/v1/users/{id}"),
                token,
                json!({ "role": "admin" }),
            )
            .await;
        }
    }
}

/// Every filter a perspective can hold counts the same tickets the ticket
/// list shows for that filter (the counts are one statement for all
/// perspectives; the list is another).
#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn perspective_counts_match_the_ticket_list_for_every_filter(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let org = app.org("Acme").await;
    let (agent_id, _, agent) = app.user(&org, "Bob", Role::Agent, &[Ability::All]).await;
    let queue = app
        .post("/api/v1/queues", &org.token, json!({ "name": "Billing" }))
        .await;
    assert_eq!(queue.status, 201, "{}", queue.body);
    let queue_id = queue.body["id"].as_str().unwrap().to_owned();
    let before = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let mut contact_id = String::new();
    for n in 0..6 {
        let email = if n % 3 == 0 {
            "ann@example.com"
        } else {
            "bo@example.com"
        };
        let body = json!({
            "subject": format!("Invoice question {n}"),
            "contact": { "email": email },
            "message": if n == 4 { "The flux capacitor is broken" } else { "Hello" },
            "priority": if n % 2 == 0 { "high" } else { "low" },
            "tags": if n < 2 { json!(["vip"]) } else { json!([]) },
            "queue_id": if n == 5 { json!(queue_id) } else { json!(null) },
            "assignee_id": if n == 1 || n == 2 { json!(agent_id) } else { json!(null) },
        });
        let created = app.post("/api/v1/tickets", &org.token, body).await;
        assert_eq!(created.status, 201, "{}", created.body);
        if n == 0 {
            contact_id = created.body["contact_id"].as_str().unwrap().to_owned();
        }
    }
    let future = "2999-01-01T00:00:00Z";
    let filters = [
        json!({ "status": "new,open" }),
        json!({ "priority": "high" }),
        json!({ "queue_id": queue_id }),
        json!({ "assignee_id": agent_id }),
        json!({ "assignee_id": "none" }),
        json!({ "assignee_id": "me", "priority": "low" }),
        json!({ "contact_id": contact_id }),
        json!({ "tag": "vip" }),
        json!({ "q": "capacitor" }),
        json!({ "q": "invoice" }),
        json!({ "updated_since": before }),
        json!({ "updated_since": future }),
        json!({ "tag": "vip", "priority": "low", "assignee_id": "me" }),
    ];
    let mut ids = Vec::new();
    for (n, filters) in filters.iter().enumerate() {
        let made = app
            .post(
                "/api/v1/perspectives",
                &agent,
                json!({ "name": format!("Filter {n}"), "filters": filters }),
            )
            .await;
        assert_eq!(made.status, 201, "{}", made.body);
        ids.push(made.body["id"].clone());
    }
    let counts = app.get("/api/v1/perspectives/counts", &agent).await;
    assert_eq!(counts.status, 200, "{}", counts.body);
    let mut nonzero = 0;
    for (filters, id) in filters.iter().zip(&ids) {
        let query: Vec<String> = filters
            .as_object()
            .unwrap()
            .iter()
            .map(|(name, value)| {
                let value = value.as_str().unwrap();
                format!("{name}={}", value.replace(':', "%3A").replace('+', "%2B"))
            })
            .collect();
        let listed = app
            .get(
                &format!("/api/v1/tickets?limit=100&{}", query.join("&")),
                &agent,
            )
            .await;
        assert_eq!(listed.status, 200, "{}", listed.body);
        let expected = listed.body["data"].as_array().unwrap().len() as i64;
        let count = counts.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| &c["perspective_id"] == id)
            .unwrap()["count"]
            .as_i64()
            .unwrap();
        assert_eq!(count, expected, "count of {filters}");
        if count > 0 {
            nonzero += 1;
        }
    }
    // The filters do filter: most match some tickets, and not all the same.
    assert!(nonzero >= 10, "{nonzero} filters matched anything");
}

/// Perspectives are recounted on every change, so their number is bounded:
/// 50 shared per organization, 30 private per user (409 `LIMIT_REACHED`
/// beyond, nothing stored); racing creates never overshoot.
#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn perspectives_are_limited_per_organization_and_per_user(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let org = app.org("Acme").await;
    let (_, _, agent) = app.user(&org, "Bob", Role::Agent, &[Ability::All]).await;
    let shared = |i: usize| json!({ "name": format!("Shared {i}"), "shared": true });
    let private = |i: usize| json!({ "name": format!("Mine {i}") });
    let count = |sql: &'static str| {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&db)
                .await
                .unwrap()
        }
    };
    // The organization starts with its default shared ones.
    let defaults = count("SELECT count(*) FROM perspectives WHERE user_id IS NULL").await;
    for i in 0..(50 - defaults as usize - 4) {
        assert_eq!(
            app.post("/api/v1/perspectives", &org.token, shared(i))
                .await
                .status,
            201
        );
    }
    let racing = (100..110).map(|i| app.post("/api/v1/perspectives", &org.token, shared(i)));
    let statuses: Vec<u16> = futures::future::join_all(racing)
        .await
        .into_iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        4,
        "{statuses:?}"
    );
    let refused = app
        .post("/api/v1/perspectives", &org.token, shared(999))
        .await;
    assert_eq!(
        (refused.status, refused.code()),
        (409, "LIMIT_REACHED"),
        "{}",
        refused.body
    );
    assert_eq!(
        count("SELECT count(*) FROM perspectives WHERE user_id IS NULL").await,
        50
    );

    for i in 0..30 {
        assert_eq!(
            app.post("/api/v1/perspectives", &agent, private(i))
                .await
                .status,
            201
        );
    }
    let refused = app.post("/api/v1/perspectives", &agent, private(30)).await;
    assert_eq!(
        (refused.status, refused.code()),
        (409, "LIMIT_REACHED"),
        "{}",
        refused.body
    );
    assert_eq!(
        count("SELECT count(*) FROM perspectives WHERE user_id IS NOT NULL").await,
        30
    );
    // Another user's private perspectives are theirs to count.
    assert_eq!(
        app.post("/api/v1/perspectives", &org.token, private(0))
            .await
            .status,
        201
    );
}
