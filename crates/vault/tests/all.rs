//! remit-vault integration tests: one binary, one module per area. PostgreSQL tests run
//! against a throwaway cluster started from Debian's packages (`remit_ledger::testing`).

// Helpers outside `#[test]` functions unwrap too: this whole crate is test code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "all/common.rs"]
mod common;

#[path = "all/crash.rs"]
mod crash;
#[path = "all/github.rs"]
mod github;
#[path = "all/inventory.rs"]
mod inventory;
#[path = "all/leases.rs"]
mod leases;
#[path = "all/ledger.rs"]
mod ledger;
#[path = "all/postgres.rs"]
mod postgres;
#[path = "all/secrets.rs"]
mod secrets;
