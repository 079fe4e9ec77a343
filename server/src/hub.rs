//! The rooms: membership, relay, presence and resume, as one synchronous state machine.
//!
//! Connection tasks call into the hub under one short lock. Time is an input (`now`), so every
//! decision (grace periods, queues, capacity) is unit-tested without sockets or sleeps. The hub
//! writes frames to per-connection channels with `try_send`. It never awaits. A consumer too
//! slow to drain its channel is cut off instead of slowing everyone else.

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

use axum::extract::ws::Utf8Bytes;
use rtcroom_protocol::{
    negotiate_version, valid_peer_id, valid_room_name, ErrorCode, LeaveReason, PeerInfo, ServerMsg,
};
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::resume::ResumeKeys;

/// Opaque JSON the server relays without interpreting (signal payloads, metadata).
pub type Raw = Box<RawValue>;
/// Identifies one WebSocket connection for its whole life.
pub type ConnId = u64;

/// What a connection task writes to its socket.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    Text(Utf8Bytes),
    /// Send a close frame and end the connection.
    Close(u16, &'static str),
}

/// WebSocket close codes the server uses.
pub mod close_code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const POLICY: u16 = 1008;
    /// Another connection resumed this peer.
    pub const REPLACED: u16 = 4000;
}

/// The hub's side of a connection: its outgoing channel and a switch that ends it.
#[derive(Debug, Clone)]
pub struct ConnHandle {
    pub tx: mpsc::Sender<Outgoing>,
    pub kill: CancellationToken,
}

/// Room and resume limits.
#[derive(Debug, Clone)]
pub struct HubLimits {
    /// Capacity of a room unless its first joiner asks for less.
    pub room_capacity: u32,
    pub max_rooms: usize,
    /// How long a peer whose socket dropped keeps its id (and its place) for a resume.
    pub resume_grace: Duration,
    /// Frames kept for a peer while it reconnects.
    pub resume_queue: usize,
}

impl Default for HubLimits {
    fn default() -> Self {
        HubLimits {
            room_capacity: 50,
            max_rooms: 10_000,
            resume_grace: Duration::from_secs(10),
            resume_queue: 256,
        }
    }
}

/// A validated `join`, with what the auth token adds.
#[derive(Debug, Default)]
pub struct JoinRequest {
    pub room: String,
    pub version: u32,
    pub metadata: Option<Raw>,
    pub resume: Option<String>,
    pub capacity: Option<u32>,
    /// The peer id a token names (else the server assigns one).
    pub peer_id: Option<String>,
}

struct Peer {
    id: String,
    metadata: Option<Raw>,
    /// `None` while the socket is gone and the peer may still resume.
    conn: Option<ConnId>,
    resume_token: String,
    gone_since: Option<Instant>,
    /// Frames for this peer while it has no socket, delivered in order on resume.
    queue: VecDeque<Utf8Bytes>,
}

struct Room {
    capacity: u32,
    /// In join order: `joined.peers` lists them in that order.
    peers: Vec<Peer>,
}

impl Room {
    fn peer(&self, id: &str) -> Option<&Peer> {
        self.peers.iter().find(|p| p.id == id)
    }
    fn peer_mut(&mut self, id: &str) -> Option<&mut Peer> {
        self.peers.iter_mut().find(|p| p.id == id)
    }
}

struct Membership {
    room: String,
    peer_id: String,
}

struct Conn {
    handle: ConnHandle,
    member: Option<Membership>,
}

/// What `GET /rooms/{room}` shows.
#[derive(Debug, Serialize)]
pub struct Presence<'a> {
    pub room: &'a str,
    pub exists: bool,
    pub count: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u32>,
    pub peers: Vec<PeerInfo<&'a RawValue>>,
}

/// Counters for logs and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct HubCounts {
    pub connections: usize,
    pub rooms: usize,
    pub peers: usize,
}

pub struct Hub {
    limits: HubLimits,
    conns: HashMap<ConnId, Conn>,
    rooms: HashMap<String, Room>,
    /// resume token → (room, peer id), for tokens of this epoch
    tokens: HashMap<String, (String, String)>,
    /// Tokens of an earlier epoch (before a restart) already used to restore a peer.
    restored: std::collections::HashSet<String>,
    keys: ResumeKeys,
    next_conn: ConnId,
}

