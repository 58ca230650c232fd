//! `cargo bench -p remit-ledger`: the `paired` lines (durable appends, raw `write +
//! fdatasync` of the same bytes and the bare store, timed back to back: the ratios the issue
//! sets targets for), durable appends beside raw `write + fdatasync` and beside PostgreSQL, several writer processes on one ledger, the cold start of a
//! run (open, four appends, flush, close), the cost of the Merkle tree and checkpoints,
//! verification throughput and proof latency on a 1M-event ledger.
//!
//! Set `REMIT_BENCH_QUICK=1` for a short run, `REMIT_BENCH_NO_PG=1` to skip PostgreSQL,
//! `REMIT_BENCH_PROOF_EVENTS` to change the size of the proof ledger (default 1,000,000).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use remit_ledger::canonical::{assemble, body_json};
use remit_ledger::merkle::verify_inclusion;
use remit_ledger::store::{CheckpointRow, EventRow};
use remit_ledger::testing::TempPostgres;
use remit_ledger::verify::{VerifyOptions, verify};
use remit_ledger::{Ledger, LedgerKey, LedgerReader, Location, Options, SystemClock};
use remit_types::event::{Exec, NewEvent, SCHEMA_VERSION, Verdict};

const BATCHES: [u64; 3] = [1, 100, 1000];

fn event(i: u64) -> NewEvent {
    NewEvent::new(
        format!("task-{}", i / 1000),
        "bench-agent",
        Exec {
            argv: vec![
                "cargo".into(),
                "test".into(),
                "--".into(),
                format!("case_{i}"),
            ],
            cwd: "/workspace/project".into(),
            pid: (i % 30_000) as u32 + 2,
            ppid: 1,
            decision: Verdict::Allow,
            rule: None,
        },
    )
}

/// The canonical bytes the ledger stores for event `i` (what raw fdatasync writes too).
fn event_bytes(i: u64) -> Vec<u8> {
    let e = event(i);
    let mut out = Vec::new();
    assemble(
        &mut out,
        SCHEMA_VERSION,
        i,
        "2026-01-01T00:00:00.000000Z",
        &e.task,
        &e.agent,
        &body_json(&e.body).unwrap(),
    )
    .unwrap();
    out
}

/// Scratch space on the disk being measured (`REMIT_BENCH_DIR`, default the temp dir).
fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("REMIT_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir).unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

fn key() -> LedgerKey {
    LedgerKey::from_seed("bench.remit/ledger", [7; 32]).unwrap()
}

fn quick() -> bool {
    std::env::var_os("REMIT_BENCH_QUICK").is_some()
}

/// The next `batch` events (built outside the measurement: the raw file gets its bytes
/// ready-made too, and building `NewEvent`s is the caller's work, not the ledger's).
fn events(next: &mut u64, batch: u64) -> Vec<NewEvent> {
    let events = (*next..*next + batch).map(event).collect();
    *next += batch;
    events
}

/// Append `events` as one group and wait until they are durable: the same batch semantics as
/// `raw_fdatasync` (one group, one `fsync`). Appending them one by one with `append` would
/// let the writer start committing the first events while the rest are still being queued,
/// so a "batch" of 1,000 became two or three commits, each with its `fsync`, against one
/// `fdatasync` for the raw file: that measured how fast the caller queues, not the store.
fn durable_batch(ledger: &Ledger, events: Vec<NewEvent>) {
    ledger
        .append_batch(events)
        .unwrap()
        .unwrap()
        .wait()
        .unwrap();
}

fn bench_durable(c: &mut Criterion, name: &str, location: impl Fn(u64) -> Location) {
    let mut group = c.benchmark_group(format!("durable_append/{name}"));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(if quick() { 2 } else { 6 }));
    for batch in BATCHES {
        let ledger = Ledger::open(
            location(batch),
            key(),
            Arc::new(SystemClock),
            Options::default(),
        )
        .unwrap();
        let mut next = 0u64;
        group.throughput(Throughput::Elements(batch));
        group.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, &batch| {
            b.iter_batched(
                || events(&mut next, batch),
                |events| durable_batch(&ledger, events),
                BatchSize::PerIteration,
            );
        });
        ledger.close().unwrap();
    }
    group.finish();
}

fn durable_sqlite(c: &mut Criterion) {
    let dir = bench_dir();
    bench_durable(c, "sqlite", |batch| {
        Location::Sqlite(dir.path().join(format!("b{batch}.db")))
    });
}

