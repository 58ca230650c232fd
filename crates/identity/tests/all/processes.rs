//! Crash recovery: tokens of a supervisor that died are revoked by the next one.

use std::process::Command;
use std::time::Duration;

use remit_identity::TokenError;

use crate::common::{identity, request};

const CHILD_ENV: &str = "REMIT_IDENTITY_TEST_CHILD_HOME";

/// Run in a child process by `tokens_of_a_dead_supervisor_are_revoked`.
#[test]
#[ignore = "run as a child process by another test"]
fn child_mints_and_exits() {
    let Some(home) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let (identity, _) = identity(std::path::Path::new(&home));
    let token = identity
        .mint(&request(
            "01JCZ8Q6F3V4X2M8N9P0R1S2T9",
            Duration::from_secs(3600),
        ))
        .unwrap();
    std::fs::write(std::path::Path::new(&home).join("token"), token.expose()).unwrap();
}

#[test]
fn tokens_of_a_dead_supervisor_are_revoked() {
    let home = tempfile::tempdir().unwrap();
    let (identity, _) = identity(home.path());
    let mine = identity
        .mint(&request(
            "01JCZ8Q6F3V4X2M8N9P0R1S2T1",
            Duration::from_secs(3600),
        ))
        .unwrap();
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "processes::child_mints_and_exits",
            "--ignored",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, home.path())
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    let orphan = std::fs::read_to_string(home.path().join("token")).unwrap();
    // The child is gone: its task's token is valid until someone recovers.
    identity.verify(&orphan, None).unwrap();
    assert_eq!(
        identity.recover_orphans().unwrap(),
        vec!["01JCZ8Q6F3V4X2M8N9P0R1S2T9".to_owned()]
    );
    assert!(matches!(
        identity.verify(&orphan, None),
        Err(TokenError::Revoked { reason, .. }) if reason == "recovered_after_crash"
    ));
    // Ours (this process is alive) is untouched.
    identity.verify(mine.expose(), None).unwrap();
    assert!(identity.recover_orphans().unwrap().is_empty());
}