fn encode(msg: &ServerMsg<&RawValue>) -> Utf8Bytes {
    // Serializing our own types into a String cannot fail (no maps with non-string keys).
    Utf8Bytes::from(serde_json::to_string(msg).unwrap_or_default())
}

/// Writes to one connection; a full channel means the client cannot keep up: cut it off.
fn send(conns: &HashMap<ConnId, Conn>, conn: ConnId, out: Outgoing) {
    if let Some(c) = conns.get(&conn) {
        if let Err(mpsc::error::TrySendError::Full(_)) = c.handle.tx.try_send(out) {
            tracing::warn!(conn, "client too slow to read, disconnecting");
            c.handle.kill.cancel();
        }
    }
}

fn error_frame(code: ErrorCode, message: impl Into<String>, fatal: bool) -> Utf8Bytes {
    encode(&ServerMsg::Error {
        code,
        message: message.into(),
        fatal,
    })
}

/// Delivers to a peer now, or queues it while the peer is away. False if the queue is full.
fn deliver(conns: &HashMap<ConnId, Conn>, peer: &mut Peer, frame: Utf8Bytes, queue_limit: usize) -> bool {
    match peer.conn {
        Some(conn) => {
            send(conns, conn, Outgoing::Text(frame));
            true
        }
        None if peer.queue.len() < queue_limit => {
            peer.queue.push_back(frame);
            true
        }
        None => false,
    }
}

fn random_id() -> String {
    // 64 random bits in base 36: short, URL- and log-safe.
    let mut n: u64 = rand::random();
    let mut out = Vec::with_capacity(13);
    while n > 0 || out.is_empty() {
        out.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(n % 36) as usize]);
        n /= 36;
    }
    String::from_utf8(out).unwrap_or_default()
}

fn is_object(raw: &RawValue) -> bool {
    raw.get().trim_start().starts_with('{')
}

impl Hub {
    pub fn new(limits: HubLimits, keys: ResumeKeys) -> Hub {
        Hub {
            limits,
            conns: HashMap::new(),
            rooms: HashMap::new(),
            tokens: HashMap::new(),
            restored: Default::default(),
            keys,
            next_conn: 1,
        }
    }

    /// A new socket; it is in no room until it joins.
    pub fn register(&mut self, handle: ConnHandle) -> ConnId {
        let id = self.next_conn;
        self.next_conn += 1;
        self.conns.insert(id, Conn { handle, member: None });
        id
    }

    /// Sends an error frame to one connection, closing it when `fatal`.
    pub fn reject(&self, conn: ConnId, code: ErrorCode, message: impl Into<String>, fatal: bool) {
        send(
            &self.conns,
            conn,
            Outgoing::Text(error_frame(code, message, fatal)),
        );
        if fatal {
            send(
                &self.conns,
                conn,
                Outgoing::Close(close_code::POLICY, code.as_str()),
            );
        }
    }

    /// Sends a frame to one connection (e.g. `pong`).
    pub fn reply(&self, conn: ConnId, msg: &ServerMsg<&RawValue>) {
        send(&self.conns, conn, Outgoing::Text(encode(msg)));
    }

    pub fn join(&mut self, conn: ConnId, req: JoinRequest) {
        let Some(state) = self.conns.get(&conn) else {
            return;
        };
        if state.member.is_some() {
            return self.reject(conn, ErrorCode::InvalidState, "already joined", false);
        }
        let Some(version) = negotiate_version(req.version) else {
            return self.reject(
                conn,
                ErrorCode::UnsupportedVersion,
                format!("protocol version {} is not supported", req.version),
                true,
            );
        };
        if !valid_room_name(&req.room) {
            return self.reject(
                conn,
                ErrorCode::InvalidArgument,
                "room names are 1-64 of [A-Za-z0-9_.-]",
                true,
            );
        }
        if req.metadata.as_deref().is_some_and(|m| !is_object(m)) {
            return self.reject(
                conn,
                ErrorCode::InvalidArgument,
                "metadata must be a JSON object",
                true,
            );
        }
        if let Some(token) = req.resume.clone() {
            return self.resume(conn, &token, req, version);
        }
        if let Some(id) = req.peer_id.as_deref() {
            if !valid_peer_id(id) {
                return self.reject(conn, ErrorCode::InvalidArgument, "invalid peer id", true);
            }
        }
        self.admit(conn, req, version, false);
    }

