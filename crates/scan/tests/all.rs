//! Integration tests of remit-scan (one binary, one module per area).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bad_input;
mod engine;
mod examples;
mod git;
mod known;
mod redact;
mod support;
