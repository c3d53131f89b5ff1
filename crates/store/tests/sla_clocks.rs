//! The store's service-level clocks against the real Postgres: what the
//! API cannot reach yet (a contact's reply arrives with the e-mail
//! channel), driven through the store functions every caller uses.
#![allow(clippy::unwrap_used)]

use serde_json::json;
use sqlx::PgPool;
use tickiti_domain::sla::{Happening, Metric, State};
use tickiti_domain::{Visibility, new_id};
use tickiti_store::messages::{Author, NewMessage};
use tickiti_store::{messages, sla_clocks, tickets};
use uuid::Uuid;

/// An organization with a user, a contact, a policy (first response 1 h,
/// next response 2 h for normal tickets) and one ticket; (org, user, ticket).
async fn seed(db: &PgPool) -> (Uuid, Uuid, Uuid) {
    let (org, user, contact, ticket) = (new_id(), new_id(), new_id(), new_id());
    sqlx::query("INSERT INTO organizations (id, name, code_prefix) VALUES ($1, 'Acme', 'ACME')")
        .bind(org)
        .execute(db)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO users (id, organization_id, email, name, password_hash, role)
         VALUES ($1, $2, 'bob@example.com', 'Bob', 'x', 'agent')",
    )
    .bind(user)
    .bind(org)
    .execute(db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO contacts (id, organization_id, email) VALUES ($1, $2, 'ann@example.com')",
    )
    .bind(contact)
    .bind(org)
    .execute(db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO sla_policies (id, organization_id, name, position, queue_ids, pause_statuses, targets)
         VALUES ($1, $2, 'Standard', 1, '{}', '{pending,on_hold}', $3)",
    )
    .bind(new_id())
    .bind(org)
    .bind(json!([
        { "priority": "normal", "metric": "first_response", "within": "1h" },
        { "priority": "normal", "metric": "next_response", "within": "2h" }
    ]))
    .execute(db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO tickets (id, organization_id, number, code, subject, status, priority, contact_id)
         VALUES ($1, $2, 1, 'ACME-1', 'Refund', 'open', 'normal', $3)",
    )
    .bind(ticket)
    .bind(org)
    .bind(contact)
    .execute(db)
    .await
    .unwrap();
    (org, user, ticket)
}

/// Posts a public message on the ticket: by `staff`, else by its contact.
async fn post(db: &PgPool, org: Uuid, ticket: Uuid, staff: Option<Uuid>) {
    let mut tx = db.begin().await.unwrap();
    let row = tickets::get(&mut tx, org, ticket, true)
        .await
        .unwrap()
        .unwrap();
    let author = match staff {
        Some(user) => Author::Staff(user),
        None => Author::Contact(row.contact_id),
    };
    messages::post(
        &mut tx,
        &row,
        NewMessage {
            author,
            visibility: Visibility::Public,
            body: "text".into(),
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

async fn clocks(db: &PgPool, org: Uuid, ticket: Uuid) -> Vec<(Metric, State)> {
    let mut conn = db.acquire().await.unwrap();
    let row = tickets::get(&mut conn, org, ticket, false)
        .await
        .unwrap()
        .unwrap();
    row.sla.0.iter().map(|c| (c.metric, c.state)).collect()
}

/// A contact message starts a next-response cycle only after staff
/// answered publicly (found in the stored messages), and the next staff
/// reply meets it.
#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn contact_messages_after_a_staff_reply_start_next_response(db: PgPool) {
    let (org, user, ticket) = seed(&db).await;
    // A ticket written before its policy existed: its next change starts
    // the first-response clock.
    let mut tx = db.begin().await.unwrap();
    let row = tickets::get(&mut tx, org, ticket, true)
        .await
        .unwrap()
        .unwrap();
    sla_clocks::track(&mut tx, &row, Happening::Changed)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        clocks(&db, org, ticket).await,
        [(Metric::FirstResponse, State::Running)]
    );

    post(&db, org, ticket, None).await;
    assert_eq!(
        clocks(&db, org, ticket).await,
        [(Metric::FirstResponse, State::Running)],
        "nobody answered yet: no next response is owed"
    );
    post(&db, org, ticket, Some(user)).await;
    post(&db, org, ticket, None).await;
    assert_eq!(
        clocks(&db, org, ticket).await,
        [
            (Metric::FirstResponse, State::Fulfilled),
            (Metric::NextResponse, State::Running)
        ]
    );
    post(&db, org, ticket, Some(user)).await;
    let cycle: i32 = sqlx::query_scalar(
        "SELECT cycle FROM sla_clocks WHERE ticket_id = $1 AND metric = 'next_response'",
    )
    .bind(ticket)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(cycle, 1);
    post(&db, org, ticket, None).await;
    let (cycle, fire_at): (i32, Option<time::OffsetDateTime>) = sqlx::query_as(
        "SELECT cycle, fire_at FROM sla_clocks WHERE ticket_id = $1 AND metric = 'next_response'",
    )
    .bind(ticket)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(cycle, 2, "a new cycle: its stages can fire again");
    assert!(fire_at.is_some(), "the dispatcher's scan will find it");
}
