//! remit-scan
#![forbid(unsafe_code)]
