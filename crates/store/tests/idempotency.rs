//! Idempotency keys against the real Postgres: the claim lives and dies
//! with the transaction that does the work.
#![allow(clippy::unwrap_used)]

mod common;

use common::seed;
use sqlx::PgPool;
use tickiti_store::idempotency::{self, Claim, KeyScope, StoredResponse};

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn a_claim_is_in_flight_until_commit_given_back_on_rollback_then_replayed(db: PgPool) {
    let (org, bob, _) = seed(&db).await;
    let scope = KeyScope {
        organization_id: org,
        principal: format!("user:{bob}"),
        route: "POST /api/v1/tickets".into(),
        key: "k-1".into(),
    };
    let hash = b"body-hash".to_vec();

    let mut first = db.begin().await.unwrap();
    let mut second = db.begin().await.unwrap();
    assert!(matches!(
        idempotency::claim(&mut first, &scope, &hash).await.unwrap(),
        Claim::Claimed
    ));
    // A duplicate while the first runs: told at once, not left waiting.
    assert!(matches!(
        idempotency::claim(&mut second, &scope, &hash)
            .await
            .unwrap(),
        Claim::InFlight
    ));
    second.rollback().await.unwrap();
    // The first fails: the key is free again.
    first.rollback().await.unwrap();

    let mut retry = db.begin().await.unwrap();
    assert!(matches!(
        idempotency::claim(&mut retry, &scope, &hash).await.unwrap(),
        Claim::Claimed
    ));
    let answer = StoredResponse {
        status: 201,
        body: br#"{"id":"t-1"}"#.to_vec(),
        content_type: Some("application/json".into()),
    };
    idempotency::complete(&mut retry, &scope, &answer)
        .await
        .unwrap();
    retry.commit().await.unwrap();

    let mut conn = db.acquire().await.unwrap();
    match idempotency::claim(&mut conn, &scope, &hash).await.unwrap() {
        Claim::Done(stored) => {
            assert_eq!(stored.status, 201);
            assert_eq!(stored.body, answer.body);
            assert_eq!(stored.content_type.as_deref(), Some("application/json"));
        }
        other => panic!("expected the stored answer, got {other:?}"),
    }
    let other_body = idempotency::claim(&mut conn, &scope, b"another")
        .await
        .unwrap();
    assert!(matches!(other_body, Claim::BodyMismatch), "{other_body:?}");
    // Another principal's same key is theirs to claim.
    let theirs = KeyScope {
        principal: "token:someone-else".into(),
        ..scope.clone()
    };
    assert!(matches!(
        idempotency::claim(&mut conn, &theirs, &hash).await.unwrap(),
        Claim::Claimed
    ));
}
