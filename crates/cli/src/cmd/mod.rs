//! One module per subcommand.

pub(crate) mod act;
pub(crate) mod agent;
pub(crate) mod approvals;
pub(crate) mod doctor;
pub(crate) mod ledger;
pub(crate) mod policy;
pub(crate) mod run;
pub(crate) mod scan;
pub(crate) mod task;
