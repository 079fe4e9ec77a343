//! Wire types shared by the rtcroom SDK and `rtcroom-server`: the one definition of the
//! signaling protocol (documented in `docs/protocol.md`).
//!
//! Frames are JSON text with a `type` tag. Field names are camelCase. serde types, no JSON library:
//! this crate builds for `wasm32-unknown-unknown` and native alike.
//! Values the server never interprets (signal payloads, peer metadata) are a type parameter `J`.
//! The server uses a raw JSON value and relays the bytes untouched. The SDK uses a JS value.
//!
//! Decoding never panics. Unknown fields are ignored. An unknown `type` is a decode error,
//! which the server answers with an `error` frame.
//!
//! Each type is declared once, here, with its serde attributes; everything else comes from that
//! declaration. serde derives `Serialize` (and `Deserialize` for structs and unit enums).
//! `derive(Wire)` (crate `rtcroom-protocol-derive`) generates the rest: tagged types decode
//! through a flat frame, every field of every variant optional and type-checked, then the
//! fields the tag needs required. Not serde's internally tagged enums: those buffer their
//! content first, which breaks pass-through values like `serde_json::value::RawValue`. With
//! the `js` feature (the SDK's wasm build only) it also generates the browser's serde-free
//! codec, module `js`, from the same declarations.

use rtcroom_protocol_derive::Wire;
use serde::{Deserialize, Serialize};

#[cfg(feature = "js")]
pub mod js;

/// Highest signaling protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// Lowest version this build still accepts.
pub const MIN_PROTOCOL_VERSION: u32 = 1;

/// Version of this crate (and of the whole rtcroom release it belongs to).
pub const RELEASE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The version both sides speak: the highest version `<=` the client's offer, if any.
pub fn negotiate_version(client: u32) -> Option<u32> {
    (client >= MIN_PROTOCOL_VERSION).then_some(client.min(PROTOCOL_VERSION))
}

/// A frame from a client to the server.
#[derive(Debug, Clone, PartialEq, Serialize, Wire)]
#[serde(tag = "type", rename_all = "kebab-case", rename_all_fields = "camelCase")]
pub enum ClientMsg<J> {
    /// Enter a room (or come back to it with a resume token). Must be the first frame.
    Join {
        /// Room name; may be omitted when the URL already names it (`/signal/{room}` or `?room=`).
        #[serde(skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// Highest protocol version the client speaks.
        version: u32,
        /// Metadata shown to the other peers (a JSON object).
        #[serde(skip_serializing_if = "Option::is_none")]
        metadata: Option<J>,
        /// Token from an earlier `joined`: resume the same peer id after a dropped socket.
        #[serde(skip_serializing_if = "Option::is_none")]
        resume: Option<String>,
        /// Requested capacity when this join creates the room (only lowers the server's).
        #[serde(skip_serializing_if = "Option::is_none")]
        capacity: Option<u32>,
    },
    /// Relay `payload` to peer `to` in the same room.
    Signal { to: String, payload: J },
    /// Replace this peer's metadata; the others get `metadata-updated`.
    Metadata { metadata: J },
    /// Leave the room for good; the others get `peer-left` with reason `left`.
    Leave,
    /// Application-level heartbeat (browsers cannot send WebSocket pings). Answered by `pong`.
    Ping {
        #[serde(skip_serializing_if = "Option::is_none")]
        ts: Option<f64>,
    },
}

/// A peer as others see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Wire)]
#[serde(rename_all = "camelCase")]
pub struct PeerInfo<J> {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<J>,
}

/// Why a peer left the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Wire)]
#[serde(rename_all = "kebab-case")]
pub enum LeaveReason {
    /// It said `leave` (or closed its socket cleanly).
    Left,
    /// It went silent past the heartbeat timeout, or did not resume within the grace period.
    Timeout,
    /// The server removed it (repeated limit violations).
    Kicked,
}

/// A frame from the server to a client.
#[derive(Debug, Clone, PartialEq, Serialize, Wire)]
#[serde(tag = "type", rename_all = "kebab-case", rename_all_fields = "camelCase")]
pub enum ServerMsg<J> {
    /// The join (or resume) succeeded.
    Joined {
        /// Negotiated protocol version.
        version: u32,
        room: String,
        peer_id: String,
        /// Present this in `join.resume` to come back after a dropped socket.
        resume_token: String,
        /// The other peers already in the room.
        #[serde(default)]
        peers: Vec<PeerInfo<J>>,
        /// Maximum number of peers in this room.
        capacity: u32,
        /// True when this join resumed an earlier session (queued signals follow).
        #[serde(default)]
        resumed: bool,
    },
    PeerJoined {
        peer: PeerInfo<J>,
    },
    PeerLeft {
        peer_id: String,
        reason: LeaveReason,
    },
    Signal {
        from: String,
        payload: J,
    },
    MetadataUpdated {
        peer_id: String,
        metadata: J,
    },
    /// The room is at capacity; the connection is closed after this frame.
    RoomFull {
        room: String,
        capacity: u32,
    },
    Error {
        code: ErrorCode,
        #[serde(default)]
        message: String,
        /// True when the server closes the connection after this frame.
        #[serde(default)]
        fatal: bool,
    },
    Pong {
        #[serde(skip_serializing_if = "Option::is_none")]
        ts: Option<f64>,
        /// A fresh resume token replacing the one from `joined` (tokens are short-lived, so the
        /// server renews them on every heartbeat; the previous one stays valid until the next).
        #[serde(skip_serializing_if = "Option::is_none")]
        resume_token: Option<String>,
    },
}

