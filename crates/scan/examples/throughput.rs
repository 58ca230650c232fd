//! In-memory throughput of the engine on one thread, without I/O or directory walking:
//! `cargo run --release -p remit-scan --example throughput -- FILE…`.
//!
//! Reads the files into memory, then times `Scanner::scan_bytes` over all of them (best of
//! three), and the keyword pass alone, to show how the time splits.

use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut inputs = Vec::new();
    let mut total = 0usize;
    for path in std::env::args().skip(1) {
        let data = std::fs::read(&path)?;
        total += data.len();
        inputs.push(data);
    }
    let mb = total as f64 / 1e6;

    let started = Instant::now();
    let scanner = remit_scan::Scanner::builtin()?;
    println!("scanner built in {:?}", started.elapsed());
    let mut best = f64::MAX;
    let mut findings = 0;
    for _ in 0..3 {
        let t = Instant::now();
        findings = inputs.iter().map(|d| scanner.scan_bytes(d).len()).sum();
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "scan:     {} files, {mb:.1} MB, {findings} findings, {best:.3} s, {:.0} MB/s",
        inputs.len(),
        mb / best
    );

    // The keyword pass alone, with the same automaton settings as the engine.
    let rules = remit_scan::Rules::builtin();
    let mut keywords: Vec<String> = rules
        .iter()
        .flat_map(|r| r.keywords().map(str::to_ascii_lowercase))
        .collect();
    keywords.sort();
    keywords.dedup();
    let ac = aho_corasick::AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .match_kind(aho_corasick::MatchKind::LeftmostFirst)
        .kind(Some(aho_corasick::AhoCorasickKind::DFA))
        .build(&keywords)?;
    let mut best = f64::MAX;
    let mut hits = 0;
    for _ in 0..3 {
        let t = Instant::now();
        hits = inputs.iter().map(|d| ac.find_iter(d).count()).sum();
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "keywords: {} keywords, {hits} hits, {best:.3} s, {:.0} MB/s",
        keywords.len(),
        mb / best
    );
    Ok(())
}
