//! Code mode's isolate with a host the tests control: bindings, limits, bad input and the
//! escape suite. The task's real host is tested through the `remit` binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "all/support.rs"]
mod support;

#[path = "all/isolate.rs"]
mod isolate;

#[path = "all/limits.rs"]
mod limits;

#[path = "all/escape.rs"]
mod escape;

#[path = "all/policy.rs"]
mod policy;
