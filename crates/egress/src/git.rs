//! git smart HTTP: the ref updates of a `git-receive-pack` request, whether each is a
//! fast-forward, and the report-status answer that refuses some of them in git's own words.
//!
//! A push request body is pkt-lines: optional `shallow` lines, the commands
//! (`<old> <new> <ref>`, capabilities after a NUL on the first), a flush, optional push
//! options and a flush, then a pack. Whether an update is a fast-forward is decided from the
//! commits the proxy has seen: starting at the new commit, it follows parents through the
//! commits this push's pack carries and those of earlier pushes of the same task; the update
//! is a fast-forward when it reaches the old commit. The pack holds every commit the remote
//! lacks, so a normal fast-forward push is always proven. What cannot be proven is reported as
//! a force push (fail closed): moving a ref to a commit the remote already had from elsewhere
//! (pushed by someone else, or before the task), and commits stored as deltas against
//! objects outside the pack (thin packs do this for trees and blobs, rarely for commits).

use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::Rc;

use flate2::{Decompress, FlushDecompress, Status};
use sha1::Digest as _;

/// One ref update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefUpdate {
    /// Object id before (all zeros: the ref is created).
    pub old: String,
    /// Object id after (all zeros: the ref is deleted).
    pub new: String,
    /// Full ref name.
    pub reference: String,
}

impl RefUpdate {
    /// Whether the ref is created.
    pub fn creates(&self) -> bool {
        is_zero(&self.old)
    }

    /// Whether the ref is deleted.
    pub fn deletes(&self) -> bool {
        is_zero(&self.new)
    }
}

fn is_zero(id: &str) -> bool {
    id.bytes().all(|b| b == b'0')
}

/// A parsed push request.
#[derive(Debug, Clone, Default)]
pub struct Push {
    /// The ref updates, in order.
    pub updates: Vec<RefUpdate>,
    /// The capabilities the client asked for.
    pub capabilities: Vec<String>,
    /// Where the pack starts in the body (`None`: no pack).
    pub pack_offset: Option<usize>,
}

impl Push {
    /// Whether the client asked for a capability.
    pub fn has(&self, capability: &str) -> bool {
        self.capabilities
            .iter()
            .any(|c| c == capability || c.starts_with(&format!("{capability}=")))
    }
}

/// A push request that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GitError {
    /// Bad pkt-line framing.
    #[error("malformed pkt-line at byte {0}")]
    PktLine(usize),
    /// A command line is not `<old> <new> <ref>`.
    #[error("malformed ref update `{0}`")]
    Command(String),
    /// Signed pushes are not inspected.
    #[error("signed pushes (`push-cert`) cannot be inspected by remit; push without `--signed`")]
    Signed,
    /// The pack cannot be read.
    #[error("malformed pack: {0}")]
    Pack(String),
    /// More ref updates than one push may carry.
    #[error(
        "the push updates more than {MAX_REF_UPDATES} refs, each decided and recorded on its own; push them in parts"
    )]
    TooManyUpdates,
}

/// Ref updates in one push, at most: each is a decision and a record of its own.
pub const MAX_REF_UPDATES: usize = 10_000;

/// Commits visited, at most, while telling fast-forwards from forced updates in one push;
/// an update not told within it is counted as forced.
pub const MAX_ANCESTRY_VISITS: usize = 2_000_000;

/// Read one pkt-line at `at`: `(payload, next offset)`; payload `None` for flush/delim.
fn pkt_line(body: &[u8], at: usize) -> Result<(Option<&[u8]>, usize), GitError> {
    let header = body.get(at..at + 4).ok_or(GitError::PktLine(at))?;
    let text = std::str::from_utf8(header).map_err(|_| GitError::PktLine(at))?;
    let len = usize::from_str_radix(text, 16).map_err(|_| GitError::PktLine(at))?;
    match len {
        0..=2 => Ok((None, at + 4)),
        3 => Err(GitError::PktLine(at)),
        n => {
            let payload = body.get(at + 4..at + n).ok_or(GitError::PktLine(at))?;
            Ok((Some(payload), at + n))
        }
    }
}

