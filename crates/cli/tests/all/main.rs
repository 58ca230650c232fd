//! Behaviour tests of the real `remit` binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod commands;
mod containment;
mod gate;
mod run_cli;
mod support;
mod workspace;
