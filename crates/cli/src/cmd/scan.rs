//! `remit scan`: find secrets in files, directories, standard input or git history.
//!
//! Output formatting and exit codes only; detection lives in `remit-scan`. Exit status: 0 when
//! nothing (beyond the baseline) was found, 1 when findings remain, 2 on an error.

use std::collections::HashSet;
use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use owo_colors::OwoColorize as _;
use remit_scan::{
    Finding, Fingerprint, GitOptions, Note, Progress, Report, Rules, ScanOptions, Scanner, Severity,
};

use crate::exit::Outcome;

/// Arguments of `remit scan`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Files or directories to scan (default: the current directory); `-` reads standard
    /// input. With `--git`, the repository (default: the current directory).
    paths: Vec<PathBuf>,
    /// Scan git history: every line added by every commit (of all refs, or of `--rev`).
    #[arg(long)]
    git: bool,
    /// With `--git`: revisions to scan instead of all refs (`main`, `v1.2..HEAD`); repeatable.
    #[arg(long = "rev", value_name = "REV", requires = "git")]
    revs: Vec<String>,
    /// Print a JSON report (the format `--baseline` reads).
    #[arg(long, conflicts_with = "sarif")]
    json: bool,
    /// Print a SARIF 2.1.0 log.
    #[arg(long)]
    sarif: bool,
    /// Suppress findings whose fingerprint is in FILE (a report written by `--json` or
    /// `--write-baseline`).
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,
    /// Write every current finding to FILE as a baseline (JSON, no secret values) and exit 0.
    #[arg(long, value_name = "FILE")]
    write_baseline: Option<PathBuf>,
    /// Load more rules from a TOML rule file (repeatable); its examples are checked first.
    #[arg(long = "rules", value_name = "FILE")]
    rules: Vec<PathBuf>,
    /// Use only the rules of `--rules` files, not the built-in ones.
    #[arg(long, requires = "rules")]
    no_builtin_rules: bool,
    /// Report only findings at or above this severity.
    #[arg(long, value_name = "LEVEL", value_parser = parse_severity)]
    min_severity: Option<Severity>,
    /// Also scan files excluded by `.gitignore`, `.ignore` and git's exclude files.
    #[arg(long)]
    no_ignore: bool,
    /// Follow symbolic links (loops are detected and reported).
    #[arg(long, short = 'L')]
    follow: bool,
    /// Skip files larger than SIZE (bytes, or with a K, M or G suffix); 0 scans any size.
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = parse_size)]
    max_file_size: u64,
    /// Worker threads (default: one per core).
    #[arg(long, short = 'j', value_name = "N", default_value_t = 0)]
    threads: usize,
    /// List every skipped file, not only a count.
    #[arg(long, short = 'v')]
    verbose: bool,
    /// When to colour output.
    #[arg(long, value_name = "WHEN", default_value = "auto")]
    color: ColorWhen,
}

/// `--color`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ColorWhen {
    /// Colour when writing to a terminal (and `NO_COLOR` is unset).
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

fn parse_severity(text: &str) -> Result<Severity, String> {
    text.parse()
        .map_err(|err: remit_scan::RuleError| err.to_string())
}

fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, ""),
    };
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size (try `100M`)"))?;
    let factor: u64 = match unit.to_ascii_uppercase().trim_end_matches(['B', 'I']) {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        _ => return Err(format!("`{text}` has an unknown unit (use K, M or G)")),
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("`{text}` is too large"))
}

