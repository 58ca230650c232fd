//! Signed notes and checkpoints: the C2SP format, checked against the Go reference vector.

use remit_ledger::key::key_id;
use remit_ledger::note::{Checkpoint, open_note, sign_note};
use remit_ledger::{LedgerKey, OsRandomness, PublicKey, SignedCheckpoint};

const GO_SKEY: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const GO_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const GO_NOTE: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

#[test]
fn go_reference_vector() {
    let key = LedgerKey::parse_private(GO_SKEY).unwrap();
    assert_eq!(key.public().to_vkey(), GO_VKEY);
    assert_eq!(key.to_private(), GO_SKEY);
    assert_eq!(sign_note(GO_TEXT, &key).unwrap(), GO_NOTE);
    let public = PublicKey::parse_vkey(GO_VKEY).unwrap();
    assert_eq!(public.id(), 0xc74f20a3);
    assert_eq!(key_id("PeterNeumann", &public.bytes()), 0xc74f20a3);
    assert_eq!(open_note(GO_NOTE, &public).unwrap(), GO_TEXT);
    let altered = GO_NOTE.replace("cryptography", "cryptographY");
    assert!(open_note(&altered, &public).is_err());
}

#[test]
fn unknown_signatures_are_ignored_but_one_known_is_required() {
    let a = LedgerKey::from_seed("a.example/log", [1; 32]).unwrap();
    let b = LedgerKey::from_seed("b.example/log", [2; 32]).unwrap();
    let note = sign_note("hello\n", &a).unwrap();
    let sig_b = sign_note("hello\n", &b).unwrap();
    let sig_line = sig_b.lines().last().unwrap();
    let both = format!("{note}{sig_line}\n");
    assert_eq!(open_note(&both, &a.public()).unwrap(), "hello\n");
    assert_eq!(open_note(&both, &b.public()).unwrap(), "hello\n");
    let c = LedgerKey::from_seed("c.example/log", [3; 32]).unwrap();
    let err = open_note(&both, &c.public()).unwrap_err();
    assert!(
        err.to_string()
            .contains("not signed by key `c.example/log`"),
        "{err}"
    );
}

#[test]
fn malformed_notes_are_refused() {
    let key = LedgerKey::from_seed("a.example/log", [1; 32]).unwrap();
    let note = sign_note("hello\n", &key).unwrap();
    for bad in [
        "",
        "hello\n",
        "hello\n\n",
        &note.replace('\u{2014}', "-"),
        note.trim_end(),
        &note.replace("hello", "hel\u{7}lo"),
        &format!("{}\n", note.trim_end().trim_end_matches('=')),
    ] {
        assert!(open_note(bad, &key.public()).is_err(), "accepted {bad:?}");
    }
    assert!(sign_note("no newline", &key).is_err());
    assert!(sign_note("tab\there\n", &key).is_err());
}

#[test]
fn checkpoint_round_trip_and_strict_parse() {
    let key = LedgerKey::from_seed("example.com/behind-the-sofa", [8; 32]).unwrap();
    let cp = Checkpoint {
        origin: "example.com/behind-the-sofa".into(),
        size: 20852163,
        root: [0xab; 32],
    };
    let signed = SignedCheckpoint::sign(cp.clone(), &key).unwrap();
    assert!(
        signed
            .note
            .starts_with("example.com/behind-the-sofa\n20852163\n")
    );
    let opened = SignedCheckpoint::open(&signed.note, &key.public()).unwrap();
    assert_eq!(opened.checkpoint, cp);
    for bad in [
        "origin\n01\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n",
        "origin\n-1\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n",
        "origin\n1\nshort=\n",
        "\n1\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n",
        "origin\n1\n",
        "origin\n18446744073709551616\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n",
    ] {
        assert!(Checkpoint::parse_text(bad).is_err(), "accepted {bad:?}");
    }
    // Another origin under the same key name is refused.
    let other = SignedCheckpoint::sign(
        Checkpoint {
            origin: "someone.else/log".into(),
            ..cp
        },
        &key,
    )
    .unwrap();
    assert!(SignedCheckpoint::open(&other.note, &key.public()).is_err());
}

#[test]
fn keys_parse_strictly_and_files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.key");
    let key =
        LedgerKey::load_or_create(&path, "remit.local/ledger/test", &mut OsRandomness).unwrap();
    let again = LedgerKey::load_or_create(&path, "ignored", &mut OsRandomness).unwrap();
    assert_eq!(key.public(), again.public());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = LedgerKey::load(&path).unwrap_err();
        assert!(err.to_string().contains("readable by others"), "{err}");
    }
    assert!(key.save_new(&path).is_err(), "never overwrites a key");
    let debug = format!("{key:?}");
    assert!(!debug.contains("PRIVATE"), "{debug}");

    for bad in [
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+AhpcZ2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3",
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10",
        "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ] {
        assert!(PublicKey::parse_vkey(bad).is_err(), "accepted {bad}");
    }
    assert!(LedgerKey::parse_private("PRIVATE+KEY+x+00000000+AQ==").is_err());
    assert!(LedgerKey::from_seed("has+plus", [0; 32]).is_err());
}
