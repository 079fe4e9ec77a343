//! The wire codec of the browser build, written by hand over JS values: `JSON.parse` output and
//! the `RoomSession` config object are read with `Reflect`, outgoing frames are built as JS
//! objects and turned into text by `JSON.stringify`. No serde in the wasm: its generic visitors
//! (and the float formatter its error texts pull in) were a third of the package.
//!
//! The format is the one the `rtcroom-protocol` serde definitions give (`docs/protocol.md`), and
//! the decoders accept exactly what serde (`serde_wasm_bindgen`, as the SDK used before) accepts:
//! - unknown fields are ignored, but every *known* field of the flat frame (`protocol/src/frames.rs`)
//!   must have its type, even when the `type` at hand does not use it;
//! - `null` (or a missing field) is `None` for optional fields; required strings, numbers and
//!   booleans must be present and of their JS type;
//! - integers are numbers with no fraction, within the Rust type's range (`-0` is `0`);
//! - enum strings (`type`, `kind`, `reason`, `code`, the SDP `type`) also come as serde's
//!   one-key object form (`{"joined": null}`);
//! - an unknown `type`/`kind`, or an unknown enum string anywhere, rejects the whole frame.
//!
//! `tests/decode.rs` checks this against serde over every variant and many malformed frames. It
//! compiles this file on its own (`#[path]`), so it uses nothing else from the crate.

use js_sys::{Array, Object, Reflect, JSON};
use rtcroom_protocol::{
    ClientMsg, ErrorCode, IceCandidate, LeaveReason, PeerInfo, SdpKind, ServerMsg, SessionDescription,
    SignalPayload, StreamRole,
};
use wasm_bindgen::{JsCast, JsValue};

/// A JS value carried through protocol types untouched (metadata, payloads, app data).
#[derive(Clone, Debug)]
pub struct Js(pub JsValue);

// ---------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------

