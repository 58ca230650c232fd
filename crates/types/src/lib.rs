//! remit-types
#![forbid(unsafe_code)]

pub mod event;
