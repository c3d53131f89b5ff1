//! `tickiti-api`: the REST API, the staff web app, the outbox relay and the
//! background workers beside it (perspective counts, worker health). `main.rs` parses the command line
//! and calls into this library, so tests start the very same app in-process.

pub mod accounts;
pub mod app;
pub mod config;
pub mod counts;
pub mod events;
pub mod http;
pub mod relay;
pub mod routes;
pub mod state;
pub mod web;
pub mod worker_health;

pub use app::{Api, serve, serve_with};
pub use config::Config;
pub use state::AppState;
