//! The redacting writer: secrets never pass, whatever the write boundaries.

use std::io::Write as _;

use base64::Engine as _;
use proptest::prelude::*;
use remit_scan::{KnownSecrets, RedactingWriter};

use crate::support::{github_token, scanner};

const KNOWN: &str = "vault-issued S3cret value";

fn gh() -> String {
    github_token("ghp_", "Zq8mK2vR7pLxWq3nB6cT9yH4jF1dS5")
}

fn key_block() -> String {
    let line = "Zx9QvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7";
    let body: String = (0..6)
        .map(|i| format!("{}{}\n", &line[..50], i % 10))
        .collect();
    format!("-----BEGIN RSA PRIVATE KEY-----\n{body}-----END RSA PRIVATE KEY-----\n")
}

/// A transcript with secrets in several forms, and the secret strings that must not appear.
fn stream() -> (Vec<u8>, Vec<String>) {
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("x{KNOWN}y"));
    let url = KNOWN.replace(' ', "%20");
    let text = format!(
        "$ ./deploy.sh\nusing token {gh}\nPASSWORD=Qm7#xP2!vK9@wL\nbody={b64}\nurl=?s={url}&x=1\nconfig: {KNOWN}\n{key}done\n",
        gh = gh(),
        key = key_block()
    );
    let secrets = vec![
        gh(),
        "Qm7#xP2!vK9@wL".to_owned(),
        KNOWN.to_owned(),
        "vault-issued%20S3cret".to_owned(),
        "Zx9QvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"[..40].to_owned(),
    ];
    // The base64 form: its middle is fixed whatever the alignment.
    let mut all = secrets;
    all.push(b64[4..b64.len() - 4].to_owned());
    (text.into_bytes(), all)
}

fn redact(chunks: &[&[u8]], flush_every: usize) -> String {
    let known = KnownSecrets::new([KNOWN]).expect("known");
    let mut writer = RedactingWriter::new(Vec::new(), Some(scanner()), Some(known));
    for (i, chunk) in chunks.iter().enumerate() {
        writer.write_all(chunk).expect("write");
        if flush_every > 0 && i % flush_every == 0 {
            writer.flush().expect("flush");
        }
    }
    String::from_utf8_lossy(&writer.finish().expect("finish")).into_owned()
}

fn assert_clean(out: &str, secrets: &[String]) {
    for s in secrets {
        assert!(
            !out.contains(s.as_str()),
            "leaked a secret ({} bytes)",
            s.len()
        );
    }
}

#[test]
fn whole_stream_is_redacted_and_the_rest_kept() {
    let (data, secrets) = stream();
    let out = redact(&[&data], 0);
    assert_clean(&out, &secrets);
    assert!(out.contains("[REDACTED:github-pat-classic]"));
    assert!(out.contains("[REDACTED:generic-env-password]"));
    assert!(out.contains("[REDACTED:known-secret]"));
    assert!(out.contains("[REDACTED:private-key]"));
    assert!(out.starts_with("$ ./deploy.sh\nusing token ") && out.ends_with("done\n"));
}

#[test]
fn every_single_split_point() {
    let (data, secrets) = stream();
    for cut in 0..=data.len() {
        let out = redact(&[&data[..cut], &data[cut..]], 1);
        assert_clean(&out, &secrets);
    }
}

#[test]
fn byte_at_a_time_with_flushes() {
    let (data, secrets) = stream();
    let chunks: Vec<&[u8]> = data.chunks(1).collect();
    assert_clean(&redact(&chunks, 1), &secrets);
    assert_clean(&redact(&chunks, 7), &secrets);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_splits_never_leak(cuts in proptest::collection::vec(0usize..4000, 0..40), flush_every in 0usize..5, prefix in "[a-z \\n]{0,300}") {
        let (data, secrets) = stream();
        let mut data = data;
        data.splice(0..0, prefix.bytes());
        let mut points: Vec<usize> = cuts.into_iter().map(|c| c % (data.len() + 1)).collect();
        points.sort_unstable();
        points.dedup();
        let mut chunks = Vec::new();
        let mut last = 0;
        for p in points {
            chunks.push(&data[last..p]);
            last = p;
        }
        chunks.push(&data[last..]);
        let out = redact(&chunks, flush_every);
        for s in &secrets {
            prop_assert!(!out.contains(s.as_str()));
        }
        prop_assert!(out.ends_with("done\n"));
    }
}

