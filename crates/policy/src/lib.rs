//! remit-policy
#![forbid(unsafe_code)]
