//! remit-sandbox
#![forbid(unsafe_code)]
