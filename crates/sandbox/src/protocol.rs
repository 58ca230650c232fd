//! Messages between the supervisor and the task's init, one per `SOCK_SEQPACKET` datagram.
//!
//! The encoding is a tag byte followed by fields: integers little-endian, byte strings as a
//! u32 length and the bytes. The init is trusted code (a fork of the supervisor) but runs
//! inside the sandbox, so the supervisor decodes what it sends as untrusted input: bounded,
//! checked, never panicking.

/// Largest message either side sends (argv and environment of a spawn included).
pub(crate) const MAX_MESSAGE: usize = 1 << 20;

/// Supervisor → init.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ToInit {
    /// Maps written, cgroups joined: go on (idmapped trees attached as descriptors).
    Go,
    /// Start a program (stdin, stdout, stderr attached as descriptors).
    Spawn {
        id: u64,
        path: Vec<u8>,
        argv: Vec<Vec<u8>>,
        env: Vec<Vec<u8>>,
        cwd: Vec<u8>,
        new_process_group: bool,
    },
    /// Deliver a signal to a spawned program (its process group if it has one).
    Signal { id: u64, signal: i32 },
}

/// Init → supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FromInit {
    /// Setup failed at `step`.
    SetupFailed {
        step: Vec<u8>,
        errno: i32,
        layer: u8,
    },
    /// The sandbox is ready; layers that were skipped in degraded mode are listed. Attached
    /// descriptors, in this order: the seccomp listener (`listener`), the egress proxy's
    /// listening TCP socket inside the task's network namespace (`proxy`).
    Ready {
        skipped: Vec<u8>,
        listener: bool,
        proxy: bool,
    },
    /// A spawn started, with its pid inside the task.
    Spawned { id: u64, pid: i32 },
    /// A spawn could not start.
    SpawnFailed { id: u64, errno: i32 },
    /// A spawned program ended: `code` when it exited, `signal` when killed.
    Exited { id: u64, code: i32, signal: i32 },
}

#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn i32(mut self, v: i32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bytes(mut self, v: &[u8]) -> Self {
        // INVARIANT: callers bound every message by MAX_MESSAGE, far below u32::MAX.
        self.0.extend_from_slice(&(v.len() as u32).to_le_bytes());
        self.0.extend_from_slice(v);
        self
    }
    fn list(mut self, items: &[Vec<u8>]) -> Self {
        self.0
            .extend_from_slice(&(items.len() as u32).to_le_bytes());
        for item in items {
            self = self.bytes(item);
        }
        self
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)?.try_into().ok().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)?.try_into().ok().map(u64::from_le_bytes)
    }
    fn i32(&mut self) -> Option<i32> {
        self.take(4)?.try_into().ok().map(i32::from_le_bytes)
    }
    fn bytes(&mut self) -> Option<Vec<u8>> {
        let n = self.u32()? as usize;
        self.take(n).map(<[u8]>::to_vec)
    }
    fn list(&mut self) -> Option<Vec<Vec<u8>>> {
        let n = self.u32()? as usize;
        if n > self.0.len() / 4 {
            return None;
        }
        (0..n).map(|_| self.bytes()).collect()
    }
    fn end(self) -> Option<()> {
        self.0.is_empty().then_some(())
    }
}

impl ToInit {
    pub(crate) fn encode(&self) -> Vec<u8> {
        match self {
            ToInit::Go => Writer::default().u8(1).0,
            ToInit::Spawn {
                id,
                path,
                argv,
                env,
                cwd,
                new_process_group,
            } => {
                Writer::default()
                    .u8(2)
                    .u64(*id)
                    .bytes(path)
                    .list(argv)
                    .list(env)
                    .bytes(cwd)
                    .u8(u8::from(*new_process_group))
                    .0
            }
            ToInit::Signal { id, signal } => Writer::default().u8(3).u64(*id).i32(*signal).0,
        }
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<ToInit> {
        let mut r = Reader(bytes);
        let message = match r.u8()? {
            1 => ToInit::Go,
            2 => ToInit::Spawn {
                id: r.u64()?,
                path: r.bytes()?,
                argv: r.list()?,
                env: r.list()?,
                cwd: r.bytes()?,
                new_process_group: r.u8()? != 0,
            },
            3 => ToInit::Signal {
                id: r.u64()?,
                signal: r.i32()?,
            },
            _ => return None,
        };
        r.end()?;
        Some(message)
    }
}

impl FromInit {
    pub(crate) fn encode(&self) -> Vec<u8> {
        match self {
            FromInit::SetupFailed { step, errno, layer } => {
                Writer::default().u8(1).bytes(step).i32(*errno).u8(*layer).0
            }
            FromInit::Ready {
                skipped,
                listener,
                proxy,
            } => {
                Writer::default()
                    .u8(2)
                    .bytes(skipped)
                    .u8(u8::from(*listener))
                    .u8(u8::from(*proxy))
                    .0
            }
            FromInit::Spawned { id, pid } => Writer::default().u8(3).u64(*id).i32(*pid).0,
            FromInit::SpawnFailed { id, errno } => Writer::default().u8(4).u64(*id).i32(*errno).0,
            FromInit::Exited { id, code, signal } => {
                Writer::default().u8(5).u64(*id).i32(*code).i32(*signal).0
            }
        }
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<FromInit> {
        let mut r = Reader(bytes);
        let message = match r.u8()? {
            1 => FromInit::SetupFailed {
                step: r.bytes()?,
                errno: r.i32()?,
                layer: r.u8()?,
            },
            2 => FromInit::Ready {
                skipped: r.bytes()?,
                listener: r.u8()? != 0,
                proxy: r.u8()? != 0,
            },
            3 => FromInit::Spawned {
                id: r.u64()?,
                pid: r.i32()?,
            },
            4 => FromInit::SpawnFailed {
                id: r.u64()?,
                errno: r.i32()?,
            },
            5 => FromInit::Exited {
                id: r.u64()?,
                code: r.i32()?,
                signal: r.i32()?,
            },
            _ => return None,
        };
        r.end()?;
        Some(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let to = [
            ToInit::Go,
            ToInit::Spawn {
                id: 7,
                path: b"/bin/sh".to_vec(),
                argv: vec![b"sh".to_vec(), b"-c".to_vec(), b"echo hi".to_vec()],
                env: vec![b"A=B".to_vec()],
                cwd: b"/w".to_vec(),
                new_process_group: true,
            },
            ToInit::Signal { id: 7, signal: 15 },
        ];
        for m in to {
            assert_eq!(ToInit::decode(&m.encode()), Some(m));
        }
        let from = [
            FromInit::SetupFailed {
                step: b"pivot_root".to_vec(),
                errno: 1,
                layer: 2,
            },
            FromInit::Ready {
                skipped: vec![3, 4],
                listener: true,
                proxy: false,
            },
            FromInit::Spawned { id: 1, pid: 2 },
            FromInit::SpawnFailed { id: 1, errno: 13 },
            FromInit::Exited {
                id: 1,
                code: 0,
                signal: 9,
            },
        ];
        for m in from {
            assert_eq!(FromInit::decode(&m.encode()), Some(m));
        }
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(FromInit::decode(&[]), None);
        assert_eq!(FromInit::decode(&[9]), None);
        assert_eq!(FromInit::decode(&[3, 1, 2]), None);
        // Trailing bytes.
        let mut m = FromInit::Spawned { id: 1, pid: 2 }.encode();
        m.push(0);
        assert_eq!(FromInit::decode(&m), None);
        // A list length larger than the message.
        assert_eq!(
            ToInit::decode(&[2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255]),
            None
        );
    }
}
