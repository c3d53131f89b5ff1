//! A handler's way to its transaction ([`Db`] → [`Tx`]).
//!
//! Most requests get a transaction of their own, as from the pool. A POST
//! with an `Idempotency-Key` gets a savepoint inside the request's
//! transaction instead, which the idempotency layer opened with the key's
//! claim and commits together with the stored answer
//! ([`super::idempotency`]): the change and the answer a retry replays are
//! one commit, so a crash between them can neither lose the answer nor let
//! the retry do the work twice.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The extractor: where [`Db::begin`] takes its transaction from.
pub struct Db {
    pool: PgPool,
    shared: Option<SharedTx>,
}

/// The request's transaction, lent to the handler one savepoint at a time
/// (a request extension the idempotency layer sets).
#[derive(Clone)]
pub struct SharedTx(Arc<Mutex<Shared>>);

/// What [`SharedTx`] guards.
pub struct Shared {
    tx: Transaction<'static, Postgres>,
    /// The savepoint `handler` the handler opened and neither committed nor undid (it
    /// returned early, with an error): rolled back before anything else.
    unfinished: bool,
}

impl SharedTx {
    /// Lends `tx` to the handlers of this request.
    pub fn new(tx: Transaction<'static, Postgres>) -> Self {
        Self(Arc::new(Mutex::new(Shared {
            tx,
            unfinished: false,
        })))
    }

    /// Takes the transaction back once the handler has answered, with any
    /// unfinished work undone; None while a handler still holds it (it
    /// spawned its work, which no handler does).
    pub async fn finish(self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        let Ok(shared) = Arc::try_unwrap(self.0) else {
            return Err(sqlx::Error::Protocol(
                "a handler still holds the request's transaction".into(),
            ));
        };
        let mut shared = shared.into_inner();
        shared.undo_unfinished().await?;
        Ok(shared.tx)
    }
}

impl Shared {
    async fn undo_unfinished(&mut self) -> Result<(), sqlx::Error> {
        if self.unfinished {
            sqlx::raw_sql("ROLLBACK TO SAVEPOINT handler; RELEASE SAVEPOINT handler")
                .execute(&mut *self.tx)
                .await?;
            self.unfinished = false;
        }
        Ok(())
    }
}

impl FromRequestParts<AppState> for Db {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        Ok(Self {
            pool: state.db.clone(),
            shared: parts.extensions.get::<SharedTx>().cloned(),
        })
    }
}

impl Db {
    /// Whether [`Db::begin`] lends the request's transaction (an
    /// idempotent POST) rather than starting one.
    pub fn is_request_transaction(&self) -> bool {
        self.shared.is_some()
    }

    /// A transaction for the handler's work: commit it with
    /// [`AppState::commit`]; dropped without, it is rolled back.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        let Some(SharedTx(shared)) = &self.shared else {
            return Ok(Tx::Own(self.pool.begin().await?));
        };
        let mut shared = shared.clone().lock_owned().await;
        shared.undo_unfinished().await?;
        sqlx::raw_sql("SAVEPOINT handler")
            .execute(&mut *shared.tx)
            .await?;
        shared.unfinished = true;
        Ok(Tx::Savepoint(shared))
    }
}

/// A handler's transaction: its own, or a savepoint in the request's.
pub enum Tx {
    /// From the pool: commit commits.
    Own(Transaction<'static, Postgres>),
    /// In the request's transaction: commit keeps the work, and the
    /// idempotency layer commits it with the answer.
    Savepoint(OwnedMutexGuard<Shared>),
}

impl Tx {
    /// Keeps the work: commits an own transaction, releases a savepoint.
    /// True when it is now visible to others (the relay may be woken).
    pub async fn commit(self) -> Result<bool, sqlx::Error> {
        match self {
            Tx::Own(tx) => {
                tx.commit().await?;
                Ok(true)
            }
            Tx::Savepoint(mut shared) => {
                sqlx::raw_sql("RELEASE SAVEPOINT handler")
                    .execute(&mut *shared.tx)
                    .await?;
                shared.unfinished = false;
                Ok(false)
            }
        }
    }
}

impl Tx {
    /// Undoes the work now (dropping the transaction does the same, later).
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Own(tx) => tx.rollback().await,
            Tx::Savepoint(mut shared) => shared.undo_unfinished().await,
        }
    }
}

impl Deref for Tx {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        match self {
            Tx::Own(tx) => tx,
            Tx::Savepoint(shared) => &shared.tx,
        }
    }
}

impl DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut PgConnection {
        match self {
            Tx::Own(tx) => tx,
            Tx::Savepoint(shared) => &mut shared.tx,
        }
    }
}
