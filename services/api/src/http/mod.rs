//! The HTTP edge: errors, extractors and the layers every request passes.

pub mod client;
pub mod db;
pub mod error;
pub mod extract;
pub mod guard;
pub mod idempotency;
pub mod sign_in;

pub use db::{Db, Tx};
pub use error::{ApiError, ApiResult};
pub use extract::{Json, ListOut, ListQuery};
pub use guard::Principal;