/// Parse the command section of a receive-pack request.
pub fn parse_push(body: &[u8]) -> Result<Push, GitError> {
    let mut push = Push::default();
    let mut at = 0;
    if body.is_empty() {
        return Ok(push);
    }
    loop {
        let (payload, next) = pkt_line(body, at)?;
        at = next;
        let Some(line) = payload else { break };
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        if line.starts_with(b"shallow ") {
            continue;
        }
        if line.starts_with(b"push-cert") {
            return Err(GitError::Signed);
        }
        let (command, caps) = match line.iter().position(|b| *b == 0) {
            Some(nul) => (&line[..nul], Some(&line[nul + 1..])),
            None => (line, None),
        };
        if let Some(caps) = caps {
            push.capabilities = String::from_utf8_lossy(caps)
                .split(' ')
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect();
        }
        let text = String::from_utf8_lossy(command);
        let mut words = text.splitn(3, ' ');
        let (Some(old), Some(new), Some(reference)) = (words.next(), words.next(), words.next())
        else {
            return Err(GitError::Command(text.chars().take(200).collect()));
        };
        let id_ok = |id: &str| {
            (id.len() == 40 || id.len() == 64) && id.bytes().all(|b| b.is_ascii_hexdigit())
        };
        if !id_ok(old) || !id_ok(new) || reference.is_empty() {
            return Err(GitError::Command(text.chars().take(200).collect()));
        }
        if push.updates.len() == MAX_REF_UPDATES {
            return Err(GitError::TooManyUpdates);
        }
        push.updates.push(RefUpdate {
            old: old.to_ascii_lowercase(),
            new: new.to_ascii_lowercase(),
            reference: reference.to_owned(),
        });
    }
    if push.has("push-options") {
        loop {
            let (payload, next) = pkt_line(body, at)?;
            at = next;
            if payload.is_none() {
                break;
            }
        }
    }
    if at < body.len() {
        push.pack_offset = Some(at);
    }
    Ok(push)
}

/// The commits a pack carries: id → parent ids (hex).
#[derive(Debug, Default)]
pub struct PackCommits {
    parents: HashMap<String, Vec<String>>,
}

impl PackCommits {
    /// Whether `old` is an ancestor of `new` through the pack's commits.
    pub fn fast_forward(&self, old: &str, new: &str) -> bool {
        let mut unbounded = usize::MAX;
        self.fast_forward_within(old, new, &mut unbounded)
    }

    /// [`Self::fast_forward`], visiting at most `budget` commits (what it visits is taken
    /// from it); `false` once it runs out.
    pub fn fast_forward_within(&self, old: &str, new: &str, budget: &mut usize) -> bool {
        if old == new {
            return true;
        }
        let mut seen = HashSet::new();
        let mut queue = VecDeque::from([new.to_owned()]);
        while let Some(id) = queue.pop_front() {
            let Some(parents) = self.parents.get(&id) else {
                continue;
            };
            if *budget == 0 {
                return false;
            }
            *budget -= 1;
            for parent in parents {
                if parent == old {
                    return true;
                }
                if seen.insert(parent.clone()) {
                    queue.push_back(parent.clone());
                }
            }
        }
        false
    }

    /// Add the commits of `other`, up to `cap` commits in all (ids are content hashes, so
    /// what a pack says about a commit's parents is true wherever the commit lives).
    pub fn absorb(&mut self, other: PackCommits, cap: usize) {
        for (id, parents) in other.parents {
            if self.parents.len() >= cap {
                break;
            }
            self.parents.insert(id, parents);
        }
    }

    /// How many commits the pack holds.
    pub fn len(&self) -> usize {
        self.parents.len()
    }

    /// Whether the pack holds no commit.
    pub fn is_empty(&self) -> bool {
        self.parents.is_empty()
    }
}

/// Object types in a pack.
const COMMIT: u8 = 1;
const OFS_DELTA: u8 = 6;
const REF_DELTA: u8 = 7;

/// An object read from a pack: its type, and its content if it is a commit.
type Object = (u8, Option<Rc<[u8]>>);

/// Bytes of commits one pack may rebuild in all, each kept once (a commit made of a delta
/// counts its whole size: a delta of a few bytes may copy megabytes from its base).
pub const MAX_PACK_COMMIT_BYTES: usize = 64 << 20;

/// What inflating a pack of `len` bytes may produce in all (every object is inflated to find
/// where the next one starts): 64 MiB, and 64 bytes for each byte of the pack. A pack that
/// inflates past it (a zlib bomb) is not read; its updates count as forced.
pub fn pack_inflate_budget(len: usize) -> u64 {
    (64u64 << 20).saturating_add(u64::try_from(len).unwrap_or(u64::MAX).saturating_mul(64))
}

