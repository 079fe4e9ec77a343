//! The room session: membership, join/resume, heartbeat and reconnects (sans-IO).

pub mod session;
