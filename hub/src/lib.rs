//! The signaling hub, sans-IO: rooms, membership, relay with fair queue shares, presence,
//! capacity, resume tokens, and the per-connection frame rules. Time comes in as an argument
//! and frames go out through each connection's [`Link`]: the server (`rtcroom-server`) wires it
//! to WebSocket tasks, the serverless transport to a SharedWorker's MessagePorts
//! ([`worker`], wasm only). One hub, two shells: a room behaves the same on either.

pub mod frames;
pub mod resume;
pub mod rooms;
#[cfg(target_arch = "wasm32")]
pub mod worker;

pub use frames::{FrameLimits, Grant, Read, Reader};
pub use resume::{Binding, ResumeKeys};
pub use rooms::*;
