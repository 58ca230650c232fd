//! Helpers shared by the test modules.

use std::path::PathBuf;

use remit_scan::{Finding, Scanner};

/// The built-in scanner, shared so that each rule's regex compiles once per test run.
pub(crate) fn scanner() -> Scanner {
    static SCANNER: std::sync::OnceLock<Scanner> = std::sync::OnceLock::new();
    SCANNER
        .get_or_init(|| Scanner::builtin().expect("built-in rules build"))
        .clone()
}

/// The rule files shipped with the crate.
pub(crate) fn rule_files() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rules");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("rules dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).expect("read rule file"))
        })
        .collect();
    out.sort();
    out
}

/// Rule ids of findings, for assertions that never print a secret.
pub(crate) fn ids(findings: &[Finding]) -> Vec<String> {
    findings.iter().map(|f| f.rule.to_string()).collect()
}

/// A GitHub-format token with a valid checksum, built from 30 characters of `body`.
pub(crate) fn github_token(prefix: &str, body: &str) -> String {
    assert_eq!(body.len(), 30);
    let crc = crc32(body.as_bytes());
    let mut n = u64::from(crc);
    let alphabet = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut check = Vec::new();
    while n > 0 {
        check.push(alphabet[(n % 62) as usize]);
        n /= 62;
    }
    while check.len() < 6 {
        check.push(b'0');
    }
    check.reverse();
    format!("{prefix}{body}{}", String::from_utf8(check).expect("ascii"))
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}
