//! How long building the known-secret matcher for a task's identity token takes, and how fast
//! it searches output that holds no secret.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
fn main() {
    let token = format!("eyJhbGciOiJFUzI1NiJ9.{}", "x1Y2z3".repeat(120));
    let mut known = None;
    for _ in 0..5 {
        let t = std::time::Instant::now();
        known = Some(remit_scan::KnownSecrets::new([token.as_str()]).unwrap());
        println!(
            "matcher for a {}-byte token built in {:?}",
            token.len(),
            t.elapsed()
        );
    }
    let known = known.unwrap();
    let line =
        b"compiling remit-scan v0.1.0 (/work/crates/scan) eyJhbGciOiJFUzI1NiJ9 warning: 42\n";
    let haystack: Vec<u8> = line.iter().copied().cycle().take(16 << 20).collect();
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let found = known.find_iter(&haystack).count();
        let took = t.elapsed();
        println!(
            "searched {} MiB in {took:?} ({:.0} MiB/s), {found} found",
            haystack.len() >> 20,
            (haystack.len() >> 20) as f64 / took.as_secs_f64()
        );
    }
}
