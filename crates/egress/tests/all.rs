//! remit-egress integration tests: real tools (curl, git, pip, npm) through the proxy, to
//! origins on loopback, and attacks next to their harmless twins.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub,
    missing_debug_implementations
)]

#[path = "all/support.rs"]
mod support;

#[path = "all/http.rs"]
mod http;

#[path = "all/credentials.rs"]
mod credentials;

#[path = "all/ssrf.rs"]
mod ssrf;

#[path = "all/bad_input.rs"]
mod bad_input;

#[path = "all/git.rs"]
mod git;

#[path = "all/tools.rs"]
mod tools;

#[path = "all/budget.rs"]
mod budget;

#[path = "all/netns.rs"]
mod netns;

#[path = "all/tunnel.rs"]
mod tunnel;
