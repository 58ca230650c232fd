//! Ledger event schema (canonical JSON, versioned).
