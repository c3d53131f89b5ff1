//! Service levels (CONTRACT §7): business calendars, managed by admins.
#![allow(clippy::unwrap_used)]

use serde_json::json;
use sqlx::PgPool;
use tickiti_domain::{Ability, Role};
use tickiti_testkit::TestApp;

fn office() -> serde_json::Value {
    json!({
        "name": "Helsinki office",
        "time_zone": "Europe/Helsinki",
        "hours": [
            { "weekday": "mon", "start": "09:00", "end": "12:00" },
            { "weekday": "mon", "start": "13:00", "end": "17:00" },
            { "weekday": "sat", "start": "20:00", "end": "24:00" }
        ],
        "holidays": [{ "date": "2026-12-24", "name": "Christmas Eve" }]
    })
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn admins_manage_business_calendars(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let org = app.org("Acme").await;
    let created = app
        .post("/api/v1/business-calendars", &org.token, office())
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["time_zone"], "Europe/Helsinki");
    assert_eq!(created.body["hours"].as_array().unwrap().len(), 3);
    assert_eq!(created.body["hours"][2]["end"], "24:00");
    assert_eq!(created.body["holidays"][0]["name"], "Christmas Eve");
    let path = format!(
        "/api/v1/business-calendars/{}",
        created.body["id"].as_str().unwrap()
    );

    assert_eq!(app.get(&path, &org.token).await.body, created.body);
    let listed = app.get("/api/v1/business-calendars", &org.token).await;
    assert_eq!(listed.body["data"].as_array().unwrap().len(), 1);

    let patched = app
        .patch(
            &path,
            &org.token,
            json!({ "time_zone": "America/New_York", "holidays": [] }),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.body["time_zone"], "America/New_York");
    assert_eq!(patched.body["holidays"], json!([]));
    assert_eq!(
        patched.body["hours"], created.body["hours"],
        "what the patch left out stays"
    );

    let taken = app
        .post("/api/v1/business-calendars", &org.token, office())
        .await;
    assert_eq!((taken.status, taken.code()), (409, "CALENDAR_NAME_TAKEN"));
    let mut berlin = office();
    berlin["name"] = json!("Berlin office");
    let berlin = app
        .post("/api/v1/business-calendars", &org.token, berlin)
        .await;
    assert_eq!(berlin.status, 201);
    let renamed = app
        .patch(&path, &org.token, json!({ "name": "BERLIN OFFICE" }))
        .await;
    assert_eq!(
        (renamed.status, renamed.code()),
        (409, "CALENDAR_NAME_TAKEN")
    );

    // Agents cannot see or change them; another organization sees nothing.
    let (_, _, agent) = app.user(&org, "Bob", Role::Agent, &[Ability::All]).await;
    assert_eq!(
        app.get("/api/v1/business-calendars", &agent).await.status,
        403
    );
    let other = app.org("Other").await;
    assert_eq!(
        app.get(&path, &other.token).await.code(),
        "CALENDAR_NOT_FOUND"
    );

    assert_eq!(app.delete(&path, &org.token).await.status, 204);
    assert_eq!(app.get(&path, &org.token).await.status, 404);
}

