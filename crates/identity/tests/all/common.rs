//! Helpers shared by the tests.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use remit_identity::{Identity, ManualClock, TaskIdentityRequest};

pub(crate) const TASK: &str = "01JCZ8Q6F3V4X2M8N9P0R1S2T3";

/// An identity authority in `home` on a manual clock.
pub(crate) fn identity(home: &Path) -> (Identity, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::epoch_2026());
    let identity = Identity::open_home(home, clock.clone()).unwrap();
    (identity, clock)
}

pub(crate) fn request<'a>(task: &'a str, lifetime: Duration) -> TaskIdentityRequest<'a> {
    TaskIdentityRequest {
        agent: "ci-fixer",
        task,
        owner: "alice@example.com",
        requester: "alice",
        remit_hash: "sha256:4f2a",
        audience: &[],
        lifetime,
    }
}
