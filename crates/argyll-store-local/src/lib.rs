//! # argyll-store-local
//!
//! The durable local store (issue 16): every `argyll-store` trait on an embedded storage
//! engine in a data directory, the default store of the `argyll` binary.
//!
//! **Status**: the candidate engines are measured on the store's access pattern
//! (`benches/engines.rs`: small appends per aggregate with and without an fsync, group commit,
//! short reads of a log's tail, index updates); the figures and the choice are in
//! `docs/ARCHITECTURE.md` ("The local store's engine"). The adapter itself is not written yet:
//! nothing depends on this crate.
//!
//! **Must not depend on**: the engine, runners, HTTP or configuration (like every store adapter).
