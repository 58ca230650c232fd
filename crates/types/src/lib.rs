//! Wire and configuration types shared by every remit crate: the remit file, sizes and
//! spans, ledger events. No I/O beyond reading a remit file.
//!
//! ```
//! let loaded = remit_types::remit::parse(
//!     "[commands]\nforbid = [\"git push\"]\n",
//!     "example.remit.toml",
//!     ".".into(),
//! )
//! .unwrap();
//! assert_eq!(loaded.remit.commands.forbid[0].program(), "git");
//! ```
#![forbid(unsafe_code)]

pub mod credentials;
pub mod effect;
pub mod event;
pub mod id;
pub mod network;
pub mod remit;
pub mod size;