/// Size of the file `raw_fdatasync` writes round: SQLite's write-ahead log restarts from its
/// beginning after each automatic checkpoint (every 1,000 pages, about 4 MiB), overwriting
/// blocks already allocated, so its `fdatasync` never has to commit a file-size change.
const RAW_RING: u64 = 4 << 20;

/// The physical limit: the same bytes (each event's canonical JSON, as the ledger stores it,
/// with sequence numbers as large as the ledger's), `write` + `fdatasync` once per batch.
///
/// The file is preallocated and written round like SQLite's write-ahead log, which is
/// overwritten in place: appending to an ever-growing file instead makes every `fdatasync`
/// also commit the new size and extents to the ext4 journal (a second device flush), so the
/// "limit" was slower than SQLite itself at batch 1 (1.4 ms against 0.3 ms).
fn raw_fdatasync(c: &mut Criterion) {
    let dir = bench_dir();
    let mut group = c.benchmark_group("raw_fdatasync");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(if quick() { 2 } else { 6 }));
    for batch in BATCHES {
        let mut raw = RawFile::new(&dir.path().join(format!("raw{batch}")), batch);
        group.throughput(Throughput::Elements(batch));
        group.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, _| {
            b.iter(|| raw.write_batch());
        });
    }
    group.finish();
}

fn durable_postgres(c: &mut Criterion) {
    if std::env::var_os("REMIT_BENCH_NO_PG").is_some() {
        return;
    }
    let pg = match TempPostgres::start() {
        Ok(pg) => pg,
        Err(e) => {
            eprintln!("skipping postgresql benchmarks: {e}");
            return;
        }
    };
    bench_durable(c, "postgres", |batch| {
        Location::Postgres(pg.create_database(&format!("bench_{batch}")).unwrap())
    });
}

/// Cost of the tree and the signatures: the full writer against the same store appends with
/// no hashing, no subtree hashes and one fixed checkpoint row per commit.
fn merkle_overhead(c: &mut Criterion) {
    let dir = bench_dir();
    let mut group = c.benchmark_group("merkle_overhead");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(if quick() { 2 } else { 6 }));
    for batch in [1u64, 1000] {
        let (mut store, checkpoint) = bare_store(dir.path().join(format!("plain{batch}.db")));
        let mut next = 0u64;
        group.throughput(Throughput::Elements(batch));
        group.bench_with_input(
            BenchmarkId::new("store_only", batch),
            &batch,
            |b, &batch| {
                b.iter_batched(
                    || (next, events(&mut next, batch)),
                    |(first, events)| store_only_batch(store.as_mut(), &checkpoint, first, events),
                    BatchSize::PerIteration,
                );
            },
        );
        let ledger = Ledger::open(
            Location::Sqlite(dir.path().join(format!("full{batch}.db"))),
            key(),
            Arc::new(SystemClock),
            Options::default(),
        )
        .unwrap();
        let mut next = 0u64;
        group.bench_with_input(BenchmarkId::new("ledger", batch), &batch, |b, &batch| {
            b.iter_batched(
                || events(&mut next, batch),
                |events| durable_batch(&ledger, events),
                BatchSize::PerIteration,
            );
        });
        ledger.close().unwrap();
    }
    group.finish();
}

/// What `merkle_overhead` compares the ledger with: the same events encoded the same way and
/// stored with the same statements in one transaction (head, events, a transient checkpoint
/// replacing the previous one), but no leaf or subtree hashes and no signature.
fn store_only_batch(
    store: &mut dyn remit_ledger::store::Store,
    checkpoint: &CheckpointRow,
    first: u64,
    events: Vec<NewEvent>,
) {
    let rows: Vec<EventRow> = events
        .into_iter()
        .enumerate()
        .map(|(k, e)| {
            let seq = first + k as u64;
            let mut body = Vec::new();
            assemble(
                &mut body,
                SCHEMA_VERSION,
                seq,
                "2026-01-01T00:00:00.000000Z",
                &e.task,
                &e.agent,
                &body_json(&e.body).unwrap(),
            )
            .unwrap();
            EventRow {
                seq,
                time: "2026-01-01T00:00:00.000000Z".into(),
                task: e.task,
                agent: e.agent,
                kind: "exec".into(),
                body,
                nodes: Vec::new(),
            }
        })
        .collect();
    let cp = CheckpointRow {
        size: first + rows.len() as u64,
        kept: false,
        ..checkpoint.clone()
    };
    store
        .transaction(true, &mut |tx| {
            tx.head()?;
            tx.append(&rows, &cp)
        })
        .unwrap();
}

