//! Matching behaviour: placeholders, digests, locations, fingerprints, chunking, rule files.

use remit_scan::{Fingerprint, Rules, ScanOptions, Scanner, Severity};

use crate::support::{github_token, ids, scanner};

const TOKEN_BODY: &str = "C3KCQypnDyzoGQmTr8gbw5XbkwrBJG";

#[test]
fn placeholders_examples_and_references_are_rejected() {
    let s = scanner();
    for text in [
        "aws_access_key_id = AKIAIOSFODNN7EXAMPLE",
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "DB_PASSWORD=changeme",
        "password = \"xxxxxxxxxxxx\"",
        "password = \"${DB_PASSWORD}\"",
        "token: {{ .Values.token }}",
        "API_KEY=<your-api-key-here>",
        "STRIPE_SECRET_KEY=sk_live_xxxxxxxxxxxxxxxxxxxxxxxx",
        "secret = \"********\"",
        "password = os.environ[\"DB_PASSWORD\"]",
        "export GITHUB_TOKEN=$(gh auth token)",
        "postgres://user:password@localhost:5432/app",
        "Token.String: '#ansiyellow'",
        "color_token = \"#ff00aa\"",
        "auth = \"QVdTOkN...\"",
        "aws ecr get-login --identity-token \"AbCdE12345...long.string...54321EdCbA\"",
        "api_token = \"Zq8mK2vR7p\u{2026}Wq3nB6cT\"",
    ] {
        let found = s.scan_bytes(text.as_bytes());
        assert!(found.is_empty(), "{text:?} gave {:?}", ids(&found));
    }
}

#[test]
fn hashes_uuids_and_lockfile_integrity_are_not_secrets() {
    let s = scanner();
    for text in [
        "\"integrity\": \"sha512-Dhx2+2ixtMOsOSNq6R3PNA8uqTuXkUWvJ7yP4DT7Xg21/ZzXuRjJXrPLbMvOVxT6fgAkE7pvXuVHcfmkSS16YQ==\",",
        "checksum = \"8c3b9a6f0e1d2c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccd\"",
        "token = \"5f4dcc3b5aa765d61d8327deb882cf99\"",
        "secret = \"123e4567-e89b-42d3-a456-426614174000\"",
        "password_hash = \"$2b$12$KIXQJQmAMx8yMoCEL7TZ8eF6Q8QqJYxJ5Y1xk1pQHh9T5QyT8JQ9W\"",
        "github.com/pkg/errors v0.9.1 h1:FEBLx1zS214owpjy7qsBeixbURkuhQAwrK5UwLGTwt4=",
        "resolved \"https://registry.yarnpkg.com/x/-/x-1.0.0.tgz#7a1b0c9f0e0d3c2b1a0f9e8d7c6b5a4f3e2d1c0b\"",
    ] {
        let found = s.scan_bytes(text.as_bytes());
        assert!(found.is_empty(), "{text:?} gave {:?}", ids(&found));
    }
}

#[test]
fn github_checksum_decides() {
    let s = scanner();
    let good = github_token("ghp_", TOKEN_BODY);
    let found = s.scan_bytes(format!("t={good}\n").as_bytes());
    assert_eq!(ids(&found), ["github-pat-classic"]);
    // Same shape, one checksum character changed.
    let mut bad = good.clone().into_bytes();
    let last = bad.len() - 1;
    bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
    let bad = String::from_utf8(bad).expect("ascii");
    assert!(s.scan_bytes(format!("t={bad}\n").as_bytes()).is_empty());
}

