//! One module per subcommand.

pub(crate) mod doctor;
pub(crate) mod ledger;
pub(crate) mod run;
pub(crate) mod scan;
