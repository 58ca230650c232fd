//! remit-gate
#![forbid(unsafe_code)]