/// Read the commits of a pack (v2 or v3). `sha256` when the repository uses SHA-256 ids.
/// Objects are inflated one at a time; only commits are kept, each once and at most
/// `max_object` bytes, [`MAX_PACK_COMMIT_BYTES`] in all; everything inflated counts against
/// [`pack_inflate_budget`].
pub fn pack_commits(pack: &[u8], sha256: bool, max_object: usize) -> Result<PackCommits, GitError> {
    pack_commits_within(
        pack,
        sha256,
        max_object,
        pack_inflate_budget(pack.len()),
        MAX_PACK_COMMIT_BYTES,
    )
}

/// [`pack_commits`] with the pack's budgets given: `inflate_left` bytes inflated in all,
/// `commits_left` bytes of commits kept.
fn pack_commits_within(
    pack: &[u8],
    sha256: bool,
    max_object: usize,
    mut inflate_left: u64,
    mut commits_left: usize,
) -> Result<PackCommits, GitError> {
    let bad = |why: &str| GitError::Pack(why.to_owned());
    if pack.len() < 12 || &pack[..4] != b"PACK" {
        return Err(bad("no `PACK` header"));
    }
    let version = u32::from_be_bytes([pack[4], pack[5], pack[6], pack[7]]);
    if version != 2 && version != 3 {
        return Err(bad("unknown pack version"));
    }
    let count = u32::from_be_bytes([pack[8], pack[9], pack[10], pack[11]]);
    let id_len = if sha256 { 32 } else { 20 };
    let mut at = 12usize;
    // Offset → (type, content if a commit); a commit's content is shared, never copied.
    let mut by_offset: HashMap<usize, Object> = HashMap::new();
    let mut by_id: HashMap<Vec<u8>, Rc<[u8]>> = HashMap::new();
    let mut out = PackCommits::default();
    for _ in 0..count {
        let start = at;
        let mut byte = *pack.get(at).ok_or_else(|| bad("truncated object header"))?;
        at += 1;
        let kind = (byte >> 4) & 7;
        let mut size = u64::from(byte & 0x0f);
        let mut shift = 4u32;
        while byte & 0x80 != 0 {
            byte = *pack.get(at).ok_or_else(|| bad("truncated object header"))?;
            at += 1;
            if shift > 56 {
                return Err(bad("object size too large"));
            }
            size |= u64::from(byte & 0x7f) << shift;
            shift += 7;
        }
        let size = usize::try_from(size).map_err(|_| bad("object size too large"))?;
        let base: Option<Object> = match kind {
            OFS_DELTA => {
                let mut byte = *pack.get(at).ok_or_else(|| bad("truncated delta offset"))?;
                at += 1;
                let mut offset = u64::from(byte & 0x7f);
                while byte & 0x80 != 0 {
                    byte = *pack.get(at).ok_or_else(|| bad("truncated delta offset"))?;
                    at += 1;
                    offset = offset
                        .checked_add(1)
                        .and_then(|o| o.checked_mul(128))
                        .ok_or_else(|| bad("delta offset too large"))?
                        | u64::from(byte & 0x7f);
                }
                let base_at = usize::try_from(offset)
                    .ok()
                    .and_then(|o| start.checked_sub(o))
                    .ok_or_else(|| bad("delta offset out of range"))?;
                Some(by_offset.get(&base_at).cloned().unwrap_or((0, None)))
            }
            REF_DELTA => {
                let id = pack
                    .get(at..at + id_len)
                    .ok_or_else(|| bad("truncated delta base"))?;
                at += id_len;
                // A base outside the pack (thin pack) is unknown: type 0.
                Some(match by_id.get(id) {
                    Some(content) => (COMMIT, Some(Rc::clone(content))),
                    None => (0, None),
                })
            }
            1..=4 => None,
            _ => return Err(bad("unknown object type")),
        };
        let keep = match &base {
            None => kind == COMMIT,
            Some((base_kind, _)) => *base_kind == COMMIT,
        };
        let limit = if keep {
            max_object.min(commits_left)
        } else {
            usize::MAX
        };
        let (data, used) = inflate(&pack[at..], size, keep, limit, &mut inflate_left)?;
        at += used;
        let (object_kind, content) = match base {
            None => (kind, data),
            Some((base_kind, base_content)) => match (base_kind, base_content, data) {
                (COMMIT, Some(base), Some(delta)) => {
                    let limit = max_object.min(commits_left);
                    (COMMIT, Some(apply_delta(&base, &delta, limit)?))
                }
                (k, _, _) => (k, None),
            },
        };
        if object_kind == COMMIT
            && let Some(content) = content
        {
            commits_left = commits_left.saturating_sub(content.len());
            let content: Rc<[u8]> = content.into();
            let id = object_id("commit", &content, sha256);
            out.parents.insert(hex(&id), commit_parents(&content));
            by_id.insert(id, Rc::clone(&content));
            by_offset.insert(start, (COMMIT, Some(content)));
        } else {
            by_offset.insert(start, (object_kind, None));
        }
    }
    Ok(out)
}

