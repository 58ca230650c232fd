//! The secret store: sealed at rest, never in clear on disk, never printed.

use std::sync::Arc;

use remit_identity::{MasterKey, SystemClock, master_key_path};
use remit_vault::{Vault, VaultError, vault_db_path};

use crate::common::{Home, all_bytes, contains};

#[test]
fn set_get_list_rotate_remove() {
    let home = Home::new();
    let v = &home.vault;
    let info = v
        .set("anthropic", b"sk-ant-api03-AAAAbbbbCCCC0123", "alice")
        .unwrap();
    assert_eq!(info.version, 1);
    assert_eq!(
        v.get("anthropic").unwrap().expose(),
        b"sk-ant-api03-AAAAbbbbCCCC0123"
    );
    let info = v
        .rotate("anthropic", b"sk-ant-api03-DDDDeeeeFFFF4567", "bob")
        .unwrap();
    assert_eq!((info.version, info.updated_by.as_str()), (2, "bob"));
    assert_eq!(
        v.get("anthropic").unwrap().expose(),
        b"sk-ant-api03-DDDDeeeeFFFF4567"
    );
    v.set("github", b"ghp_0123456789abcdefghij", "alice")
        .unwrap();
    let names: Vec<String> = v.list().unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(names, vec!["anthropic", "github"]);
    let listed = serde_json::to_string(&v.list().unwrap()).unwrap();
    assert!(
        !listed.contains("sk-ant") && !listed.contains("ghp_"),
        "{listed}"
    );
    assert!(!format!("{:?}", v.get("github").unwrap()).contains("ghp_"));
    assert!(v.remove("github").unwrap());
    assert!(!v.remove("github").unwrap());
    assert!(matches!(v.get("github"), Err(VaultError::NoSecret(_))));
    assert!(matches!(
        v.rotate("nope", b"x", "a"),
        Err(VaultError::NoSecret(_))
    ));
    assert!(matches!(
        v.set("a b", b"x", "a"),
        Err(VaultError::BadName(_))
    ));
    assert!(matches!(
        v.set("ok", b"", "a"),
        Err(VaultError::BadValue(..))
    ));
    assert!(matches!(
        v.set("ok", &vec![b'x'; 70_000], "a"),
        Err(VaultError::BadValue(..))
    ));
}

#[test]
fn the_store_never_holds_a_value_in_clear() {
    let home = Home::new();
    let values: Vec<Vec<u8>> = (0..20)
        .map(|i| format!("value-{i:02}-Zq8XmR3pLw7Tn2Vb").into_bytes())
        .collect();
    for (i, value) in values.iter().enumerate() {
        home.vault.set(&format!("s{i}"), value, "alice").unwrap();
    }
    for (i, value) in values.iter().enumerate().step_by(3) {
        home.vault
            .rotate(
                &format!("s{i}"),
                &[value.as_slice(), b"-v2"].concat(),
                "alice",
            )
            .unwrap();
    }
    // Leases too: a git token is a value the task gets.
    let lease = home
        .broker
        .issue_for_task(
            &crate::common::task("T1"),
            &crate::common::remit(
                "[credentials.git.w]\nrepository = \"https://git.internal/acme/w\"\n",
            ),
            std::time::Duration::from_secs(600),
        )
        .unwrap();
    let token = lease.env[0].1.expose().to_vec();
    // Every file of the home (the store, its -wal and -shm, the key file) as written.
    let files = all_bytes(home.path());
    assert!(files.iter().any(|(p, _)| p.ends_with("vault.db")));
    for (path, bytes) in &files {
        for value in values.iter().chain([&token]) {
            assert!(!contains(bytes, value), "`{path}` holds a value in clear");
            assert!(
                !contains(bytes, &value[..12]),
                "`{path}` holds part of a value"
            );
        }
    }
    // The sealed rows are there (the test would pass on an empty file otherwise).
    assert_eq!(home.vault.list().unwrap().len(), 20);
}

#[test]
fn a_wrong_master_key_or_a_tampered_row_is_refused() {
    let home = Home::new();
    home.vault
        .set("k", b"the-value-0123456789", "alice")
        .unwrap();
    home.vault
        .set("j", b"other-value-0123456789", "alice")
        .unwrap();
    // Swap the sealed values of two rows: each is bound to its name.
    let conn = rusqlite::Connection::open(vault_db_path(home.path())).unwrap();
    conn.execute_batch(
        "UPDATE secrets SET sealed = (SELECT sealed FROM secrets WHERE name = 'j') WHERE name = 'k'",
    )
    .unwrap();
    let err = home.vault.get("k").unwrap_err().to_string();
    assert!(err.contains("does not authenticate"), "{err}");
    assert!(!err.contains("value"), "{err}");

    // Another master key: the error names the key, not tampering.
    std::fs::remove_file(master_key_path(home.path())).unwrap();
    MasterKey::generate()
        .unwrap()
        .save_new(&master_key_path(home.path()))
        .unwrap();
    let other = Vault::open_home(home.path(), Arc::new(SystemClock)).unwrap();
    let err = other.get("j").unwrap_err().to_string();
    assert!(err.contains("wrong key file"), "{err}");
}

#[test]
fn many_handles_share_the_store() {
    let home = Home::new();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let path = home.path().to_path_buf();
            std::thread::spawn(move || {
                let vault = Vault::open_home(&path, Arc::new(SystemClock)).unwrap();
                for i in 0..25 {
                    vault
                        .set(
                            &format!("t{t}-{i}"),
                            format!("value-{t}-{i}-xxxxxxxx").as_bytes(),
                            "x",
                        )
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(home.vault.list().unwrap().len(), 100);
    assert_eq!(
        home.vault.get("t3-24").unwrap().expose(),
        b"value-3-24-xxxxxxxx"
    );
}