/// A bare store with the ledger's tables (created by a real ledger) and its genesis checkpoint.
fn bare_store(path: std::path::PathBuf) -> (Box<dyn remit_ledger::store::Store>, CheckpointRow) {
    Ledger::open(
        Location::Sqlite(path.clone()),
        key(),
        Arc::new(SystemClock),
        Options::default(),
    )
    .unwrap()
    .close()
    .unwrap();
    let mut store = Location::Sqlite(path).open_write().unwrap();
    let checkpoint = store.latest_checkpoint().unwrap().unwrap();
    (store, checkpoint)
}

/// The raw file of `raw_fdatasync`: `batch` events' canonical bytes written round a
/// preallocated file, one `fdatasync` per batch.
struct RawFile {
    file: std::fs::File,
    bytes: Vec<u8>,
    at: u64,
}

impl RawFile {
    fn new(path: &std::path::Path, batch: u64) -> Self {
        let mut bytes = Vec::new();
        for i in 0..batch {
            bytes.extend_from_slice(&event_bytes(100_000 + i));
            bytes.push(b'\n');
        }
        let mut file = std::fs::File::create(path).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..RAW_RING >> 20 {
            file.write_all(&zeros).unwrap();
        }
        file.sync_all().unwrap();
        Self { file, bytes, at: 0 }
    }

    fn write_batch(&mut self) {
        use std::os::unix::fs::FileExt;
        let len = self.bytes.len() as u64;
        if self.at + len > RAW_RING {
            self.at = 0;
        }
        self.file.write_all_at(&self.bytes, self.at).unwrap();
        self.file.sync_data().unwrap();
        self.at += len;
    }
}

/// The two ratios measured pairwise, because this disk's `fsync` latency drifts by an
/// order of magnitude within minutes when other work writes (0.15 ms to 3 ms): criterion
/// measures `durable_append` and `raw_fdatasync` a minute apart, so their ratio mixes two
/// disks. Here each round times, back to back, one durable batch on the ledger, one raw
/// batch, and one batch on the bare store (`merkle_overhead`'s baseline), and the medians of
/// each series are compared. Prints one line per batch size.
fn paired_ratios(_c: &mut Criterion) {
    // Not a criterion benchmark, so criterion's filter does not apply: run only without a
    // filter or with one naming it.
    let filter = std::env::args()
        .skip(1)
        .rfind(|a| !a.starts_with('-') && a.parse::<f64>().is_err());
    if filter.is_some_and(|f| !f.contains("paired")) {
        return;
    }
    let dir = bench_dir();
    let budget = Duration::from_secs(if quick() { 3 } else { 10 });
    for batch in BATCHES {
        let ledger = Ledger::open(
            Location::Sqlite(dir.path().join(format!("paired{batch}.db"))),
            key(),
            Arc::new(SystemClock),
            Options::default(),
        )
        .unwrap();
        let (mut store, checkpoint) = bare_store(dir.path().join(format!("pbare{batch}.db")));
        let mut raw = RawFile::new(&dir.path().join(format!("praw{batch}")), batch);
        let (mut next_ledger, mut next_store) = (0u64, 0u64);
        let mut times: [Vec<f64>; 3] = Default::default();
        let started = Instant::now();
        let mut round = 0usize;
        while started.elapsed() < budget || round < 10 {
            // Warm-up: the first rounds are not counted.
            let keep = round >= 3;
            // Rotate the order, so none of the three always follows another.
            for k in 0..3 {
                let which = (round + k) % 3;
                let elapsed = match which {
                    0 => {
                        let events = events(&mut next_ledger, batch);
                        let t = Instant::now();
                        durable_batch(&ledger, events);
                        t.elapsed()
                    }
                    1 => {
                        let t = Instant::now();
                        raw.write_batch();
                        t.elapsed()
                    }
                    _ => {
                        let first = next_store;
                        let events = events(&mut next_store, batch);
                        let t = Instant::now();
                        store_only_batch(store.as_mut(), &checkpoint, first, events);
                        t.elapsed()
                    }
                };
                if keep {
                    times[which].push(elapsed.as_secs_f64() * 1e6);
                }
            }
            round += 1;
        }
        ledger.close().unwrap();
        let [l, r, b] = times.map(|mut v| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        });
        let rate = |us: f64| batch as f64 / us * 1e6;
        eprintln!(
            "paired, batch {batch}: ledger {l:.0} µs ({:.0} events/s), raw write+fdatasync {r:.0} µs ({:.0} events/s), bare store {b:.0} µs; ledger/raw {:.0} %, Merkle + checkpoint overhead {:+.0} % ({} rounds, medians)",
            rate(l),
            rate(r),
            r / l * 100.0,
            (l / b - 1.0) * 100.0,
            round - 3,
        );
    }
}

