//! The seccomp filter, compiled from `seccomp/policy.toml` by `build.rs`.

mod generated {
    include!(concat!(env!("OUT_DIR"), "/seccomp_filter.rs"));
}

/// Whether a filter exists for this architecture.
pub(crate) const SUPPORTED: bool = generated::SUPPORTED;

/// The filter: with `observe`, `execve` and `execveat` notify the supervisor.
pub(crate) fn program(observe: bool) -> &'static [libc::sock_filter] {
    if observe {
        generated::OBSERVE
    } else {
        generated::PLAIN
    }
}

/// One rule of the policy: (syscall, number, action, has an argument condition).
pub fn rules() -> &'static [(&'static str, u32, &'static str, bool)] {
    generated::RULES
}

/// The highest syscall number the policy was reviewed for; newer ones fail with ENOSYS.
pub fn max_known_syscall() -> u32 {
    generated::MAX_KNOWN_SYSCALL
}

#[cfg(test)]
mod tests {
    //! The compiled BPF is checked against the policy by running it in a small BPF
    //! interpreter over every syscall number and interesting arguments.

    use super::*;

    const ALLOW: u32 = 0x7FFF_0000;
    const NOTIFY: u32 = 0x7FC0_0000;
    const KILL: u32 = 0x8000_0000;
    const ERRNO: u32 = 0x0005_0000;

    fn run(program: &[libc::sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        let mut acc: u32 = 0;
        let mut pc = 0usize;
        loop {
            let insn = program[pc];
            pc += 1;
            match insn.code {
                0x20 => {
                    let k = insn.k as usize;
                    acc = u32::from_le_bytes(data[k..k + 4].try_into().unwrap());
                }
                0x54 => acc &= insn.k,
                0x05 => pc += insn.k as usize,
                0x15 | 0x25 | 0x35 | 0x45 => {
                    let taken = match insn.code {
                        0x15 => acc == insn.k,
                        0x25 => acc > insn.k,
                        0x35 => acc >= insn.k,
                        _ => acc & insn.k != 0,
                    };
                    pc += if taken { insn.jt } else { insn.jf } as usize;
                }
                0x06 => return insn.k,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    const X86_64: u32 = 0xC000_003E;

    fn nr(name: &str) -> u32 {
        rules().iter().find(|r| r.0 == name).map(|r| r.1).unwrap()
    }

    #[test]
    fn decisions_match_the_policy() {
        if !SUPPORTED {
            return;
        }
        let p = program(true);
        // Ordinary calls are allowed.
        for call in [0u32, 1, 2, 3, 9, 60, 231] {
            assert_eq!(run(p, X86_64, call, [0; 6]), ALLOW, "syscall {call}");
        }
        assert_eq!(run(p, X86_64, nr("execve"), [0; 6]), NOTIFY);
        assert_eq!(run(program(false), X86_64, nr("execve"), [0; 6]), ALLOW);
        assert_eq!(run(p, X86_64, nr("ptrace"), [0; 6]), ERRNO | 1);
        assert_eq!(run(p, X86_64, nr("mount"), [0; 6]), ERRNO | 1);
        assert_eq!(run(p, X86_64, nr("io_uring_setup"), [0; 6]), ERRNO | 38);
        // clone: plain fork allowed, any namespace flag refused.
        let clone = nr("clone");
        assert_eq!(run(p, X86_64, clone, [0x11, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(
            run(p, X86_64, clone, [0x1000_0011, 0, 0, 0, 0, 0]),
            ERRNO | 1
        );
        assert_eq!(run(p, X86_64, clone, [0x20000, 0, 0, 0, 0, 0]), ERRNO | 1);
        assert_eq!(run(p, X86_64, nr("clone3"), [0; 6]), ERRNO | 38);
        // socket: IP and Unix only, no raw.
        let socket = nr("socket");
        assert_eq!(run(p, X86_64, socket, [2, 1, 0, 0, 0, 0]), ALLOW);
        assert_eq!(run(p, X86_64, socket, [10, 2 | 0x80000, 0, 0, 0, 0]), ALLOW);
        assert_eq!(run(p, X86_64, socket, [1, 5, 0, 0, 0, 0]), ALLOW);
        assert_eq!(run(p, X86_64, socket, [16, 3, 0, 0, 0, 0]), ERRNO | 97);
        assert_eq!(run(p, X86_64, socket, [17, 3, 0, 0, 0, 0]), ERRNO | 97);
        assert_eq!(run(p, X86_64, socket, [2, 3, 0, 0, 0, 0]), ERRNO | 1);
        assert_eq!(
            run(p, X86_64, socket, [2, 3 | 0x800, 0, 0, 0, 0]),
            ERRNO | 1
        );
        // ioctl: TIOCSTI refused even with high bits set; others allowed.
        let ioctl = nr("ioctl");
        assert_eq!(run(p, X86_64, ioctl, [0, 0x5412, 0, 0, 0, 0]), ERRNO | 1);
        assert_eq!(
            run(p, X86_64, ioctl, [0, 0xFFFF_FFFF_0000_5412, 0, 0, 0, 0]),
            ERRNO | 1
        );
        assert_eq!(run(p, X86_64, ioctl, [0, 0x5401, 0, 0, 0, 0]), ALLOW);
        // personality: queries and plain Linux allowed, tricks refused.
        let personality = nr("personality");
        assert_eq!(
            run(p, X86_64, personality, [0xFFFF_FFFF, 0, 0, 0, 0, 0]),
            ALLOW
        );
        assert_eq!(
            run(p, X86_64, personality, [0x0040000, 0, 0, 0, 0, 0]),
            ERRNO | 1
        );
        // Unknown and foreign calls.
        assert_eq!(run(p, X86_64, max_known_syscall() + 1, [0; 6]), ERRNO | 38);
        assert_eq!(run(p, X86_64, 0x4000_0001, [0; 6]), ERRNO | 38);
        assert_eq!(run(p, 0x4000_0003, 1, [0; 6]), KILL);
    }

    #[test]
    fn every_number_is_decided_like_the_rule_list() {
        if !SUPPORTED {
            return;
        }
        let p = program(true);
        for call in 0..=max_known_syscall() {
            let listed: Vec<_> = rules().iter().filter(|r| r.1 == call).collect();
            let got = run(p, X86_64, call, [0; 6]);
            match listed.first() {
                None => assert_eq!(got, ALLOW, "syscall {call}"),
                Some(rule) if !rule.3 => assert_ne!(got, ALLOW, "syscall {call} ({})", rule.0),
                Some(_) => {}
            }
        }
    }
}
