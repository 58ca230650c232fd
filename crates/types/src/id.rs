//! Task identifiers: 26-character ULIDs (48-bit millisecond time, 80 random bits, Crockford
//! base32), so ids sort by creation time in the ledger and in listings.

use std::fmt;

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A task id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId(u128);

impl TaskId {
    /// Build an id from the creation time (Unix milliseconds) and 10 random bytes. Time and
    /// randomness are passed in so callers (and tests) control both.
    pub fn new(unix_millis: u64, random: [u8; 10]) -> TaskId {
        let mut value = u128::from(unix_millis & 0xFFFF_FFFF_FFFF) << 80;
        for (i, byte) in random.iter().enumerate() {
            value |= u128::from(*byte) << (8 * (9 - i));
        }
        TaskId(value)
    }

    /// Parse the 26-character form.
    pub fn parse(text: &str) -> Option<TaskId> {
        if text.len() != 26 {
            return None;
        }
        let mut value: u128 = 0;
        for (i, c) in text.bytes().enumerate() {
            let digit = ALPHABET.iter().position(|a| *a == c.to_ascii_uppercase())?;
            if i == 0 && digit > 7 {
                return None;
            }
            value = (value << 5) | digit as u128;
        }
        Some(TaskId(value))
    }

    /// Creation time, Unix milliseconds.
    pub fn unix_millis(&self) -> u64 {
        (self.0 >> 80) as u64
    }

    /// A short form for names with little room (cgroup names, host names): the last 10
    /// characters, which are random.
    pub fn short(&self) -> String {
        let full = self.to_string();
        full[16..].to_owned()
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = [0u8; 26];
        for (i, slot) in out.iter_mut().enumerate() {
            let shift = 5 * (25 - i);
            *slot = ALPHABET[((self.0 >> shift) & 0x1F) as usize];
        }
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_order() {
        let a = TaskId::new(1_700_000_000_000, [1; 10]);
        let b = TaskId::new(1_700_000_000_001, [0; 10]);
        assert!(a.to_string() < b.to_string());
        assert_eq!(TaskId::parse(&a.to_string()), Some(a));
        assert_eq!(a.unix_millis(), 1_700_000_000_000);
        assert_eq!(a.to_string().len(), 26);
        assert_eq!(a.short().len(), 10);
        assert_eq!(TaskId::parse("not-an-id"), None);
        assert_eq!(TaskId::parse("ZZZZZZZZZZZZZZZZZZZZZZZZZZ"), None);
    }
}
