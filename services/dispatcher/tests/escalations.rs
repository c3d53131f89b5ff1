//! Service-level escalations (CONTRACT §7) end to end: the api and two
//! dispatchers in-process against the real Postgres and RabbitMQ, the
//! events read from the broker.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgPool;
use tickiti_testkit::webhooks::TestDispatcher;
use tickiti_testkit::{EventTap, TestApp, TestOrg, poll_until};

const WAIT: Duration = Duration::from_secs(20);

async fn urgent_ticket(app: &TestApp, org: &TestOrg, subject: &str) -> String {
    let reply = app
        .post(
            "/api/v1/tickets",
            &org.token,
            json!({ "subject": subject, "contact": { "email": "ann@example.com" },
                    "message": "Help", "priority": "urgent" }),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.body["id"].as_str().unwrap().to_owned()
}

fn of<'a>(events: &'a [Value], name: &str, ticket: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| {
            e["event"] == name && (e["data"]["ticket_id"] == ticket || e["data"]["id"] == ticket)
        })
        .collect()
}

/// Each stage fires exactly once per ticket and metric with two dispatchers
/// scanning; a breach that came due while no dispatcher ran fires when one
/// starts; a reply before the due time means nothing fires.
#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn stages_fire_once_however_many_dispatchers_and_after_downtime(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let tap = EventTap::bind(&app.prefix).await;
    let org = app.org("Acme").await;
    let (manager, _, _) = app
        .user(
            &org,
            "Mia",
            tickiti_domain::Role::Agent,
            &[tickiti_domain::Ability::All],
        )
        .await;
    let policy = app
        .post(
            "/api/v1/sla-policies",
            &org.token,
            json!({ "name": "Fast", "position": 1, "queue_ids": [],
                    "targets": [{ "priority": "urgent", "metric": "first_response",
                                  "within": "3s", "warn_before": "2s" }] }),
        )
        .await;
    assert_eq!(policy.status, 201, "{}", policy.body);
    let queue = app
        .post(
            "/api/v1/queues",
            &org.token,
            json!({ "name": "Billing", "manager_ids": [manager] }),
        )
        .await;
    let queue_id = queue.body["id"].as_str().unwrap();

    // No dispatcher runs: this ticket's warning and breach both come due.
    let late = urgent_ticket(&app, &org, "Opened while no dispatcher ran").await;
    app.patch(
        &format!("/api/v1/tickets/{late}"),
        &org.token,
        json!({ "queue_id": queue_id }),
    )
    .await;
    let overdue = poll_until(
        WAIT,
        || async {
            sqlx::query_scalar::<_, bool>(
                "SELECT coalesce(bool_and(due_at < now()), false) FROM sla_clocks WHERE ticket_id = $1::uuid",
            )
            .bind(&late)
            .fetch_one(&db)
            .await
            .unwrap()
        },
        |due| *due,
    )
    .await;
    assert!(overdue, "the breach came due while no dispatcher ran");

    let first = TestDispatcher::spawn(&app).await;
    let second = TestDispatcher::spawn(&app).await;
    let watched = urgent_ticket(&app, &org, "Watched").await;
    let answered = urgent_ticket(&app, &org, "Answered in time").await;
    let reply = app
        .post(
            &format!("/api/v1/tickets/{answered}/messages"),
            &org.token,
            json!({ "body": "On it" }),
        )
        .await;
    assert_eq!(reply.status, 201);

    let events = tap
        .wait_until(WAIT, |events| {
            of(events, "ticket.escalated", &late).len() == 1
                && of(events, "ticket.escalated", &watched).len() == 1
        })
        .await;
    // Past both times, the warning is moot: only the breach fires.
    let late_frames = of(&events, "system.escalation", &late);
    assert_eq!(late_frames.len(), 1, "{late_frames:?}");
    let frame = &late_frames[0]["data"];
    assert_eq!(frame["stage"], "breach");
    assert_eq!(frame["metric"], "first_response");
    assert_eq!(frame["queue_id"], queue_id);
    assert_eq!(frame["manager_ids"], json!([manager]));
    assert!(frame["code"].as_str().unwrap().starts_with("ACME-"));
    // The queue's manager is notified of the breach, once (§8).
    let told: Vec<String> = sqlx::query_scalar(
        "SELECT kind FROM notifications WHERE user_id = $1 AND ticket_id = $2::uuid ORDER BY id",
    )
    .bind(manager)
    .bind(&late)
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(told, ["escalation.breach"]);

    let stages: Vec<&Value> = of(&events, "system.escalation", &watched)
        .iter()
        .map(|e| &e["data"]["stage"])
        .collect();
    assert_eq!(stages, [&json!("warning"), &json!("breach")]);
    let escalated = of(&events, "ticket.escalated", &watched)[0];
    assert_eq!(escalated["data"]["escalation"]["stage"], "breach");
    assert_eq!(
        escalated["data"]["escalation"]["policy_id"],
        policy.body["id"]
    );
    let sla = &escalated["data"]["sla"][0];
    assert_eq!(
        (&sla["state"], sla["breached_at"].is_string()),
        (&json!("breached"), true)
    );

    // The ticket shows it; the list and the Escalated perspective find it.
    let read = app
        .get(&format!("/api/v1/tickets/{watched}"), &org.token)
        .await;
    assert_eq!(read.body["sla"][0]["state"], "breached");
    let listed = app.get("/api/v1/tickets?escalated=true", &org.token).await;
    let mut ids: Vec<&str> = listed.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    let mut want = vec![late.as_str(), watched.as_str()];
    want.sort_unstable();
    assert_eq!(ids, want, "the answered ticket is not escalated");
    let perspectives = app.get("/api/v1/perspectives", &org.token).await;
    let escalated_id = perspectives.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "Escalated")
        .unwrap()["id"]
        .clone();
    let counts = app.get("/api/v1/perspectives/counts", &org.token).await;
    let count = counts.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["perspective_id"] == escalated_id)
        .unwrap()["count"]
        .clone();
    assert_eq!(count, 2);

    // A reply meets the target: the ticket leaves the Escalated list.
    app.post(
        &format!("/api/v1/tickets/{watched}/messages"),
        &org.token,
        json!({ "body": "Sorry for the wait" }),
    )
    .await;
    let listed = app.get("/api/v1/tickets?escalated=true", &org.token).await;
    assert_eq!(listed.body["data"].as_array().unwrap().len(), 1);

    // Nothing more fires while both dispatchers go on scanning (three
    // scans each): the escalation rows say what fired, once each.
    for dispatcher in [&first, &second] {
        dispatcher.wait_for_scans("escalations", 3).await;
    }
    let fired: Vec<(String, String)> = sqlx::query_as(
        "SELECT t.subject, e.stage FROM sla_escalations e JOIN tickets t ON t.id = e.ticket_id
         ORDER BY t.subject, e.stage",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(
        fired,
        [
            (
                "Opened while no dispatcher ran".to_owned(),
                "breach".to_owned()
            ),
            ("Watched".to_owned(), "breach".to_owned()),
            ("Watched".to_owned(), "warning".to_owned()),
        ]
    );
    let events = tap.events().await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e["event"] == "system.escalation")
            .count(),
        3
    );
    assert!(of(&events, "system.escalation", &answered).is_empty());

    first.stop().await;
    second.stop().await;
    tap.cleanup().await;
    TestDispatcher::cleanup(&app.prefix).await;
}
