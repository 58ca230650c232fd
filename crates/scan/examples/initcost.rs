//! How long building the scanner and scanning a small tree take (the scanner runs before a
//! task starts).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
fn main() {
    let dir = std::env::args().nth(1).unwrap_or_else(|| ".".into());
    for _ in 0..3 {
        // The same rules with their keywords chosen now rather than when remit was built.
        let t = std::time::Instant::now();
        let chosen_now = remit_scan::Scanner::new(remit_scan::Rules::builtin()).unwrap();
        let t0 = t.elapsed();
        drop(chosen_now);
        let t = std::time::Instant::now();
        let scanner = remit_scan::Scanner::builtin().unwrap();
        let t1 = t.elapsed();
        let report = scanner
            .scan_paths(
                &[std::path::Path::new(&dir)],
                &remit_scan::ScanOptions::reachable(),
            )
            .unwrap();
        let t2 = t.elapsed();
        let f = scanner.scan_bytes(b"git -c user.name=x commit -m hello");
        let t3 = t.elapsed();
        println!(
            "keywords chosen now {t0:?}, builtin {t1:?} scan_paths {:?} ({} findings) scan_bytes {:?} ({})",
            t2 - t1,
            report.reachable().len(),
            t3 - t2,
            f.len()
        );
    }
}
