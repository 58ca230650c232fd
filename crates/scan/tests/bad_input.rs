//! Hostile and odd input: handled with a note, never a hang or a crash.

use std::path::Path;

use remit_scan::{NoteKind, ScanOptions};

use crate::support::{github_token, ids, scanner};

fn token() -> String {
    github_token("ghp_", "Zq8mK2vR7pLxWq3nB6cT9yH4jF1dS5")
}

#[test]
fn binary_files_are_skipped_with_a_note() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut data = vec![0u8, 1, 2, 3, 0, 0x7f, b'E', b'L', b'F'];
    data.extend_from_slice(format!("GITHUB_TOKEN={}", token()).as_bytes());
    std::fs::write(dir.path().join("blob.bin"), &data).expect("write");
    let report = scanner()
        .scan_paths(&[dir.path()], &ScanOptions::default())
        .expect("scan");
    assert!(report.findings.is_empty());
    assert_eq!(report.notes.len(), 1);
    assert_eq!(report.notes[0].kind, NoteKind::Binary);
    assert!(report.notes[0].to_string().contains("blob.bin"));
}

#[test]
fn invalid_utf8_is_scanned_as_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut data = b"caf\xe9 \xff\xfe latin-1 text\n".to_vec();
    data.extend_from_slice(format!("token: {}\n", token()).as_bytes());
    data.extend_from_slice(b"\xc3\x28\n");
    std::fs::write(dir.path().join("latin1.txt"), &data).expect("write");
    let report = scanner()
        .scan_paths(&[dir.path()], &ScanOptions::default())
        .expect("scan");
    assert_eq!(ids(&report.findings), ["github-pat-classic"]);
    assert_eq!(report.findings[0].line, 2);
}

#[test]
fn huge_files_are_skipped_by_size_without_reading() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = std::fs::File::create(dir.path().join("huge.log")).expect("create");
    file.set_len(10 * 1024 * 1024 * 1024).expect("sparse 10 GB");
    let report = scanner()
        .scan_paths(&[dir.path()], &ScanOptions::default())
        .expect("scan");
    assert_eq!(report.notes.len(), 1);
    assert!(
        matches!(report.notes[0].kind, NoteKind::TooLarge { size, .. } if size == 10 * 1024 * 1024 * 1024)
    );
    assert_eq!(report.bytes, 0);
}

#[test]
fn unreadable_files_are_noted() {
    // Root can read any mode-000 file; a read error from /proc/self/mem is the same to us.
    let report = scanner()
        .scan_paths(&[Path::new("/proc/self/mem")], &ScanOptions::default())
        .expect("scan");
    assert_eq!(report.notes.len(), 1, "{:?}", report.notes);
    assert!(report.notes[0].kind.is_error());
    assert!(
        report.notes[0]
            .to_string()
            .starts_with("`/proc/self/mem`: cannot read:")
    );
}

#[test]
fn missing_paths_are_errors_naming_the_path() {
    let err = scanner()
        .scan_paths(
            &[Path::new("/nonexistent/remit-scan-test")],
            &ScanOptions::default(),
        )
        .expect_err("missing");
    let text = err.to_string();
    assert!(
        text.contains("`/nonexistent/remit-scan-test`") && !text.contains('\n'),
        "{text}"
    );
}

#[cfg(unix)]
#[test]
fn symlink_loops_and_fifos_do_not_hang() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).expect("mkdir");
    std::os::unix::fs::symlink(dir.path(), sub.join("loop")).expect("symlink");
    std::os::unix::fs::symlink("missing-target", dir.path().join("dangling")).expect("symlink");
    let fifo = dir.path().join("pipe");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(status.success());
    std::fs::write(sub.join("a.txt"), format!("t = {}\n", token())).expect("write");

    // Not following: links are noted, the FIFO is never opened.
    let report = scanner()
        .scan_paths(&[dir.path()], &ScanOptions::default())
        .expect("scan");
    assert_eq!(ids(&report.findings), ["github-pat-classic"]);
    assert!(report.notes.iter().any(|n| n.kind == NoteKind::Symlink));
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.kind == NoteKind::NotRegular && n.path.ends_with("pipe"))
    );

    // Following: the loop is detected and noted, the file is found once.
    let options = ScanOptions {
        follow_symlinks: true,
        ..ScanOptions::default()
    };
    let report = scanner().scan_paths(&[dir.path()], &options).expect("scan");
    assert_eq!(ids(&report.findings), ["github-pat-classic"]);
    assert!(
        report.notes.iter().any(|n| n.kind == NoteKind::SymlinkLoop),
        "{:?}",
        report.notes
    );
}

#[test]
fn pathological_lines_finish() {
    let s = scanner();
    // Keywords every few bytes on one 4 MiB line, no newline: windows are bounded and each
    // rule searches a stretch of the line once.
    let mut line = Vec::with_capacity(4 << 20);
    while line.len() < 4 << 20 {
        line.extend_from_slice(b"password=token=secret=://a:b@");
    }
    let found = s.scan_bytes(&line);
    assert!(found.len() < 1000);
    // Nested repetition that makes backtracking engines explode.
    let evil = format!("password = \"{}\"", "a".repeat(200_000) + "!");
    let _ = s.scan_bytes(evil.as_bytes());
    // A long line in a file is noted.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("min.js"), &line).expect("write");
    let report = s
        .scan_paths(&[dir.path()], &ScanOptions::default())
        .expect("scan");
    assert!(
        report.notes.iter().any(|n| n.kind == NoteKind::LongLine),
        "{:?}",
        report.notes
    );
}
