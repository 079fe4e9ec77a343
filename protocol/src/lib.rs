//! Wire types shared by the rtcroom SDK and `rtcroom-server`.
//!
//! Plain serde types only: this crate builds for `wasm32-unknown-unknown` and native targets
//! alike, and must not pull in a JSON library (the SDK decodes through the browser's JSON).

/// Version of the signaling protocol spoken by this build; negotiated on connect.
pub const PROTOCOL_VERSION: u32 = 1;

/// Version of this crate (and of the whole rtcroom release it belongs to).
pub const RELEASE_VERSION: &str = env!("CARGO_PKG_VERSION");
