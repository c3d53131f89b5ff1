//! Notifications (CONTRACT §8) through the api against the real Postgres
//! and RabbitMQ: who is told of which change, the list, reading, the
//! preferences, and the `notification.created` events for the browsers.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgPool;
use tickiti_domain::{Ability, Role};
use tickiti_testkit::{EventTap, TestApp};

async fn kinds(app: &TestApp, token: &str) -> Vec<String> {
    let list = app.get("/api/v1/notifications", token).await;
    assert_eq!(list.status, 200, "{}", list.body);
    list.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].as_str().unwrap().to_owned())
        .collect()
}

/// The matrix: an assignment tells the assignee (once, though the change
/// also carried a message), a new ticket in a queue tells its managers, a
/// mention tells the mentioned, a message tells the assignee; nobody is
/// told of their own change.
#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn a_change_tells_the_people_it_concerns_and_never_its_maker(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let tap = EventTap::bind(&app.prefix).await;
    let org = app.org("Acme").await;
    let (bea, _, bea_token) = app.user(&org, "Bea", Role::Agent, &[Ability::All]).await;
    let (mia, _, mia_token) = app.user(&org, "Mia", Role::Agent, &[Ability::All]).await;
    let queue = app
        .post(
            "/api/v1/queues",
            &org.token,
            json!({ "name": "Billing", "manager_ids": [mia] }),
        )
        .await;
    assert_eq!(queue.status, 201, "{}", queue.body);

    let ticket = app
        .post(
            "/api/v1/tickets",
            &org.token,
            json!({ "subject": "Invoice twice", "contact": { "email": "ann@example.com" },
                    "message": "I was charged twice", "queue_id": queue.body["id"],
                    "assignee_id": bea }),
        )
        .await;
    assert_eq!(ticket.status, 201, "{}", ticket.body);
    let ticket_id = ticket.body["id"].as_str().unwrap().to_owned();
    let code = ticket.body["code"].as_str().unwrap().to_owned();

    assert_eq!(kinds(&app, &bea_token).await, ["ticket.assigned"]);
    assert_eq!(kinds(&app, &mia_token).await, ["ticket.created"]);
    assert_eq!(
        kinds(&app, &org.token).await,
        Vec::<String>::new(),
        "the maker is not told"
    );

    let list = app.get("/api/v1/notifications", &bea_token).await;
    let first = &list.body["data"][0];
    assert_eq!(first["ticket_id"], ticket_id.as_str());
    assert_eq!(
        first["title"],
        format!("Assigned to you: {code} Invoice twice")
    );
    assert!(first["read_at"].is_null() && first["created_at"].is_string());

    // Bea's own note on her ticket tells no one; the admin's note tells
    // Bea; a note mentioning Mia tells Mia of the mention (and Bea of the message).
    let messages = format!("/api/v1/tickets/{ticket_id}/messages");
    let own = app
        .post(
            &messages,
            &bea_token,
            json!({ "body": "Looking", "visibility": "internal" }),
        )
        .await;
    assert_eq!(own.status, 201, "{}", own.body);
    assert_eq!(kinds(&app, &bea_token).await.len(), 1);
    let mia_email = sqlx::query_scalar::<_, String>("SELECT email FROM users WHERE id = $1")
        .bind(mia)
        .fetch_one(&db)
        .await
        .unwrap();
    app.post(
        &messages,
        &org.token,
        json!({ "body": format!("@{mia_email} please check the refund"), "visibility": "internal" }),
    )
    .await;
    assert_eq!(
        kinds(&app, &bea_token).await,
        ["message.created", "ticket.assigned"]
    );
    assert_eq!(
        kinds(&app, &mia_token).await,
        ["mention.created", "ticket.created"]
    );

    // Each in-app notification goes out as a frame for its person only.
    let events = tap
        .wait_until(Duration::from_secs(10), |events| {
            events
                .iter()
                .filter(|e| e["event"] == "notification.created")
                .count()
                >= 4
        })
        .await;
    let frames: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "notification.created")
        .collect();
    assert_eq!(frames.len(), 4, "{frames:?}");
    let to = |user: uuid::Uuid| {
        frames
            .iter()
            .filter(|f| f["data"]["user_id"] == user.to_string())
            .count()
    };
    assert_eq!((to(bea), to(mia)), (2, 2));
    tap.cleanup().await;
}

