//! The sandbox on systems other than Linux: every entry point answers "unsupported".

use crate::{Error, SandboxSpec};

/// A sandbox cannot exist here.
#[derive(Debug)]
pub struct Sandbox(());

impl Sandbox {
    /// Always fails: remit's containment needs Linux.
    pub fn create(_spec: &SandboxSpec) -> Result<Sandbox, Error> {
        Err(Error::Unsupported(std::env::consts::OS))
    }
}
