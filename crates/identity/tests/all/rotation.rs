//! Key rotation: old tokens verify until they expire, new ones use the new key.

use std::time::Duration;

use remit_identity::jws;

use crate::common::{TASK, identity, request};

#[test]
fn rotation_keeps_old_tokens_verifiable_until_they_expire() {
    let home = tempfile::tempdir().unwrap();
    let (identity, clock) = identity(home.path());
    let old = identity
        .mint(&request(TASK, Duration::from_secs(3600)))
        .unwrap();
    let rotation = identity.rotate().unwrap();
    assert_eq!(rotation.retired.as_deref(), Some(old.kid.as_str()));
    assert_ne!(rotation.active, old.kid);
    assert!(rotation.pruned.is_empty());

    let new = identity
        .mint(&request(
            "01JCZ8Q6F3V4X2M8N9P0R1S2T4",
            Duration::from_secs(600),
        ))
        .unwrap();
    assert_eq!(new.kid, rotation.active);
    assert_eq!(
        jws::parse(new.expose()).unwrap().header.kid.as_deref(),
        Some(rotation.active.as_str())
    );
    // Both verify; both keys are published.
    identity.verify(old.expose(), None).unwrap();
    identity.verify(new.expose(), None).unwrap();
    let kids: Vec<String> = identity
        .jwks()
        .unwrap()
        .keys
        .into_iter()
        .filter_map(|k| k.kid)
        .collect();
    assert_eq!(kids, vec![new.kid.clone(), old.kid.clone()]);
    let keys = identity.keys().unwrap();
    assert_eq!(keys[0].state, "active");
    assert_eq!(keys[1].state, "retired");
    assert!(keys[1].verifies_until.is_some());

    // After the old key's last token expired, it is no longer published, and the next
    // rotation removes it.
    clock.advance(Duration::from_secs(3601));
    let kids: Vec<String> = identity
        .jwks()
        .unwrap()
        .keys
        .into_iter()
        .filter_map(|k| k.kid)
        .collect();
    assert_eq!(kids, vec![new.kid.clone()]);
    // Every token of both earlier keys has expired by now: both go.
    let second = identity.rotate().unwrap();
    let mut pruned = second.pruned.clone();
    pruned.sort();
    let mut expected = vec![old.kid.clone(), new.kid.clone()];
    expected.sort();
    assert_eq!(pruned, expected);
    assert_eq!(identity.keys().unwrap().len(), 1);
}

#[test]
fn a_rotation_by_another_process_is_followed() {
    let home = tempfile::tempdir().unwrap();
    let (a, _) = identity(home.path());
    let (b, _) = identity(home.path());
    let before = a.mint(&request(TASK, Duration::from_secs(600))).unwrap();
    let rotation = b.rotate().unwrap();
    // `a` still holds the old key in memory; it notices and signs with the new one.
    let after = a
        .mint(&request(
            "01JCZ8Q6F3V4X2M8N9P0R1S2T4",
            Duration::from_secs(600),
        ))
        .unwrap();
    assert_eq!(after.kid, rotation.active);
    assert_ne!(before.kid, after.kid);
    a.verify(before.expose(), None).unwrap();
    b.verify(after.expose(), None).unwrap();
}

#[test]
fn concurrent_minting_and_rotation_never_sign_with_a_retired_key() {
    let home = tempfile::tempdir().unwrap();
    let (identity, _) = identity(home.path());
    let identity = std::sync::Arc::new(identity);
    let minters: Vec<_> = (0..4)
        .map(|t| {
            let identity = identity.clone();
            std::thread::spawn(move || {
                (0..50)
                    .map(|i| {
                        let task = format!("T{t}X{i}");
                        let token = identity
                            .mint(&request(&task, Duration::from_secs(600)))
                            .unwrap();
                        token.expose().to_owned()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for _ in 0..5 {
        identity.rotate().unwrap();
    }
    for m in minters {
        for token in m.join().unwrap() {
            identity.verify(&token, None).unwrap();
        }
    }
}

/// A rotation run while the clock is ahead must not forget a revocation: the revoked task's
/// token looks expired then, but its key lives on (another token needs it), so once the
/// clock is right again the token would verify, with nothing left saying it was revoked.
#[test]
fn a_rotation_with_the_clock_ahead_keeps_revocations() {
    let home = tempfile::tempdir().unwrap();
    let (identity, clock) = identity(home.path());
    let right = remit_identity::Clock::now(&*clock);
    let revoked = identity
        .mint(&request(TASK, Duration::from_secs(600)))
        .unwrap();
    let other = identity
        .mint(&request(
            "01JCZ8Q6F3V4X2M8N9P0R1S2T4",
            Duration::from_secs(3600),
        ))
        .unwrap();
    identity.revoke_task(TASK, "killed").unwrap();
    assert!(identity.verify(revoked.expose(), None).is_err());

    clock.advance(Duration::from_secs(1200));
    let rotation = identity.rotate().unwrap();
    assert!(
        rotation.pruned.is_empty(),
        "the key still signs a live token"
    );
    clock.set(right + Duration::from_secs(10));
    assert!(
        identity.verify(revoked.expose(), None).is_err(),
        "a revoked token verifies again"
    );
    // The harmless twin: the other task's token still verifies.
    identity.verify(other.expose(), None).unwrap();
}
