//! `sqlx::migrate!` embeds `migrations/realtime` at compile time; see
//! `crates/store/build.rs` for why a new migration needs this to rebuild.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations/realtime");
}
