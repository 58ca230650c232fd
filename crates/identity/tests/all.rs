//! Integration tests of remit-identity: tokens, rotation, revocation, crash recovery,
//! interoperability with an independent JOSE library.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "all/common.rs"]
mod common;
#[path = "all/interop.rs"]
mod interop;
#[path = "all/processes.rs"]
mod processes;
#[path = "all/rotation.rs"]
mod rotation;
#[path = "all/tokens.rs"]
mod tokens;
