//! One module per subcommand.

pub(crate) mod ledger;
pub(crate) mod scan;