    /// Puts a peer in a room (creating it), announces it, and answers `joined`. `req.peer_id`
    /// is the id to use (token-named or restored), else a fresh one is drawn.
    fn admit(&mut self, conn: ConnId, req: JoinRequest, version: u32, resumed: bool) {
        let room_exists = self.rooms.contains_key(&req.room);
        if !room_exists && self.rooms.len() >= self.limits.max_rooms {
            return self.reject(
                conn,
                ErrorCode::RoomLimit,
                "the server is at its room limit",
                true,
            );
        }
        let default_capacity = self.limits.room_capacity;
        let room = self.rooms.entry(req.room.clone()).or_insert_with(|| Room {
            capacity: req
                .capacity
                .filter(|&c| c >= 1)
                .map_or(default_capacity, |c| c.min(default_capacity)),
            peers: Vec::new(),
        });
        if room.peers.len() >= room.capacity as usize {
            let frame = encode(&ServerMsg::RoomFull {
                room: req.room.clone(),
                capacity: room.capacity,
            });
            send(&self.conns, conn, Outgoing::Text(frame));
            send(
                &self.conns,
                conn,
                Outgoing::Close(close_code::NORMAL, "room-full"),
            );
            return;
        }
        let id = match req.peer_id {
            Some(id) if room.peer(&id).is_some() => {
                if room.peers.is_empty() {
                    self.rooms.remove(&req.room);
                }
                let message = format!("peer id {id} is already in use");
                return self.reject(conn, ErrorCode::DuplicatePeer, message, true);
            }
            Some(id) => id,
            None => loop {
                let id = random_id();
                if room.peer(&id).is_none() {
                    break id;
                }
            },
        };
        let token = self.keys.issue(&req.room, &id);
        let joined = encode(&ServerMsg::Joined {
            version,
            room: req.room.clone(),
            peer_id: id.clone(),
            resume_token: token.clone(),
            peers: room
                .peers
                .iter()
                .map(|p| PeerInfo {
                    id: p.id.clone(),
                    metadata: p.metadata.as_deref(),
                })
                .collect(),
            capacity: room.capacity,
            resumed,
        });
        let announce = encode(&ServerMsg::PeerJoined {
            peer: PeerInfo {
                id: id.clone(),
                metadata: req.metadata.as_deref(),
            },
        });
        send(&self.conns, conn, Outgoing::Text(joined));
        let queue_limit = self.limits.resume_queue;
        for other in &mut room.peers {
            deliver(&self.conns, other, announce.clone(), queue_limit);
        }
        room.peers.push(Peer {
            id: id.clone(),
            metadata: req.metadata,
            conn: Some(conn),
            resume_token: token.clone(),
            gone_since: None,
            queue: VecDeque::new(),
        });
        self.tokens.insert(token, (req.room.clone(), id.clone()));
        if let Some(state) = self.conns.get_mut(&conn) {
            state.member = Some(Membership {
                room: req.room,
                peer_id: id,
            });
        }
    }

