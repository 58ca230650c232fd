//! Compiles `seccomp/policy.toml` into BPF at build time.
//!
//! The policy is data, reviewed like code; this script turns it into a binary search over
//! the system call number (a handful of comparisons per call instead of a linear scan) with
//! the policy's argument checks at the leaves. Two programs are emitted: one where `notify`
//! rules return SECCOMP_RET_USER_NOTIF (commands observed by the supervisor) and one where
//! they allow.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Deserialize;

const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_USER_NOTIF: u32 = 0x7FC0_0000;
const RET_ALLOW: u32 = 0x7FFF_0000;

const LD_W_ABS: u16 = 0x20;
const JMP_JA: u16 = 0x05;
const JMP_JEQ_K: u16 = 0x15;
const JMP_JGT_K: u16 = 0x25;
const JMP_JGE_K: u16 = 0x35;
const JMP_JSET_K: u16 = 0x45;
const ALU_AND_K: u16 = 0x54;
const RET_K: u16 = 0x06;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Policy {
    rule: Vec<Rule>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Rule {
    syscalls: Vec<String>,
    action: String,
    #[serde(default)]
    when: Option<Conditions>,
    why: String,
}

/// One condition, or several that must all hold.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum Conditions {
    One(When),
    All(Vec<When>),
}

