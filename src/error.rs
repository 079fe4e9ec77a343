//! Typed errors: a stable `code` string, a human message, and whether the session is over.
//! They reach JS as `error` events or rejected Promises; nothing from outside ever panics.

/// An SDK error as apps see it: `{ code, message, fatal }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdkError {
    pub code: &'static str,
    pub message: String,
    pub fatal: bool,
}

impl SdkError {
    pub fn new(code: &'static str, message: impl Into<String>, fatal: bool) -> SdkError {
        SdkError {
            code,
            message: message.into(),
            fatal,
        }
    }
}

impl std::fmt::Display for SdkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// Error codes (the `code` of [`SdkError`]).
pub mod code {
    pub const ROOM_FULL: &str = "room-full";
    pub const UNAUTHORIZED: &str = "unauthorized";
    pub const SIGNALING_UNREACHABLE: &str = "signaling-unreachable";
    pub const SIGNALING_CLOSED: &str = "signaling-closed";
    pub const INVALID_STATE: &str = "invalid-state";
    pub const INVALID_ARGUMENT: &str = "invalid-argument";
    pub const PROTOCOL: &str = "protocol-error";
    pub const SERVER: &str = "server-error";
    pub const NEGOTIATION: &str = "negotiation-failed";
    pub const MEDIA: &str = "media-error";
    pub const PEER_SIGNAL: &str = "bad-peer-signal";
    /// The stats collector cannot be reached (the trace keeps buffering and retrying).
    pub const STATS_UNAVAILABLE: &str = "stats-unavailable";
    /// A trace record was over `maxRecordBytes`: a marker took its place (the trace goes on).
    pub const STATS_RECORD_TOO_LARGE: &str = "stats-record-too-large";
    /// The stats collector refused messages (rate, size) or ended a dump at a limit.
    pub const STATS_REFUSED: &str = "stats-refused";
    /// A message could not reach the peer: it left first.
    pub const PEER_LEFT: &str = "peer-left";
    /// A message could not reach the peer: its channel closed first.
    pub const CHANNEL_CLOSED: &str = "channel-closed";
    /// A message was cancelled: the session left first.
    pub const CANCELLED: &str = "cancelled";
    /// A peer sent data that is not ours (or too large): dropped, reported, never fatal.
    pub const BAD_PEER_DATA: &str = "bad-peer-data";
    /// The peer rejected a file offer (or has no `file` listener).
    pub const FILE_REJECTED: &str = "file-rejected";
    /// A file arrived with another SHA-256 than was sent: not delivered.
    pub const INTEGRITY: &str = "integrity-error";
}
