//! One connection's incoming frames: size and rate limits, decoding, the room the URL and the
//! token allow, violations and the kick. The server's WebSocket task and the browser's
//! SharedWorker both read through it, so a hostile member meets the same rules on either.
//!
//! Reading is split in two so the server decodes outside its hub lock: [`Reader::read`] turns
//! text into a [`Read`], [`Reader::apply`] carries it out on the hub.

use std::sync::{
    atomic::{AtomicU32, Ordering},
    Arc,
};

use rtcroom_protocol::{close as close_code, ClientMsg, ErrorCode, LeaveReason};
use serde::Deserialize;

use crate::{
    resume::Binding,
    rooms::{ConnId, Hub, Instant, JoinRequest, Link, RateLimiter, Raw},
};

/// Limits on what one connection sends.
#[derive(Debug, Clone)]
pub struct FrameLimits {
    /// Largest text frame accepted; larger ones get `frame-too-large`.
    pub max_frame: usize,
    /// Frames per second (token bucket refill) and burst.
    pub rate: u32,
    pub burst: u32,
    /// Violations (oversize, rate, malformed) tolerated before the client is kicked.
    pub max_violations: u32,
}

/// The server's defaults (its `--max-frame-bytes`, `--rate-limit`, `--rate-burst`,
/// `--max-violations`).
impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits {
            max_frame: 64 * 1024,
            rate: 50,
            burst: 200,
            max_violations: 10,
        }
    }
}

/// What an authentication token grants (the server's JWT claims): the one room it may join,
/// and the peer id and metadata it gets whatever its `join` says.
#[derive(Debug, Default)]
pub struct Grant {
    pub room: String,
    pub peer_id: Option<String>,
    pub metadata: Option<Raw>,
}

/// A decoded frame, or what is wrong with it.
#[derive(Debug)]
pub enum Read {
    /// Nothing to do (a kicked connection's frames).
    Ignore,
    /// Counted towards the kick, answered with a non-fatal error.
    Violation(ErrorCode, String),
    /// Answered with an error (and a close when fatal), not counted.
    Reject(ErrorCode, String, bool),
    Join(JoinRequest),
    Signal {
        to: String,
        payload: Raw,
    },
    Metadata(Raw),
    Leave,
    Ping(Option<f64>),
}

/// One connection's reading side.
pub struct Reader {
    conn: ConnId,
    limits: FrameLimits,
    /// The room named by the URL (`Err` when path and query disagree).
    room_hint: Result<Option<String>, ()>,
    grant: Option<Grant>,
    principal: Binding,
    limiter: RateLimiter,
    /// Members of this connection's room (the hub keeps it current), for the rate limit.
    room_size: Arc<AtomicU32>,
    violations: u32,
    /// Kicked: nothing it sends counts any more.
    kicked: bool,
}

impl Reader {
    pub fn new(
        conn: ConnId,
        limits: FrameLimits,
        room_size: Arc<AtomicU32>,
        room_hint: Result<Option<String>, ()>,
        grant: Option<Grant>,
        principal: Binding,
        now: Instant,
    ) -> Reader {
        Reader {
            conn,
            limiter: RateLimiter::new(limits.rate, limits.burst, now),
            limits,
            room_hint,
            grant,
            principal,
            room_size,
            violations: 0,
            kicked: false,
        }
    }

    pub fn conn(&self) -> ConnId {
        self.conn
    }