/// Each bad calendar is a 422 naming the field, and nothing is stored.
#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn bad_calendars_are_refused_and_change_nothing(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let org = app.org("Acme").await;
    let with = |field: &str, value: serde_json::Value| {
        let mut body = office();
        body[field] = value;
        body
    };
    let cases = [
        ("time_zone", with("time_zone", json!("Mars/Olympus"))),
        (
            "hours",
            with(
                "hours",
                json!([{ "weekday": "tue", "start": "17:00", "end": "09:00" }]),
            ),
        ),
        (
            "hours",
            with(
                "hours",
                json!([
                    { "weekday": "tue", "start": "09:00", "end": "13:00" },
                    { "weekday": "tue", "start": "12:00", "end": "17:00" }
                ]),
            ),
        ),
        (
            "hours[0].start",
            with(
                "hours",
                json!([{ "weekday": "tue", "start": "9am", "end": "17:00" }]),
            ),
        ),
        (
            "hours[0].start",
            with(
                "hours",
                json!([{ "weekday": "tue", "start": "24:00", "end": "24:00" }]),
            ),
        ),
        (
            "holidays[0].date",
            with("holidays", json!([{ "date": "2026-02-30" }])),
        ),
        ("name", with("name", json!(" "))),
    ];
    for (field, body) in cases {
        let reply = app
            .post("/api/v1/business-calendars", &org.token, body.clone())
            .await;
        assert_eq!(
            (reply.status, reply.code()),
            (422, "VALIDATION_FAILED"),
            "{body}: {}",
            reply.body
        );
        let fields: Vec<&str> = reply.body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["field"].as_str())
            .collect();
        assert!(fields.contains(&field), "{field} in {fields:?} for {body}");
    }
    let unknown_weekday = app
        .post(
            "/api/v1/business-calendars",
            &org.token,
            with(
                "hours",
                json!([{ "weekday": "someday", "start": "09:00", "end": "17:00" }]),
            ),
        )
        .await;
    assert_eq!(unknown_weekday.status, 422, "{}", unknown_weekday.body);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM business_calendars")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(stored, 0);
}

fn policy(calendar_id: Option<&str>, queue_id: &str) -> serde_json::Value {
    json!({
        "name": "Gold",
        "position": 1,
        "queue_ids": [queue_id],
        "calendar_id": calendar_id,
        "targets": [
            { "priority": "urgent", "metric": "first_response", "within": "30m", "warn_before": "10m" },
            { "priority": "urgent", "metric": "resolution", "within": "1d" },
            { "priority": "normal", "metric": "next_response", "within": "4h" }
        ]
    })
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn admins_manage_sla_policies_and_a_calendar_in_use_stays(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let org = app.org("Acme").await;
    let calendar = app
        .post("/api/v1/business-calendars", &org.token, office())
        .await;
    let calendar_id = calendar.body["id"].as_str().unwrap().to_owned();
    let queue = app
        .post("/api/v1/queues", &org.token, json!({ "name": "Billing" }))
        .await;
    let queue_id = queue.body["id"].as_str().unwrap().to_owned();

    let created = app
        .post(
            "/api/v1/sla-policies",
            &org.token,
            policy(Some(&calendar_id), &queue_id),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(
        created.body["pause_statuses"],
        json!(["pending", "on_hold"]),
        "the default"
    );
    assert_eq!(created.body["targets"][0]["warn_before"], "10m");
    let path = format!(
        "/api/v1/sla-policies/{}",
        created.body["id"].as_str().unwrap()
    );
    assert_eq!(app.get(&path, &org.token).await.body, created.body);

    // The calendar is in use: it stays until the policy lets go of it.
    let calendar_path = format!("/api/v1/business-calendars/{calendar_id}");
    let refused = app.delete(&calendar_path, &org.token).await;
    assert_eq!((refused.status, refused.code()), (409, "CALENDAR_IN_USE"));
    let around_the_clock = app
        .patch(
            &path,
            &org.token,
            json!({ "calendar_id": null, "pause_statuses": ["on_hold"] }),
        )
        .await;
    assert_eq!(around_the_clock.status, 200, "{}", around_the_clock.body);
    assert_eq!(around_the_clock.body["calendar_id"], json!(null));
    assert_eq!(around_the_clock.body["targets"], created.body["targets"]);
    assert_eq!(app.delete(&calendar_path, &org.token).await.status, 204);

    let (_, _, agent) = app.user(&org, "Bob", Role::Agent, &[Ability::All]).await;
    assert_eq!(app.get("/api/v1/sla-policies", &agent).await.status, 403);
    assert_eq!(app.delete(&path, &org.token).await.status, 204);
    assert_eq!(
        app.get(&path, &org.token).await.code(),
        "SLA_POLICY_NOT_FOUND"
    );
}

/// Each bad policy is a 422 naming the field, and nothing is stored.
#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn bad_policies_are_refused_and_change_nothing(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let org = app.org("Acme").await;
    let other = app.org("Other").await;
    let foreign_queue = app
        .post("/api/v1/queues", &other.token, json!({ "name": "Theirs" }))
        .await;
    let queue = app
        .post("/api/v1/queues", &org.token, json!({ "name": "Billing" }))
        .await;
    let queue_id = queue.body["id"].as_str().unwrap().to_owned();
    let with_target = |target: serde_json::Value| {
        let mut body = policy(None, &queue_id);
        body["targets"] = json!([target]);
        body
    };
    let cases = [
        (
            "targets[0].within",
            with_target(json!({ "priority": "low", "metric": "resolution", "within": "4 hours" })),
        ),
        (
            "targets[0].within",
            with_target(json!({ "priority": "low", "metric": "resolution", "within": "0s" })),
        ),
        (
            "targets[0].warn_before",
            with_target(
                json!({ "priority": "low", "metric": "resolution", "within": "1h", "warn_before": "2h" }),
            ),
        ),
        ("targets", {
            let mut b = policy(None, &queue_id);
            b["targets"] = json!([]);
            b
        }),
        ("targets[1]", {
            let mut b = policy(None, &queue_id);
            b["targets"] = json!([
                { "priority": "low", "metric": "resolution", "within": "1h" },
                { "priority": "low", "metric": "resolution", "within": "2h" }
            ]);
            b
        }),
        (
            "queue_ids[0]",
            policy(None, foreign_queue.body["id"].as_str().unwrap()),
        ),
        (
            "calendar_id",
            policy(Some("0190a5c8-0000-7000-8000-000000000000"), &queue_id),
        ),
        ("pause_statuses[0]", {
            let mut b = policy(None, &queue_id);
            b["pause_statuses"] = json!(["solved"]);
            b
        }),
    ];
    for (field, body) in cases {
        let reply = app
            .post("/api/v1/sla-policies", &org.token, body.clone())
            .await;
        assert_eq!(
            (reply.status, reply.code()),
            (422, "VALIDATION_FAILED"),
            "{body}: {}",
            reply.body
        );
        let fields: Vec<&str> = reply.body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["field"].as_str())
            .collect();
        assert!(fields.contains(&field), "{field} in {fields:?} for {body}");
    }
    for (what, target) in [
        (
            "metric",
            json!({ "priority": "low", "metric": "happiness", "within": "1h" }),
        ),
        (
            "priority",
            json!({ "priority": "whenever", "metric": "resolution", "within": "1h" }),
        ),
    ] {
        let reply = app
            .post("/api/v1/sla-policies", &org.token, with_target(target))
            .await;
        assert_eq!(reply.status, 422, "an unknown {what}: {}", reply.body);
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM sla_policies")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(stored, 0);
}

/// The clock of `metric` in a ticket answer.
fn clock<'a>(ticket: &'a serde_json::Value, metric: &str) -> &'a serde_json::Value {
    ticket["sla"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["metric"] == metric)
        .unwrap_or_else(|| panic!("no {metric} clock in {ticket}"))
}

