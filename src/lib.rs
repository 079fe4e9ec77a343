//! rtcroom: put people in a room from the browser — video, audio, data — over the browser's own
//! `RTCPeerConnection`.
//!
//! The crate has two layers (the sans-IO pattern):
//! - a **core** of plain Rust state machines (room membership, negotiation decisions, retry
//!   policy, stats compression) that take time as an input and build and test natively;
//! - a thin **web shell** (`web`, wasm32 only) that feeds browser events into the core and
//!   carries its actions out through web-sys.

/// Version of the SDK (the npm package carries the same).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub mod data;
pub mod error;
pub mod peer;
pub mod room;
pub mod signaling;
pub mod stats;
pub mod text;

#[cfg(target_arch = "wasm32")]
mod web;