pub(crate) fn run(args: Args) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    match args.color {
        ColorWhen::Auto => {}
        ColorWhen::Always => anstream::ColorChoice::Always.write_global(),
        ColorWhen::Never => anstream::ColorChoice::Never.write_global(),
    }
    let scanner = build_scanner(&args)?;
    let baseline = match &args.baseline {
        Some(path) => Some(read_baseline(path)?),
        None => None,
    };

    let progress = Arc::new(Progress::default());
    let spinner = Spinner::start(&progress);
    let result = scan(&scanner, &args, &progress);
    spinner.stop();
    let mut report = result?;

    if let Some(min) = args.min_severity {
        report.findings.retain(|f| f.severity >= min);
    }
    if let Some(path) = &args.write_baseline {
        let text = serde_json::to_string_pretty(&json_report(&report, &scanner))?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write baseline `{}`", path.display()))?;
        eprintln!(
            "remit: wrote {} finding(s) to baseline `{}`",
            report.findings.len(),
            path.display()
        );
        return Ok(Outcome::Success);
    }
    let mut suppressed = 0;
    if let Some(accepted) = &baseline {
        let before = report.findings.len();
        report
            .findings
            .retain(|f| !accepted.contains(&f.fingerprint));
        suppressed = before - report.findings.len();
    }

    let mut out = anstream::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &json_report(&report, &scanner))?;
        writeln!(out)?;
    } else if args.sarif {
        serde_json::to_writer_pretty(&mut out, &sarif(&report, &scanner))?;
        writeln!(out)?;
    } else {
        human(&mut out, &report, &scanner)?;
    }
    out.flush()?;
    notes(&report.notes, args.verbose);
    if !args.json && !args.sarif {
        summary(&report, suppressed, started.elapsed());
    }
    Ok(if report.findings.is_empty() {
        Outcome::Success
    } else {
        Outcome::Denied
    })
}

fn build_scanner(args: &Args) -> anyhow::Result<Scanner> {
    let mut rules = if args.no_builtin_rules {
        Rules::empty()
    } else {
        Rules::builtin()
    };
    for path in &args.rules {
        rules.extend(Rules::load(path)?)?;
    }
    Ok(Scanner::new(rules)?)
}

fn scan(scanner: &Scanner, args: &Args, progress: &Arc<Progress>) -> anyhow::Result<Report> {
    if args.git {
        let repo = match args.paths.as_slice() {
            [] => PathBuf::from("."),
            [one] => one.clone(),
            _ => anyhow::bail!(
                "`--git` scans one repository; {} paths given",
                args.paths.len()
            ),
        };
        let options = GitOptions {
            revisions: args.revs.clone(),
            progress: Some(progress.clone()),
        };
        return Ok(scanner.scan_git(&repo, &options)?);
    }
    if args.paths.iter().any(|p| p == Path::new("-")) {
        if args.paths.len() != 1 {
            anyhow::bail!("`-` (standard input) cannot be combined with other paths");
        }
        let mut input = Counted {
            inner: std::io::stdin().lock(),
            bytes: 0,
        };
        let findings = scanner
            .scan_reader(&mut input)
            .context("cannot read standard input")?;
        let findings = findings
            .into_iter()
            .map(|mut f| {
                f.path = Some(PathBuf::from("<stdin>"));
                f
            })
            .collect();
        return Ok(Report {
            findings,
            files: 1,
            bytes: input.bytes,
            ..Report::default()
        });
    }
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        args.paths.clone()
    };
    let options = ScanOptions {
        max_file_size: (args.max_file_size > 0).then_some(args.max_file_size),
        threads: args.threads,
        respect_ignore_files: !args.no_ignore,
        follow_symlinks: args.follow,
        progress: Some(progress.clone()),
    };
    Ok(scanner.scan_paths(&paths, &options)?)
}

/// A reader that counts what passed through it.
struct Counted<R> {
    inner: R,
    bytes: u64,
}

