//! The rooms: membership, relay, presence and resume, as one synchronous state machine.
//!
//! Shells call into the hub (the server's connection tasks under one short lock; the browser's
//! SharedWorker from its message handlers). Time is an input (`now`), so every decision (grace
//! periods, queues, capacity) is unit-tested without sockets or sleeps. The hub writes frames
//! to each connection's [`Link`] with `try_send`. It never awaits. A consumer too slow to drain
//! its queue is cut off instead of slowing everyone else.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use rtcroom_protocol::{
    negotiate_version, valid_peer_id, valid_room_name, ErrorCode, LeaveReason, PeerInfo, ServerMsg,
};
use serde::Serialize;
use serde_json::value::RawValue;
pub use web_time::Instant;

use crate::resume::{Binding, ResumeKeys};

/// Opaque JSON the server relays without interpreting (signal payloads, metadata).
pub type Raw = Box<RawValue>;
/// Identifies one WebSocket connection for its whole life.
pub type ConnId = u64;

/// Frames waiting for a client's socket before it counts as too slow (the channel's size).
pub const OUTGOING_QUEUE: usize = 1024;
/// The part of [`OUTGOING_QUEUE`] the other members' frames may take; the rest stays free for
/// the server's own frames (presence, errors, pongs).
const RELAY_BUDGET: usize = OUTGOING_QUEUE * 3 / 4;
/// What one member may always have queued towards another, however full the room.
const MIN_SHARE: usize = 16;