    /// Checks and decodes one text frame (no hub needed).
    pub fn read(&mut self, text: &str, now: Instant) -> Read {
        if self.kicked {
            return Read::Ignore;
        }
        if text.len() > self.limits.max_frame {
            let message = format!(
                "frame of {} bytes exceeds the limit of {}",
                text.len(),
                self.limits.max_frame
            );
            return Read::Violation(ErrorCode::FrameTooLarge, message);
        }
        let members = self.room_size.load(Ordering::Relaxed);
        if !self.limiter.allow_in_room(now, members) {
            return Read::Violation(ErrorCode::RateLimited, "too many frames per second".into());
        }
        let msg = match serde_json::from_str::<ClientMsg<Raw>>(text) {
            Ok(msg) => msg,
            Err(err) => {
                #[derive(Deserialize)]
                struct Tagged<'a> {
                    #[serde(rename = "type", borrow)]
                    kind: Option<&'a str>,
                }
                let unknown = serde_json::from_str::<Tagged>(text)
                    .ok()
                    .and_then(|t| t.kind)
                    .filter(|kind| !ClientMsg::<Raw>::TAGS.contains(kind));
                return match unknown {
                    Some(kind) => {
                        Read::Violation(ErrorCode::UnknownType, format!("unknown frame type {kind:?}"))
                    }
                    None => Read::Violation(ErrorCode::MalformedFrame, format!("malformed frame: {err}")),
                };
            }
        };
        match msg {
            ClientMsg::Join {
                room,
                version,
                metadata,
                resume,
                capacity,
            } => {
                let room = match (&self.room_hint, room) {
                    (Err(()), _) => Err("the URL path and query name different rooms"),
                    (Ok(Some(hint)), Some(room)) if *hint != room => {
                        Err("join.room differs from the room in the URL")
                    }
                    (Ok(hint), room) => room.or_else(|| hint.clone()).ok_or("join needs a room"),
                };
                let room = match room {
                    Ok(room) => room,
                    Err(message) => return Read::Reject(ErrorCode::InvalidArgument, message.into(), true),
                };
                let mut request = JoinRequest {
                    room,
                    version,
                    metadata,
                    resume,
                    capacity,
                    peer_id: None,
                    principal: self.principal.clone(),
                };
                if let Some(grant) = &self.grant {
                    if grant.room != request.room {
                        let message = format!("the token does not allow room {}", request.room);
                        return Read::Reject(ErrorCode::Unauthorized, message, true);
                    }
                    request.peer_id = grant.peer_id.clone();
                    if let Some(metadata) = &grant.metadata {
                        request.metadata = Some(metadata.clone());
                    }
                }
                Read::Join(request)
            }
            ClientMsg::Signal { to, payload } => Read::Signal { to, payload },
            ClientMsg::Metadata { metadata } => Read::Metadata(metadata),
            ClientMsg::Leave => Read::Leave,
            ClientMsg::Ping { ts } => Read::Ping(ts),
        }
    }

    /// Carries out a decoded frame on the hub.
    pub fn apply<L: Link>(&mut self, hub: &mut Hub<L>, read: Read, now: Instant) {
        let conn = self.conn;
        match read {
            Read::Ignore => {}
            Read::Violation(code, message) => self.violation(hub, code, &message),
            Read::Reject(code, message, fatal) => hub.reject(conn, code, message, fatal),
            Read::Join(request) => hub.join(conn, request, now),
            Read::Signal { to, payload } => hub.signal(conn, &to, &payload),
            Read::Metadata(metadata) => hub.update_metadata(conn, metadata),
            Read::Leave => hub.leave(conn),
            Read::Ping(ts) => hub.ping(conn, ts),
        }
    }

    /// Reads and applies one frame.
    pub fn on_text<L: Link>(&mut self, hub: &mut Hub<L>, text: &str, now: Instant) {
        let read = self.read(text, now);
        self.apply(hub, read, now);
    }

    /// A frame that breaks the rules: an error, and the kick once there were too many.
    pub fn violation<L: Link>(&mut self, hub: &mut Hub<L>, code: ErrorCode, message: &str) {
        if self.kicked {
            return;
        }
        self.violations += 1;
        hub.reject(self.conn, code, message, false);
        if self.violations > self.limits.max_violations {
            self.kicked = true;
            tracing::info!(conn = self.conn, "too many violations, kicking");
            hub.evict(
                self.conn,
                LeaveReason::Kicked,
                (close_code::KICKED, "too many violations"),
            );
        }
    }
}
