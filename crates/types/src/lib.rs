//! remit-types
#![forbid(unsafe_code)]
