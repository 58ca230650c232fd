//! Bad input: one-line errors naming what failed, never a panic, never a modified ledger.

use std::path::Path;

use remit_ledger::verify::{VerifyOptions, verify};
use remit_ledger::{Error, InclusionBundle, LedgerKey, LedgerReader, Location, Query};

use crate::common::{Backend, Env, both_stores, fill};

fn closed(backend: Backend) -> Env {
    let env = Env::new(backend);
    let ledger = env.open();
    fill(&ledger);
    ledger.close().unwrap();
    env
}

fn closed_sqlite() -> Env {
    closed(Backend::Sqlite)
}

/// A closed ledger as one file: its write-ahead log folded in and removed, as after a
/// checkpoint (writers leave a small log beside the database; damaging the database alone
/// would leave the log's copies of the pages intact).
fn single_file_sqlite() -> Env {
    let env = closed_sqlite();
    let p = path(&env).to_owned();
    rusqlite::Connection::open(&p)
        .unwrap()
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap();
    for suffix in ["-wal", "-shm"] {
        let mut name = p.as_os_str().to_owned();
        name.push(suffix);
        let _ = std::fs::remove_file(name);
    }
    env
}

fn path(env: &Env) -> &Path {
    match &env.location {
        Location::Sqlite(p) => p,
        Location::Postgres(_) => unreachable!(),
    }
}

fn one_line(err: &Error) -> String {
    let msg = err.to_string();
    assert!(!msg.contains('\n'), "multi-line error: {msg}");
    assert!(!msg.is_empty());
    msg
}

fn snapshot(dir: &Path) -> Vec<(String, usize, String)> {
    use sha2::Digest;
    let mut files: Vec<(String, usize, String)> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| {
            let bytes = std::fs::read(e.path()).unwrap();
            let digest = remit_ledger::hex::encode(&sha2::Sha256::digest(&bytes));
            (
                e.file_name().to_string_lossy().into_owned(),
                bytes.len(),
                digest,
            )
        })
        // SQLite may create an empty shared-memory index for a read-only WAL reader.
        .filter(|(name, _, _)| !name.ends_with("-shm"))
        .collect();
    files.sort();
    files
}

#[test]
fn reading_never_modifies_the_ledger() {
    let env = closed_sqlite();
    let before = snapshot(env.dir.path());
    let mut reader = env.reader();
    verify(
        &mut reader,
        &VerifyOptions {
            key: Some(env.key.public()),
            against: vec![],
        },
    )
    .unwrap();
    reader.scan(&Query::default(), &mut |_| Ok(true)).unwrap();
    let mut sink = Vec::new();
    remit_ledger::export::export(
        &mut reader,
        &Query::default(),
        remit_ledger::export::Format::Ocsf,
        &mut sink,
    )
    .unwrap();
    reader.prove(3, &env.key.public()).unwrap();
    drop(reader);
    assert_eq!(snapshot(env.dir.path()), before);
}

fn events_of(reader: &mut LedgerReader, env: &Env) -> u64 {
    verify(
        reader,
        &VerifyOptions {
            key: Some(env.key.public()),
            against: vec![],
        },
    )
    .unwrap()
    .events
}

/// A ledger no writer had open is read as immutable: no log, no locks, no file created. A
/// writer that starts meanwhile and folds its log into the file changes it under the reader,
/// so a snapshot (`verify`) is read again, through the log the writer left, and reads made
/// outside one (`show`, `export`) are told to be made again instead of passing for whole.
#[test]
fn a_writer_that_starts_under_an_unlocked_reader_is_noticed() {
    let env = single_file_sqlite();
    let mut verifier = env.reader();
    let mut lister = env.reader();
    let before = events_of(&mut env.reader(), &env);
    assert_eq!(lister.size().unwrap(), before);
    // A writer opens the ledger, appends, closes, and its log is folded into the file.
    let ledger = env.open();
    fill(&ledger);
    ledger.close().unwrap();
    rusqlite::Connection::open(path(&env))
        .unwrap()
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap();
    let after = events_of(&mut verifier, &env);
    assert!(after > before, "{after} events, {before} before");
    let err = lister.settled().unwrap_err();
    assert!(one_line(&err).contains("read it again"), "{err}");
    // Read again (now through the log), it is whole.
    lister.settled().unwrap();
    assert_eq!(lister.size().unwrap(), after);
}