fn metrics(ticket: &serde_json::Value) -> Vec<&str> {
    ticket["sla"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["metric"].as_str().unwrap())
        .collect()
}

/// Ticket answers carry their clocks, moved in the change's own
/// transaction: a reply meets the first response, a pause status stops the
/// clocks, solving meets the resolution, and a new priority re-evaluates.
#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn ticket_answers_carry_clocks_that_follow_the_ticket(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let org = app.org("Acme").await;
    let queue = app
        .post("/api/v1/queues", &org.token, json!({ "name": "Billing" }))
        .await;
    let queue_id = queue.body["id"].as_str().unwrap().to_owned();
    let created = app
        .post("/api/v1/sla-policies", &org.token, policy(None, &queue_id))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);

    // Outside the policy's queue: no clocks.
    let plain = app.ticket(&org.token, "Printer").await;
    assert_eq!(plain["sla"], json!([]));

    let opened = app
        .post(
            "/api/v1/tickets",
            &org.token,
            json!({ "subject": "Refund", "contact": { "email": "ann@example.com" },
                    "message": "Where is my money?", "priority": "urgent", "queue_id": queue_id }),
        )
        .await;
    assert_eq!(opened.status, 201, "{}", opened.body);
    assert_eq!(metrics(&opened.body), ["first_response", "resolution"]);
    let first = clock(&opened.body, "first_response");
    assert_eq!(first["state"], "running");
    let created_at = time::OffsetDateTime::parse(
        opened.body["created_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let due = time::OffsetDateTime::parse(
        first["due_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(due - created_at, time::Duration::minutes(30), "{first}");
    let path = format!("/api/v1/tickets/{}", opened.body["id"].as_str().unwrap());
    assert_eq!(
        app.get(&path, &org.token).await.body["sla"],
        opened.body["sla"]
    );

    // An internal note answers nobody; a public reply meets the first response.
    let messages = format!("{path}/messages");
    let note = app
        .post(
            &messages,
            &org.token,
            json!({ "body": "checking", "visibility": "internal" }),
        )
        .await;
    assert_eq!(note.status, 201);
    let read = app.get(&path, &org.token).await;
    assert_eq!(clock(&read.body, "first_response")["state"], "running");
    app.post(&messages, &org.token, json!({ "body": "On its way" }))
        .await;
    let read = app.get(&path, &org.token).await;
    let first = clock(&read.body, "first_response");
    assert_eq!(first["state"], "fulfilled");
    assert!(first["fulfilled_at"].is_string() && first["due_at"].is_null());

    // Pending stops the resolution clock; solving meets it; reopening resumes.
    let pending = app
        .patch(&path, &org.token, json!({ "status": "pending" }))
        .await;
    assert_eq!(clock(&pending.body, "resolution")["state"], "paused");
    assert!(clock(&pending.body, "resolution")["due_at"].is_null());
    let solved = app
        .patch(&path, &org.token, json!({ "status": "solved" }))
        .await;
    assert_eq!(clock(&solved.body, "resolution")["state"], "fulfilled");
    let reopened = app
        .patch(&path, &org.token, json!({ "status": "open" }))
        .await;
    assert_eq!(clock(&reopened.body, "resolution")["state"], "running");
    // The list shows the same clocks as the ticket.
    let listed = app
        .get(&format!("/api/v1/tickets?queue_id={queue_id}"), &org.token)
        .await;
    assert_eq!(listed.body["data"][0]["sla"], reopened.body["sla"]);

    // Normal tickets of this policy only have a next-response target.
    let normal = app
        .patch(&path, &org.token, json!({ "priority": "normal" }))
        .await;
    assert_eq!(normal.body["sla"], json!([]), "{}", normal.body);
}

/// Queues name their managers; each must be a colleague, named once.
#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn queues_have_managers_of_the_organization(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let org = app.org("Acme").await;
    let other = app.org("Globex").await;
    let (bob, _, _) = app.user(&org, "Bob", Role::Agent, &[Ability::All]).await;
    let (stranger, _, _) = app.user(&other, "Eve", Role::Agent, &[Ability::All]).await;
    let queue = app
        .post(
            "/api/v1/queues",
            &org.token,
            json!({ "name": "Billing", "manager_ids": [bob] }),
        )
        .await;
    assert_eq!(queue.status, 201, "{}", queue.body);
    assert_eq!(queue.body["manager_ids"], json!([bob]));
    let path = format!("/api/v1/queues/{}", queue.body["id"].as_str().unwrap());

    for bad in [json!([stranger]), json!([bob, bob])] {
        let refused = app
            .patch(&path, &org.token, json!({ "manager_ids": bad }))
            .await;
        assert_eq!(
            (refused.status, refused.code()),
            (422, "VALIDATION_FAILED"),
            "{bad}"
        );
        assert!(
            refused.body["errors"][0]["field"]
                .as_str()
                .unwrap()
                .starts_with("manager_ids")
        );
    }
    let renamed = app
        .patch(&path, &org.token, json!({ "name": "Invoices" }))
        .await;
    assert_eq!(renamed.body["manager_ids"], json!([bob]), "kept");
    let cleared = app
        .patch(&path, &org.token, json!({ "manager_ids": [] }))
        .await;
    assert_eq!(cleared.body["manager_ids"], json!([]));
}
