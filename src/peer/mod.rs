//! One remote peer: its negotiation decisions and its lifecycle (sans-IO).

pub mod lifecycle;
pub mod negotiation;
