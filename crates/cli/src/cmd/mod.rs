//! One module per subcommand.

pub(crate) mod act;
pub(crate) mod agent;
pub(crate) mod approvals;
pub(crate) mod code;
pub(crate) mod doctor;
pub(crate) mod identity;
pub(crate) mod keys;
pub(crate) mod ledger;
pub(crate) mod mcp;
pub(crate) mod policy;
pub(crate) mod run;
pub(crate) mod scan;
pub(crate) mod secret;
pub(crate) mod task;
