//! `sqlx::migrate!` embeds `migrations/api` at compile time, but on stable
//! Rust the compiler cannot be told that the macro read a directory: a new
//! migration file would not rebuild this crate, and a binary would ship
//! without it (https://docs.rs/sqlx/latest/sqlx/macro.migrate.html, "Triggering
//! Recompilation on Migration Changes").
fn main() {
    println!("cargo:rerun-if-changed=../../migrations/api");
}
