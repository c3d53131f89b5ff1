//! Intervention epilog calls (CONTRACT §4) end to end: the api and the
//! dispatcher in-process, the remote system a real local HTTP server.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgPool;
use tickiti_domain::{Ability, Role};
use tickiti_testkit::webhooks::{Behaviour, Receiver, Responder, TestDispatcher};
use tickiti_testkit::{TestApp, TestOrg, poll_until};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);
const TOKEN: &str = "epilog-bearer-token-0815";

/// Defines intervention `name` calling `receiver` at `/name`.
async fn define(app: &TestApp, org: &TestOrg, receiver: &Receiver, name: &str) {
    let reply = app
        .post(
            "/api/v1/interventions",
            &org.token,
            json!({
                "name": name,
                "title": "Refund",
                "remote_name": "shop",
                "remote_epilog_url": receiver.url(&format!("/{name}")),
                "remote_bearer_token": TOKEN,
                "remote_timeout_seconds": 1,
                "remote_enabled": true,
                "fields": [{ "type": "text", "key": "amount" }],
                "templates": {
                    "private": "Refund asked for {{ data.name }}",
                    "final": "Done: {{ reference }} for {{ data.name }} ({{ final.ticket_audit }})"
                }
            }),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
}

/// A remote opens a ticket with `name`; returns its id.
async fn open_ticket(app: &TestApp, token: &str, name: &str, uid: &str) -> String {
    let reply = app
        .post_with_key(
            "/api/v1/intervention-tickets",
            token,
            &format!("{name}-{uid}"),
            json!({
                "originator_email_address": "ann@example.com",
                "intervention": name,
                "uid": uid,
                "data": { "data": { "name": "Ann", "amount": "10" } }
            }),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.body["ticket_id"].as_str().unwrap().to_owned()
}

/// Staff submit; returns the response id.
async fn submit(app: &TestApp, token: &str, ticket: &str) -> String {
    let reply = app
        .post(
            &format!("/api/v1/tickets/{ticket}/intervention/submit"),
            token,
            json!({ "data": { "name": "Ann", "amount": "12" }, "message": "Refunded 12." }),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body["response_id"].as_str().unwrap().to_owned()
}

async fn view(app: &TestApp, org: &TestOrg, ticket: &str) -> Value {
    app.get(
        &format!("/api/v1/tickets/{ticket}/intervention"),
        &org.token,
    )
    .await
    .body
}

/// Waits until the ticket's last epilog call is finished; returns the view.
async fn wait_finished(app: &TestApp, org: &TestOrg, ticket: &str) -> Value {
    poll_until(
        WAIT,
        || view(app, org, ticket),
        |v| {
            v["epilogs"]
                .as_array()
                .and_then(|e| e.last())
                .is_some_and(|e| e["status"] == "succeeded" || e["status"] == "failed")
        },
    )
    .await
}

/// A remote answering every call with a final object for the call's response.
fn final_answer(delay_first: Option<Duration>) -> (Responder, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let responder = Responder::new(move |request| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        let body = request.json();
        let answer = json!({
            "ok": true,
            "final": {
                "response_id": body["response_id"],
                "ticket_audit": "Approved by the shop",
                "reference": "R-77"
            }
        });
        let delay = delay_first.filter(|_| n == 0).unwrap_or_default();
        (delay, 200, answer.to_string())
    });
    (responder, calls)
}

async fn scalar(db: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(db).await.unwrap()
}

async fn count(db: &PgPool, sql: &'static str, ticket: &str) -> i64 {
    sqlx::query_scalar(sql)
        .bind(Uuid::parse_str(ticket).unwrap())
        .fetch_one(db)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn remote_opens_staff_submits_remote_finalizes_end_to_end(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let dispatcher = TestDispatcher::spawn(&app).await;
    let receiver = Receiver::start().await;
    let org = app.org("Acme").await;
    define(&app, &org, &receiver, "refund").await;
    let (_, _, remote) = app
        .user(&org, "Shop", Role::Agent, &[Ability::CreateTicket])
        .await;
    let (staff_id, _, staff) = app.user(&org, "Staff", Role::Agent, &[Ability::All]).await;
    let (responder, _) = final_answer(None);
    receiver.behave_at("/refund", Behaviour::Respond(responder));

    let ticket = open_ticket(&app, &remote, "refund", "order-1").await;
    let response_id = submit(&app, &staff, &ticket).await;

    // The remote got the contract's call.
    let calls = receiver
        .wait_until(WAIT, |r| r.iter().any(|x| x.path == "/refund"))
        .await;
    let call = calls.iter().find(|x| x.path == "/refund").unwrap();
    assert_eq!(
        call.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(call.header("content-type"), Some("application/json"));
    let body = call.json();
    assert_eq!(body["ticket_id"], ticket);
    assert_eq!(body["response_id"], response_id);
    assert_eq!(body["uid"], "order-1");
    assert_eq!(body["intervention"], "refund");
    assert_eq!(body["action"], "submit");
    assert_eq!(body["data"], json!({ "name": "Ann", "amount": "12" }));

    // The final object is applied: accepted, audit text, final response.
    let shown = poll_until(
        WAIT,
        || view(&app, &org, &ticket),
        |v| v["status"] == "accepted",
    )
    .await;
    assert_eq!(shown["status"], "accepted", "{shown}");
    assert_eq!(shown["final"]["reference"], "R-77");
    let attempts = shown["epilog_attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{shown}");
    assert_eq!(attempts[0]["outcome"], "final_applied");
    assert_eq!(attempts[0]["response_code"], 200);

    let messages = app
        .get(&format!("/api/v1/tickets/{ticket}/messages"), &staff)
        .await;
    let bodies: Vec<&str> = messages.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(
        bodies,
        [
            "Refund asked for Ann",
            "Refunded 12.",
            "Done: R-77 for Ann (Approved by the shop)"
        ]
    );
    let audit = app
        .get(&format!("/api/v1/tickets/{ticket}/audit"), &staff)
        .await;
    let accepted = audit.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == "intervention.accepted")
        .cloned()
        .unwrap();
    assert_eq!(accepted["changes"]["ticket_audit"], "Approved by the shop");
    assert_eq!(accepted["changes"]["response_id"], response_id);
    let submitted = audit.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == "intervention.submitted")
        .cloned()
        .unwrap();
    assert_eq!(submitted["actor_user_id"], json!(staff_id));

    // intervention.accepted is in the outbox and gets published by the api's relay.
    let published = poll_until(
        WAIT,
        || {
            scalar(
                &db,
                "SELECT count(*) FROM outbox WHERE event_type = 'intervention.accepted' AND published_at IS NOT NULL",
            )
        },
        |n| *n == 1,
    )
    .await;
    assert_eq!(published, 1);

    // Accepted is final: no second submit.
    let again = app
        .post(
            &format!("/api/v1/tickets/{ticket}/intervention/submit"),
            &staff,
            json!({ "data": {}, "message": "again" }),
        )
        .await;
    assert_eq!(again.status, 409);
    assert_eq!(again.code(), "INTERVENTION_ACCEPTED");

    dispatcher.stop().await;
    TestDispatcher::cleanup(&app.prefix).await;
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn the_final_object_applies_once_across_retries_and_duplicate_commands(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let dispatcher = TestDispatcher::spawn(&app).await;
    let receiver = Receiver::start().await;
    let org = app.org("Acme").await;
    define(&app, &org, &receiver, "refund").await;
    // The first call answers after the 1 s time-out: the dispatcher retries,
    // and the remote answers the same final object to both calls.
    let (responder, calls) = final_answer(Some(Duration::from_millis(1500)));
    receiver.behave_at("/refund", Behaviour::Respond(responder));
    let ticket = open_ticket(&app, &org.token, "refund", "order-1").await;
    let response_id = submit(&app, &org.token, &ticket).await;

    let shown = wait_finished(&app, &org, &ticket).await;
    assert_eq!(shown["status"], "accepted", "{shown}");
    let outcomes: Vec<&str> = shown["epilog_attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["retry", "final_applied"], "{shown}");
    assert!(
        shown["epilog_attempts"][0]["error"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{shown}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // The command is delivered again, twice: nothing more is called or applied.
    let epilog_id = Uuid::parse_str(shown["epilogs"][0]["id"].as_str().unwrap()).unwrap();
    let mut conn = db.acquire().await.unwrap();
    let handled = dispatcher.counter("tickiti_epilog_commands_total").await;
    for _ in 0..2 {
        tickiti_store::interventions::request_epilog(&mut conn, org.id, epilog_id)
            .await
            .unwrap();
    }
    // The dispatcher applies the same result twice more, directly.
    let payload = tickiti_store::interventions::payload_for_ticket(
        &mut conn,
        org.id,
        Uuid::parse_str(&ticket).unwrap(),
        false,
    )
    .await
    .unwrap()
    .unwrap();
    let def = tickiti_store::interventions::get(&mut conn, org.id, payload.intervention_id)
        .await
        .unwrap()
        .unwrap();
    let final_object = json!({ "response_id": response_id, "ticket_audit": "Approved by the shop", "reference": "R-77" });
    for _ in 0..2 {
        let applied = tickiti_dispatcher::epilog::apply_final(
            &mut conn,
            &payload,
            &def,
            Uuid::parse_str(&response_id).unwrap(),
            final_object.as_object().unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(applied, tickiti_dispatcher::epilog::Applied::Before);
    }
    // A final object for some other response is not applied either.
    let other = tickiti_dispatcher::epilog::apply_final(
        &mut conn,
        &payload,
        &def,
        Uuid::now_v7(),
        final_object.as_object().unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(other, tickiti_dispatcher::epilog::Applied::Superseded);
    let relayed = poll_until(
        WAIT,
        || {
            scalar(
                &db,
                "SELECT count(*) FROM outbox WHERE event_type = 'command.intervention.epilog' AND published_at IS NULL",
            )
        },
        |n| *n == 0,
    )
    .await;
    assert_eq!(relayed, 0);
    // The dispatcher has handled both commands, and called nobody for them.
    let now_handled = poll_until(
        WAIT,
        || dispatcher.counter("tickiti_epilog_commands_total"),
        |n| *n >= handled + 2,
    )
    .await;
    assert_eq!(now_handled, handled + 2);
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    let finals = count(
        &db,
        "SELECT count(*) FROM messages WHERE ticket_id = $1 AND body LIKE 'Done: R-77%'",
        &ticket,
    )
    .await;
    assert_eq!(finals, 1);
    let audits = count(
        &db,
        "SELECT count(*) FROM ticket_audit WHERE ticket_id = $1 AND action = 'intervention.accepted'",
        &ticket,
    )
    .await;
    assert_eq!(audits, 1);
    let events = scalar(
        &db,
        "SELECT count(*) FROM outbox WHERE event_type = 'intervention.accepted'",
    )
    .await;
    assert_eq!(events, 1);
    let attempts = view(&app, &org, &ticket).await["epilog_attempts"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(attempts, 2);

    dispatcher.stop().await;
    TestDispatcher::cleanup(&app.prefix).await;
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn every_failure_gets_its_outcome_in_the_attempt_log(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let dispatcher = TestDispatcher::spawn(&app).await;
    let receiver = Receiver::start().await;
    let org = app.org("Acme").await;
    receiver.behave_at(
        "/mismatch",
        Behaviour::Respond(Responder::new(|_| {
            let answer = json!({ "final": { "response_id": Uuid::now_v7(), "ticket_audit": "x" } });
            (Duration::ZERO, 200, answer.to_string())
        })),
    );
    receiver.behave_at("/notjson", Behaviour::Status(200));
    receiver.behave_at("/redirect", Behaviour::Redirect(receiver.url("/followed")));
    receiver.behave_at("/client", Behaviour::Status(404));
    receiver.behave_at("/server", Behaviour::Status(503));
    receiver.behave_at(
        "/okfalse",
        Behaviour::Respond(Responder::new(|_| {
            (Duration::ZERO, 200, json!({ "ok": false }).to_string())
        })),
    );
    let cases = [
        ("mismatch", "does not match"),
        ("notjson", "not a JSON object"),
        ("redirect", "redirects are not followed"),
        ("client", "client error"),
        ("server", "server error"),
        ("okfalse", "neither"),
    ];
    let mut tickets = Vec::new();
    for (name, _) in cases {
        define(&app, &org, &receiver, name).await;
        let ticket = open_ticket(&app, &org.token, name, "u-1").await;
        submit(&app, &org.token, &ticket).await;
        tickets.push(ticket);
    }
    for ((name, reason), ticket) in cases.iter().zip(&tickets) {
        let shown = wait_finished(&app, &org, ticket).await;
        // Nothing was applied; the call failed.
        assert_eq!(shown["status"], "submitted", "{name}: {shown}");
        assert_eq!(shown["epilogs"][0]["status"], "failed", "{name}: {shown}");
        let attempts = shown["epilog_attempts"].as_array().unwrap();
        let last = attempts.last().unwrap();
        assert!(
            last["error"].as_str().unwrap().contains(reason),
            "{name}: {shown}"
        );
        if *name == "mismatch" {
            // A final object for another response is refused at once, not retried.
            assert_eq!(attempts.len(), 1, "{shown}");
            assert_eq!(last["outcome"], "final_rejected");
        } else {
            // Retried with backoff up to the maximum (4 in tests), each attempt logged.
            assert_eq!(attempts.len(), 4, "{name}: {shown}");
            assert!(
                attempts[..3].iter().all(|a| a["outcome"] == "retry"),
                "{shown}"
            );
            assert_eq!(last["outcome"], "gave_up");
            let times: Vec<time::OffsetDateTime> = attempts
                .iter()
                .map(|a| {
                    time::OffsetDateTime::parse(
                        a["created_at"].as_str().unwrap(),
                        &time::format_description::well_known::Rfc3339,
                    )
                    .unwrap()
                })
                .collect();
            assert!(times.windows(2).all(|w| w[1] > w[0]), "{shown}");
        }
        let expected_code = match *name {
            "redirect" => 302,
            "client" => 404,
            "server" => 503,
            _ => 200,
        };
        assert_eq!(last["response_code"], expected_code, "{name}");
        let calls = receiver.received_at(&format!("/{name}")).len();
        assert_eq!(calls, attempts.len(), "{name}");
    }
    assert!(receiver.received_at("/followed").is_empty());
    let accepted = scalar(
        &db,
        "SELECT count(*) FROM intervention_payloads WHERE status = 'accepted'",
    )
    .await;
    assert_eq!(accepted, 0);

    dispatcher.stop().await;
    TestDispatcher::cleanup(&app.prefix).await;
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn a_retry_survives_a_dispatcher_restart(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let receiver = Receiver::start().await;
    let org = app.org("Acme").await;
    define(&app, &org, &receiver, "refund").await;
    receiver.behave_at("/refund", Behaviour::Status(503));
    let first = TestDispatcher::spawn_with(db.clone(), &app.prefix, |config| {
        config.epilog_retry_min = Duration::from_secs(3);
        config.epilog_retry_max = Duration::from_secs(3);
    })
    .await;
    let ticket = open_ticket(&app, &org.token, "refund", "order-1").await;
    submit(&app, &org.token, &ticket).await;
    let shown = poll_until(
        WAIT,
        || view(&app, &org, &ticket),
        |v| {
            v["epilog_attempts"]
                .as_array()
                .is_some_and(|a| a.len() == 1)
        },
    )
    .await;
    assert_eq!(shown["epilog_attempts"][0]["outcome"], "retry", "{shown}");
    assert_eq!(shown["epilogs"][0]["status"], "retrying");

    // Stopped while the call waits for its retry (its command is acked by
    // now): the stored call alone brings the retry to the next dispatcher.
    first.stop().await;
    let (responder, calls) = final_answer(None);
    receiver.behave_at("/refund", Behaviour::Respond(responder));
    let second = TestDispatcher::spawn(&app).await;

    let shown = poll_until(
        WAIT,
        || view(&app, &org, &ticket),
        |v| v["status"] == "accepted",
    )
    .await;
    assert_eq!(shown["status"], "accepted", "{shown}");
    let attempts: Vec<(i64, &str)> = shown["epilog_attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["attempt"].as_i64().unwrap(),
                a["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(attempts, [(1, "retry"), (2, "final_applied")], "{shown}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(receiver.received_at("/refund").len(), 2);

    second.stop().await;
    TestDispatcher::cleanup(&app.prefix).await;
}