#[test]
fn location_fingerprint_and_preview() {
    let s = scanner();
    let token = github_token("ghp_", TOKEN_BODY);
    let text = format!("first line\n  héllo = 1\n  x = \"{token}\"\n");
    let found = s.scan_bytes(text.as_bytes());
    assert_eq!(found.len(), 1);
    let f = &found[0];
    assert_eq!((f.line, f.column), (3, 8));
    assert_eq!(
        &text.as_bytes()[f.start as usize..f.end as usize],
        token.as_bytes()
    );
    assert_eq!(
        f.fingerprint,
        Fingerprint::new("github-pat-classic", token.as_bytes())
    );
    assert_eq!(
        Fingerprint::parse(&f.fingerprint.to_string()),
        Some(f.fingerprint)
    );
    assert!(
        !f.preview.contains(TOKEN_BODY),
        "preview leaks: {}",
        f.preview
    );
    assert!(f.preview.starts_with("ghp_"));
    // Same secret elsewhere: same fingerprint.
    let again = s.scan_bytes(format!("other {token}").as_bytes());
    assert_eq!(again[0].fingerprint, f.fingerprint);
    // Debug output of a finding never holds the secret either.
    assert!(!format!("{f:?}").contains(TOKEN_BODY));
}

#[test]
fn secrets_across_chunk_boundaries_are_found_once() {
    let s = scanner();
    let token = github_token("ghp_", TOKEN_BODY);
    for offset in [
        1024 * 1024 - 20,
        1024 * 1024 - 3,
        1024 * 1024,
        2 * 1024 * 1024 + 7,
    ] {
        let mut data = vec![b'a'; offset];
        for (i, b) in data.iter_mut().enumerate() {
            if i % 80 == 79 {
                *b = b'\n';
            }
        }
        data.extend_from_slice(b" GITHUB_TOKEN=");
        data.extend_from_slice(token.as_bytes());
        data.extend_from_slice(b"\n");
        data.extend(std::iter::repeat_n(b'z', 3 * 1024 * 1024));
        let found = s.scan_reader(&data[..]).expect("scan");
        assert_eq!(ids(&found), ["github-pat-classic"], "offset {offset}");
        let f = &found[0];
        assert_eq!(&data[f.start as usize..f.end as usize], token.as_bytes());
        let expected_line = data[..f.start as usize]
            .iter()
            .filter(|&&b| b == b'\n')
            .count() as u64
            + 1;
        assert_eq!(f.line, expected_line);
    }
}

#[test]
fn a_private_key_across_a_chunk_boundary_is_found() {
    let s = scanner();
    // A deterministic pseudo-random base64 body.
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let body: String = (0..40)
        .map(|_| {
            let line: String = (0..64)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    alphabet[(state % 64) as usize] as char
                })
                .collect();
            line + "\n"
        })
        .collect();
    let key = format!("-----BEGIN PRIVATE KEY-----\n{body}-----END PRIVATE KEY-----\n");
    let mut data = "filler line\n".repeat(1024 * 1024 / 12).into_bytes();
    data.truncate(1024 * 1024 - 500);
    data.extend_from_slice(key.as_bytes());
    let found = s.scan_reader(&data[..]).expect("scan");
    assert_eq!(ids(&found), ["private-key-pkcs8"]);
}

#[test]
fn bad_rule_files_fail_with_file_and_line() {
    let bad_syntax = "[[rule]]\nid = \"x\"\ndescription = \"d\"\nkeywords = [\"abc\"\n";
    let err = Rules::from_toml("mine.toml", bad_syntax).expect_err("syntax");
    assert!(err.to_string().starts_with("mine.toml:"), "{err}");

    let bad_pattern = r#"
[[rule]]
id = "ok-rule"
description = "fine"
keywords = ["abc"]
pattern = 'abc[0-9]{4}'
match = ["abc1234"]
not_match = ["abc"]

[[rule]]
id = "broken"
description = "unclosed group"
keywords = ["abc"]
pattern = 'abc(def'
match = ["abcdef"]
not_match = ["x"]
"#;
    let err = Rules::from_toml("mine.toml", bad_pattern).expect_err("pattern");
    let text = err.to_string();
    assert!(
        text.starts_with("mine.toml:10: rule `broken`: bad pattern: unclosed group"),
        "{text}"
    );
    assert!(!text.contains('\n'));

    let failing_example = r#"
[[rule]]
id = "wrong-example"
description = "its example does not match"
keywords = ["abc"]
pattern = 'abc[0-9]{4}'
match = ["abc12"]
not_match = ["abc"]
"#;
    let err = Rules::from_toml("mine.toml", failing_example).expect_err("example");
    assert!(
        err.to_string()
            .contains("mine.toml:2: rule `wrong-example`: `match` example 1"),
        "{err}"
    );

    let unknown_field = "[[rule]]\nid = \"x\"\ndescription = \"d\"\nkeywords = [\"abc\"]\npattern = 'abc'\nmatch = [\"abc\"]\nnot_match = [\"x\"]\ncolour = \"red\"\n";
    let err = Rules::from_toml("mine.toml", unknown_field).expect_err("field");
    assert!(err.to_string().contains("colour"), "{err}");
}