    /// A returning peer: same id, fresh token, queued frames in order, no leave/join for others.
    /// A token from before a server restart restores the peer under its old id (once).
    fn resume(&mut self, conn: ConnId, token: &str, mut req: JoinRequest, version: u32) {
        let Some(claim) = self.keys.verify(token).filter(|c| c.room == req.room) else {
            return self.reject(
                conn,
                ErrorCode::InvalidResume,
                "unknown or expired resume token",
                false,
            );
        };
        if claim.epoch != self.keys.epoch {
            if !self.restored.insert(token.to_string()) {
                return self.reject(conn, ErrorCode::InvalidResume, "resume token already used", false);
            }
            req.peer_id = Some(claim.peer);
            return self.admit(conn, req, version, true);
        }
        let Some((room_name, peer_id)) = self.tokens.get(token).cloned() else {
            return self.reject(
                conn,
                ErrorCode::InvalidResume,
                "unknown or expired resume token",
                false,
            );
        };
        let Some(room) = self.rooms.get_mut(&room_name) else {
            return self.reject(
                conn,
                ErrorCode::InvalidResume,
                "unknown or expired resume token",
                false,
            );
        };
        let capacity = room.capacity;
        let others: Vec<PeerInfo<&RawValue>> = room
            .peers
            .iter()
            .filter(|p| p.id != peer_id)
            .map(|p| PeerInfo {
                id: p.id.clone(),
                metadata: p.metadata.as_deref(),
            })
            .collect();
        let new_token = self.keys.issue(&room_name, &peer_id);
        let joined = encode(&ServerMsg::Joined {
            version,
            room: room_name.clone(),
            peer_id: peer_id.clone(),
            resume_token: new_token.clone(),
            peers: others,
            capacity,
            resumed: true,
        });
        let Some(peer) = room.peer_mut(&peer_id) else {
            return self.reject(
                conn,
                ErrorCode::InvalidResume,
                "unknown or expired resume token",
                false,
            );
        };
        // The old socket may not have noticed it is dead yet: this connection replaces it.
        if let Some(old) = peer.conn.replace(conn) {
            if let Some(old_state) = self.conns.get_mut(&old) {
                old_state.member = None;
            }
            send(
                &self.conns,
                old,
                Outgoing::Close(close_code::REPLACED, "resumed elsewhere"),
            );
        }
        peer.gone_since = None;
        peer.resume_token = new_token.clone();
        let queued: Vec<Utf8Bytes> = peer.queue.drain(..).collect();
        send(&self.conns, conn, Outgoing::Text(joined));
        for frame in queued {
            send(&self.conns, conn, Outgoing::Text(frame));
        }
        self.tokens.remove(token);
        self.tokens
            .insert(new_token, (room_name.clone(), peer_id.clone()));
        if let Some(state) = self.conns.get_mut(&conn) {
            state.member = Some(Membership {
                room: room_name,
                peer_id,
            });
        }
    }

    pub fn signal(&mut self, conn: ConnId, to: &str, payload: &RawValue) {
        let Some(Membership { room, peer_id }) = self.conns.get(&conn).and_then(|c| c.member.as_ref()) else {
            return self.reject(
                conn,
                ErrorCode::InvalidState,
                "join a room before signaling",
                false,
            );
        };
        let queue_limit = self.limits.resume_queue;
        let target = self
            .rooms
            .get_mut(room)
            .and_then(|r| r.peer_mut(to))
            .filter(|p| p.id != *peer_id);
        let Some(target) = target else {
            return self.reject(
                conn,
                ErrorCode::UnknownPeer,
                format!("no peer {to} in this room"),
                false,
            );
        };
        let frame = encode(&ServerMsg::Signal {
            from: peer_id.clone(),
            payload,
        });
        if !deliver(&self.conns, target, frame, queue_limit) {
            self.reject(
                conn,
                ErrorCode::QueueFull,
                format!("peer {to} is reconnecting and its queue is full"),
                false,
            );
        }
    }

    pub fn update_metadata(&mut self, conn: ConnId, metadata: Raw) {
        if !is_object(&metadata) {
            return self.reject(
                conn,
                ErrorCode::InvalidArgument,
                "metadata must be a JSON object",
                false,
            );
        }
        let Some(Membership { room, peer_id }) = self.conns.get(&conn).and_then(|c| c.member.as_ref()) else {
            return self.reject(
                conn,
                ErrorCode::InvalidState,
                "join a room before updating metadata",
                false,
            );
        };
        let Some(room) = self.rooms.get_mut(room) else {
            return;
        };
        let frame = encode(&ServerMsg::MetadataUpdated {
            peer_id: peer_id.clone(),
            metadata: &metadata,
        });
        let queue_limit = self.limits.resume_queue;
        for peer in &mut room.peers {
            if peer.id == *peer_id {
                peer.metadata = Some(metadata.clone());
            } else {
                deliver(&self.conns, peer, frame.clone(), queue_limit);
            }
        }
    }

    /// The peer leaves for good; its connection stays open (the client closes it).
    pub fn leave(&mut self, conn: ConnId) {
        let member = self.conns.get_mut(&conn).and_then(|c| c.member.take());
        if let Some(Membership { room, peer_id }) = member {
            self.remove_peer(&room, &peer_id, LeaveReason::Left);
        }
    }

