//! Signaling: reconnect policy (sans-IO); transports live in the web shell.

pub mod retry;