#[test]
fn holds_back_only_a_bounded_tail() {
    let known = KnownSecrets::new([KNOWN]).expect("known");
    let mut writer = RedactingWriter::new(Vec::new(), Some(scanner()), Some(known));
    let line = "an ordinary log line with nothing secret in it at all\n";
    let mut written = 0;
    for _ in 0..4000 {
        writer.write_all(line.as_bytes()).expect("write");
        written += line.len();
    }
    writer.flush().expect("flush");
    let passed = writer.get_ref().expect("inner").len();
    // Everything but the hold-back (the longest encoded known secret) is out after a flush.
    assert!(
        written - passed <= 64,
        "held back {} bytes",
        written - passed
    );
    let out = writer.finish().expect("finish");
    assert_eq!(out.len(), written);
}

#[test]
fn a_private_key_longer_than_any_buffer_is_dropped_whole() {
    let mut writer = RedactingWriter::new(Vec::new(), Some(scanner()), None);
    writer
        .write_all(b"before\n-----BEGIN OPENSSH PRIVATE KEY-----\n")
        .expect("write");
    writer.flush().expect("flush");
    for i in 0..5000 {
        writer
            .write_all(
                format!("b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAAB{i:06}\n").as_bytes(),
            )
            .expect("write");
        if i % 100 == 0 {
            writer.flush().expect("flush");
        }
    }
    writer
        .write_all(b"-----END OPENSSH PRIVATE KEY-----\nafter\n")
        .expect("write");
    let out = String::from_utf8(writer.finish().expect("finish")).expect("utf8");
    assert_eq!(out, "before\n[REDACTED:private-key]\nafter\n");
}

/// A long known secret (a task's identity token) does not hold back ordinary output: a line
/// that cannot begin the secret is written on flush, and only a tail that could is held.
#[test]
fn flush_holds_back_only_what_could_begin_a_known_secret() {
    let token = format!("eyJhbGciOiJFUzI1NiJ9.{}", "x".repeat(600));
    let known = KnownSecrets::new([token.as_str()]).expect("known");
    let mut writer = RedactingWriter::new(Vec::new(), Some(scanner()), Some(known));
    writer.write_all(b"ready\n").expect("write");
    writer.flush().expect("flush");
    assert_eq!(writer.get_ref().expect("open"), b"ready\n");

    // The first bytes of the token are held until the rest shows whether it is the token.
    writer
        .write_all(format!("auth {}", &token[..30]).as_bytes())
        .expect("write");
    writer.flush().expect("flush");
    assert_eq!(writer.get_ref().expect("open"), b"ready\nauth ");
    writer
        .write_all(format!("{}\n", &token[30..]).as_bytes())
        .expect("write");
    let out = String::from_utf8(writer.finish().expect("finish")).expect("utf-8");
    assert_eq!(out, "ready\nauth [REDACTED:known-secret]\n");
}

#[test]
fn partial_tail_is_the_longest_suffix_that_begins_a_secret() {
    let known = KnownSecrets::new(["abcdefghij-secret"]).expect("known");
    assert_eq!(known.partial_tail(b"nothing here\n"), 0);
    assert_eq!(known.partial_tail(b"xx abc"), 3);
    assert_eq!(known.partial_tail(b"a abcdefghij-secre"), 16);
    // The whole secret is a match, not a partial one.
    assert_eq!(known.partial_tail(b"abcdefghij-secret"), 0);
}