    /// The server removes the peer now (heartbeat timeout, too many violations) and closes it.
    pub fn evict(&mut self, conn: ConnId, reason: LeaveReason, close: (u16, &'static str)) {
        let member = self.conns.get_mut(&conn).and_then(|c| c.member.take());
        if let Some(Membership { room, peer_id }) = member {
            self.remove_peer(&room, &peer_id, reason);
        }
        send(&self.conns, conn, Outgoing::Close(close.0, close.1));
    }

    /// The socket is gone without `leave`: the peer keeps its place for the grace period.
    pub fn disconnected(&mut self, conn: ConnId, now: Instant) {
        let Some(state) = self.conns.remove(&conn) else {
            return;
        };
        let Some(Membership { room, peer_id }) = state.member else {
            return;
        };
        if let Some(peer) = self.rooms.get_mut(&room).and_then(|r| r.peer_mut(&peer_id)) {
            if peer.conn == Some(conn) {
                peer.conn = None;
                peer.gone_since = Some(now);
            }
        }
    }

    /// Removes peers whose grace period ran out. Call it periodically.
    pub fn tick(&mut self, now: Instant) {
        let grace = self.limits.resume_grace;
        let expired: Vec<(String, String)> = self
            .rooms
            .iter()
            .flat_map(|(name, room)| {
                room.peers
                    .iter()
                    .filter(|p| {
                        p.gone_since
                            .is_some_and(|t| now.saturating_duration_since(t) >= grace)
                    })
                    .map(move |p| (name.clone(), p.id.clone()))
            })
            .collect();
        for (room, peer) in expired {
            self.remove_peer(&room, &peer, LeaveReason::Timeout);
        }
    }

    fn remove_peer(&mut self, room_name: &str, peer_id: &str, reason: LeaveReason) {
        let Some(room) = self.rooms.get_mut(room_name) else {
            return;
        };
        let Some(index) = room.peers.iter().position(|p| p.id == peer_id) else {
            return;
        };
        let peer = room.peers.remove(index);
        self.tokens.remove(&peer.resume_token);
        let frame = encode(&ServerMsg::PeerLeft {
            peer_id: peer.id,
            reason,
        });
        let queue_limit = self.limits.resume_queue;
        for other in &mut room.peers {
            deliver(&self.conns, other, frame.clone(), queue_limit);
        }
        if room.peers.is_empty() {
            self.rooms.remove(room_name);
        }
    }

    pub fn presence<'a>(&'a self, room: &'a str) -> Presence<'a> {
        match self.rooms.get(room) {
            Some(r) => Presence {
                room,
                exists: true,
                count: r.peers.len(),
                capacity: Some(r.capacity),
                peers: r
                    .peers
                    .iter()
                    .map(|p| PeerInfo {
                        id: p.id.clone(),
                        metadata: p.metadata.as_deref(),
                    })
                    .collect(),
            },
            None => Presence {
                room,
                exists: false,
                count: 0,
                capacity: None,
                peers: Vec::new(),
            },
        }
    }

    pub fn counts(&self) -> HubCounts {
        HubCounts {
            connections: self.conns.len(),
            rooms: self.rooms.len(),
            peers: self.rooms.values().map(|r| r.peers.len()).sum(),
        }
    }
}

/// Token bucket for a connection's frames per second; time is an input.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    pub fn new(rate_per_sec: u32, burst: u32, now: Instant) -> RateLimiter {
        let burst = f64::from(burst.max(1));
        RateLimiter {
            rate: f64::from(rate_per_sec),
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub fn allow(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        rx: mpsc::Receiver<Outgoing>,
        kill: CancellationToken,
    }

    fn connect(hub: &mut Hub, queue: usize) -> (ConnId, Fake) {
        let (tx, rx) = mpsc::channel(queue);
        let kill = CancellationToken::new();
        (
            hub.register(ConnHandle {
                tx,
                kill: kill.clone(),
            }),
            Fake { rx, kill },
        )
    }

    impl Fake {
        fn frames(&mut self) -> Vec<serde_json::Value> {
            let mut out = Vec::new();
            while let Ok(item) = self.rx.try_recv() {
                match item {
                    Outgoing::Text(text) => out.push(serde_json::from_str(text.as_str()).unwrap()),
                    Outgoing::Close(code, reason) => {
                        out.push(serde_json::json!({"close": code, "reason": reason}))
                    }
                }
            }
            out
        }
        fn types(&mut self) -> Vec<String> {
            self.frames()
                .iter()
                .map(|f| f["type"].as_str().unwrap_or("close").to_string())
                .collect()
        }
    }

    fn join(hub: &mut Hub, conn: ConnId, room: &str) {
        hub.join(
            conn,
            JoinRequest {
                room: room.into(),
                version: 1,
                ..Default::default()
            },
        );
    }

    fn raw(text: &str) -> Raw {
        RawValue::from_string(text.into()).unwrap()
    }

    fn limits(grace_ms: u64, queue: usize) -> HubLimits {
        HubLimits {
            resume_grace: Duration::from_millis(grace_ms),
            resume_queue: queue,
            ..HubLimits::default()
        }
    }

    #[test]
    fn grace_period_ends_exactly_at_its_deadline() {
        let t0 = Instant::now();
        let mut hub = Hub::new(limits(1000, 8), ResumeKeys::new(None));
        let (a, mut fa) = connect(&mut hub, 64);
        let (b, mut fb) = connect(&mut hub, 64);
        join(&mut hub, a, "r");
        join(&mut hub, b, "r");
        fa.frames();
        fb.frames();
        hub.disconnected(a, t0);
        hub.tick(t0 + Duration::from_millis(999));
        assert!(fb.types().is_empty(), "still within grace");
        assert_eq!(hub.counts().peers, 2, "a keeps its place while it may resume");
        hub.tick(t0 + Duration::from_millis(1000));
        let frames = fb.frames();
        assert_eq!(frames.len(), 1);
        assert_eq!(
            (frames[0]["type"].as_str(), frames[0]["reason"].as_str()),
            (Some("peer-left"), Some("timeout"))
        );
        assert_eq!(
            hub.counts(),
            HubCounts {
                connections: 1,
                rooms: 1,
                peers: 1
            }
        );
    }

    #[test]
    fn queue_for_an_absent_peer_is_bounded_and_the_sender_is_told() {
        let t0 = Instant::now();
        let mut hub = Hub::new(limits(1000, 2), ResumeKeys::new(None));
        let (a, _fa) = connect(&mut hub, 64);
        let (b, mut fb) = connect(&mut hub, 64);
        join(&mut hub, a, "r");
        join(&mut hub, b, "r");
        let a_id = fb.frames()[0]["peers"][0]["id"].as_str().unwrap().to_string();
        hub.disconnected(a, t0);
        for n in 0..3 {
            hub.signal(b, &a_id, &raw(&n.to_string()));
        }
        let frames = fb.frames();
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert_eq!(frames[0]["code"], "queue-full");
    }

    #[test]
    fn a_full_outgoing_channel_cuts_off_only_that_client() {
        let mut hub = Hub::new(HubLimits::default(), ResumeKeys::new(None));
        let (slow, fslow) = connect(&mut hub, 1);
        let (fast, ffast) = connect(&mut hub, 64);
        join(&mut hub, slow, "r"); // fills the slow channel (joined)
        join(&mut hub, fast, "r"); // peer-joined does not fit
        assert!(fslow.kill.is_cancelled());
        assert!(!ffast.kill.is_cancelled());
    }

    #[test]
    fn rooms_are_removed_when_empty_and_limited_in_number() {
        let mut hub = Hub::new(
            HubLimits {
                max_rooms: 1,
                ..HubLimits::default()
            },
            ResumeKeys::new(None),
        );
        let (a, _fa) = connect(&mut hub, 64);
        let (b, mut fb) = connect(&mut hub, 64);
        join(&mut hub, a, "one");
        join(&mut hub, b, "two");
        assert_eq!(fb.frames()[0]["code"], "room-limit");
        hub.leave(a);
        assert_eq!(hub.counts().rooms, 0);
        let (c, mut fc) = connect(&mut hub, 64);
        join(&mut hub, c, "two");
        assert_eq!(fc.types(), ["joined"]);
    }

    #[test]
    fn rate_limiter_refills_over_time() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(10, 2, t0);
        assert!(limiter.allow(t0) && limiter.allow(t0));
        assert!(!limiter.allow(t0));
        assert!(!limiter.allow(t0 + Duration::from_millis(50)));
        assert!(limiter.allow(t0 + Duration::from_millis(101)));
        assert!(limiter.allow(t0 + Duration::from_secs(10)) && limiter.allow(t0 + Duration::from_secs(10)));
        assert!(
            !limiter.allow(t0 + Duration::from_secs(10)),
            "burst caps the refill"
        );
    }

    #[test]
    fn peer_ids_are_short_and_distinct() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| random_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|id| valid_peer_id(id) && id.len() <= 13));
    }
}
