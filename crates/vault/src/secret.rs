//! A secret value in memory: zeroed when dropped, never shown by `Debug`, no `Display`.

use zeroize::Zeroizing;

/// A secret value.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Zeroizing<Vec<u8>>);

impl SecretValue {
    /// Wrap bytes (the caller's copy is the caller's to zero).
    pub fn new(bytes: impl Into<Vec<u8>>) -> SecretValue {
        SecretValue(Zeroizing::new(bytes.into()))
    }

    /// The bytes. Handle with care: never log, print or record them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The bytes as text, if they are UTF-8.
    pub fn expose_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretValue({} bytes)", self.0.len())
    }
}

impl From<Zeroizing<Vec<u8>>> for SecretValue {
    fn from(value: Zeroizing<Vec<u8>>) -> Self {
        SecretValue(value)
    }
}

impl From<String> for SecretValue {
    fn from(value: String) -> Self {
        SecretValue::new(value.into_bytes())
    }
}