impl Conditions {
    fn list(&self) -> Vec<&When> {
        match self {
            Self::One(when) => vec![when],
            Self::All(all) => all.iter().collect(),
        }
    }
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct When {
    arg: u32,
    #[serde(default)]
    mask: Option<u32>,
    #[serde(default, rename = "in")]
    is_in: Option<Vec<u32>>,
    #[serde(default)]
    not_in: Option<Vec<u32>>,
    #[serde(default)]
    any_bit: Option<u32>,
}

#[derive(Clone, Copy)]
struct Insn {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

fn stmt(code: u16, k: u32) -> Insn {
    Insn {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: usize, jf: usize) -> Insn {
    Insn {
        code,
        jt: u8::try_from(jt).unwrap_or_else(|_| fail("conditional jump out of range")),
        jf: u8::try_from(jf).unwrap_or_else(|_| fail("conditional jump out of range")),
        k,
    }
}

fn fail(message: &str) -> ! {
    eprintln!("seccomp policy: {message}");
    std::process::exit(1)
}

fn errno(name: &str) -> u32 {
    match name {
        "EPERM" => 1,
        "ENOENT" => 2,
        "EACCES" => 13,
        "EINVAL" => 22,
        "ENOSYS" => 38,
        "EPROTONOSUPPORT" => 93,
        "EOPNOTSUPP" => 95,
        "EAFNOSUPPORT" => 97,
        other => fail(&format!("unknown errno `{other}`")),
    }
}

fn action(text: &str, observe: bool) -> u32 {
    match text {
        "notify" if observe => RET_USER_NOTIF,
        "notify" => RET_ALLOW,
        "kill" => RET_KILL_PROCESS,
        "allow" => RET_ALLOW,
        other => match other.strip_prefix("errno:") {
            Some(name) => RET_ERRNO | errno(name),
            None => fail(&format!("unknown action `{other}`")),
        },
    }
}

/// The checks for one syscall: rules in order, then allow. A rule's conditions each fall
/// through when they hold and jump past the rule's return when they do not.
fn block(rules: &[Rule], observe: bool) -> Vec<Insn> {
    let mut out = Vec::new();
    for rule in rules {
        let ret = stmt(RET_K, action(&rule.action, observe));
        let Some(conditions) = &rule.when else {
            out.push(ret);
            return out;
        };
        let conditions = conditions.list();
        if conditions.is_empty() {
            fail("an empty `when`");
        }
        let tests = |when: &When| match (&when.is_in, &when.not_in, when.any_bit) {
            (Some(values), None, None) => values.len() + 1,
            (None, Some(values), None) => values.len(),
            (None, None, Some(_)) => 1,
            _ => fail("a `when` needs exactly one of `in`, `not_in`, `any_bit`"),
        };
        // The rule's length, its return included: the target of every "does not hold".
        let len: usize = conditions
            .iter()
            .map(|w| 1 + usize::from(w.mask.is_some()) + tests(w))
            .sum::<usize>()
            + 1;
        let start = out.len();
        let to_end = |at: usize| start + len - at - 1;
        for when in conditions {
            if when.arg > 5 {
                fail("argument index above 5");
            }
            out.push(stmt(LD_W_ABS, 16 + 8 * when.arg));
            if let Some(mask) = when.mask {
                out.push(stmt(ALU_AND_K, mask));
            }
            match (&when.is_in, &when.not_in, when.any_bit) {
                (Some(values), None, None) => {
                    let n = values.len();
                    for (i, v) in values.iter().enumerate() {
                        out.push(jump(JMP_JEQ_K, *v, n - i, 0));
                    }
                    let at = out.len();
                    out.push(stmt(
                        JMP_JA,
                        u32::try_from(to_end(at)).unwrap_or_else(|_| fail("rule too long")),
                    ));
                }
                (None, Some(values), None) => {
                    for v in values {
                        let at = out.len();
                        out.push(jump(JMP_JEQ_K, *v, to_end(at), 0));
                    }
                }
                (None, None, Some(bits)) => {
                    let at = out.len();
                    out.push(jump(JMP_JSET_K, bits, 0, to_end(at)));
                }
                _ => fail("a `when` needs exactly one of `in`, `not_in`, `any_bit`"),
            }
        }
        out.push(ret);
        debug_assert_eq!(out.len(), start + len);
    }
    out.push(stmt(RET_K, RET_ALLOW));
    out
}

/// Binary search over sorted (nr, block) entries; the accumulator holds the syscall number.
fn tree(entries: &[(u32, Vec<Insn>)]) -> Vec<Insn> {
    match entries {
        [] => vec![stmt(RET_K, RET_ALLOW)],
        [(nr, body)] => {
            let mut out = vec![jump(JMP_JEQ_K, *nr, 0, body.len())];
            out.extend_from_slice(body);
            out.push(stmt(RET_K, RET_ALLOW));
            out
        }
        _ => {
            let mid = entries.len() / 2;
            let key = entries[mid].0;
            let left = tree(&entries[..mid]);
            let right = tree(&entries[mid..]);
            let mut out = Vec::with_capacity(left.len() + right.len() + 2);
            if left.len() <= 255 {
                out.push(jump(JMP_JGE_K, key, left.len(), 0));
            } else {
                out.push(jump(JMP_JGE_K, key, 0, 1));
                out.push(stmt(
                    JMP_JA,
                    u32::try_from(left.len()).unwrap_or_else(|_| fail("program too long")),
                ));
            }
            out.extend(left);
            out.extend(right);
            out
        }
    }
}

fn program(by_nr: &BTreeMap<u32, Vec<Rule>>, max_nr: u32, observe: bool) -> Vec<Insn> {
    let mut out = vec![
        stmt(LD_W_ABS, 4),
        jump(JMP_JEQ_K, AUDIT_ARCH_X86_64, 1, 0),
        stmt(RET_K, RET_KILL_PROCESS),
        stmt(LD_W_ABS, 0),
        jump(JMP_JGE_K, X32_SYSCALL_BIT, 0, 1),
        stmt(RET_K, RET_ERRNO | errno("ENOSYS")),
        jump(JMP_JGT_K, max_nr, 0, 1),
        stmt(RET_K, RET_ERRNO | errno("ENOSYS")),
    ];
    let entries: Vec<(u32, Vec<Insn>)> = by_nr
        .iter()
        .map(|(nr, rules)| (*nr, block(rules, observe)))
        .collect();
    out.extend(tree(&entries));
    if out.len() > 4096 {
        fail("program longer than the kernel's 4096-instruction limit");
    }
    out
}

fn render(name: &str, insns: &[Insn], out: &mut String) {
    let _ = writeln!(out, "pub(crate) const {name}: &[libc::sock_filter] = &[");
    for i in insns {
        let _ = writeln!(
            out,
            "    libc::sock_filter {{ code: {:#06x}, jt: {}, jf: {}, k: {:#010x} }},",
            i.code, i.jt, i.jf, i.k
        );
    }
    let _ = writeln!(out, "];");
}

fn main() {
    println!("cargo:rerun-if-changed=seccomp/policy.toml");
    println!("cargo:rerun-if-changed=seccomp/syscalls-x86_64.txt");
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();

    let table = std::fs::read_to_string(dir.join("seccomp/syscalls-x86_64.txt"))
        .unwrap_or_else(|e| fail(&format!("cannot read the syscall table: {e}")));
    let mut numbers = BTreeMap::new();
    let mut max_nr = 0;
    for (lineno, line) in table.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(nr), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
            fail(&format!(
                "syscalls-x86_64.txt:{}: expected `number name`",
                lineno + 1
            ));
        };
        let nr: u32 = nr
            .parse()
            .unwrap_or_else(|_| fail(&format!("syscalls-x86_64.txt:{}: bad number", lineno + 1)));
        max_nr = max_nr.max(nr);
        numbers.insert(name.to_owned(), nr);
    }

