//! Behaviour tests of the real `remit` binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod code_support;
mod codemode;
mod commands;
mod containment;
mod docs;
mod egress;
mod gate;
mod identity;
mod ledger;
mod mcp;
mod run_cli;
mod scan;
mod support;
mod workspace;
