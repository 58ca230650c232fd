//! remit-ledger
#![forbid(unsafe_code)]