/// Inflate one zlib stream of `size` bytes from the start of `input`; returns the data (if
/// `keep`) and how many input bytes the stream used.
/// `left` is what the whole pack may still inflate to.
fn inflate(
    input: &[u8],
    size: usize,
    keep: bool,
    limit: usize,
    left: &mut u64,
) -> Result<(Option<Vec<u8>>, usize), GitError> {
    if keep && size > limit {
        return Err(GitError::Pack(format!(
            "a commit of {size} bytes is larger than remit reads"
        )));
    }
    if u64::try_from(size).map_or(true, |s| s > *left) {
        return Err(GitError::Pack(
            "the pack inflates to more than remit reads".into(),
        ));
    }
    *left -= size as u64;
    let mut z = Decompress::new(true);
    let mut out = Vec::with_capacity(if keep { size } else { 0 });
    let mut scratch = vec![0u8; 64 * 1024];
    loop {
        let before_in = z.total_in();
        let before_out = z.total_out();
        let consumed =
            usize::try_from(before_in).map_err(|_| GitError::Pack("stream too long".into()))?;
        let status = z
            .decompress(
                input.get(consumed..).unwrap_or(&[]),
                &mut scratch,
                FlushDecompress::None,
            )
            .map_err(|e| GitError::Pack(format!("bad zlib stream: {e}")))?;
        let produced = usize::try_from(z.total_out() - before_out).unwrap_or(0);
        if keep {
            out.extend_from_slice(&scratch[..produced]);
        }
        if u64::try_from(size).map_or(true, |s| z.total_out() > s) {
            return Err(GitError::Pack(
                "an object is larger than its header says".into(),
            ));
        }
        match status {
            Status::StreamEnd => break,
            _ if z.total_in() == before_in && z.total_out() == before_out => {
                return Err(GitError::Pack("truncated zlib stream".into()));
            }
            _ => {}
        }
    }
    let used =
        usize::try_from(z.total_in()).map_err(|_| GitError::Pack("stream too long".into()))?;
    Ok((keep.then_some(out), used))
}

