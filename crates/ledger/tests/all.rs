//! remit-ledger integration tests: one binary, one module per area. Every store test runs on
//! SQLite and on a throwaway PostgreSQL started from Debian's packages.

// Helpers outside `#[test]` functions unwrap too: this whole crate is test code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "all/common.rs"]
mod common;

#[path = "all/bad_input.rs"]
mod bad_input;
#[path = "all/crash.rs"]
mod crash;
#[path = "all/export.rs"]
mod export;
#[path = "all/merkle.rs"]
mod merkle;
#[path = "all/note.rs"]
mod note;
#[path = "all/processes.rs"]
mod processes;
#[path = "all/receipt.rs"]
mod receipt;
#[path = "all/schema.rs"]
mod schema;
#[path = "all/tamper.rs"]
mod tamper;
#[path = "all/writer.rs"]
mod writer;