    let text = std::fs::read_to_string(dir.join("seccomp/policy.toml"))
        .unwrap_or_else(|e| fail(&format!("cannot read the policy: {e}")));
    let policy: Policy =
        toml::from_str(&text).unwrap_or_else(|e| fail(&format!("policy.toml: {e}")));

    // Syscalls that exist on other architectures only are skipped (create_module and
    // friends exist on x86_64 but were removed; they are still in the table).
    let mut by_nr: BTreeMap<u32, Vec<Rule>> = BTreeMap::new();
    let mut summary = String::new();
    for rule in &policy.rule {
        if rule.why.trim().is_empty() {
            fail("every rule needs a `why`");
        }
        action(&rule.action, true);
        for name in &rule.syscalls {
            let Some(nr) = numbers.get(name) else {
                fail(&format!("unknown syscall `{name}`"));
            };
            by_nr.entry(*nr).or_default().push(rule.clone());
            let _ = writeln!(
                summary,
                "    ({:?}, {nr}, {:?}, {}),",
                name,
                rule.action,
                rule.when.is_some()
            );
        }
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "// Generated by build.rs from seccomp/policy.toml. Do not edit."
    );
    if arch == "x86_64" {
        let _ = writeln!(out, "pub(crate) const SUPPORTED: bool = true;");
        let _ = writeln!(out, "pub(crate) const MAX_KNOWN_SYSCALL: u32 = {max_nr};");
        render("OBSERVE", &program(&by_nr, max_nr, true), &mut out);
        render("PLAIN", &program(&by_nr, max_nr, false), &mut out);
    } else {
        let _ = writeln!(out, "pub(crate) const SUPPORTED: bool = false;");
        let _ = writeln!(out, "pub(crate) const MAX_KNOWN_SYSCALL: u32 = 0;");
        let _ = writeln!(out, "pub(crate) const OBSERVE: &[libc::sock_filter] = &[];");
        let _ = writeln!(out, "pub(crate) const PLAIN: &[libc::sock_filter] = &[];");
    }
    let _ = writeln!(
        out,
        "/// (syscall, number, action, conditional) for every rule, in policy order.\n\
         #[allow(dead_code)]\n\
         pub(crate) const RULES: &[(&str, u32, &str, bool)] = &[\n{summary}];"
    );
    if let Err(e) = std::fs::write(out_dir.join("seccomp_filter.rs"), out) {
        fail(&format!("cannot write the generated filter: {e}"));
    }
}