/// Apply a git delta to `base`.
fn apply_delta(base: &[u8], delta: &[u8], limit: usize) -> Result<Vec<u8>, GitError> {
    let bad = || GitError::Pack("malformed delta".into());
    let mut at = 0;
    let varint = |at: &mut usize| -> Result<usize, GitError> {
        let mut value = 0usize;
        let mut shift = 0;
        loop {
            let byte = *delta.get(*at).ok_or_else(bad)?;
            *at += 1;
            if shift > 56 {
                return Err(bad());
            }
            value |= usize::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
    };
    let base_size = varint(&mut at)?;
    let result_size = varint(&mut at)?;
    if base_size != base.len() {
        return Err(bad());
    }
    if result_size > limit {
        return Err(GitError::Pack(
            "a commit rebuilt from a delta is larger than remit reads".into(),
        ));
    }
    let mut out = Vec::with_capacity(result_size);
    while at < delta.len() {
        let op = delta[at];
        at += 1;
        if op & 0x80 != 0 {
            let mut offset = 0usize;
            let mut size = 0usize;
            for i in 0..4 {
                if op & (1 << i) != 0 {
                    offset |= usize::from(*delta.get(at).ok_or_else(bad)?) << (8 * i);
                    at += 1;
                }
            }
            for i in 0..3 {
                if op & (1 << (4 + i)) != 0 {
                    size |= usize::from(*delta.get(at).ok_or_else(bad)?) << (8 * i);
                    at += 1;
                }
            }
            if size == 0 {
                size = 0x10000;
            }
            let end = offset.checked_add(size).ok_or_else(bad)?;
            out.extend_from_slice(base.get(offset..end).ok_or_else(bad)?);
        } else if op != 0 {
            let n = usize::from(op);
            out.extend_from_slice(delta.get(at..at + n).ok_or_else(bad)?);
            at += n;
        } else {
            return Err(bad());
        }
        if out.len() > result_size {
            return Err(bad());
        }
    }
    if out.len() != result_size {
        return Err(bad());
    }
    Ok(out)
}

fn object_id(kind: &str, content: &[u8], sha256: bool) -> Vec<u8> {
    let header = format!("{kind} {}\0", content.len());
    if sha256 {
        let mut h = sha2::Sha256::new();
        sha2::Digest::update(&mut h, header.as_bytes());
        sha2::Digest::update(&mut h, content);
        sha2::Digest::finalize(h).to_vec()
    } else {
        let mut h = sha1::Sha1::new();
        h.update(header.as_bytes());
        h.update(content);
        h.finalize().to_vec()
    }
}

/// A commit's parents as git reads them: the `parent` lines right after its `tree` line and
/// nothing else. A `parent` line anywhere later in the header (after `author`, say) is no
/// parent to git, so it must be none here: counting it would let a commit that replaces a
/// branch's history pass for a fast-forward. A commit git could not parse has no parents,
/// and an update to it is a rewrite.
fn commit_parents(content: &[u8]) -> Vec<String> {
    let mut lines = content.split(|b| *b == b'\n');
    let is_id = |id: &[u8]| matches!(id.len(), 40 | 64) && id.iter().all(u8::is_ascii_hexdigit);
    match lines.next().and_then(|l| l.strip_prefix(b"tree ")) {
        Some(tree) if is_id(tree) => {}
        _ => return Vec::new(),
    }
    let mut parents = Vec::new();
    for line in lines {
        let Some(id) = line.strip_prefix(b"parent ") else {
            break;
        };
        if !is_id(id) {
            return Vec::new();
        }
        parents.push(String::from_utf8_lossy(id).to_ascii_lowercase());
    }
    parents
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

fn pkt(payload: &[u8]) -> Vec<u8> {
    let mut out = format!("{:04x}", payload.len() + 4).into_bytes();
    out.extend_from_slice(payload);
    out
}

/// A receive-pack answer refusing the push: each ref `ng` with its reason (`None`: the
/// update was fine but another in the same push was refused), in the client's
/// report-status format and side band.
pub(crate) fn refusal(push: &Push, reasons: &[Option<String>], summary: &str) -> Vec<u8> {
    let mut report = pkt(b"unpack ok\n");
    for (update, reason) in push.updates.iter().zip(reasons) {
        let why = reason.clone().unwrap_or_else(|| {
            "not pushed: another ref in this push was refused; push it on its own".into()
        });
        let why: String = why
            .chars()
            .map(|c| if c == '\n' { ' ' } else { c })
            .collect();
        report.extend(pkt(
            format!("ng {} remit: {why}\n", update.reference).as_bytes()
        ));
    }
    report.extend_from_slice(b"0000");
    if push.has("side-band-64k") || push.has("side-band") {
        let max = if push.has("side-band-64k") {
            65515
        } else {
            995
        };
        let mut out = Vec::new();
        let message = format!("remit: {summary}\n");
        let mut band2 = vec![2u8];
        band2.extend_from_slice(message.as_bytes());
        out.extend(pkt(&band2));
        for chunk in report.chunks(max) {
            let mut band1 = vec![1u8];
            band1.extend_from_slice(chunk);
            out.extend(pkt(&band1));
        }
        out.extend_from_slice(b"0000");
        out
    } else {
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A push of more ref updates than one may carry is refused whole, before anything is
    /// decided; one at the limit is read.
    #[test]
    fn a_push_updates_a_bounded_number_of_refs() {
        let push = |n: usize| {
            let mut body = Vec::new();
            for i in 0..n {
                body.extend(pkt(format!(
                    "{} {:040x} refs/heads/b{i}\n",
                    "0".repeat(40),
                    i + 1
                )
                .as_bytes()));
            }
            body.extend_from_slice(b"0000");
            parse_push(&body)
        };
        assert_eq!(
            push(MAX_REF_UPDATES).unwrap().updates.len(),
            MAX_REF_UPDATES
        );
        let refused = push(MAX_REF_UPDATES + 1).unwrap_err();
        assert!(matches!(refused, GitError::TooManyUpdates), "{refused}");
        // Telling a fast-forward is bounded too: a long chain is walked within the budget or
        // not told.
        let mut graph = PackCommits::default();
        for i in 1..1000u32 {
            graph
                .parents
                .insert(format!("{i}"), vec![format!("{}", i - 1)]);
        }
        let mut budget = 10_000;
        assert!(graph.fast_forward_within("0", "999", &mut budget));
        let mut budget = 10;
        assert!(!graph.fast_forward_within("0", "999", &mut budget));
        assert_eq!(budget, 0);
    }

    #[test]
    fn parents_are_read_where_git_reads_them() {
        let (tree, a, b) = ("1".repeat(40), "a".repeat(40), "B".repeat(40));
        let who = "author x <x@y> 0 +0000\ncommitter x <x@y> 0 +0000";
        let commit = |header: String| {
            commit_parents(format!("{header}\n\nmessage\nparent {a}\n").as_bytes())
        };
        assert_eq!(
            commit(format!("tree {tree}\nparent {a}\n{who}")),
            vec![a.clone()]
        );
        assert_eq!(
            commit(format!("tree {tree}\nparent {a}\nparent {b}\n{who}")),
            [a.clone(), b.to_ascii_lowercase()]
        );
        assert_eq!(commit(format!("tree {tree}\n{who}")), Vec::<String>::new());
        // A `parent` line out of place is no parent (git ignores it), nor one in the message.
        assert_eq!(
            commit(format!("tree {tree}\n{who}\nparent {a}")),
            Vec::<String>::new()
        );
        assert_eq!(
            commit(format!("tree {tree}\nparent {a}\n{who}\nparent {b}")),
            vec![a.clone()]
        );
        // Not a commit git parses: no parents.
        assert_eq!(
            commit(format!("parent {a}\ntree {tree}\n{who}")),
            Vec::<String>::new()
        );
        assert_eq!(
            commit(format!("tree {tree}\nparent xyz\n{who}")),
            Vec::<String>::new()
        );
        assert_eq!(
            commit(format!("tree {tree}\nparent {a} \n{who}")),
            Vec::<String>::new()
        );
        let long = "c".repeat(64);
        assert_eq!(
            commit(format!("tree {long}\nparent {long}\n{who}")),
            vec![long.clone()]
        );
    }

    #[test]
    fn commands() {
        let old = "a".repeat(40);
        let new = "b".repeat(40);
        let mut body = pkt(format!(
            "{old} {new} refs/heads/main\0report-status side-band-64k agent=git/2\n"
        )
        .as_bytes());
        body.extend(pkt(
            format!("{} {new} refs/heads/x\n", "0".repeat(40)).as_bytes()
        ));
        body.extend_from_slice(b"0000PACK");
        let push = parse_push(&body).unwrap();
        assert_eq!(push.updates.len(), 2);
        assert_eq!(push.updates[0].reference, "refs/heads/main");
        assert!(push.updates[1].creates());
        assert!(push.has("report-status"));
        assert!(push.has("side-band-64k"));
        assert_eq!(push.pack_offset, Some(body.len() - 4));
        assert!(parse_push(b"0000").unwrap().updates.is_empty());
        assert!(matches!(parse_push(b"00zz"), Err(GitError::PktLine(0))));
        assert!(matches!(
            parse_push(&pkt(b"x y z")),
            Err(GitError::Command(_))
        ));
        assert!(matches!(
            parse_push(&pkt(b"push-cert\0x")),
            Err(GitError::Signed)
        ));
        let answer = refusal(&push, &[Some("nope".into()), None], "denied");
        assert!(String::from_utf8_lossy(&answer).contains("ng refs/heads/main remit: nope"));
    }

    #[test]
    fn deltas() {
        // base "hello world", delta: copy 0..5, insert "!"
        let delta = [11u8, 6, 0x90, 5, 1, b'!'];
        assert_eq!(apply_delta(b"hello world", &delta, 100).unwrap(), b"hello!");
        assert!(apply_delta(b"hello", &delta, 100).is_err());
        assert!(apply_delta(b"hello world", &[11, 6, 0], 100).is_err());
    }

    /// A pack object's header: its type and size.
    fn object_header(kind: u8, size: usize) -> Vec<u8> {
        let mut out = vec![(kind << 4) | (size & 0x0f) as u8];
        let mut rest = size >> 4;
        while rest != 0 {
            *out.last_mut().unwrap() |= 0x80;
            out.push((rest & 0x7f) as u8);
            rest >>= 7;
        }
        out
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        use std::io::Write as _;
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(data).unwrap();
        z.finish().unwrap()
    }

    /// An `OFS_DELTA`'s distance back to its base, as git writes it.
    fn base_distance(mut n: usize) -> Vec<u8> {
        let mut out = vec![(n & 0x7f) as u8];
        n >>= 7;
        while n != 0 {
            n -= 1;
            out.push(0x80 | (n & 0x7f) as u8);
            n >>= 7;
        }
        out.reverse();
        out
    }

    fn delta_size(mut n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    }

    /// A pack of one commit of `size` bytes and `deltas` deltas that each rebuild all of it
    /// from a few bytes (copies of 64 KiB from the base).
    fn pack_of_copies(size: usize, deltas: usize) -> Vec<u8> {
        let mut content = format!(
            "tree {}\nauthor a <a@b> 0 +0000\ncommitter a <a@b> 0 +0000\n\n",
            "a".repeat(40)
        )
        .into_bytes();
        content.resize(size, b'x');
        let mut pack = b"PACK\0\0\0\x02".to_vec();
        pack.extend_from_slice(&u32::try_from(1 + deltas).unwrap().to_be_bytes());
        let base_at = pack.len();
        pack.extend(object_header(COMMIT, size));
        pack.extend(zlib(&content));
        let mut delta = delta_size(size);
        delta.extend(delta_size(size));
        for chunk in 0..size / 0x10000 {
            // Copy 64 KiB (no size bytes) from offset chunk × 64 KiB (four offset bytes).
            delta.push(0x8f);
            delta.extend_from_slice(&u32::try_from(chunk * 0x10000).unwrap().to_le_bytes());
        }
        for _ in 0..deltas {
            let at = pack.len();
            pack.extend(object_header(OFS_DELTA, delta.len()));
            pack.extend(base_distance(at - base_at));
            pack.extend(zlib(&delta));
        }
        pack
    }

    /// A few bytes of delta may stand for megabytes of commit: what a pack's commits may hold
    /// is counted in all, each kept once, or a small push exhausts the supervisor's memory.
    #[test]
    fn a_pack_of_deltas_cannot_grow_past_its_budget() {
        let size = 256 << 10;
        // The harmless twin: a commit rebuilt a few times, within the budget.
        let pack = pack_of_copies(size, 3);
        let commits = pack_commits_within(&pack, false, size, 1 << 30, 4 * size).unwrap();
        assert_eq!(commits.len(), 1);
        // The attack: each delta (about 40 bytes once compressed) rebuilds the whole commit.
        let pack = pack_of_copies(size, 64);
        assert!(pack.len() < 16 << 10, "{}", pack.len());
        let err = pack_commits_within(&pack, false, size, 1 << 30, 4 * size).unwrap_err();
        assert!(err.to_string().contains("larger than remit reads"), "{err}");
    }

    /// A blob need not be kept, but it is inflated to find the next object: a zlib bomb is
    /// refused once the pack has inflated to its budget.
    #[test]
    fn a_pack_that_inflates_past_its_budget_is_not_read() {
        let blob = vec![0u8; 4 << 20];
        let mut pack = b"PACK\0\0\0\x02\0\0\0\x01".to_vec();
        pack.extend(object_header(3, blob.len()));
        pack.extend(zlib(&blob));
        assert!(pack.len() < 64 << 10);
        let err = pack_commits_within(&pack, false, 1 << 20, 1 << 20, 1 << 20).unwrap_err();
        assert!(err.to_string().contains("inflates to more than"), "{err}");
        // The harmless twin: the same pack within a budget that holds it.
        assert!(
            pack_commits_within(&pack, false, 1 << 20, 8 << 20, 1 << 20)
                .unwrap()
                .is_empty()
        );
        assert!(pack_inflate_budget(pack.len()) >= 64 << 20);
    }

    #[test]
    fn garbage_packs_are_errors() {
        assert!(pack_commits(b"PACK\0\0\0\x02\0\0\0\x01\x95", false, 1 << 20).is_err());
        assert!(pack_commits(b"nope", false, 1 << 20).is_err());
        assert!(
            pack_commits(b"PACK\0\0\0\x02\0\0\0\0", false, 1 << 20)
                .unwrap()
                .is_empty()
        );
    }
}
