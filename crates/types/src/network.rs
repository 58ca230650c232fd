//! `[network]`: what a task may reach. A task has its own network namespace with a loopback
//! interface and nothing else; everything that leaves goes through the egress gate.

use serde::{Deserialize, Serialize};

/// `[network]`: the task's network. A task has its own network namespace with loopback only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// TCP ports the task may listen on and connect to on its own loopback (`0` allows
    /// ephemeral ports). Default: none.
    #[serde(default)]
    pub listen: Vec<u16>,
}

