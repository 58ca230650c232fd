//! Crash recovery: tokens of a supervisor that died are revoked by the next one.

use std::path::Path;
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

/// The task `child_mints_and_exits` leaves orphaned.
const ORPHAN: &str = "01JCZ8Q6F3V4X2M8N9P0R1S2T9";

/// Run `child_mints_and_exits` on `home`: a supervisor that mints a token for [`ORPHAN`]
/// and dies without ending the task. Returns the token.
fn orphan_in(home: &Path) -> String {
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "processes::child_mints_and_exits",
            "--ignored",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, home)
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    std::fs::read_to_string(home.join("token")).unwrap()
}

/// The rows crash recovery reads.
fn open_tasks(home: &Path) -> i64 {
    rusqlite::Connection::open(home.join("identity/identity.db"))
        .unwrap()
        .query_row("SELECT COUNT(*) FROM open_tasks", [], |r| r.get(0))
        .unwrap()
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
    let orphan = orphan_in(home.path());
    // The child is gone: its task's token is valid until someone recovers.
    identity.verify(&orphan, None).unwrap();
    assert_eq!(identity.recover_orphans().unwrap(), vec![ORPHAN.to_owned()]);
    assert!(matches!(
        identity.verify(&orphan, None),
        Err(TokenError::Revoked { reason, .. }) if reason == "recovered_after_crash"
    ));
    // Ours (this process is alive) is untouched.
    identity.verify(mine.expose(), None).unwrap();
    assert!(identity.recover_orphans().unwrap().is_empty());
}

#[test]
fn a_store_made_before_open_tasks_still_recovers_its_orphans() {
    let home = tempfile::tempdir().unwrap();
    let orphan = orphan_in(home.path());
    // Back to the layout of earlier versions: no list of open tasks, no triggers, version 0.
    let db = rusqlite::Connection::open(home.path().join("identity/identity.db")).unwrap();
    db.execute_batch(
        "DROP TRIGGER tokens_open_task; DROP TRIGGER revoked_tasks_close_task;
         DROP TABLE open_tasks; PRAGMA user_version = 0;",
    )
    .unwrap();
    drop(db);
    let (upgraded, _) = identity(home.path());
    assert_eq!(open_tasks(home.path()), 1);
    // Upgraded once: a row taken out by hand is not put back by the next open.
    let db = rusqlite::Connection::open(home.path().join("identity/identity.db")).unwrap();
    db.execute_batch("DELETE FROM open_tasks").unwrap();
    drop(upgraded);
    let (again, _) = identity(home.path());
    assert_eq!(open_tasks(home.path()), 0);
    assert!(again.recover_orphans().unwrap().is_empty());
    // Put back (as the upgrade did), the orphan is recovered.
    db.execute_batch(&format!(
        "INSERT INTO open_tasks SELECT task, owner_pid, owner_start, owner_boot FROM tokens
         WHERE task = '{ORPHAN}'"
    ))
    .unwrap();
    assert_eq!(again.recover_orphans().unwrap(), vec![ORPHAN.to_owned()]);
    assert!(matches!(
        again.verify(&orphan, None),
        Err(TokenError::Revoked { reason, .. }) if reason == "recovered_after_crash"
    ));
}

#[test]
fn tokens_written_by_any_writer_open_their_task_and_revocations_close_it() {
    let home = tempfile::tempdir().unwrap();
    let (identity, _) = identity(home.path());
    orphan_in(home.path());
    // A writer that knows nothing of `open_tasks` (an earlier version of remit sharing the
    // home) records a token of a dead supervisor, then another that it ends.
    let db = rusqlite::Connection::open(home.path().join("identity/identity.db")).unwrap();
    for task in ["01JCZ8Q6F3V4X2M8N9P0R1S2TA", "01JCZ8Q6F3V4X2M8N9P0R1S2TB"] {
        db.execute(
            "INSERT INTO tokens (jti, kid, agent, task, iat, exp, owner_pid, owner_start, owner_boot)
             SELECT ?1 || jti, kid, agent, ?1, iat, exp, owner_pid, owner_start, owner_boot
             FROM tokens WHERE task = ?2",
            [task, ORPHAN],
        )
        .unwrap();
    }
    db.execute(
        "INSERT INTO revoked_tasks (task, reason, at) VALUES ('01JCZ8Q6F3V4X2M8N9P0R1S2TB', 'task_end', 0)",
        [],
    )
    .unwrap();
    let mut revoked = identity.recover_orphans().unwrap();
    revoked.sort();
    assert_eq!(
        revoked,
        vec![ORPHAN.to_owned(), "01JCZ8Q6F3V4X2M8N9P0R1S2TA".to_owned()]
    );
    assert_eq!(open_tasks(home.path()), 0);
}

#[test]
fn ended_tasks_leave_nothing_for_recovery_and_expired_orphans_are_still_revoked() {
    let home = tempfile::tempdir().unwrap();
    let (identity, clock) = identity(home.path());
    let task = "01JCZ8Q6F3V4X2M8N9P0R1S2T1";
    let token = identity
        .mint(&request(task, Duration::from_secs(3600)))
        .unwrap();
    assert_eq!(open_tasks(home.path()), 1);
    assert_eq!(identity.end_task(task).unwrap(), 1);
    assert_eq!(open_tasks(home.path()), 0);
    assert!(matches!(
        identity.verify(token.expose(), None),
        Err(TokenError::Revoked { .. })
    ));
    // A dead supervisor's task whose tokens look expired is revoked rather than forgotten:
    // the clock that says so may be ahead, and the tokens verify again once it is right.
    let orphan = orphan_in(home.path());
    assert_eq!(open_tasks(home.path()), 1);
    clock.advance(Duration::from_secs(2 * 3600));
    assert_eq!(identity.recover_orphans().unwrap(), vec![ORPHAN.to_owned()]);
    assert_eq!(open_tasks(home.path()), 0);
    // The clock put right: the token has not expired, and stays revoked.
    clock.set(remit_identity::Clock::now(
        &remit_identity::ManualClock::epoch_2026(),
    ));
    assert!(matches!(
        identity.verify(&orphan, None),
        Err(TokenError::Revoked { reason, .. }) if reason == "recovered_after_crash"
    ));
}
