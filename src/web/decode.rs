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

/// A nested config object: missing (or `undefined`) is the default, anything else must be an
/// object (`null` too is an error, as it was with serde).
fn section<T: Default>(
    config: &JsValue,
    key: &'static str,
    read: impl FnOnce(&JsValue) -> Result<T, &'static str>,
) -> Result<T, &'static str> {
    let v = get(config, key);
    if v.is_undefined() {
        Ok(T::default())
    } else if v.is_object() {
        read(&v)
    } else {
        Err(key)
    }
}

/// A field of the type `T` reads, or undefined/null; otherwise its name is the error.
fn typed<T: FromJs>(v: &JsValue, key: &'static str) -> Result<Option<T>, &'static str> {
    field(v, key).ok_or(key)
}

/// Reads the config object. The error is the message of the `invalid-argument` error, naming
/// the field (the package entry checks the config first and says more).
pub fn raw_config(config: &JsValue) -> Result<RawConfig, String> {
    read_config(config).map_err(|what| {
        let mut message = String::from("invalid RoomSession config: ");
        message.push_str(what);
        message
    })
}

fn read_config(config: &JsValue) -> Result<RawConfig, &'static str> {
    if !config.is_object() {
        return Err("the config must be an object");
    }
    let retry = |r: &JsValue| {
        Ok(RawRetry {
            initial_delay_ms: typed(r, "initialDelayMs")?,
            max_delay_ms: typed(r, "maxDelayMs")?,
            factor: typed(r, "factor")?,
            jitter: typed(r, "jitter")?,
            max_attempts: typed(r, "maxAttempts")?,
        })
    };
    let ice = |i: &JsValue| {
        Ok(RawIce {
            max_restarts: typed(i, "maxRestarts")?,
            disconnected_grace_ms: typed(i, "disconnectedGraceMs")?,
            restart_timeout_ms: typed(i, "restartTimeoutMs")?,
        })
    };
    Ok(RawConfig {
        room: get(config, "room").as_string().ok_or("room")?,
        url: typed(config, "url")?,
        token: typed(config, "token")?,
        capacity: typed(config, "capacity")?,
        retry: section(config, "retry", retry)?,
        ice: section(config, "ice", ice)?,
        heartbeat_interval_ms: typed(config, "heartbeatIntervalMs")?,
        heartbeat_timeout_ms: typed(config, "heartbeatTimeoutMs")?,
        connect_timeout_ms: typed(config, "connectTimeoutMs")?,
        join_attempts: typed(config, "joinAttempts")?,
    })
}
