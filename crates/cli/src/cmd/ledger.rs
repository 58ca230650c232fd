//! `remit ledger …` and `remit verify`.
//!
//! Where the ledger is: `--ledger PATH` (SQLite), `--postgres URL`, or by default
//! `$REMIT_HOME/ledger.db` with `REMIT_HOME` defaulting to `$XDG_DATA_HOME/remit`, then
//! `~/.local/share/remit`. The signing key sits beside a SQLite ledger (`ledger.key` for
//! `ledger.db`) or in `$REMIT_HOME/ledger.key`; `--key-file` overrides. Every command but
//! `init` and `receipt` opens the ledger read-only.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Context, anyhow, bail};
use remit_ledger::export::{Format, export, summarize};
use remit_ledger::verify::{KeySource, VerifyOptions, verify as verify_ledger};
use remit_ledger::{
    Error, InclusionBundle, Ledger, LedgerKey, LedgerReader, Location, Options, OsRandomness,
    PublicKey, Query, SystemClock, new_origin,
};
use remit_types::effect::{controls_escaped, escaped};
use remit_types::event::EventBody;

use crate::exit::Outcome;

/// One line of a command's answer on standard output. Unlike `println!` it does not panic:
/// a reader gone away (`| head`) ends the command quietly, a full disk is an error.
macro_rules! say {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout().lock(), $($arg)*)?
    };
}

/// Which ledger to open.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct StoreArgs {
    /// SQLite ledger file [default: $REMIT_HOME/ledger.db].
    #[arg(long, value_name = "PATH", conflicts_with = "postgres")]
    ledger: Option<PathBuf>,
    /// PostgreSQL ledger (`postgresql://user@host/db` or `host=… dbname=…`).
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
}

impl StoreArgs {
    fn location(&self) -> anyhow::Result<Location> {
        if let Some(url) = &self.postgres {
            return Ok(Location::Postgres(url.clone()));
        }
        if let Some(path) = &self.ledger {
            return Ok(Location::Sqlite(path.clone()));
        }
        Ok(Location::Sqlite(home()?.join("ledger.db")))
    }

    /// The default signing key file for this ledger.
    fn key_file(&self) -> anyhow::Result<PathBuf> {
        match (&self.postgres, &self.ledger) {
            (None, Some(path)) => Ok(path.with_extension("key")),
            _ => Ok(home()?.join("ledger.key")),
        }
    }
}

fn home() -> anyhow::Result<PathBuf> {
    remit_ledger::store::default_home(&|name| std::env::var(name).ok()).ok_or_else(|| {
        anyhow!("cannot find the ledger: set REMIT_HOME or HOME, or pass --ledger PATH")
    })
}

/// Filters shared by `show` and `export`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct FilterArgs {
    /// Only events of this task.
    #[arg(long, value_name = "ID")]
    task: Option<String>,
    /// Only events of this agent.
    #[arg(long, value_name = "NAME")]
    agent: Option<String>,
    /// Only events at or after this time: RFC 3339 (`2026-11-23T14:00:00Z`) or an age (`2h`).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only events of these kinds (repeat, or separate with commas).
    #[arg(long, value_name = "KIND", value_delimiter = ',')]
    kind: Vec<String>,
    /// Start at this sequence number.
    #[arg(long, value_name = "SEQ", default_value_t = 0)]
    from: u64,
    /// At most this many events.
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
}

impl FilterArgs {
    fn query(&self) -> anyhow::Result<Query> {
        for kind in &self.kind {
            if !EventBody::KINDS.contains(&kind.as_str()) {
                bail!(
                    "unknown event kind `{kind}` (one of: {})",
                    EventBody::KINDS.join(", ")
                );
            }
        }
        let since = self.since.as_deref().map(parse_since).transpose()?;
        Ok(Query {
            from_seq: self.from,
            task: self.task.clone(),
            agent: self.agent.clone(),
            kinds: self.kind.clone(),
            since,
            limit: self.limit,
        })
    }
}

fn parse_since(text: &str) -> anyhow::Result<String> {
    if let Some(at) = remit_ledger::clock::parse_time(text) {
        return Ok(remit_ledger::clock::format_time(at));
    }
    let age = humantime::parse_duration(text).map_err(|_| {
        anyhow!("`--since {text}` is neither an RFC 3339 time nor an age like `2h`")
    })?;
    let at = SystemTime::now()
        .checked_sub(age)
        .ok_or_else(|| anyhow!("`--since {text}` reaches before the epoch"))?;
    Ok(remit_ledger::clock::format_time(at))
}

