//! `tickiti-api`: the REST API, the outbox relay and (in later issues) the
//! staff web app and command consumers. `main.rs` parses the command line
//! and calls into this library, so tests start the very same app in-process.

pub mod admin;
pub mod app;
pub mod config;
pub mod counts;
pub mod events;
pub mod http;
pub mod relay;
pub mod routes;
pub mod state;
pub mod web;

pub use app::{Api, serve, serve_with};
pub use config::Config;
pub use state::AppState;
