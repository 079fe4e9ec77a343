//! The browser build's wire codec and config reader. The wire codec itself is generated in
//! `rtcroom-protocol` (feature `js`: `derive(Wire)` over the same declarations serde uses, see
//! `rtcroom_protocol::js` for the decoding rules); these are the names the shell calls it by.
//! No serde in the wasm: its generic visitors (and the float formatter its error texts pull in)
//! were a third of the package.
//!
//! `tests/decode.rs` checks the codec against serde over every variant and many malformed
//! values. It compiles this file on its own (`#[path]`), so it uses nothing else from the crate.

pub use rtcroom_protocol::js::Js;
use rtcroom_protocol::js::{field, from_json, get, to_json, FromJs, ToJs};
use rtcroom_protocol::{ClientMsg, IceCandidate, ServerMsg, SignalPayload};
use wasm_bindgen::JsValue;

/// `RTCIceCandidateInit` (e.g. `RTCIceCandidate.toJSON()`), `None` when it is not one.
pub fn ice_candidate(v: JsValue) -> Option<IceCandidate> {
    IceCandidate::from_js(&v)
}

/// A server frame from its text; `None` for anything malformed.
pub fn server_msg_from_json(text: &str) -> Option<ServerMsg<Js>> {
    from_json(text)
}

/// A signal payload from another SDK; `None` for anything malformed.
pub fn signal_payload(v: &JsValue) -> Option<SignalPayload<Js>> {
    SignalPayload::from_js(v)
}

/// A signal payload as the JS value that goes into `signal.payload`.
pub fn signal_payload_value(payload: &SignalPayload<Js>) -> JsValue {
    payload.to_js()
}

/// A client frame as JSON text; `None` only if `JSON.stringify` throws (e.g. a cyclic payload).
pub fn client_msg_json(msg: &ClientMsg<Js>) -> Option<String> {
    to_json(msg)
}

// ---------------------------------------------------------------------------------------------
// The `RoomSession` config object
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, Default, PartialEq)]
pub struct RawRetry {
    pub initial_delay_ms: Option<f64>,
    pub max_delay_ms: Option<f64>,
    pub factor: Option<f64>,
    pub jitter: Option<f64>,
    pub max_attempts: Option<i32>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct RawIce {
    pub max_restarts: Option<u32>,
    pub disconnected_grace_ms: Option<f64>,
    pub restart_timeout_ms: Option<f64>,
}

/// The typed part of `new RoomSession(config)`; `iceServers`, `metadata`, `transport` and
/// `onPeerConnection` are read as plain JS values by the caller.
#[derive(Clone, Debug, PartialEq)]
pub struct RawConfig {
    pub room: String,
    pub url: Option<String>,
    pub token: Option<String>,
    pub capacity: Option<u32>,
    pub retry: RawRetry,
    pub ice: RawIce,
    pub heartbeat_interval_ms: Option<f64>,
    pub heartbeat_timeout_ms: Option<f64>,
    pub connect_timeout_ms: Option<f64>,
    pub join_attempts: Option<u32>,
}

macro_rules! bad {
    ($what:literal) => {
        concat!("invalid RoomSession config: ", $what)
    };
}

/// A nested config object: missing (or `undefined`) is the default, anything else must be an
/// object (`null` too is an error, as it was with serde).
fn section<T: Default>(
    config: &JsValue,
    key: &str,
    read: impl FnOnce(&JsValue) -> Result<T, &'static str>,
    not_object: &'static str,
) -> Result<T, &'static str> {
    let v = get(config, key);
    if v.is_undefined() {
        Ok(T::default())
    } else if v.is_object() {
        read(&v)
    } else {
        Err(not_object)
    }
}

/// Reads the config object. The error is the message of the `invalid-argument` error.
pub fn raw_config(config: &JsValue) -> Result<RawConfig, &'static str> {
    if !config.is_object() {
        return Err(bad!("the config must be an object"));
    }
    let retry = |r: &JsValue| {
        let ms = bad!("retry.initialDelayMs, maxDelayMs, factor and jitter must be numbers");
        Ok(RawRetry {
            initial_delay_ms: field(r, "initialDelayMs").ok_or(ms)?,
            max_delay_ms: field(r, "maxDelayMs").ok_or(ms)?,
            factor: field(r, "factor").ok_or(ms)?,
            jitter: field(r, "jitter").ok_or(ms)?,
            max_attempts: field(r, "maxAttempts")
                .ok_or(bad!("retry.maxAttempts must be a whole number (-1: no limit)"))?,
        })
    };
    let ice = |i: &JsValue| {
        let ms = bad!("ice.disconnectedGraceMs and ice.restartTimeoutMs must be numbers");
        Ok(RawIce {
            max_restarts: field(i, "maxRestarts")
                .ok_or(bad!("ice.maxRestarts must be a whole number >= 0"))?,
            disconnected_grace_ms: field(i, "disconnectedGraceMs").ok_or(ms)?,
            restart_timeout_ms: field(i, "restartTimeoutMs").ok_or(ms)?,
        })
    };
    let heartbeat = bad!("heartbeatIntervalMs and heartbeatTimeoutMs must be numbers");
    Ok(RawConfig {
        room: get(config, "room")
            .as_string()
            .ok_or(bad!("room must be a string"))?,
        url: field(config, "url").ok_or(bad!("url must be a string"))?,
        token: field(config, "token").ok_or(bad!("token must be a string"))?,
        capacity: field(config, "capacity").ok_or(bad!("capacity must be a whole number >= 0"))?,
        retry: section(config, "retry", retry, bad!("retry must be an object"))?,
        ice: section(config, "ice", ice, bad!("ice must be an object"))?,
        heartbeat_interval_ms: field(config, "heartbeatIntervalMs").ok_or(heartbeat)?,
        heartbeat_timeout_ms: field(config, "heartbeatTimeoutMs").ok_or(heartbeat)?,
        connect_timeout_ms: field(config, "connectTimeoutMs")
            .ok_or(bad!("connectTimeoutMs must be a number"))?,
        join_attempts: field(config, "joinAttempts")
            .ok_or(bad!("joinAttempts must be a whole number >= 0"))?,
    })
}
