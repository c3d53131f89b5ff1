//! Notification e-mail (CONTRACT §8) end to end: the api and the dispatcher
//! in-process against the real Postgres, e-mail to a real SMTP receiver
//! (aiosmtpd) read back from its Maildir and parsed.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use mail_parser::{MessageParser, MimeHeaders};
use serde_json::json;
use sqlx::PgPool;
use tickiti_domain::{Ability, Role};
use tickiti_testkit::smtp::SmtpReceiver;
use tickiti_testkit::webhooks::TestDispatcher;
use tickiti_testkit::{TestApp, poll_until};

const WAIT: Duration = Duration::from_secs(20);

async fn status_of(db: &PgPool, user: uuid::Uuid) -> Vec<String> {
    sqlx::query_scalar("SELECT email_status FROM notifications WHERE user_id = $1 ORDER BY id")
        .bind(user)
        .fetch_all(db)
        .await
        .unwrap()
}

/// One e-mail per notification (two dispatchers scanning), multipart text
/// and HTML naming the ticket and linking to it, Message-ID from the
/// notification; one read in the app while held back is never sent; the
/// quiet flag sends none.
#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn each_notification_is_mailed_once_unless_read_first(db: PgPool) {
    let receiver = SmtpReceiver::start().await;
    let app = TestApp::spawn(db.clone()).await;
    let org = app.org("Acme").await;
    let (bea, bea_email, bea_token) = app.user(&org, "Bea", Role::Agent, &[Ability::All]).await;
    let (quiet, _, quiet_token) = app.user(&org, "Quinn", Role::Agent, &[Ability::All]).await;
    app.patch(
        &format!("/api/v1/users/{quiet}"),
        &quiet_token,
        json!({ "realtime_notifications": true }),
    )
    .await;
    // Two dispatchers scan the same notifications: each e-mail still goes once.
    let mut dispatchers = Vec::new();
    for _ in 0..2 {
        let url = receiver.url.clone();
        dispatchers.push(
            TestDispatcher::spawn_with(app.db.clone(), &app.prefix, |c| {
                c.smtp_url = Some(url);
                c.notify_email_delay = Duration::from_secs(2);
            })
            .await,
        );
    }

    let assign = |subject: &'static str, to: uuid::Uuid| {
        let app = &app;
        let org = &org;
        async move {
            let ticket = app.ticket(&org.token, subject).await;
            let id = ticket["id"].as_str().unwrap().to_owned();
            let assigned = app
                .patch(
                    &format!("/api/v1/tickets/{id}"),
                    &org.token,
                    json!({ "assignee_id": to }),
                )
                .await;
            assert_eq!(assigned.status, 200, "{}", assigned.body);
            (id, ticket["code"].as_str().unwrap().to_owned())
        }
    };
    let (mailed, code) = assign("Printer <on> fire", bea).await;
    let (read_first, _) = assign("Read in the app", bea).await;
    assign("Quiet", quiet).await;
    let unread = app
        .get("/api/v1/notifications?unread=true", &bea_token)
        .await;
    let to_read = unread.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["ticket_id"] == read_first.as_str())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let read = app
        .post(
            &format!("/api/v1/notifications/{to_read}/read"),
            &bea_token,
            json!({}),
        )
        .await;
    assert_eq!(read.status, 200, "{}", read.body);

    // Both of Bea's are decided (sent, dropped); Quinn's never queued.
    let statuses = poll_until(
        WAIT,
        || status_of(&db, bea),
        |s| !s.contains(&"pending".to_owned()),
    )
    .await;
    assert_eq!(statuses, ["sent", "dropped"]);
    assert_eq!(status_of(&db, quiet).await, ["none"]);
    let messages = receiver.wait_for(1, WAIT).await;
    assert_eq!(messages.len(), 1, "exactly one e-mail");

    let mail = MessageParser::default().parse(&messages[0]).unwrap();
    let notification: String =
        sqlx::query_scalar("SELECT id::text FROM notifications WHERE ticket_id = $1::uuid")
            .bind(&mailed)
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(
        mail.message_id(),
        Some(format!("notification-{notification}@test.example").as_str())
    );
    assert_eq!(
        mail.subject(),
        Some(format!("[{code}] Printer <on> fire · Assigned to you").as_str())
    );
    let to = mail.to().unwrap().first().unwrap();
    assert_eq!(to.address(), Some(bea_email.as_str()));
    assert_eq!(
        mail.content_type().map(|c| (c.ctype(), c.subtype())),
        Some(("multipart", Some("alternative")))
    );
    let link = format!("http://tickiti.test/tickets/{mailed}");
    let text = mail.body_text(0).unwrap();
    let html = mail.body_html(0).unwrap();
    assert!(
        text.contains(&link) && text.contains("Printer <on> fire"),
        "{text}"
    );
    // Escaped as HTML (`/` too), which a mail client reads back.
    let escaped = link.replace('/', "&#x2f;");
    assert!(
        html.contains(&escaped) && html.contains("Printer &lt;on&gt; fire"),
        "{html}"
    );

    // Nothing more arrives later (no second send of the same notification):
    // both dispatchers have scanned three more times.
    for dispatcher in &dispatchers {
        dispatcher.wait_for_scans("notification-email", 3).await;
    }
    assert_eq!(receiver.messages().len(), 1);
}

/// A receiver that is down: the e-mail stays queued with the error and a
/// retry time (not failed, not lost).
#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn an_unreachable_smtp_server_is_retried(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let org = app.org("Acme").await;
    let (bea, _, _) = app.user(&org, "Bea", Role::Agent, &[Ability::All]).await;
    // A port nothing listens on: bound, read, closed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let _dispatcher = TestDispatcher::spawn_with(app.db.clone(), &app.prefix, |c| {
        c.smtp_url = Some(format!("smtp://{closed}"));
        c.notify_email_delay = Duration::ZERO;
    })
    .await;
    let ticket = app.ticket(&org.token, "Down").await;
    let id = ticket["id"].as_str().unwrap();
    app.patch(
        &format!("/api/v1/tickets/{id}"),
        &org.token,
        json!({ "assignee_id": bea }),
    )
    .await;
    let row: (String, i32, Option<String>, Option<bool>) = poll_until(
        WAIT,
        || async {
            sqlx::query_as(
                "SELECT email_status, email_attempts, email_error, email_retry_at > now()
                 FROM notifications WHERE user_id = $1",
            )
            .bind(bea)
            .fetch_one(&db)
            .await
            .unwrap()
        },
        |(_, attempts, error, _): &(String, i32, Option<String>, Option<bool>)| {
            *attempts >= 1 && error.is_some()
        },
    )
    .await;
    assert_eq!(row.0, "pending", "{row:?}");
    assert_eq!(row.3, Some(true), "a retry is scheduled: {row:?}");
}