/// Several writer processes on one ledger (`remit-ledger-writer`), each appending batches of
/// `batch` events whose last one is durable and waited for, like `durable_append`. Measured
/// from the moment all of them have the ledger open until the last one has closed it;
/// throughput is of all of them together.
fn bench_processes(c: &mut Criterion, name: &str, location: impl Fn(&str) -> Location) {
    let mut group = c.benchmark_group(format!("processes/{name}"));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(if quick() { 3 } else { 8 }));
    for procs in [1u64, 2, 4] {
        for batch in [1u64, 100] {
            let location = location(&format!("p{procs}_b{batch}"));
            group.throughput(Throughput::Elements(batch));
            group.bench_function(BenchmarkId::new(format!("{procs}_writers"), batch), |b| {
                b.iter_custom(|iters| {
                    let per = iters.div_ceil(procs).max(1);
                    let elapsed = run_writers(&location, procs, per * batch, batch);
                    elapsed.mul_f64(iters as f64 / (per * procs) as f64)
                });
            });
        }
    }
    group.finish();
}

/// Start `procs` writers, wait until all have the ledger open, let them append `events` each,
/// and return the time until the last one exited.
fn run_writers(location: &Location, procs: u64, events: u64, batch: u64) -> Duration {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut children: Vec<_> = (0..procs)
        .map(|p| {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_remit-ledger-writer"));
            match location {
                Location::Sqlite(path) => cmd.arg("--sqlite").arg(path),
                Location::Postgres(url) => cmd.args(["--postgres", url]),
            };
            let events = events.to_string();
            let batch = batch.to_string();
            let tag = format!("p{p}");
            let args = [
                "--key-seed",
                "bench.remit/ledger:7",
                "--tag",
                &tag,
                "--events",
                &events,
                "--durable-every",
                &batch,
                "--ready",
                "--quiet",
            ];
            cmd.args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut outputs = Vec::new();
    for child in &mut children {
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "READY", "writer did not start");
        outputs.push(out);
    }
    let start = Instant::now();
    for child in &mut children {
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    }
    for child in &mut children {
        assert!(child.wait().unwrap().success(), "writer failed");
    }
    start.elapsed()
}

fn processes_sqlite(c: &mut Criterion) {
    let dir = bench_dir();
    bench_processes(c, "sqlite", |name| {
        Location::Sqlite(dir.path().join(format!("{name}.db")))
    });
}

fn processes_postgres(c: &mut Criterion) {
    if std::env::var_os("REMIT_BENCH_NO_PG").is_some() {
        return;
    }
    let pg = match TempPostgres::start() {
        Ok(pg) => pg,
        Err(e) => {
            eprintln!("skipping postgresql benchmarks: {e}");
            return;
        }
    };
    bench_processes(c, "postgres", |name| {
        Location::Postgres(pg.create_database(&format!("procs_{name}")).unwrap())
    });
}

/// What a run pays for its ledger, in one process: open an existing ledger, append four
/// events (the last a `task_end`), flush, close. `examples/cold_start.rs` times the phases.
fn cold_start(c: &mut Criterion) {
    let dir = bench_dir();
    let location = Location::Sqlite(dir.path().join("cold.db"));
    Ledger::open(
        location.clone(),
        key(),
        Arc::new(SystemClock),
        Options::default(),
    )
    .unwrap()
    .close()
    .unwrap();
    let end = remit_types::event::TaskEnd {
        exit_code: Some(0),
        signal: None,
        reason: remit_types::event::EndReason::Exited,
        detail: None,
        counts: Default::default(),
    };
    let mut group = c.benchmark_group("cold_start");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(if quick() { 2 } else { 6 }));
    let mut next = 0u64;
    group.bench_function("sqlite/open_4_appends_flush_close", |b| {
        b.iter(|| {
            let ledger = Ledger::open(
                location.clone(),
                key(),
                Arc::new(SystemClock),
                Options::default(),
            )
            .unwrap();
            for _ in 0..3 {
                ledger.append(event(next)).unwrap();
                next += 1;
            }
            ledger
                .append(NewEvent::new("task-cold", "bench-agent", end.clone()))
                .unwrap();
            ledger.flush().unwrap();
            ledger.close().unwrap();
        });
    });
    group.finish();
}