impl<R: std::io::Read> std::io::Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Fingerprints accepted by a baseline file: a `--json` report, or a list of fingerprints.
fn read_baseline(path: &Path) -> anyhow::Result<HashSet<Fingerprint>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read baseline `{}`", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("baseline `{}` is not JSON", path.display()))?;
    let items: Vec<&serde_json::Value> = match &value {
        serde_json::Value::Object(map) => match map.get("findings") {
            Some(serde_json::Value::Array(items)) => items.iter().collect(),
            _ => anyhow::bail!("baseline `{}` has no `findings` list", path.display()),
        },
        serde_json::Value::Array(items) => items.iter().collect(),
        _ => anyhow::bail!(
            "baseline `{}` is neither a report nor a list",
            path.display()
        ),
    };
    let mut out = HashSet::new();
    for item in items {
        let text = match item {
            serde_json::Value::String(s) => s.as_str(),
            other => other
                .get("fingerprint")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default(),
        };
        let fingerprint = Fingerprint::parse(text).ok_or_else(|| {
            anyhow::anyhow!(
                "baseline `{}` has a bad fingerprint `{text}`",
                path.display()
            )
        })?;
        out.insert(fingerprint);
    }
    Ok(out)
}

fn description<'a>(scanner: &'a Scanner, rule: &str) -> &'a str {
    scanner
        .rules()
        .get(rule)
        .map_or("", remit_scan::Rule::description)
}

fn json_report(report: &Report, scanner: &Scanner) -> serde_json::Value {
    let findings: Vec<serde_json::Value> = report
        .findings
        .iter()
        .map(|f| {
            serde_json::json!({
                "rule": &*f.rule,
                "description": description(scanner, &f.rule),
                "severity": f.severity,
                "path": f.path.as_ref().map(|p| p.display().to_string()),
                "commit": f.commit,
                "line": f.line,
                "column": f.column,
                "start": f.start,
                "end": f.end,
                "fingerprint": f.fingerprint.to_string(),
                "preview": f.preview,
            })
        })
        .collect();
    serde_json::json!({
        "version": 1,
        "findings": findings,
        "notes": report.notes,
        "files": report.files,
        "bytes": report.bytes,
    })
}

fn sarif_level(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low => "note",
    }
}

fn sarif(report: &Report, scanner: &Scanner) -> serde_json::Value {
    let mut used: Vec<&str> = report.findings.iter().map(|f| &*f.rule).collect();
    used.sort_unstable();
    used.dedup();
    let rules: Vec<serde_json::Value> = used
        .iter()
        .map(|id| {
            let rule = scanner.rules().get(id);
            let severity = rule.map_or(Severity::High, remit_scan::Rule::severity);
            serde_json::json!({
                "id": id,
                "name": id,
                "shortDescription": { "text": rule.map_or("", remit_scan::Rule::description) },
                "defaultConfiguration": { "level": sarif_level(severity) },
                "properties": { "severity": severity, "tags": ["security", "secret"] },
            })
        })
        .collect();
    let results: Vec<serde_json::Value> = report
        .findings
        .iter()
        .map(|f| {
            let uri = f
                .path
                .as_ref()
                .map(|p| p.to_string_lossy().replace('\\', "/"))
                .unwrap_or_default();
            let mut result = serde_json::json!({
                "ruleId": &*f.rule,
                "ruleIndex": used.binary_search(&&*f.rule).unwrap_or(0),
                "level": sarif_level(f.severity),
                "message": { "text": format!("{} ({})", description(scanner, &f.rule), f.preview) },
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": { "uri": uri },
                        "region": {
                            "startLine": f.line,
                            "startColumn": f.column,
                        },
                    },
                }],
                "partialFingerprints": { "remitSecret/v1": f.fingerprint.to_string() },
            });
            if let (Some(commit), Some(object)) = (&f.commit, result.as_object_mut()) {
                object.insert(
                    "properties".to_owned(),
                    serde_json::json!({ "commit": commit }),
                );
            }
            result
        })
        .collect();
    serde_json::json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "remit",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    })
}

fn severity_label(severity: Severity) -> String {
    let text = format!("{:<8}", severity.as_str());
    match severity {
        Severity::Critical => text.red().bold().to_string(),
        Severity::High => text.red().to_string(),
        Severity::Medium => text.yellow().to_string(),
        Severity::Low => text.blue().to_string(),
    }
}

