//! Link the release `remit` binary so that a task's supervisor maps little of it.
//!
//! A supervisor's resident set is mostly the pages of this binary it touches, and the kernel
//! maps file pages in 64 KiB windows around each first touch. Two link options shrink that
//! (peak RSS of `remit run` 16.5 → 8.7 MiB, `docs/benchmarks.md`):
//!
//! - **`startup.order`**: the functions and constants a `remit run` touches, placed together
//!   at the front of their sections (LLD's `--symbol-ordering-file`). Symbols the build no
//!   longer has are skipped, so a stale list costs memory, never correctness. The release
//!   profile's single code-generation unit per crate keeps the names stable from build to
//!   build. `bench/startup-order.sh` regenerates it.
//! - **Packed relative relocations** (`-z pack-relative-relocs`): 51,000 relocations in 15 KB
//!   instead of 1.2 MB read at every start. Only where the C library can apply them
//!   (glibc 2.36 and later); an older loader would run the binary unrelocated.
//!
//! Both apply to release builds for `x86_64-unknown-linux-gnu` linked by the toolchain's own
//! LLD (the default since Rust 1.90); a build with another linker is left as it is.
//! `REMIT_PLAIN_LINK=1` turns both off.

use std::path::Path;

fn main() {
    println!("cargo::rerun-if-changed=startup.order");
    println!("cargo::rerun-if-env-changed=REMIT_PLAIN_LINK");
    let env = |name: &str| std::env::var(name).unwrap_or_default();
    let flags = env("CARGO_ENCODED_RUSTFLAGS");
    let own_linker = std::env::var_os("RUSTC_LINKER").is_some()
        || flags.contains("linker")
        || flags.contains("fuse-ld");
    if env("PROFILE") != "release"
        || env("TARGET") != "x86_64-unknown-linux-gnu"
        || env("HOST") != env("TARGET")
        || own_linker
        || env("REMIT_PLAIN_LINK") == "1"
    {
        return;
    }
    let order = Path::new(&env("CARGO_MANIFEST_DIR")).join("startup.order");
    if order.is_file() {
        println!(
            "cargo::rustc-link-arg-bin=remit=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo::rustc-link-arg-bin=remit=-Wl,--no-warn-symbol-ordering");
    }
    if libc_applies_packed_relocations() {
        println!("cargo::rustc-link-arg-bin=remit=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether the C library this binary will load defines `GLIBC_ABI_DT_RELR` (glibc 2.36+).
fn libc_applies_packed_relocations() -> bool {
    const MARK: &[u8] = b"GLIBC_ABI_DT_RELR";
    [
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        "/lib64/libc.so.6",
        "/usr/lib64/libc.so.6",
    ]
    .iter()
    .find_map(|path| std::fs::read(path).ok())
    .is_some_and(|libc| libc.windows(MARK.len()).any(|w| w == MARK))
}