/// Reading one, reading all, the unread filter and count; another's
/// notification is not found; the frames of reading go to the person.
#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn notifications_are_read_one_by_one_or_all_at_once(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let org = app.org("Acme").await;
    let (bea, _, bea_token) = app.user(&org, "Bea", Role::Agent, &[Ability::All]).await;
    let (_, _, other_token) = app.user(&org, "Ola", Role::Agent, &[Ability::All]).await;
    for subject in ["One", "Two", "Three"] {
        let t = app.ticket(&org.token, subject).await;
        let assigned = app
            .patch(
                &format!("/api/v1/tickets/{}", t["id"].as_str().unwrap()),
                &org.token,
                json!({ "assignee_id": bea }),
            )
            .await;
        assert_eq!(assigned.status, 200, "{}", assigned.body);
    }
    let count = app
        .get("/api/v1/notifications/unread-count", &bea_token)
        .await;
    assert_eq!(count.body, json!({ "unread": 3 }));
    let list = app.get("/api/v1/notifications?limit=2", &bea_token).await;
    let titles: Vec<&str> = list.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["title"].as_str().unwrap())
        .collect();
    assert!(
        titles[0].ends_with("Three") && titles[1].ends_with("Two"),
        "newest first: {titles:?}"
    );
    let next = list.body["next_cursor"].as_str().unwrap();
    let rest = app
        .get(
            &format!("/api/v1/notifications?limit=2&cursor={next}"),
            &bea_token,
        )
        .await;
    assert_eq!(rest.body["data"].as_array().unwrap().len(), 1);
    assert!(rest.body["next_cursor"].is_null());

    let newest = list.body["data"][0]["id"].as_str().unwrap();
    let foreign = app
        .post(
            &format!("/api/v1/notifications/{newest}/read"),
            &other_token,
            json!({}),
        )
        .await;
    assert_eq!(
        (foreign.status, foreign.code()),
        (404, "NOTIFICATION_NOT_FOUND")
    );
    let read = app
        .post(
            &format!("/api/v1/notifications/{newest}/read"),
            &bea_token,
            json!({}),
        )
        .await;
    assert_eq!(read.status, 200, "{}", read.body);
    let read_at = read.body["read_at"].clone();
    assert!(read_at.is_string());
    let again = app
        .post(
            &format!("/api/v1/notifications/{newest}/read"),
            &bea_token,
            json!({}),
        )
        .await;
    assert_eq!(
        again.body["read_at"], read_at,
        "reading again keeps the first time"
    );

    let unread = app
        .get("/api/v1/notifications?unread=true", &bea_token)
        .await;
    assert_eq!(unread.body["data"].as_array().unwrap().len(), 2);
    let bad = app
        .get("/api/v1/notifications?unread=maybe", &bea_token)
        .await;
    assert_eq!(bad.status, 422, "{}", bad.body);

    let all = app
        .post("/api/v1/notifications/read-all", &bea_token, json!({}))
        .await;
    assert_eq!(all.body, json!({ "read": 2 }));
    let count = app
        .get("/api/v1/notifications/unread-count", &bea_token)
        .await;
    assert_eq!(count.body, json!({ "unread": 0 }));
    let reads: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE event_type = 'notification.read'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(reads, 2, "one event per call that read something");
}

/// Preferences: all on by default; a kind turned off in the app is not
/// listed; the quiet flag and an e-mail preference keep e-mail from being
/// queued; an unknown kind or channel is refused and changes nothing.
#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn preferences_choose_the_channels_per_kind(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let org = app.org("Acme").await;
    let (bea, _, bea_token) = app.user(&org, "Bea", Role::Agent, &[Ability::All]).await;
    let prefs = app
        .get("/api/v1/me/notification-preferences", &bea_token)
        .await;
    assert_eq!(prefs.status, 200, "{}", prefs.body);
    assert_eq!(prefs.body.as_object().unwrap().len(), 7);
    assert_eq!(
        prefs.body["ticket.assigned"],
        json!({ "in_app": true, "email": true })
    );

    for bad in [
        json!({ "ticket.exploded": { "in_app": false } }),
        json!({ "ticket.assigned": { "sms": true } }),
        json!({ "ticket.assigned": { "in_app": "no" } }),
    ] {
        let refused = app
            .patch(
                "/api/v1/me/notification-preferences",
                &bea_token,
                bad.clone(),
            )
            .await;
        assert_eq!(refused.status, 422, "{bad}: {}", refused.body);
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM notification_preferences")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(stored, 0);

    let changed = app
        .patch(
            "/api/v1/me/notification-preferences",
            &bea_token,
            json!({ "ticket.assigned": { "in_app": false }, "message.created": { "email": false } }),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    assert_eq!(
        changed.body["ticket.assigned"],
        json!({ "in_app": false, "email": true })
    );
    assert_eq!(
        changed.body["message.created"],
        json!({ "in_app": true, "email": false })
    );

    let t = app.ticket(&org.token, "Quiet please").await;
    let id = t["id"].as_str().unwrap();
    app.patch(
        &format!("/api/v1/tickets/{id}"),
        &org.token,
        json!({ "assignee_id": bea }),
    )
    .await;
    assert_eq!(
        kinds(&app, &bea_token).await,
        Vec::<String>::new(),
        "not listed in the app"
    );
    app.post(
        &format!("/api/v1/tickets/{id}/messages"),
        &org.token,
        json!({ "body": "FYI", "visibility": "internal" }),
    )
    .await;
    assert_eq!(kinds(&app, &bea_token).await, ["message.created"]);

    // The quiet flag: in the app only.
    app.patch(
        &format!("/api/v1/users/{bea}"),
        &bea_token,
        json!({ "realtime_notifications": true }),
    )
    .await;
    app.patch(
        "/api/v1/me/notification-preferences",
        &bea_token,
        json!({ "message.created": { "email": true } }),
    )
    .await;
    app.post(
        &format!("/api/v1/tickets/{id}/messages"),
        &org.token,
        json!({ "body": "And this", "visibility": "internal" }),
    )
    .await;
    let rows: Vec<(String, bool, String)> = sqlx::query_as(
        "SELECT kind, in_app, email_status FROM notifications WHERE user_id = $1 ORDER BY id",
    )
    .bind(bea)
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(
        rows,
        [
            ("ticket.assigned".to_owned(), false, "pending".to_owned()),
            ("message.created".to_owned(), true, "none".to_owned()),
            ("message.created".to_owned(), true, "none".to_owned()),
        ]
    );
}