#[test]
fn user_rules_extend_the_builtin_set() {
    let custom = r#"
[[rule]]
id = "acme-internal-token"
description = "ACME internal service token"
severity = "critical"
keywords = ["acme_"]
pattern = '\b(?P<secret>acme_[a-z0-9]{24})\b'
entropy = 3.0
match = ["ACME_TOKEN=acme_9f8e7d6c5b4a39281706f5e4"]
not_match = ["acme_example", "acme_aaaaaaaaaaaaaaaaaaaaaaaa"]
"#;
    let mut rules = Rules::builtin();
    rules
        .extend(Rules::from_toml("acme.toml", custom).expect("load"))
        .expect("unique");
    let s = Scanner::new(rules).expect("build");
    let found = s.scan_bytes(b"x = acme_9f8e7d6c5b4a39281706f5e4\n");
    assert_eq!(ids(&found), ["acme-internal-token"]);
    assert_eq!(found[0].severity, Severity::Critical);
    let mut again = Rules::builtin();
    let dup = again.extend(
        Rules::from_toml("acme.toml", &custom.replace("acme-internal-token", "jwt")).expect("load"),
    );
    assert!(dup.is_err());
}

#[test]
fn reachable_summary_and_levels() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = github_token("ghp_", TOKEN_BODY);
    std::fs::write(
        dir.path().join(".env"),
        format!("GITHUB_TOKEN={token}\nDB_PASSWORD=Zq8!mK2#vR7pLx\n"),
    )
    .expect("write");
    std::fs::write(dir.path().join(".gitignore"), ".env\n").expect("write");
    std::fs::create_dir(dir.path().join(".git")).expect("git dir");
    let s = scanner();
    // Honouring .gitignore (the default) hides the file; a reachability scan does not.
    let default = s
        .scan_paths(&[dir.path()], &ScanOptions::default())
        .expect("scan");
    assert!(default.findings.is_empty());
    let report = s
        .scan_paths(&[dir.path()], &ScanOptions::reachable())
        .expect("scan");
    assert_eq!(report.findings.len(), 2);
    assert_eq!(report.max_severity(), Some(Severity::Critical));
    assert_eq!(report.count_at_least(Severity::High), 1);
    assert_eq!(report.count_at_least(Severity::Medium), 2);
    let reachable = report.reachable();
    assert_eq!(reachable.len(), 2);
    assert!(reachable.iter().all(|r| r.path.ends_with(".env")));
    let json = serde_json::to_string(&reachable).expect("json");
    assert!(!json.contains(TOKEN_BODY) && !json.contains("Zq8!mK2"));
}

#[test]
fn agent_output_formats() {
    let s = scanner();
    for (text, rule) in [
        (
            "$ mysql -h db -u root -p'Xk9#mQ2$vL7!' app\n",
            "cli-short-password-flag",
        ),
        (
            "$ echo 'Tr0ub4dor&3xyz' | docker login -u me --password-stdin ghcr.io\n",
            "password-stdin-echo",
        ),
        ("DB_PASSWORD=Qm7#xP2!vK9@wL\n", "generic-env-password"),
        (
            "remote: https://deploy:Pq8xZ2mK7vR3@git.acme.io/app.git\n",
            "url-with-credentials",
        ),
        (
            "DATABASE_URL=postgres://app:Pq8xZ2mK7vR3@db.acme.io/app\n",
            "postgres-url",
        ),
        (
            "curl -u admin:Wq8!zK2mP7 https://ci.acme.io/api\n",
            "curl-user-password",
        ),
    ] {
        let found = s.scan_bytes(text.as_bytes());
        assert_eq!(ids(&found), [rule], "{text:?}");
    }
}