fn write_ledger(location: Location, n: u64) {
    let ledger = Ledger::open(location, key(), Arc::new(SystemClock), Options::default()).unwrap();
    for i in 0..n {
        ledger.append(event(i)).unwrap();
    }
    ledger.close().unwrap();
}

fn verify_throughput(c: &mut Criterion) {
    let dir = bench_dir();
    let n = if quick() { 20_000 } else { 200_000 };
    let location = Location::Sqlite(dir.path().join("verify.db"));
    write_ledger(location.clone(), n);
    let mut group = c.benchmark_group("verify");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(if quick() { 2 } else { 8 }));
    group.throughput(Throughput::Elements(n));
    group.bench_function(BenchmarkId::new("sqlite", n), |b| {
        b.iter(|| {
            let mut reader = LedgerReader::open(&location).unwrap();
            let report = verify(
                &mut reader,
                &VerifyOptions {
                    key: Some(key().public()),
                    against: vec![],
                },
            )
            .unwrap();
            assert_eq!(report.events, n);
        });
    });
    group.finish();
}

fn proofs(c: &mut Criterion) {
    let n: u64 = std::env::var("REMIT_BENCH_PROOF_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick() { 100_000 } else { 1_000_000 });
    let dir = bench_dir();
    let location = Location::Sqlite(dir.path().join("proofs.db"));
    let started = Instant::now();
    write_ledger(location.clone(), n);
    eprintln!(
        "proof ledger: {n} events written in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let mut reader = LedgerReader::open(&location).unwrap();
    let public = key().public();
    let checkpoint = reader.latest_checkpoint(&public).unwrap();
    let root = checkpoint.checkpoint.root;
    let mut group = c.benchmark_group(format!("proof/{n}_events"));
    group.sample_size(50);
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    group.bench_function("inclusion_proof", |b| {
        b.iter(|| black_box(reader.inclusion_proof(next() % n, n).unwrap()));
    });
    group.bench_function("prove_bundle_and_verify", |b| {
        b.iter(|| {
            let bundle = reader.prove_at(next() % n, &checkpoint).unwrap();
            black_box(bundle.verify(&public).unwrap());
        });
    });
    group.bench_function("consistency_proof", |b| {
        b.iter(|| black_box(reader.consistency_proof(1 + next() % (n - 1), n).unwrap()));
    });
    let proof = reader.inclusion_proof(n / 3, n).unwrap();
    let leaf = remit_ledger::merkle::leaf_hash(&reader.event(n / 3).unwrap().bytes);
    group.bench_function("verify_inclusion", |b| {
        b.iter(|| verify_inclusion(&leaf, n / 3, n, &proof, &root).unwrap());
    });
    group.finish();
}

/// Per-event CPU: canonical JSON of a body, the envelope, the leaf hash.
fn per_event(c: &mut Criterion) {
    let mut group = c.benchmark_group("per_event");
    let e = event(12_345);
    group.bench_function("canonical_body", |b| {
        b.iter(|| black_box(body_json(&e.body).unwrap()))
    });
    let body = body_json(&e.body).unwrap();
    let mut out = Vec::new();
    group.bench_function("assemble_envelope", |b| {
        b.iter(|| {
            assemble(
                &mut out,
                SCHEMA_VERSION,
                12_345,
                "2026-01-01T00:00:00.000000Z",
                &e.task,
                &e.agent,
                &body,
            )
            .unwrap();
            black_box(&out);
        })
    });
    let bytes = event_bytes(12_345);
    group.bench_function("leaf_hash", |b| {
        b.iter(|| black_box(remit_ledger::merkle::leaf_hash(&bytes)))
    });
    let key = key();
    group.bench_function("sign_checkpoint", |b| {
        b.iter(|| {
            black_box(
                remit_ledger::SignedCheckpoint::sign(
                    remit_ledger::Checkpoint {
                        origin: "bench.remit/ledger".into(),
                        size: 1,
                        root: [1; 32],
                    },
                    &key,
                )
                .unwrap(),
            )
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    per_event,
    paired_ratios,
    durable_sqlite,
    raw_fdatasync,
    durable_postgres,
    processes_sqlite,
    processes_postgres,
    cold_start,
    merkle_overhead,
    verify_throughput,
    proofs
);
criterion_main!(benches);
