//! `messages::post`, the one way a message is written (the api's replies,
//! an epilog's final answer, later the e-mail channel), against the real
//! Postgres.
#![allow(clippy::unwrap_used)]

mod common;

use common::{colleague, seed};
use sqlx::PgPool;
use tickiti_domain::ticket::BODY_MAX;
use tickiti_domain::{EventType, Visibility};
use tickiti_store::messages::{self, Author, NewMessage, Posted};
use tickiti_store::tickets;
use uuid::Uuid;

/// Posts on the ticket in a transaction of its own, as a route would.
async fn post(
    db: &PgPool,
    org: Uuid,
    ticket: Uuid,
    author: Author,
    visibility: Visibility,
    body: &str,
) -> Posted {
    let mut tx = db.begin().await.unwrap();
    let row = tickets::get(&mut tx, org, ticket, true)
        .await
        .unwrap()
        .unwrap();
    let posted = messages::post(
        &mut tx,
        &row,
        NewMessage {
            author,
            visibility,
            body: body.into(),
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    posted
}

/// The ticket as stored now.
async fn stored(db: &PgPool, org: Uuid, ticket: Uuid) -> tickets::Ticket {
    let mut conn = db.acquire().await.unwrap();
    tickets::get(&mut conn, org, ticket, false)
        .await
        .unwrap()
        .unwrap()
}

fn types(posted: &Posted) -> Vec<EventType> {
    posted.events.iter().map(|e| e.event).collect()
}

/// Each post bumps the ticket's version; colleagues named by e-mail or
/// handle are mentioned once each, never the author, never a stranger; an
/// internal note has no conversation webhook, a public reply does.
#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn a_post_bumps_the_version_and_mentions_colleagues_but_not_its_author(db: PgPool) {
    let (org, bob, ticket) = seed(&db).await;
    let ann = colleague(&db, org, "Ann Lee", "ann.lee@example.com").await;
    let before = stored(&db, org, ticket).await.version;

    let note = post(
        &db,
        org,
        ticket,
        Author::Staff(bob),
        Visibility::Internal,
        "@annlee and @ANN.LEE@example.com, see @bob@example.com and @nobody.",
    )
    .await;
    assert_eq!(note.version, before + 1);
    assert_eq!(
        types(&note),
        [EventType::MessageCreated, EventType::MentionCreated]
    );
    let mentioned: Vec<Uuid> =
        sqlx::query_scalar("SELECT user_id FROM mentions WHERE message_id = $1")
            .bind(note.message.id)
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(mentioned, [ann], "Ann once; not Bob, who wrote it");

    let contact = stored(&db, org, ticket).await.contact_id;
    let reply = post(
        &db,
        org,
        ticket,
        Author::Contact(contact),
        Visibility::Public,
        "@annlee thanks",
    )
    .await;
    assert_eq!(reply.version, before + 2);
    assert_eq!(
        types(&reply),
        [
            EventType::MessageCreated,
            EventType::TicketMessageCreated,
            EventType::MentionCreated
        ]
    );
    let version = stored(&db, org, ticket).await.version;
    assert_eq!(
        version,
        before + 2,
        "the version the answers carried is the stored one"
    );
}

/// A body over the limit (a rendered template may run over) is cut to
/// `BODY_MAX` characters, not bytes.
#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn a_long_body_is_cut_to_the_limit_in_characters(db: PgPool) {
    let (org, bob, ticket) = seed(&db).await;
    let long = "é".repeat(BODY_MAX + 10);
    let posted = post(
        &db,
        org,
        ticket,
        Author::Staff(bob),
        Visibility::Internal,
        &long,
    )
    .await;
    let body: String = sqlx::query_scalar("SELECT body FROM messages WHERE id = $1")
        .bind(posted.message.id)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(body.chars().count(), BODY_MAX);
    assert!(body.chars().all(|c| c == 'é'));
}