fn human(out: &mut impl std::io::Write, report: &Report, _scanner: &Scanner) -> anyhow::Result<()> {
    let mut current: Option<(&Option<PathBuf>, &Option<String>)> = None;
    for finding in &report.findings {
        let key = (&finding.path, &finding.commit);
        if current != Some(key) {
            if current.is_some() {
                writeln!(out)?;
            }
            let path = finding
                .path
                .as_ref()
                .map_or_else(|| "<input>".to_owned(), |p| p.display().to_string());
            match &finding.commit {
                Some(commit) => writeln!(
                    out,
                    "{} {}",
                    path.magenta().bold(),
                    format!("(commit {})", &commit[..commit.len().min(12)]).dimmed()
                )?,
                None => writeln!(out, "{}", path.magenta().bold())?,
            }
            current = Some(key);
        }
        write_finding(out, finding)?;
    }
    Ok(())
}

fn write_finding(out: &mut impl std::io::Write, f: &Finding) -> std::io::Result<()> {
    let position = format!("{}:{}", f.line, f.column);
    let fingerprint = f.fingerprint.to_string();
    writeln!(
        out,
        "  {:>9}  {} {}  {}  {}",
        position.green(),
        severity_label(f.severity),
        f.rule.cyan(),
        f.preview,
        format!("fp {}", &fingerprint[..16]).dimmed(),
    )
}

fn notes(notes: &[Note], verbose: bool) {
    let mut err = anstream::stderr().lock();
    for note in notes {
        if verbose || note.kind.is_error() {
            let _ = writeln!(err, "remit: note: {note}");
        }
    }
}

fn summary(report: &Report, suppressed: usize, elapsed: Duration) {
    let mut err = anstream::stderr().lock();
    let files: HashSet<(&Option<PathBuf>, &Option<String>)> = report
        .findings
        .iter()
        .map(|f| (&f.path, &f.commit))
        .collect();
    let skipped = report.notes.iter().filter(|n| !n.kind.is_error()).count();
    let mut line = format!(
        "{} finding{} in {} file{}; scanned {} file{}, {} in {:.2} s",
        report.findings.len(),
        if report.findings.len() == 1 { "" } else { "s" },
        files.len(),
        if files.len() == 1 { "" } else { "s" },
        report.files,
        if report.files == 1 { "" } else { "s" },
        human_bytes(report.bytes),
        elapsed.as_secs_f64(),
    );
    if suppressed > 0 {
        line.push_str(&format!("; {suppressed} suppressed by the baseline"));
    }
    if skipped > 0 {
        line.push_str(&format!("; {skipped} skipped (--verbose lists them)"));
    }
    let _ = if report.findings.is_empty() {
        writeln!(err, "{}", line.green())
    } else {
        writeln!(err, "{}", line.red().bold())
    };
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A progress line on standard error, shown only on a terminal and only once a scan has run
/// for a moment, so that short scans (every command's output) print nothing extra.
struct Spinner {
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Spinner {
    fn start(progress: &Arc<Progress>) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        if !std::io::stderr().is_terminal() {
            return Self { done, thread: None };
        }
        let progress = progress.clone();
        let flag = done.clone();
        let thread = std::thread::spawn(move || {
            let delay = Instant::now() + Duration::from_millis(300);
            while Instant::now() < delay {
                if flag.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let bar = indicatif::ProgressBar::new_spinner();
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{spinner} scanning: {msg} ({elapsed})")
            {
                bar.set_style(style);
            }
            let started = Instant::now();
            while !flag.load(Ordering::Relaxed) {
                let bytes = progress.bytes();
                let rate = bytes as f64 / started.elapsed().as_secs_f64().max(0.001);
                bar.set_message(format!(
                    "{} files, {}, {}/s",
                    progress.files(),
                    human_bytes(bytes),
                    human_bytes(rate as u64)
                ));
                bar.tick();
                std::thread::sleep(Duration::from_millis(100));
            }
            bar.finish_and_clear();
        });
        Self {
            done,
            thread: Some(thread),
        }
    }

    fn stop(self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread {
            let _ = thread.join();
        }
    }
}