fn get(obj: &JsValue, key: &str) -> JsValue {
    Reflect::get(obj, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

fn nullish(v: &JsValue) -> bool {
    v.is_null() || v.is_undefined()
}

/// An optional field: `Some(None)` when missing or `null`, `Some(Some(_))` when `read` accepts
/// it, `None` (the frame is invalid) when it does not.
fn opt<T>(obj: &JsValue, key: &str, read: impl FnOnce(JsValue) -> Option<T>) -> Option<Option<T>> {
    let v = get(obj, key);
    if nullish(&v) {
        Some(None)
    } else {
        read(v).map(Some)
    }
}

fn string(v: JsValue) -> Option<String> {
    v.as_string()
}

fn number(v: JsValue) -> Option<f64> {
    v.as_f64()
}

fn boolean(v: JsValue) -> Option<bool> {
    v.as_bool()
}

fn js(v: JsValue) -> Option<Js> {
    Some(Js(v))
}

/// A number without fraction (saturating casts make out-of-range and NaN values differ).
fn int(v: &JsValue) -> Option<i64> {
    let f = v.as_f64()?;
    let n = f as i64;
    (n as f64 == f).then_some(n)
}

fn u32_of(v: JsValue) -> Option<u32> {
    u32::try_from(int(&v)?).ok()
}

fn u16_of(v: JsValue) -> Option<u16> {
    u16::try_from(int(&v)?).ok()
}

fn i32_of(v: JsValue) -> Option<i32> {
    i32::try_from(int(&v)?).ok()
}

/// The name of a unit enum variant: a string, or serde's externally tagged `{"name": null}`.
fn tag(v: &JsValue) -> Option<String> {
    if let Some(name) = v.as_string() {
        return Some(name);
    }
    if !v.is_object() {
        return None;
    }
    let entries = Object::entries(v.unchecked_ref());
    if entries.length() != 1 {
        return None;
    }
    let pair: Array = entries.get(0).unchecked_into();
    if nullish(&pair.get(1)) {
        pair.get(0).as_string()
    } else {
        None
    }
}

/// A JS array, item by item; any bad item rejects the whole list.
fn list<T>(v: JsValue, item: fn(JsValue) -> Option<T>) -> Option<Vec<T>> {
    v.dyn_into::<Array>().ok()?.iter().map(item).collect()
}

fn leave_reason(v: JsValue) -> Option<LeaveReason> {
    Some(match tag(&v)?.as_str() {
        "left" => LeaveReason::Left,
        "timeout" => LeaveReason::Timeout,
        "kicked" => LeaveReason::Kicked,
        _ => return None,
    })
}

fn error_code(v: JsValue) -> Option<ErrorCode> {
    ErrorCode::parse(&tag(&v)?)
}

fn sdp_kind(v: JsValue) -> Option<SdpKind> {
    Some(match tag(&v)?.as_str() {
        "offer" => SdpKind::Offer,
        "answer" => SdpKind::Answer,
        "pranswer" => SdpKind::Pranswer,
        "rollback" => SdpKind::Rollback,
        _ => return None,
    })
}

fn sdp_kind_str(kind: SdpKind) -> &'static str {
    match kind {
        SdpKind::Offer => "offer",
        SdpKind::Answer => "answer",
        SdpKind::Pranswer => "pranswer",
        SdpKind::Rollback => "rollback",
    }
}

fn peer_info(v: JsValue) -> Option<PeerInfo<Js>> {
    if !v.is_object() {
        return None;
    }
    Some(PeerInfo {
        id: get(&v, "id").as_string()?,
        metadata: opt(&v, "metadata", js)?,
    })
}

fn stream_role(v: JsValue) -> Option<StreamRole> {
    if !v.is_object() {
        return None;
    }
    Some(StreamRole {
        stream: get(&v, "stream").as_string()?,
        role: get(&v, "role").as_string()?,
    })
}

fn session_description(v: JsValue) -> Option<SessionDescription> {
    if !v.is_object() {
        return None;
    }
    let kind = sdp_kind(get(&v, "type"))?;
    // `#[serde(default)]`: missing is "", but `null` is not a string.
    let sdp = get(&v, "sdp");
    let sdp = if sdp.is_undefined() {
        String::new()
    } else {
        sdp.as_string()?
    };
    Some(SessionDescription { kind, sdp })
}

/// `RTCIceCandidateInit` (e.g. `RTCIceCandidate.toJSON()`), `None` when it is not one.
pub fn ice_candidate(v: JsValue) -> Option<IceCandidate> {
    if !v.is_object() {
        return None;
    }
    Some(IceCandidate {
        candidate: get(&v, "candidate").as_string()?,
        sdp_mid: opt(&v, "sdpMid", string)?,
        sdp_m_line_index: opt(&v, "sdpMLineIndex", u16_of)?,
        username_fragment: opt(&v, "usernameFragment", string)?,
    })
}

/// A server frame from its `JSON.parse` output; `None` for anything malformed.
pub fn server_msg(v: &JsValue) -> Option<ServerMsg<Js>> {
    if !v.is_object() {
        return None;
    }
    let kind = tag(&get(v, "type"))?;
    // Every field of `frames::ServerFrame` is checked, as serde does.
    let version = opt(v, "version", u32_of)?;
    let room = opt(v, "room", string)?;
    let peer_id = opt(v, "peerId", string)?;
    let resume_token = opt(v, "resumeToken", string)?;
    let peers = opt(v, "peers", |p| list(p, peer_info))?;
    let capacity = opt(v, "capacity", u32_of)?;
    let resumed = opt(v, "resumed", boolean)?;
    let peer = opt(v, "peer", peer_info)?;
    let reason = opt(v, "reason", leave_reason)?;
    let from = opt(v, "from", string)?;
    let payload = opt(v, "payload", js)?;
    let metadata = opt(v, "metadata", js)?;
    let code = opt(v, "code", error_code)?;
    let message = opt(v, "message", string)?;
    let fatal = opt(v, "fatal", boolean)?;
    let ts = opt(v, "ts", number)?;
    Some(match kind.as_str() {
        "joined" => ServerMsg::Joined {
            version: version?,
            room: room?,
            peer_id: peer_id?,
            resume_token: resume_token?,
            peers: peers.unwrap_or_default(),
            capacity: capacity?,
            resumed: resumed.unwrap_or(false),
        },
        "peer-joined" => ServerMsg::PeerJoined { peer: peer? },
        "peer-left" => ServerMsg::PeerLeft {
            peer_id: peer_id?,
            reason: reason?,
        },
        "signal" => ServerMsg::Signal {
            from: from?,
            payload: payload?,
        },
        "metadata-updated" => ServerMsg::MetadataUpdated {
            peer_id: peer_id?,
            metadata: metadata?,
        },
        "room-full" => ServerMsg::RoomFull {
            room: room?,
            capacity: capacity?,
        },
        "error" => ServerMsg::Error {
            code: code?,
            message: message.unwrap_or_default(),
            fatal: fatal.unwrap_or(false),
        },
        "pong" => ServerMsg::Pong { ts, resume_token },
        _ => return None,
    })
}

/// A server frame from its text; `None` for anything malformed.
pub fn server_msg_from_json(text: &str) -> Option<ServerMsg<Js>> {
    server_msg(&JSON::parse(text).ok()?)
}

/// A signal payload from another SDK; `None` for anything malformed.
pub fn signal_payload(v: &JsValue) -> Option<SignalPayload<Js>> {
    if !v.is_object() {
        return None;
    }
    let kind = tag(&get(v, "kind"))?;
    // Every field of `frames::PayloadFrame` is checked, as serde does.
    let description = opt(v, "description", session_description)?;
    let roles = opt(v, "roles", |r| list(r, stream_role))?;
    let candidate = opt(v, "candidate", ice_candidate)?;
    let data = opt(v, "data", js)?;
    Some(match kind.as_str() {
        "description" => SignalPayload::Description {
            description: description?,
            roles: roles.unwrap_or_default(),
        },
        "candidate" => SignalPayload::Candidate { candidate },
        "bye" => SignalPayload::Bye,
        "app" => SignalPayload::App { data: data? },
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// Writing: the objects serde's serializer made, in the same key order
// ---------------------------------------------------------------------------------------------

fn set(obj: &Object, key: &str, value: &JsValue) {
    let _ = Reflect::set(obj, &JsValue::from_str(key), value);
}

fn set_str(obj: &Object, key: &str, value: &str) {
    set(obj, key, &JsValue::from_str(value));
}

fn tagged(key: &str, name: &str) -> Object {
    let obj = Object::new();
    set_str(&obj, key, name);
    obj
}

/// `RTCIceCandidateInit` on the wire.
pub fn ice_candidate_value(c: &IceCandidate) -> JsValue {
    let obj = Object::new();
    set_str(&obj, "candidate", &c.candidate);
    if let Some(mid) = &c.sdp_mid {
        set_str(&obj, "sdpMid", mid);
    }
    if let Some(index) = c.sdp_m_line_index {
        set(&obj, "sdpMLineIndex", &index.into());
    }
    if let Some(ufrag) = &c.username_fragment {
        set_str(&obj, "usernameFragment", ufrag);
    }
    obj.into()
}

/// A signal payload as the JS value that goes into `signal.payload`.
pub fn signal_payload_value(payload: &SignalPayload<Js>) -> JsValue {
    let obj = match payload {
        SignalPayload::Description { description, roles } => {
            let obj = tagged("kind", "description");
            let desc = tagged("type", sdp_kind_str(description.kind));
            set_str(&desc, "sdp", &description.sdp);
            set(&obj, "description", &desc);
            if !roles.is_empty() {
                let list = Array::new();
                for role in roles {
                    let item = Object::new();
                    set_str(&item, "stream", &role.stream);
                    set_str(&item, "role", &role.role);
                    list.push(&item);
                }
                set(&obj, "roles", &list);
            }
            obj
        }
        SignalPayload::Candidate { candidate } => {
            let obj = tagged("kind", "candidate");
            let value = candidate.as_ref().map_or(JsValue::NULL, ice_candidate_value);
            set(&obj, "candidate", &value);
            obj
        }
        SignalPayload::Bye => tagged("kind", "bye"),
        SignalPayload::App { data } => {
            let obj = tagged("kind", "app");
            set(&obj, "data", &data.0);
            obj
        }
    };
    obj.into()
}

/// A client frame as JSON text; `None` only if `JSON.stringify` throws (e.g. a cyclic payload).
pub fn client_msg_json(msg: &ClientMsg<Js>) -> Option<String> {
    let obj = match msg {
        ClientMsg::Join {
            room,
            version,
            metadata,
            resume,
            capacity,
        } => {
            let obj = tagged("type", "join");
            if let Some(room) = room {
                set_str(&obj, "room", room);
            }
            set(&obj, "version", &(*version).into());
            if let Some(metadata) = metadata {
                set(&obj, "metadata", &metadata.0);
            }
            if let Some(resume) = resume {
                set_str(&obj, "resume", resume);
            }
            if let Some(capacity) = capacity {
                set(&obj, "capacity", &(*capacity).into());
            }
            obj
        }
        ClientMsg::Signal { to, payload } => {
            let obj = tagged("type", "signal");
            set_str(&obj, "to", to);
            set(&obj, "payload", &payload.0);
            obj
        }
        ClientMsg::Metadata { metadata } => {
            let obj = tagged("type", "metadata");
            set(&obj, "metadata", &metadata.0);
            obj
        }
        ClientMsg::Leave => tagged("type", "leave"),
        ClientMsg::Ping { ts } => {
            let obj = tagged("type", "ping");
            if let Some(ts) = ts {
                set(&obj, "ts", &JsValue::from_f64(*ts));
            }
            obj
        }
    };
    JSON::stringify(&obj).ok()?.as_string()
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
            initial_delay_ms: opt(r, "initialDelayMs", number).ok_or(ms)?,
            max_delay_ms: opt(r, "maxDelayMs", number).ok_or(ms)?,
            factor: opt(r, "factor", number).ok_or(ms)?,
            jitter: opt(r, "jitter", number).ok_or(ms)?,
            max_attempts: opt(r, "maxAttempts", i32_of)
                .ok_or(bad!("retry.maxAttempts must be a whole number (-1: no limit)"))?,
        })
    };
    let ice = |i: &JsValue| {
        let ms = bad!("ice.disconnectedGraceMs and ice.restartTimeoutMs must be numbers");
        Ok(RawIce {
            max_restarts: opt(i, "maxRestarts", u32_of)
                .ok_or(bad!("ice.maxRestarts must be a whole number >= 0"))?,
            disconnected_grace_ms: opt(i, "disconnectedGraceMs", number).ok_or(ms)?,
            restart_timeout_ms: opt(i, "restartTimeoutMs", number).ok_or(ms)?,
        })
    };
    let heartbeat = bad!("heartbeatIntervalMs and heartbeatTimeoutMs must be numbers");
    Ok(RawConfig {
        room: get(config, "room")
            .as_string()
            .ok_or(bad!("room must be a string"))?,
        url: opt(config, "url", string).ok_or(bad!("url must be a string"))?,
        token: opt(config, "token", string).ok_or(bad!("token must be a string"))?,
        capacity: opt(config, "capacity", u32_of).ok_or(bad!("capacity must be a whole number >= 0"))?,
        retry: section(config, "retry", retry, bad!("retry must be an object"))?,
        ice: section(config, "ice", ice, bad!("ice must be an object"))?,
        heartbeat_interval_ms: opt(config, "heartbeatIntervalMs", number).ok_or(heartbeat)?,
        heartbeat_timeout_ms: opt(config, "heartbeatTimeoutMs", number).ok_or(heartbeat)?,
        connect_timeout_ms: opt(config, "connectTimeoutMs", number)
            .ok_or(bad!("connectTimeoutMs must be a number"))?,
        join_attempts: opt(config, "joinAttempts", u32_of)
            .ok_or(bad!("joinAttempts must be a whole number >= 0"))?,
    })
}