/// What a shell writes to a connection. `T` is the shell's text type (cheap to clone: one
/// frame goes to many members).
#[derive(Debug)]
pub enum Outgoing<T> {
    Text(T),
    /// A frame another member caused: it holds that member's share of this queue until written.
    Shared(T, ShareGuard),
    /// A WebSocket ping now (the resume probe).
    Ping,
    /// Send a close frame and end the connection.
    Close(u16, &'static str),
}

/// WebSocket close codes the server uses: the protocol's table (one definition).
pub use rtcroom_protocol::close as close_code;

/// One frame counted against a sender's share of a receiver's queue; dropping it (the frame
/// was written, or the queue went away) gives the place back.
#[derive(Debug)]
pub struct ShareGuard(Arc<AtomicU32>);

impl ShareGuard {
    fn take(counter: &Arc<AtomicU32>) -> ShareGuard {
        counter.fetch_add(1, Ordering::Relaxed);
        ShareGuard(counter.clone())
    }
}

impl Drop for ShareGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection's outgoing side, as its shell provides it: the server's bounded channel to a
/// WebSocket task, the worker's MessagePort.
pub trait Link {
    /// The text of a frame as this shell writes it.
    type Text: Clone + From<String> + std::fmt::Debug;
    /// Queues `out` for the connection. `Err(Full)` only when its queue is full (the hub then
    /// cuts it off with [`Link::kill`]); a connection already gone swallows it.
    fn try_send(&self, out: Outgoing<Self::Text>) -> Result<(), Full>;
    /// Ends the connection now: it cannot keep up.
    fn kill(&self);
}

/// A connection's queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// The hub's side of a connection: its outgoing link, a count of the frames it received (any
/// sign of life, for the resume probe), whether it is in a room (for the join deadline) and how
/// many members that room has (for its rate limit).
#[derive(Debug, Clone)]
pub struct ConnHandle<L> {
    pub link: L,
    pub seen: Arc<AtomicU64>,
    pub member: Arc<AtomicBool>,
    pub room_size: Arc<AtomicU32>,
}

impl<L> ConnHandle<L> {
    pub fn new(link: L) -> ConnHandle<L> {
        ConnHandle {
            link,
            seen: Arc::default(),
            member: Arc::default(),
            room_size: Arc::default(),
        }
    }
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
    /// A resume token stays valid this long after it was issued or renewed (renewal comes with
    /// every `pong`): the resume grace plus the longest a connected client may stay silent.
    pub token_ttl: Duration,
    /// How long a resume waits for a sign of life from the socket it would replace: a live
    /// socket keeps its peer (a bystander with a leaked token cannot take it over).
    pub resume_probe: Duration,
}

impl Default for HubLimits {
    fn default() -> Self {
        HubLimits {
            room_capacity: 50,
            max_rooms: 10_000,
            resume_grace: Duration::from_secs(10),
            resume_queue: 256,
            token_ttl: Duration::from_secs(40),
            resume_probe: Duration::from_secs(2),
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
    /// Who the authenticated client is (from its JWT); resume tokens are bound to it.
    pub principal: Binding,
}

struct Peer<T> {
    id: String,
    metadata: Option<Raw>,
    /// `None` while the socket is gone and the peer may still resume.
    conn: Option<ConnId>,
    /// The tokens that resume this peer: the newest and the one before it (a renewal may be
    /// lost with the socket that carried it).
    tokens: [String; 2],
    principal: Binding,
    gone_since: Option<Instant>,
    /// Frames for this peer while it has no socket, delivered in order on resume.
    queue: VecDeque<(T, Option<ShareGuard>)>,
    /// Per sending connection: its frames queued for this peer (live or while away).
    shares: HashMap<ConnId, Arc<AtomicU32>>,
}

struct Room<T> {
    capacity: u32,
    /// In join order: `joined.peers` lists them in that order.
    peers: Vec<Peer<T>>,
}

impl<T> Room<T> {
    fn peer(&self, id: &str) -> Option<&Peer<T>> {
        self.peers.iter().find(|p| p.id == id)
    }
    fn peer_mut(&mut self, id: &str) -> Option<&mut Peer<T>> {
        self.peers.iter_mut().find(|p| p.id == id)
    }
}

struct Membership {
    room: String,
    peer_id: String,
}

struct Conn<L> {
    handle: ConnHandle<L>,
    member: Option<Membership>,
    /// It sent `leave`: a socket joins once.
    left: bool,
}

/// A resume that waits to see whether the socket it would replace is alive.
struct Takeover {
    conn: ConnId,
    old: ConnId,
    room: String,
    peer_id: String,
    version: u32,
    /// The old socket's frame count when the probe started.
    seen: u64,
    deadline: Instant,
    /// The token presented.
    token: String,
}

/// Who caused a frame for a receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    /// The server's own frames: replies, errors, timeouts.
    Server,
    /// Another member's relay or metadata: it must fit in that member's share.
    Relay(ConnId),
    /// Another member's join or leave: counted in its share, never dropped (presence must not
    /// go out of step).
    Presence(ConnId),
}

/// Why a frame for a peer was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    /// The sender already has its fair share of the receiver's queue.
    Share,
    /// The peer is away and its resume queue is full.
    Away,
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

pub struct Hub<L: Link> {
    limits: HubLimits,
    conns: HashMap<ConnId, Conn<L>>,
    rooms: HashMap<String, Room<L::Text>>,
    /// Tokens of an earlier epoch (before a restart) already used to restore a peer, with
    /// their expiry (unix ms): single use, and forgotten once they could not verify anyway.
    restored: HashMap<String, u64>,
    takeovers: Vec<Takeover>,
    keys: ResumeKeys,
    next_conn: ConnId,
}

fn encode<T: From<String>>(msg: &ServerMsg<&RawValue>) -> T {
    // Serializing our own types into a String cannot fail (no maps with non-string keys).
    T::from(serde_json::to_string(msg).unwrap_or_default())
}

/// Writes to one connection; a full queue means the client cannot keep up: cut it off (it
/// keeps its place for the resume grace, and the SDK resumes).
fn send<L: Link>(conns: &HashMap<ConnId, Conn<L>>, conn: ConnId, out: Outgoing<L::Text>) {
    if let Some(c) = conns.get(&conn) {
        if c.handle.link.try_send(out).is_err() {
            tracing::warn!(conn, "client too slow to read, disconnecting");
            c.handle.link.kill();
        }
    }
}

fn error_frame<T: From<String>>(code: ErrorCode, message: impl Into<String>, fatal: bool) -> T {
    encode(&ServerMsg::Error {
        code,
        message: message.into(),
        fatal,
    })
}

/// How many frames one member may have queued towards another in a room of `members`: an
/// equal part of the budget, so no crowd of senders can fill a receiver's queue into a kick.
fn fair_share(budget: usize, members: usize) -> u32 {
    (budget / members.saturating_sub(1).max(1)).max(MIN_SHARE) as u32
}

/// Delivers to a peer now, or queues it while the peer is away.
fn deliver<L: Link>(
    conns: &HashMap<ConnId, Conn<L>>,
    peer: &mut Peer<L::Text>,
    frame: L::Text,
    cause: Cause,
    members: usize,
    queue_limit: usize,
) -> Result<(), Refused> {
    let guard = match cause {
        Cause::Server => None,
        Cause::Relay(from) | Cause::Presence(from) => {
            let counter = peer.shares.entry(from).or_default();
            let budget = if peer.conn.is_some() {
                RELAY_BUDGET
            } else {
                queue_limit
            };
            if cause == Cause::Relay(from) && counter.load(Ordering::Relaxed) >= fair_share(budget, members) {
                return Err(Refused::Share);
            }
            Some(ShareGuard::take(counter))
        }
    };
    match peer.conn {
        Some(conn) => {
            let out = match guard {
                Some(guard) => Outgoing::Shared(frame, guard),
                None => Outgoing::Text(frame),
            };
            send(conns, conn, out);
            Ok(())
        }
        None if peer.queue.len() < queue_limit => {
            peer.queue.push_back((frame, guard));
            Ok(())
        }
        None => Err(Refused::Away),
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

impl<L: Link> Hub<L> {
    pub fn new(limits: HubLimits, keys: ResumeKeys) -> Hub<L> {
        Hub {
            limits,
            conns: HashMap::new(),
            rooms: HashMap::new(),
            restored: HashMap::new(),
            takeovers: Vec::new(),
            keys,
            next_conn: 1,
        }
    }

    /// A new socket; it is in no room until it joins.
    pub fn register(&mut self, handle: ConnHandle<L>) -> ConnId {
        let id = self.next_conn;
        self.next_conn += 1;
        self.conns.insert(
            id,
            Conn {
                handle,
                member: None,
                left: false,
            },
        );
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

    /// Sends a frame to one connection.
    pub fn reply(&self, conn: ConnId, msg: &ServerMsg<&RawValue>) {
        send(&self.conns, conn, Outgoing::Text(encode(msg)));
    }

    /// `ping`: answered by `pong`, with a renewed resume token for a member.
    pub fn ping(&mut self, conn: ConnId, ts: Option<f64>) {
        let resume_token = self.renew_token(conn);
        self.reply(conn, &ServerMsg::Pong { ts, resume_token });
    }

    fn renew_token(&mut self, conn: ConnId) -> Option<String> {
        let Membership { room, peer_id } = self.conns.get(&conn)?.member.as_ref()?;
        let peer = self.rooms.get_mut(room)?.peer_mut(peer_id)?;
        let token = self
            .keys
            .issue(room, peer_id, &peer.principal, self.limits.token_ttl);
        let [newest, _] = std::mem::take(&mut peer.tokens);
        peer.tokens = [token.clone(), newest];
        Some(token)
    }

    /// Tells every connection of `room_name` how many members it has now.
    fn room_changed(&self, room_name: &str) {
        let Some(room) = self.rooms.get(room_name) else {
            return;
        };
        let size = room.peers.len() as u32;
        for conn in room.peers.iter().filter_map(|p| p.conn) {
            if let Some(state) = self.conns.get(&conn) {
                state.handle.room_size.store(size, Ordering::Relaxed);
            }
        }
    }

    fn set_member(&mut self, conn: ConnId, member: Option<Membership>) {
        if let Some(state) = self.conns.get_mut(&conn) {
            state.handle.member.store(member.is_some(), Ordering::Relaxed);
            state.member = member;
        }
    }

    pub fn join(&mut self, conn: ConnId, req: JoinRequest, now: Instant) {
        let Some(state) = self.conns.get(&conn) else {
            return;
        };
        if state.member.is_some() || self.takeovers.iter().any(|t| t.conn == conn) {
            return self.reject(conn, ErrorCode::InvalidState, "already joined", false);
        }
        if state.left {
            return self.reject(
                conn,
                ErrorCode::InvalidState,
                "this connection left its room; open a new one to join again",
                false,
            );
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
                "room names are 1-64 of [A-Za-z0-9_.-], not only dots",
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
            return self.resume(conn, &token, req, version, now);
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
        let token = self
            .keys
            .issue(&req.room, &id, &req.principal, self.limits.token_ttl);
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
        let announce: L::Text = encode(&ServerMsg::PeerJoined {
            peer: PeerInfo {
                id: id.clone(),
                metadata: req.metadata.as_deref(),
            },
        });
        send(&self.conns, conn, Outgoing::Text(joined));
        let (members, queue_limit) = (room.peers.len() + 1, self.limits.resume_queue);
        for other in &mut room.peers {
            let _ = deliver(
                &self.conns,
                other,
                announce.clone(),
                Cause::Presence(conn),
                members,
                queue_limit,
            );
        }
        room.peers.push(Peer {
            id: id.clone(),
            metadata: req.metadata,
            conn: Some(conn),
            tokens: [token, String::new()],
            principal: req.principal,
            gone_since: None,
            queue: VecDeque::new(),
            shares: HashMap::new(),
        });
        self.room_changed(&req.room);
        self.set_member(
            conn,
            Some(Membership {
                room: req.room,
                peer_id: id,
            }),
        );
    }

    /// A returning peer: same id, fresh token, queued frames in order, no leave/join for others.
    /// The token must be authentic, unexpired, for this room, bound to the same authenticated
    /// identity, and (within this process) the peer's current one. A token from before a server
    /// restart restores the peer under its old id, once.
    fn resume(&mut self, conn: ConnId, token: &str, mut req: JoinRequest, version: u32, now: Instant) {
        let invalid = |hub: &Hub<L>, why: &str| hub.reject(conn, ErrorCode::InvalidResume, why, false);
        let Some(claim) = self
            .keys
            .verify(token, unix_ms())
            .filter(|c| c.room == req.room && c.binding == req.principal)
        else {
            return invalid(self, "unknown or expired resume token");
        };
        if claim.epoch != self.keys.epoch {
            self.restored.retain(|_, expiry| *expiry >= unix_ms());
            if self.restored.insert(token.to_string(), claim.expiry_ms).is_none() {
                let (room, peer_id) = (req.room.clone(), claim.peer.clone());
                req.peer_id = Some(claim.peer);
                self.admit(conn, req, version, true);
                // As after any resume: the token just spent stays good until the first renewal.
                if let Some(peer) = self.rooms.get_mut(&room).and_then(|r| r.peer_mut(&peer_id)) {
                    if peer.conn == Some(conn) {
                        peer.tokens[1] = token.to_string();
                    }
                }
                return;
            }
            // Used already: it may still be the restored peer's own (its `joined` lost), below.
        }
        let Some(peer) = self
            .rooms
            .get(&req.room)
            .and_then(|room| room.peer(&claim.peer))
            .filter(|peer| peer.tokens.iter().any(|t| t == token))
        else {
            return invalid(self, "unknown or expired resume token");
        };
        // The old socket may be dead without the server knowing yet: then this connection
        // replaces it. If it answers a ping, its peer is alive and stays.
        if let Some(old) = peer.conn {
            let Some(old_state) = self.conns.get(&old) else {
                return self.complete_resume(conn, &req.room, &claim.peer, version, token);
            };
            let seen = old_state.handle.seen.load(Ordering::Relaxed);
            send(&self.conns, old, Outgoing::Ping);
            if let Some(state) = self.conns.get(&conn) {
                state.handle.member.store(true, Ordering::Relaxed);
            }
            self.takeovers.push(Takeover {
                conn,
                old,
                room: req.room,
                peer_id: claim.peer,
                version,
                seen,
                deadline: now + self.limits.resume_probe,
                token: token.to_string(),
            });
            return;
        }
        self.complete_resume(conn, &req.room, &claim.peer, version, token);
    }

    fn complete_resume(
        &mut self,
        conn: ConnId,
        room_name: &str,
        peer_id: &str,
        version: u32,
        presented: &str,
    ) {
        if !self.conns.contains_key(&conn) {
            return;
        }
        let Some(room) = self.rooms.get_mut(room_name) else {
            return self.reject(conn, ErrorCode::InvalidResume, "the room is gone", false);
        };
        let Some(principal) = room.peer(peer_id).map(|p| p.principal.clone()) else {
            return self.reject(conn, ErrorCode::InvalidResume, "the peer has left", false);
        };
        let token = self
            .keys
            .issue(room_name, peer_id, &principal, self.limits.token_ttl);
        let joined = encode(&ServerMsg::Joined {
            version,
            room: room_name.to_string(),
            peer_id: peer_id.to_string(),
            resume_token: token.clone(),
            peers: room
                .peers
                .iter()
                .filter(|p| p.id != peer_id)
                .map(|p| PeerInfo {
                    id: p.id.clone(),
                    metadata: p.metadata.as_deref(),
                })
                .collect(),
            capacity: room.capacity,
            resumed: true,
        });
        let Some(peer) = room.peer_mut(peer_id) else {
            return;
        };
        // Spent, but a `joined` lost with its socket must not cost the peer its identity: the
        // token just presented stays good until the first renewal (the next `pong`), and only
        // against a dead socket (the liveness probe).
        peer.tokens = [token, presented.to_string()];
        let old = peer.conn.replace(conn);
        peer.gone_since = None;
        let queued: Vec<(L::Text, Option<ShareGuard>)> = peer.queue.drain(..).collect();
        send(&self.conns, conn, Outgoing::Text(joined));
        for (frame, guard) in queued {
            let out = match guard {
                Some(guard) => Outgoing::Shared(frame, guard),
                None => Outgoing::Text(frame),
            };
            send(&self.conns, conn, out);
        }
        if let Some(old) = old.filter(|&old| old != conn) {
            self.set_member(old, None);
            send(
                &self.conns,
                old,
                Outgoing::Close(close_code::REPLACED, "resumed elsewhere"),
            );
        }
        self.room_changed(room_name);
        self.set_member(
            conn,
            Some(Membership {
                room: room_name.to_string(),
                peer_id: peer_id.to_string(),
            }),
        );
    }

    /// Settles resume probes: a sign of life from the old socket keeps its peer there; silence
    /// until the deadline (or the old socket closing) hands the peer to the new connection.
    fn settle_takeovers(&mut self, now: Instant) {
        enum Verdict {
            Wait,
            Drop,
            Refuse(&'static str),
            Resume,
        }
        let mut i = 0;
        while i < self.takeovers.len() {
            let t = &self.takeovers[i];
            let owner = self
                .rooms
                .get(&t.room)
                .and_then(|r| r.peer(&t.peer_id))
                .map(|p| p.conn);
            let old_seen = self
                .conns
                .get(&t.old)
                .map(|c| c.handle.seen.load(Ordering::Relaxed));
            let verdict = if !self.conns.contains_key(&t.conn) {
                Verdict::Drop
            } else {
                match owner {
                    None => Verdict::Refuse("the peer has left"),
                    // The old socket closed meanwhile: the peer waits for exactly this resume.
                    Some(None) => Verdict::Resume,
                    Some(Some(c)) if c != t.old => Verdict::Refuse("the peer resumed elsewhere"),
                    Some(Some(_)) if old_seen.is_some_and(|seen| seen != t.seen) => {
                        Verdict::Refuse("this peer is connected: its socket answered")
                    }
                    Some(Some(_)) if old_seen.is_none() || now >= t.deadline => Verdict::Resume,
                    Some(Some(_)) => Verdict::Wait,
                }
            };
            if let Verdict::Wait = verdict {
                i += 1;
                continue;
            }
            let t = self.takeovers.swap_remove(i);
            match verdict {
                Verdict::Wait | Verdict::Drop => {}
                Verdict::Refuse(why) => {
                    self.set_member(t.conn, None);
                    self.reject(t.conn, ErrorCode::InvalidResume, why, false);
                }
                Verdict::Resume => self.complete_resume(t.conn, &t.room, &t.peer_id, t.version, &t.token),
            }
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
        let Some(room) = self.rooms.get_mut(room) else {
            return;
        };
        let members = room.peers.len();
        let Some(target) = room.peer_mut(to).filter(|p| p.id != *peer_id) else {
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
        match deliver(
            &self.conns,
            target,
            frame,
            Cause::Relay(conn),
            members,
            queue_limit,
        ) {
            Ok(()) => {}
            Err(Refused::Away) => self.reject(
                conn,
                ErrorCode::QueueFull,
                format!("peer {to} is reconnecting and its queue is full"),
                false,
            ),
            Err(Refused::Share) => self.reject(
                conn,
                ErrorCode::QueueFull,
                format!("peer {to} is not reading as fast as you send: frame dropped"),
                false,
            ),
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
        let frame: L::Text = encode(&ServerMsg::MetadataUpdated {
            peer_id: peer_id.clone(),
            metadata: &metadata,
        });
        let (members, queue_limit) = (room.peers.len(), self.limits.resume_queue);
        let mut dropped = 0;
        for peer in &mut room.peers {
            if peer.id == *peer_id {
                peer.metadata = Some(metadata.clone());
            } else if deliver(
                &self.conns,
                peer,
                frame.clone(),
                Cause::Relay(conn),
                members,
                queue_limit,
            )
            .is_err()
            {
                dropped += 1;
            }
        }
        if dropped > 0 {
            self.reject(
                conn,
                ErrorCode::QueueFull,
                format!(
                    "{dropped} peer(s) are not reading as fast as you send: update not delivered to them"
                ),
                false,
            );
        }
    }

    /// The peer leaves for good; its connection stays open (the client closes it) but cannot
    /// join again.
    pub fn leave(&mut self, conn: ConnId) {
        let member = self.conns.get_mut(&conn).and_then(|c| {
            c.left = true;
            c.member.take()
        });
        self.set_member(conn, None);
        if let Some(Membership { room, peer_id }) = member {
            self.remove_peer(&room, &peer_id, LeaveReason::Left, Cause::Presence(conn));
        }
    }

    /// The server removes the peer now (heartbeat timeout, too many violations) and closes it.
    pub fn evict(&mut self, conn: ConnId, reason: LeaveReason, close: (u16, &'static str)) {
        let member = self.conns.get_mut(&conn).and_then(|c| c.member.take());
        self.set_member(conn, None);
        if let Some(Membership { room, peer_id }) = member {
            self.remove_peer(&room, &peer_id, reason, Cause::Server);
        }
        send(&self.conns, conn, Outgoing::Close(close.0, close.1));
    }

    /// The socket is gone without `leave`: the peer keeps its place for the grace period.
    pub fn disconnected(&mut self, conn: ConnId, now: Instant) {
        let Some(state) = self.conns.remove(&conn) else {
            return;
        };
        let Some(Membership { room, peer_id }) = state.member else {
            return self.settle_takeovers(now);
        };
        if let Some(room) = self.rooms.get_mut(&room) {
            for peer in &mut room.peers {
                peer.shares.remove(&conn);
                if peer.id == peer_id && peer.conn == Some(conn) {
                    peer.conn = None;
                    peer.gone_since = Some(now);
                }
            }
        }
        self.settle_takeovers(now);
    }

    /// Removes peers whose grace period ran out and settles resume probes. Call it periodically.
    pub fn tick(&mut self, now: Instant) {
        self.settle_takeovers(now);
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
            self.remove_peer(&room, &peer, LeaveReason::Timeout, Cause::Server);
        }
    }

    fn remove_peer(&mut self, room_name: &str, peer_id: &str, reason: LeaveReason, cause: Cause) {
        let Some(room) = self.rooms.get_mut(room_name) else {
            return;
        };
        let Some(index) = room.peers.iter().position(|p| p.id == peer_id) else {
            return;
        };
        let peer = room.peers.remove(index);
        let frame: L::Text = encode(&ServerMsg::PeerLeft {
            peer_id: peer.id,
            reason,
        });
        let (members, queue_limit) = (room.peers.len() + 1, self.limits.resume_queue);
        for other in &mut room.peers {
            let _ = deliver(&self.conns, other, frame.clone(), cause, members, queue_limit);
        }
        if room.peers.is_empty() {
            self.rooms.remove(room_name);
        }
        self.room_changed(room_name);
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

fn unix_ms() -> u64 {
    web_time::SystemTime::now()
        .duration_since(web_time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Token bucket for a connection's frames per second; time is an input.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
    /// The room scale the bucket last saw: a grown room adds its extra burst at once.
    scale: f64,
}

impl RateLimiter {
    pub fn new(rate_per_sec: u32, burst: u32, now: Instant) -> RateLimiter {
        let burst = f64::from(burst.max(1));
        RateLimiter {
            rate: f64::from(rate_per_sec),
            burst,
            tokens: burst,
            last: now,
            scale: 1.0,
        }
    }

    /// Takes one token if there is one.
    pub fn allow(&mut self, now: Instant) -> bool {
        self.allow_in_room(now, 0)
    }

    /// Takes one token, with the bucket scaled to a room of `members`: a client talks to every
    /// other member (an offer and a burst of ICE candidates each when it joins), so beyond 4
    /// others the rate and the burst grow in proportion (x3 with 12 others, x12 with 48).
    /// Relayed floods stay harmless to their targets either way (fair share).
    pub fn allow_in_room(&mut self, now: Instant, members: u32) -> bool {
        let scale = (f64::from(members.saturating_sub(1)) / 4.0).max(1.0);
        if scale > self.scale {
            self.tokens += self.burst * (scale - self.scale);
        }
        self.scale = scale;
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate * scale).min(self.burst * scale);
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

    use std::{cell::RefCell, rc::Rc};

    /// A bounded queue the test drains, like the server's channel.
    #[derive(Clone, Default)]
    struct Fake {
        queue: Rc<RefCell<VecDeque<Outgoing<String>>>>,
        capacity: usize,
        killed: Rc<std::cell::Cell<bool>>,
    }

    impl Link for Fake {
        type Text = String;
        fn try_send(&self, out: Outgoing<String>) -> Result<(), Full> {
            let mut queue = self.queue.borrow_mut();
            if queue.len() >= self.capacity {
                return Err(Full);
            }
            queue.push_back(out);
            Ok(())
        }
        fn kill(&self) {
            self.killed.set(true);
        }
    }

    type Hub = super::Hub<Fake>;

    fn connect(hub: &mut Hub, queue: usize) -> (ConnId, Fake) {
        let fake = Fake {
            capacity: queue,
            ..Fake::default()
        };
        (hub.register(ConnHandle::new(fake.clone())), fake)
    }

    impl Fake {
        fn is_killed(&self) -> bool {
            self.killed.get()
        }
        fn frames(&mut self) -> Vec<serde_json::Value> {
            let mut out = Vec::new();
            while let Some(item) = self.queue.borrow_mut().pop_front() {
                match item {
                    Outgoing::Text(text) | Outgoing::Shared(text, _) => {
                        out.push(serde_json::from_str(&text).unwrap())
                    }
                    Outgoing::Ping => out.push(serde_json::json!({"ping": true})),
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
            Instant::now(),
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
        assert!(fslow.is_killed());
        assert!(!ffast.is_killed());
    }

    #[test]
    fn a_sender_gets_its_fair_share_of_a_receiver_queue_and_the_excess_is_refused_to_it() {
        let mut hub = Hub::new(HubLimits::default(), ResumeKeys::new(None));
        let (victim, mut fv) = connect(&mut hub, OUTGOING_QUEUE);
        let (a, mut fa) = connect(&mut hub, OUTGOING_QUEUE);
        let (b, mut fb) = connect(&mut hub, OUTGOING_QUEUE);
        join(&mut hub, victim, "r");
        join(&mut hub, a, "r");
        join(&mut hub, b, "r");
        let victim_id = fv.frames()[0]["peerId"].as_str().unwrap().to_string();
        fa.frames();
        fb.frames();
        let share = fair_share(RELAY_BUDGET, 3) as usize;
        assert_eq!(share, RELAY_BUDGET / 2);
        for n in 0..share + 5 {
            hub.signal(a, &victim_id, &raw(&n.to_string()));
        }
        let refused = fa.frames();
        assert_eq!(refused.len(), 5, "{refused:?}");
        assert!(refused
            .iter()
            .all(|f| f["code"] == "queue-full" && f["fatal"] == false));
        // Another sender still has its own share; the victim is never cut off.
        hub.signal(b, &victim_id, &raw("1"));
        assert!(fb.frames().is_empty());
        assert!(!fv.is_killed());
        // Written frames give the places back.
        assert_eq!(fv.frames().len(), share + 1);
        hub.signal(a, &victim_id, &raw("\"again\""));
        assert!(fa.frames().is_empty());
    }

    #[test]
    fn fair_shares_shrink_with_the_room_but_not_below_the_minimum() {
        assert_eq!(fair_share(768, 2), 768);
        assert_eq!(fair_share(768, 13), 64);
        assert_eq!(fair_share(768, 50), MIN_SHARE as u32);
        assert_eq!(fair_share(256, 1), 256);
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
    fn rate_limits_grow_with_the_room_a_client_talks_to() {
        let t0 = Instant::now();
        let taken = |members: u32| {
            let mut limiter = RateLimiter::new(10, 20, t0);
            (0..1000)
                .take_while(|_| limiter.allow_in_room(t0, members))
                .count()
        };
        assert_eq!(taken(0), 20);
        assert_eq!(taken(5), 20, "small rooms: the configured burst");
        assert_eq!(taken(13), 60, "12 others: three times the burst");
        assert_eq!(taken(49), 240);
    }

    #[test]
    fn peer_ids_are_short_and_distinct() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| random_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|id| valid_peer_id(id) && id.len() <= 13));
    }
}