/// A ledger reached through a symbolic link is read with its write-ahead log, which lies
/// beside the file the link leads to: the events only in the log are there.
#[test]
fn a_ledger_reached_through_a_link_is_read_with_its_log() {
    let env = closed_sqlite();
    let mut wal = path(&env).as_os_str().to_owned();
    wal.push("-wal");
    assert!(
        std::fs::metadata(&wal).unwrap().len() > 0,
        "the writer left events in its log"
    );
    let direct = events_of(&mut env.reader(), &env);
    let elsewhere = tempfile::tempdir().unwrap();
    let link = elsewhere.path().join("ledger.db");
    std::os::unix::fs::symlink(path(&env), &link).unwrap();
    let mut reader = LedgerReader::open(&Location::Sqlite(link)).unwrap();
    assert_eq!(events_of(&mut reader, &env), direct);
}

#[test]
fn the_reader_cannot_write_even_if_asked() {
    let env = closed_sqlite();
    let mut store = env.location.open_read().unwrap();
    let row = store.latest_checkpoint().unwrap().unwrap();
    let err = store
        .transaction(true, &mut |tx| tx.keep(row.size))
        .unwrap_err();
    let msg = one_line(&err);
    assert!(
        msg.contains("readonly") || msg.contains("read-only") || msg.contains("read only"),
        "{msg}"
    );
}

#[test]
fn truncated_file() {
    let env = single_file_sqlite();
    let p = path(&env);
    let bytes = std::fs::read(p).unwrap();
    std::fs::write(p, &bytes[..bytes.len() / 3]).unwrap();
    let err = LedgerReader::open(&env.location)
        .and_then(|mut r| {
            verify(
                &mut r,
                &VerifyOptions {
                    key: Some(env.key.public()),
                    against: vec![],
                },
            )
            .map(|_| ())
        })
        .unwrap_err();
    let msg = one_line(&err);
    assert!(msg.contains("ledger.db"), "{msg}");
}

#[test]
fn corrupted_file() {
    let env = single_file_sqlite();
    let p = path(&env);
    let mut bytes = std::fs::read(p).unwrap();
    // Scribble over the middle pages (b-tree pages), keeping the header.
    let len = bytes.len();
    for b in &mut bytes[4096..len.min(4096 * 6)] {
        *b = 0xa5;
    }
    std::fs::write(p, &bytes).unwrap();
    let result = LedgerReader::open(&env.location).and_then(|mut r| {
        verify(
            &mut r,
            &VerifyOptions {
                key: Some(env.key.public()),
                against: vec![],
            },
        )
        .map(|_| ())
    });
    let err = result.unwrap_err();
    let msg = one_line(&err);
    assert!(msg.contains("ledger"), "{msg}");
}

#[test]
fn not_a_database_and_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.db");
    std::fs::write(
        &junk,
        b"this is not a database at all, just some text that is long enough",
    )
    .unwrap();
    let err = LedgerReader::open(&Location::Sqlite(junk)).unwrap_err();
    assert!(one_line(&err).contains("not a sqlite database"), "{err}");
    let err = LedgerReader::open(&Location::Sqlite(dir.path().join("none.db"))).unwrap_err();
    assert!(one_line(&err).contains("no ledger at"), "{err}");
    assert!(
        !dir.path().join("none.db").exists(),
        "reading created a file"
    );
    let empty = dir.path().join("empty.db");
    rusqlite::Connection::open(&empty)
        .unwrap()
        .execute_batch("CREATE TABLE events (x)")
        .unwrap();
    let err = LedgerReader::open(&Location::Sqlite(empty)).unwrap_err();
    assert!(one_line(&err).contains("not a remit ledger"), "{err}");
}

