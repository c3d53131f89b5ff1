//! The store's service-level clocks against the real Postgres: what the
//! API cannot reach yet (a contact's reply arrives with the e-mail
//! channel), driven through the store functions every caller uses.
#![allow(clippy::unwrap_used)]

mod common;

use common::seed;
use sqlx::PgPool;
use tickiti_domain::Visibility;
use tickiti_domain::sla::{Happening, Metric, State};
use tickiti_store::messages::{Author, NewMessage};
use tickiti_store::{messages, sla_clocks, tickets};
use uuid::Uuid;

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