/// WebSocket close codes of `/signal`, and what a client does after each. The server closes
/// with these and the SDK decides from [`close::recovery`]: only a refusal of who the client is
/// (authentication, authorization, a resume elsewhere, a kick) ends a session; everything else
/// reconnects and resumes with the same peer id.
pub mod close {
    /// After `leave`, or after `room-full`.
    pub const NORMAL: u16 = 1000;
    /// The server shuts down.
    pub const GOING_AWAY: u16 = 1001;
    /// A text frame that is not UTF-8.
    pub const INVALID_DATA: u16 = 1007;
    /// Authentication or authorization refused (the reason says why), or a fatal `error` frame
    /// came first.
    pub const POLICY: u16 = 1008;
    /// A frame far over the size limit (4x `--max-frame-bytes`); smaller excess is a non-fatal
    /// `frame-too-large` error.
    pub const TOO_BIG: u16 = 1009;
    /// The server or this address is at its connection limit.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// Another connection resumed this peer.
    pub const REPLACED: u16 = 4000;
    /// The client did not read its frames fast enough.
    pub const TOO_SLOW: u16 = 4001;
    /// Nothing arrived from the client within the heartbeat timeout.
    pub const HEARTBEAT_TIMEOUT: u16 = 4002;
    /// No `join` within the join deadline after the upgrade.
    pub const JOIN_TIMEOUT: u16 = 4003;
    /// Too many limit violations: removed from the room (`peer-left` reason `kicked`).
    pub const KICKED: u16 = 4004;

    /// What a client does after a close.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Recovery {
        /// Reconnect with backoff and resume (same peer id while the server keeps it).
        Reconnect,
        /// The server refused this client: the session is over (`unauthorized`).
        Refused,
        /// This peer lives on in another connection: the session is over.
        Replaced,
        /// Removed for violations: the session is over.
        Kicked,
    }

    pub fn recovery(code: u16) -> Recovery {
        match code {
            POLICY => Recovery::Refused,
            REPLACED => Recovery::Replaced,
            KICKED => Recovery::Kicked,
            _ => Recovery::Reconnect,
        }
    }
}

/// Machine-readable error codes of `error` frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Wire)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// Not JSON, not an object, or a field of the wrong type.
    MalformedFrame,
    /// A `type` this server does not know.
    UnknownType,
    /// A frame above the size limit.
    FrameTooLarge,
    /// Too many frames per second.
    RateLimited,
    /// A frame that is not valid now (e.g. `signal` before `join`, a second `join`).
    InvalidState,
    /// The client's protocol version is not supported.
    UnsupportedVersion,
    /// Invalid room name, metadata that is not an object, and similar.
    InvalidArgument,
    /// `signal.to` names nobody in this room.
    UnknownPeer,
    /// The peer id (from a token) is already in use.
    DuplicatePeer,
    /// The resume token is unknown or expired.
    InvalidResume,
    /// The token does not allow this room.
    Unauthorized,
    /// The server is at its room limit.
    RoomLimit,
    /// The target's queue of signals (while it reconnects) is full.
    QueueFull,
}

/// What a `signal` payload carries between two SDKs. The server relays it without looking.
/// `kind` tags it; app-defined payloads use `app`.
#[derive(Debug, Clone, PartialEq, Serialize, Wire)]
#[serde(tag = "kind", rename_all = "kebab-case", rename_all_fields = "camelCase")]
pub enum SignalPayload<J> {
    /// An SDP offer or answer (`RTCSessionDescriptionInit`), with the role of each stream it
    /// carries (`camera`, `screen`, …) so the receiver can label `stream-added`.
    Description {
        description: SessionDescription,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        roles: Vec<StreamRole>,
        /// The sender's number for this description (1, 2, … per peer connection). A
        /// description is sent again after a signaling outage, in case the old socket lost it;
        /// the receiver drops one it has seen (a number not above the last it got).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq: Option<u32>,
    },
    /// A trickled ICE candidate; `None` marks the end of candidates.
    Candidate { candidate: Option<IceCandidate> },
    /// The sender is leaving (sent in-band so the other side reacts within a round trip).
    Bye,
    /// Anything the application sends.
    App { data: J },
}

/// The app-given role of a local `MediaStream`, by its id (the SDP's msid).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Wire)]
pub struct StreamRole {
    pub stream: String,
    pub role: String,
}

/// `RTCSessionDescriptionInit` on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Wire)]
#[serde(rename_all = "camelCase")]
pub struct SessionDescription {
    #[serde(rename = "type")]
    pub kind: SdpKind,
    #[serde(default)]
    pub sdp: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Wire)]
#[serde(rename_all = "lowercase")]
pub enum SdpKind {
    Offer,
    Answer,
    Pranswer,
    Rollback,
}

/// `RTCIceCandidateInit` on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Wire)]
#[serde(rename_all = "camelCase")]
pub struct IceCandidate {
    pub candidate: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sdp_mid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sdp_m_line_index: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username_fragment: Option<String>,
}

/// The index of `name` in `names`: how generated code matches wire spellings (one loop shared
/// by every enum instead of a string `match` per enum).
fn position(names: &[&str], name: &str) -> Option<usize> {
    names.iter().position(|n| *n == name)
}

/// Room names: 1–64 characters from `[A-Za-z0-9_.-]`, not only dots (`.` and `..` mean
/// something else in paths), so they are safe in paths and logs.
pub fn valid_room_name(room: &str) -> bool {
    (1..=64).contains(&room.len())
        && room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && room.bytes().any(|b| b != b'.')
}

/// Peer ids follow the same rule as room names.
pub fn valid_peer_id(id: &str) -> bool {
    valid_room_name(id)
}