fn wrong_key(backend: Backend) {
    let env = closed(backend);
    let mut reader = env.reader();
    let stranger = LedgerKey::from_seed("test.remit/ledger-a", [42; 32]).unwrap();
    let err = verify(
        &mut reader,
        &VerifyOptions {
            key: Some(stranger.public()),
            against: vec![],
        },
    )
    .unwrap_err();
    assert!(one_line(&err).contains("re-keyed or rewritten"), "{err}");
    let other_name = LedgerKey::from_seed("test.remit/elsewhere", [42; 32]).unwrap();
    let err = verify(
        &mut reader,
        &VerifyOptions {
            key: Some(other_name.public()),
            against: vec![],
        },
    )
    .unwrap_err();
    assert!(
        one_line(&err).contains("trusted key is for `test.remit/elsewhere`"),
        "{err}"
    );
}

fn proofs_verify_offline_and_detect_changes(backend: Backend) {
    let env = closed(backend);
    let mut reader = env.reader();
    let bundle = reader.prove(21, &env.key.public()).unwrap();
    let json = serde_json::to_string(&bundle).unwrap();
    let parsed: InclusionBundle = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed.verify(&env.key.public()).unwrap().seq, 21);

    let mut edited = parsed.clone();
    edited.event = edited.event.replace("protect-main", "protect-xxxx");
    assert!(one_line(&edited.verify(&env.key.public()).unwrap_err()).contains("altered"));
    let mut edited = parsed.clone();
    edited.proof[0] = "00".repeat(32);
    assert!(edited.verify(&env.key.public()).is_err());
    let mut edited = parsed.clone();
    edited.proof[0] = "zz".into();
    assert!(one_line(&edited.verify(&env.key.public()).unwrap_err()).contains("not 32 bytes"));
    let mut edited = parsed;
    edited.seq = 22;
    assert!(edited.verify(&env.key.public()).is_err());
    let stranger = LedgerKey::from_seed("test.remit/ledger-a", [42; 32]).unwrap();
    assert!(bundle.verify(&stranger.public()).is_err());
    assert!(reader.prove(42, &env.key.public()).is_err());
}

fn ledgers_of_an_older_layout_are_refused(backend: Backend) {
    let env = closed(backend);
    env.sql("UPDATE {meta} SET value = '1' WHERE key = 'layout'");
    let expected = "layout version 1 is from an older remit; this build reads only layout 2";
    let err = LedgerReader::open(&env.location).unwrap_err();
    assert!(one_line(&err).contains(expected), "{err}");
    let err = remit_ledger::Ledger::open(
        env.location.clone(),
        env.key.clone(),
        env.clock.clone(),
        remit_ledger::Options::default(),
    )
    .unwrap_err();
    assert!(one_line(&err).contains(expected), "{err}");
}

both_stores! {
    wrong_key_on => wrong_key;
    proofs_on => proofs_verify_offline_and_detect_changes;
    older_layouts_on => ledgers_of_an_older_layout_are_refused;
}

/// PostgreSQL: a database that holds no ledger, a database that does not exist and a server
/// that does not answer are each one line, and reading creates nothing.
#[test]
fn postgres_without_a_ledger() {
    // A fresh, empty database of its own.
    let env = Env::new(Backend::Postgres);
    let (Location::Postgres(url), Some(db)) = (&env.location, &env.db) else {
        unreachable!("a PostgreSQL environment");
    };
    let err = LedgerReader::open(&env.location).unwrap_err();
    assert!(one_line(&err).contains("not a remit ledger"), "{err}");
    // Still nothing there: the reader made no table.
    let err = LedgerReader::open(&env.location).unwrap_err();
    assert!(one_line(&err).contains("not a remit ledger"), "{err}");

    let missing = url.replace(db.as_str(), "bad_input_missing");
    let err = LedgerReader::open(&Location::Postgres(missing)).unwrap_err();
    assert!(one_line(&err).contains("bad_input_missing"), "{err}");

    let nobody = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = nobody.local_addr().unwrap().port();
    drop(nobody);
    let down = format!("postgresql://remit@127.0.0.1:{port}/ledger?connect_timeout=2");
    let err = LedgerReader::open(&Location::Postgres(down)).unwrap_err();
    assert!(
        one_line(&err).contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}