/// `remit ledger` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Recompute the tree and check every checkpoint signature and the event sequence.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
        /// Public key to trust (a `vkey` or a file holding one) [default: the key recorded
        /// in the ledger].
        #[arg(long, value_name = "PUBKEY")]
        key: Option<String>,
        /// A signed checkpoint saved earlier (file) that the ledger must extend (repeatable).
        #[arg(long, value_name = "CHECKPOINT")]
        against: Vec<PathBuf>,
    },
    /// List events (a table, or canonical JSON lines with --json).
    Show {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        filter: FilterArgs,
        /// Print each event's canonical JSON, one per line.
        #[arg(long)]
        json: bool,
    },
    /// Export events as JSON lines (the exact hashed bytes) or OCSF 1.3.
    Export {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        filter: FilterArgs,
        /// `jsonl` or `ocsf`.
        #[arg(long, value_name = "FORMAT", default_value = "jsonl")]
        format: String,
        /// Write here instead of standard output.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Print an inclusion proof of one event that verifies offline.
    Prove {
        #[command(flatten)]
        store: StoreArgs,
        /// Sequence number of the event.
        event_id: u64,
        /// Public key that must have signed the checkpoint [default: the recorded key].
        #[arg(long, value_name = "PUBKEY")]
        key: Option<String>,
        /// Write here instead of standard output.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Verify an inclusion proof offline against a public key.
    CheckProof {
        /// The proof file (from `remit ledger prove`).
        proof: PathBuf,
        /// The ledger's public key (a `vkey` or a file holding one).
        #[arg(long, value_name = "PUBKEY")]
        key: String,
    },
    /// Print the ledger's public key (`vkey`) and key id.
    Key {
        #[command(flatten)]
        store: StoreArgs,
        /// Signing key file [default: beside the ledger, or $REMIT_HOME/ledger.key].
        #[arg(long, value_name = "PATH")]
        key_file: Option<PathBuf>,
    },
    /// Print the latest signed checkpoint (save it to verify against later).
    Checkpoint {
        #[command(flatten)]
        store: StoreArgs,
        /// Public key that must have signed it [default: the recorded key].
        #[arg(long, value_name = "PUBKEY")]
        key: Option<String>,
    },
    /// Print where the ledger is, its name, size and latest checkpoint.
    Info {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Create the signing key (mode 0600) and an empty ledger.
    Init {
        #[command(flatten)]
        store: StoreArgs,
        /// Signing key file [default: beside the ledger, or $REMIT_HOME/ledger.key].
        #[arg(long, value_name = "PATH")]
        key_file: Option<PathBuf>,
        /// The ledger's name (checkpoint origin) [default: `remit.local/ledger/<random>`].
        #[arg(long, value_name = "NAME")]
        origin: Option<String>,
    },
    /// Sign the receipt of an ended task (needs the signing key).
    Receipt {
        #[command(flatten)]
        store: StoreArgs,
        /// Task id.
        task: String,
        /// Signing key file [default: beside the ledger, or $REMIT_HOME/ledger.key].
        #[arg(long, value_name = "PATH")]
        key_file: Option<PathBuf>,
        /// Write here instead of standard output.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

/// Arguments of `remit verify`.
#[derive(Debug, clap::Args)]
pub(crate) struct VerifyArgs {
    /// The receipt to check (a DSSE envelope, from `remit ledger receipt` or task end).
    receipt: PathBuf,
    /// The ledger's public key (a `vkey` or a file holding one) [default: the key recorded in
    /// the ledger given with --ledger/--postgres].
    #[arg(long, value_name = "PUBKEY")]
    key: Option<String>,
    /// Also check the receipt against this SQLite ledger.
    #[arg(long, value_name = "PATH", conflicts_with = "postgres")]
    ledger: Option<PathBuf>,
    /// Also check the receipt against this PostgreSQL ledger.
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
}

pub(crate) fn run(command: Command) -> anyhow::Result<Outcome> {
    match command {
        Command::Verify {
            store,
            key,
            against,
        } => verify_cmd(&store, key.as_deref(), &against),
        Command::Show {
            store,
            filter,
            json,
        } => show(&store, &filter, json),
        Command::Export {
            store,
            filter,
            format,
            output,
        } => export_cmd(&store, &filter, &format, output.as_deref()),
        Command::Prove {
            store,
            event_id,
            key,
            output,
        } => prove(&store, event_id, key.as_deref(), output.as_deref()),
        Command::CheckProof { proof, key } => check_proof(&proof, &key),
        Command::Key { store, key_file } => key_cmd(&store, key_file),
        Command::Checkpoint { store, key } => checkpoint(&store, key.as_deref()),
        Command::Info { store } => info(&store),
        Command::Init {
            store,
            key_file,
            origin,
        } => init(&store, key_file, origin),
        Command::Receipt {
            store,
            task,
            key_file,
            output,
        } => receipt(&store, &task, key_file, output.as_deref()),
    }
}

fn open(store: &StoreArgs) -> anyhow::Result<LedgerReader> {
    Ok(LedgerReader::open(&store.location()?)?)
}

fn public_key(arg: &str) -> anyhow::Result<PublicKey> {
    Ok(PublicKey::from_arg(arg)?)
}

/// A verification that said "no": print it and exit 1. Anything else is an error (exit 2).
fn denied(err: Error) -> anyhow::Result<Outcome> {
    if err.is_verification_failure() {
        // The message quotes what it checked (a receipt's, a proof's, a ledger's text).
        eprintln!("remit: {}", controls_escaped(&err.to_string()));
        Ok(Outcome::Denied)
    } else {
        Err(err.into())
    }
}

/// Write everything to `path` or standard output; a closed pipe (`| head`) is not an error.
fn emit(
    path: Option<&Path>,
    write: impl FnOnce(&mut dyn Write) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let result = match path {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("cannot create `{}`", path.display()))?;
            let mut out = BufWriter::new(file);
            write(&mut out).and_then(|()| out.flush().map_err(Into::into))
        }
        None => {
            let stdout = std::io::stdout();
            let mut out = BufWriter::new(stdout.lock());
            write(&mut out).and_then(|()| out.flush().map_err(Into::into))
        }
    };
    match result {
        Err(e) if is_broken_pipe(&e) => Ok(()),
        other => other,
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || matches!(cause.downcast_ref::<Error>(), Some(Error::Io { cause: io, .. }) if io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn verify_cmd(
    store: &StoreArgs,
    key: Option<&str>,
    against: &[PathBuf],
) -> anyhow::Result<Outcome> {
    let key = key.map(public_key).transpose()?;
    let mut notes = Vec::with_capacity(against.len());
    for path in against {
        notes.push(
            remit_ledger::read_input(path, 64 << 10)
                .with_context(|| format!("cannot read checkpoint `{}`", path.display()))?,
        );
    }
    let mut reader = open(store)?;
    let started = std::time::Instant::now();
    let report = match verify_ledger(
        &mut reader,
        &VerifyOptions {
            key,
            against: notes,
        },
    ) {
        Ok(report) => report,
        Err(err) => return denied(err),
    };
    let elapsed = started.elapsed();
    say!(
        "ok: ledger `{}` is intact: {} events, checkpoints: {}, root {}",
        report.origin,
        report.events,
        report.checkpoints,
        remit_ledger::hex::encode(&report.root)
    );
    for size in &report.against {
        say!("ok: consistent with the given checkpoint of {size} events");
    }
    match report.key_source {
        KeySource::Pinned => say!("key: {} (pinned)", report.key),
        KeySource::Recorded => say!(
            "key: {} (recorded in the ledger; pin it with --key to detect a re-keyed ledger)",
            report.key
        ),
    }
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 && report.events > 0 {
        eprintln!(
            "verified {} events in {:.3}s ({:.0} events/s)",
            report.events,
            secs,
            report.events as f64 / secs
        );
    }
    Ok(Outcome::Success)
}

fn clip(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn show(store: &StoreArgs, filter: &FilterArgs, json: bool) -> anyhow::Result<Outcome> {
    let query = filter.query()?;
    let mut reader = open(store)?;
    emit(None, |out| {
        if !json {
            writeln!(
                out,
                "{:>7}  {:<19}  {:<12}  {:<12}  {:<18}  WHAT",
                "SEQ", "TIME (UTC)", "TASK", "AGENT", "KIND"
            )?;
        }
        let mut failed = None;
        let result = reader.scan(&query, &mut |stored| {
            let written = if json {
                out.write_all(&stored.bytes)
                    .and_then(|()| out.write_all(b"\n"))
            } else {
                let e = &stored.event;
                let time = e.time.get(..19).unwrap_or(&e.time).replace('T', " ");
                writeln!(
                    out,
                    "{:>7}  {:<19}  {:<12}  {:<12}  {:<18}  {}",
                    e.seq,
                    time,
                    clip(&escaped(&e.task), 12),
                    clip(&escaped(&e.agent), 12),
                    e.body.kind(),
                    // What the task ran and named is the task's: escaped for the terminal.
                    escaped(&summarize(e))
                )
            };
            match written {
                Ok(()) => Ok(true),
                Err(e) => {
                    failed = Some(e);
                    Ok(false)
                }
            }
        });
        if let Some(e) = failed {
            return Err(e.into());
        }
        result?;
        reader.settled().map_err(Into::into)
    })?;
    Ok(Outcome::Success)
}

fn export_cmd(
    store: &StoreArgs,
    filter: &FilterArgs,
    format: &str,
    output: Option<&Path>,
) -> anyhow::Result<Outcome> {
    let format: Format = format.parse()?;
    let query = filter.query()?;
    let mut reader = open(store)?;
    emit(output, |out| {
        export(&mut reader, &query, format, out)?;
        reader.settled()?;
        Ok(())
    })?;
    Ok(Outcome::Success)
}

fn prove(
    store: &StoreArgs,
    seq: u64,
    key: Option<&str>,
    output: Option<&Path>,
) -> anyhow::Result<Outcome> {
    let mut reader = open(store)?;
    let key = match key {
        Some(k) => public_key(k)?,
        None => reader.recorded_key().clone(),
    };
    let bundle = match reader.snapshot(|reader| reader.prove(seq, &key)) {
        Ok(bundle) => bundle,
        Err(err @ Error::Note(_)) => return denied(err),
        Err(err) => return Err(err.into()),
    };
    // Check what we hand out.
    if let Err(err) = bundle.verify(&key) {
        return denied(err);
    }
    let json = serde_json::to_string_pretty(&bundle)?;
    emit(output, |out| {
        writeln!(out, "{json}")?;
        Ok(())
    })?;
    Ok(Outcome::Success)
}

fn check_proof(path: &Path, key: &str) -> anyhow::Result<Outcome> {
    let key = public_key(key)?;
    let text = remit_ledger::read_input(path, 1 << 20)
        .with_context(|| format!("cannot read proof `{}`", path.display()))?;
    let bundle: InclusionBundle = match serde_json::from_str(&text) {
        Ok(bundle) => bundle,
        Err(e) => {
            eprintln!(
                "remit: `{}` is not an inclusion proof: {}",
                path.display(),
                controls_escaped(&e.to_string())
            );
            return Ok(Outcome::Denied);
        }
    };
    match bundle.verify(&key) {
        Ok(event) => {
            say!(
                "ok: event {} ({}, task `{}`) is in ledger `{}` at tree size {}",
                event.seq,
                event.body.kind(),
                event.task,
                bundle.origin,
                bundle.tree_size
            );
            Ok(Outcome::Success)
        }
        Err(err) => denied(err),
    }
}

fn key_cmd(store: &StoreArgs, key_file: Option<PathBuf>) -> anyhow::Result<Outcome> {
    let path = match key_file {
        Some(p) => p,
        None => store.key_file()?,
    };
    let public = if path.exists() {
        LedgerKey::load(&path)?.public()
    } else {
        match open(store) {
            Ok(reader) => {
                eprintln!(
                    "remit: no signing key at `{}`; showing the key recorded in the ledger",
                    path.display()
                );
                reader.recorded_key().clone()
            }
            Err(_) => bail!(
                "no ledger key at `{}` (create one with `remit ledger init`)",
                path.display()
            ),
        }
    };
    say!("{}", public.to_vkey());
    say!("key id: {}", public.id_hex());
    say!("name: {}", public.name());
    Ok(Outcome::Success)
}

fn checkpoint(store: &StoreArgs, key: Option<&str>) -> anyhow::Result<Outcome> {
    let mut reader = open(store)?;
    let key = match key {
        Some(k) => public_key(k)?,
        None => reader.recorded_key().clone(),
    };
    match reader.snapshot(|reader| reader.latest_checkpoint(&key)) {
        Ok(cp) => {
            write!(std::io::stdout().lock(), "{}", cp.note)?;
            Ok(Outcome::Success)
        }
        Err(err) => denied(err),
    }
}

fn info(store: &StoreArgs) -> anyhow::Result<Outcome> {
    let location = store.location()?;
    let mut reader = LedgerReader::open(&location)?;
    let size = reader.size()?;
    let key = reader.recorded_key().clone();
    say!("ledger: {}", location.describe());
    say!("name: {}", reader.origin());
    say!("created: {}", reader.meta().created);
    say!("events: {size}");
    say!("key: {key}");
    match reader.latest_checkpoint(&key) {
        Ok(cp) => say!(
            "latest checkpoint: {} events, root {}",
            cp.checkpoint.size,
            cp.checkpoint.root_hex()
        ),
        Err(err) => say!("latest checkpoint: none usable ({err})"),
    }
    reader.settled()?;
    Ok(Outcome::Success)
}

fn init(
    store: &StoreArgs,
    key_file: Option<PathBuf>,
    origin: Option<String>,
) -> anyhow::Result<Outcome> {
    let path = match key_file {
        Some(p) => p,
        None => store.key_file()?,
    };
    let origin = match origin {
        Some(o) => o,
        None => new_origin(&mut OsRandomness)?,
    };
    let existed = path.exists();
    let key = LedgerKey::load_or_create(&path, &origin, &mut OsRandomness)?;
    let location = store.location()?;
    let ledger = Ledger::open(
        location.clone(),
        key.clone(),
        Arc::new(SystemClock),
        Options::default(),
    )?;
    let cp = ledger
        .close()?
        .ok_or_else(|| anyhow!("the ledger did not sign a checkpoint"))?;
    say!("ledger: {}", location.describe());
    say!(
        "key: `{}` ({})",
        path.display(),
        if existed {
            "existing"
        } else {
            "created, mode 0600"
        }
    );
    say!("name: {}", key.name());
    say!("public key: {}", key.public().to_vkey());
    say!("events: {}", cp.checkpoint.size);
    Ok(Outcome::Success)
}

fn receipt(
    store: &StoreArgs,
    task: &str,
    key_file: Option<PathBuf>,
    output: Option<&Path>,
) -> anyhow::Result<Outcome> {
    let path = match key_file {
        Some(p) => p,
        None => store.key_file()?,
    };
    let key = LedgerKey::load(&path)?;
    let mut reader = open(store)?;
    let envelope = reader.snapshot(|reader| remit_ledger::build_receipt(reader, &key, task))?;
    let json = envelope.to_json()?;
    emit(output, |out| {
        writeln!(out, "{json}")?;
        Ok(())
    })?;
    Ok(Outcome::Success)
}

pub(crate) fn verify(args: VerifyArgs) -> anyhow::Result<Outcome> {
    let text = remit_ledger::read_input(&args.receipt, 16 << 20)
        .with_context(|| format!("cannot read receipt `{}`", args.receipt.display()))?;
    let envelope = match remit_ledger::Envelope::parse(&text) {
        Ok(envelope) => envelope,
        Err(err) => return denied(err),
    };
    let location = match (&args.postgres, &args.ledger) {
        (Some(url), _) => Some(Location::Postgres(url.clone())),
        (None, Some(path)) => Some(Location::Sqlite(path.clone())),
        (None, None) => None,
    };
    let mut reader = location.as_ref().map(LedgerReader::open).transpose()?;
    let (key, pinned) = match (&args.key, &reader) {
        (Some(k), _) => (public_key(k)?, true),
        (None, Some(r)) => (r.recorded_key().clone(), false),
        (None, None) => {
            bail!("give the ledger's public key with --key (or a ledger with --ledger/--postgres)")
        }
    };
    if let Some(r) = reader.as_mut() {
        // The receipt only means something if the ledger it points into is intact.
        let options = VerifyOptions {
            key: Some(key.clone()),
            against: vec![],
        };
        if let Err(err) = verify_ledger(r, &options) {
            return denied(err);
        }
    }
    let verified = match remit_ledger::verify_receipt(&envelope, &key, reader.as_mut()) {
        Ok(v) => v,
        Err(err) => return denied(err),
    };
    if let Some(r) = reader.as_mut() {
        r.settled()?;
    }
    let s = &verified.statement.predicate.summary;
    say!(
        "ok: receipt of task `{}` (agent `{}`, owner {}, requested by {}) signed by `{}`",
        s.task,
        s.agent,
        s.owner,
        s.requester,
        key.to_vkey()
    );
    say!(
        "remit `{}` {}, identity {}, ended {} ({} events, {} denials, {} approvals, {} violations)",
        s.remit.name,
        s.remit.sha256,
        s.identity,
        s.ended,
        s.events,
        s.denials.len(),
        s.approvals.len(),
        s.violations.len()
    );
    say!(
        "ledger `{}`: task end is event {} under the checkpoint of {} events{}",
        verified.checkpoint.checkpoint.origin,
        verified.statement.predicate.ledger.task_end.seq,
        verified.checkpoint.checkpoint.size,
        if verified.checked_against_ledger {
            "; matches the ledger, which verifies"
        } else {
            " (checked offline; pass --ledger to check it against the ledger)"
        }
    );
    if !pinned {
        say!("key: recorded in the ledger; pin it with --key");
    }
    Ok(Outcome::Success)
}
