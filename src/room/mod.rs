//! The room: the session (membership, join/resume, heartbeat, reconnects) and, around it, every
//! decision of a call, sans-IO. [`Room`] is the one way in and out; [`io`] names what crosses.

pub mod core;
pub mod io;
pub mod session;

pub use self::core::{Room, RoomConfig, StatsOptions};
pub use io::{
    BrowserCall, Input, LocalStream, OpId, OpOutput, Output, Payload, PcEvent, PcId, RequestId, RoomEvent,
    TraceSocketEvent, TransportOp,
};
