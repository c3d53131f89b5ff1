//! End-to-end and fault tests live in `tests/`; tests whose names start with
//! `fault_` stop shared services and run alone, after the others (see
//! `scripts/test` and `.config/nextest.toml`).
