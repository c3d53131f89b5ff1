//! Rows the store's tests start from, written as plain SQL: fixtures, not
//! the code under test.
#![allow(clippy::unwrap_used, dead_code)]

use serde_json::json;
use sqlx::PgPool;
use tickiti_domain::new_id;
use uuid::Uuid;

/// An organization with a user, a contact, a policy (first response 1 h,
/// next response 2 h for normal tickets) and one ticket; (org, user, ticket).
pub async fn seed(db: &PgPool) -> (Uuid, Uuid, Uuid) {
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

/// Another agent of `org`; their id.
pub async fn colleague(db: &PgPool, org: Uuid, name: &str, email: &str) -> Uuid {
    let id = new_id();
    sqlx::query(
        "INSERT INTO users (id, organization_id, email, name, password_hash, role)
         VALUES ($1, $2, $3, $4, 'x', 'agent')",
    )
    .bind(id)
    .bind(org)
    .bind(email)
    .bind(name)
    .execute(db)
    .await
    .unwrap();
    id
}
