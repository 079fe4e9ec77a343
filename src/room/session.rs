//! The session: joining a room, knowing who is in it, and staying in it through signaling
//! outages. Plain state machine: inputs are calls with `now` (ms), outputs are
//! [`SessionAction`]s the shell carries out, and [`Session::next_wake`] says when to call
//! [`Session::tick`].
//!
//! `idle → connecting → joined ⇄ reconnecting → left | failed`. Every transition is an action,
//! and nothing else changes the state. During `reconnecting` the peer connections stay up (media
//! keeps flowing). The session resumes with its token, keeps its peer id, and no one sees
//! leave or join.

use litemap::LiteMap;

use rtcroom_protocol::{
    close::{self, Recovery},
    ClientMsg, ErrorCode, LeaveReason, PeerInfo, ServerMsg, PROTOCOL_VERSION,
};

use crate::{
    error::{code, SdkError},
    signaling::retry::{Jitter, RetryPolicy},
    text::{cat, int},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    Idle,
    Connecting,
    Joined,
    Reconnecting,
    Left,
    Failed,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Idle => "idle",
            SessionState::Connecting => "connecting",
            SessionState::Joined => "joined",
            SessionState::Reconnecting => "reconnecting",
            SessionState::Left => "left",
            SessionState::Failed => "failed",
        }
    }

    fn over(self) -> bool {
        matches!(self, SessionState::Left | SessionState::Failed)
    }
}

/// Signals held while out of the room, at most (a call's worth of descriptions and candidates).
pub const MAX_HELD_SIGNALS: usize = 512;

#[derive(Debug, Clone)]
pub struct SessionConfig<J> {
    pub room: String,
    pub metadata: Option<J>,
    pub capacity: Option<u32>,
    pub retry: RetryPolicy,
    /// Tries for the first connection before `join()` rejects with `signaling-unreachable`.
    pub initial_attempts: u32,
    /// App-level ping interval, and the silence after which the socket counts as dead.
    pub heartbeat_interval_ms: f64,
    pub heartbeat_timeout_ms: f64,
    /// How long one attempt may take to open the transport. Separate from the heartbeat: a
    /// socket that never opens (a black-holed address) should fail fast, a quiet one need not.
    pub connect_timeout_ms: f64,
    /// Where the transport connects, for error messages only (no credentials in it).
    pub url: String,
    /// After a resume, a peer the server does not list yet may still be reconnecting itself
    /// (e.g. after a server restart): it is kept this long before `peer-left`.
    pub peer_rejoin_grace_ms: f64,
    /// How long the server keeps our place after the socket drops (its `--resume-grace-ms`).
    /// Within it, reconnect attempts come at least every fifth of it, whatever the backoff
    /// says: an outage of a few seconds must not end in a backoff that outlasts the grace and
    /// costs the peer its identity.
    pub resume_window_ms: f64,
    pub jitter_seed: u64,
}

impl<J> SessionConfig<J> {
    pub fn new(room: impl Into<String>) -> SessionConfig<J> {
        SessionConfig {
            room: room.into(),
            metadata: None,
            capacity: None,
            retry: RetryPolicy::default(),
            initial_attempts: 3,
            heartbeat_interval_ms: 5000.0,
            heartbeat_timeout_ms: 15_000.0,
            connect_timeout_ms: 10_000.0,
            url: String::new(),
            peer_rejoin_grace_ms: 15_000.0,
            resume_window_ms: 10_000.0,
            jitter_seed: 1,
        }
    }
}

/// What the shell does next.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionAction<J> {
    Transition {
        from: SessionState,
        to: SessionState,
        reason: &'static str,
    },
    /// Open the signaling transport (a new socket each time).
    OpenTransport,
    CloseTransport,
    Send(ClientMsg<J>),
    /// Settle the `join()` Promise.
    JoinResolved,
    JoinRejected(SdkError),
    /// Create a remote peer (and its RTCPeerConnection).
    PeerJoined {
        id: String,
        metadata: Option<J>,
    },
    /// Close and forget a remote peer.
    PeerLeft {
        id: String,
        reason: LeaveReason,
    },
    PeerMetadata {
        id: String,
        metadata: J,
    },
    /// A payload from a peer, for its negotiation.
    Signal {
        from: String,
        payload: J,
    },
    /// Tell each remote peer goodbye in-band (before `leave`).
    SayBye {
        to: Vec<String>,
    },
    /// An `error` event that does not end the session.
    Error(SdkError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Closed,
    Opening,
    Open,
}

pub struct Session<J> {
    config: SessionConfig<J>,
    state: SessionState,
    transport: Transport,
    local_id: Option<String>,
    resume_token: Option<String>,
    /// Sorted Vec maps (litemap): rooms are small, and a B-tree per key/value type cost ~20 KB
    /// of wasm.
    peers: LiteMap<String, Option<J>>,
    /// Peers not listed by the server after our resume, and since when (see `peer_rejoin_grace_ms`).
    unconfirmed: LiteMap<String, f64>,
    /// The current transport has our `joined`: signals can go out.
    in_room: bool,
    /// Signals made while out of the room (reconnecting, or before `joined` on a new socket),
    /// sent in order once resumed. An offer lost with a socket would leave its peer connection
    /// waiting for an answer for good.
    held_signals: Vec<(String, J)>,
    /// Failed attempts in the current outage (or before the first join).
    attempts: u32,
    /// When the current outage began (the socket of a joined session dropped).
    lost_at: Option<f64>,
    reconnect_at: Option<f64>,
    last_heard: f64,
    last_ping: f64,
    jitter: Jitter,
    out: Vec<SessionAction<J>>,
}

impl<J: Clone> Session<J> {
    pub fn new(config: SessionConfig<J>) -> Session<J> {
        let jitter = Jitter::new(config.jitter_seed);
        Session {
            config,
            state: SessionState::Idle,
            transport: Transport::Closed,
            local_id: None,
            resume_token: None,
            peers: LiteMap::new(),
            unconfirmed: LiteMap::new(),
            in_room: false,
            held_signals: Vec::new(),
            attempts: 0,
            lost_at: None,
            reconnect_at: None,
            last_heard: 0.0,
            last_ping: 0.0,
            jitter,
            out: Vec::new(),
        }
    }

    pub fn state(&self) -> SessionState {
        self.state
    }

    /// Whether signals go out now (the current socket has our `joined`).
    pub fn in_room(&self) -> bool {
        self.in_room
    }

    pub fn local_id(&self) -> Option<&str> {
        self.local_id.as_deref()
    }

    /// Ids of the remote peers, sorted.
    pub fn peer_ids(&self) -> impl Iterator<Item = &str> {
        self.peers.keys().map(String::as_str)
    }

    pub fn peer_metadata(&self, id: &str) -> Option<&J> {
        self.peers.get(id).and_then(Option::as_ref)
    }

    /// Takes the actions produced so far, in order.
    pub fn drain(&mut self) -> Vec<SessionAction<J>> {
        std::mem::take(&mut self.out)
    }

    /// When [`tick`](Self::tick) next has something to do (ms), if ever.
    pub fn next_wake(&self) -> Option<f64> {
        match (self.transport, self.state) {
            (_, s) if s.over() => None,
            (Transport::Closed, _) => self.reconnect_at,
            (Transport::Opening, _) => Some(self.last_heard + self.config.connect_timeout_ms),
            (Transport::Open, _) => Some(
                (self.last_ping + self.config.heartbeat_interval_ms)
                    .min(self.last_heard + self.config.heartbeat_timeout_ms),
            ),
        }
        .into_iter()
        .chain(
            self.unconfirmed
                .values()
                .map(|since| since + self.config.peer_rejoin_grace_ms),
        )
        .reduce(f64::min)
    }

    fn go(&mut self, to: SessionState, reason: &'static str) {
        if self.state != to {
            self.out.push(SessionAction::Transition {
                from: self.state,
                to,
                reason,
            });
            self.state = to;
        }
    }

    fn open(&mut self, now: f64) {
        self.transport = Transport::Opening;
        self.reconnect_at = None;
        self.last_heard = now;
        self.out.push(SessionAction::OpenTransport);
    }

    /// Ends the session for good: peers closed, transport closed, no more timers.
    fn fail(&mut self, error: SdkError) {
        let joining = self.state == SessionState::Connecting;
        self.drop_all_peers(LeaveReason::Left);
        if self.transport != Transport::Closed {
            self.transport = Transport::Closed;
            self.in_room = false;
            self.out.push(SessionAction::CloseTransport);
        }
        self.reconnect_at = None;
        let reason = error.code;
        if joining {
            self.out.push(SessionAction::JoinRejected(error));
        } else {
            self.out
                .push(SessionAction::Error(SdkError { fatal: true, ..error }));
        }
        self.go(SessionState::Failed, reason);
    }

    fn drop_all_peers(&mut self, reason: LeaveReason) {
        self.unconfirmed.clear();
        self.held_signals.clear();
        for (id, _) in std::mem::take(&mut self.peers) {
            self.out.push(SessionAction::PeerLeft { id, reason });
        }
    }

    /// `join()`: starts from `idle`. While a join is pending this one waits for the same
    /// outcome; once in the room (`joined`, `reconnecting`) it resolves at once; after the end
    /// (`left`, `failed`) it rejects.
    pub fn join(&mut self, now: f64) {
        match self.state {
            SessionState::Idle => {
                self.go(SessionState::Connecting, "join");
                self.open(now);
            }
            SessionState::Connecting => {}
            SessionState::Joined | SessionState::Reconnecting => self.out.push(SessionAction::JoinResolved),
            SessionState::Left | SessionState::Failed => {
                let error = SdkError::new(
                    code::INVALID_STATE,
                    cat(&["join() in state ", self.state.as_str()]),
                    false,
                );
                self.out.push(SessionAction::JoinRejected(error));
            }
        }
    }

    /// `leave()`: bye to every peer, `leave` to the server, everything closed.
    pub fn leave(&mut self) {
        if self.state.over() || self.state == SessionState::Idle {
            if self.state == SessionState::Idle {
                self.go(SessionState::Left, "leave");
            }
            return;
        }
        let joining = self.state == SessionState::Connecting;
        if self.transport == Transport::Open {
            let to: Vec<String> = self.peers.keys().cloned().collect();
            if !to.is_empty() {
                self.out.push(SessionAction::SayBye { to });
            }
            self.out.push(SessionAction::Send(ClientMsg::Leave));
        }
        if self.transport != Transport::Closed {
            self.out.push(SessionAction::CloseTransport);
            self.transport = Transport::Closed;
            self.in_room = false;
        }
        self.drop_all_peers(LeaveReason::Left);
        self.reconnect_at = None;
        if joining {
            let error = SdkError::new(code::INVALID_STATE, "left before the join completed", false);
            self.out.push(SessionAction::JoinRejected(error));
        }
        self.go(SessionState::Left, "leave");
    }

    /// The transport is open: (re)join, with the resume token when there is one.
    pub fn transport_open(&mut self, now: f64) {
        if self.transport != Transport::Opening {
            return;
        }
        self.transport = Transport::Open;
        self.in_room = false;
        self.last_heard = now;
        self.last_ping = now;
        self.send_join();
    }

    fn send_join(&mut self) {
        self.out.push(SessionAction::Send(ClientMsg::Join {
            room: Some(self.config.room.clone()),
            version: PROTOCOL_VERSION,
            metadata: self.config.metadata.clone(),
            resume: self.resume_token.clone(),
            capacity: self.config.capacity,
        }));
    }

    /// Metadata for this peer: stored for future (re)joins and sent now if joined.
    pub fn update_metadata(&mut self, metadata: J) {
        self.config.metadata = Some(metadata.clone());
        if self.transport == Transport::Open && self.state == SessionState::Joined {
            self.out
                .push(SessionAction::Send(ClientMsg::Metadata { metadata }));
        }
    }

    /// Sends `payload` to peer `to` now, or, while out of the room, once the session resumes
    /// (at most [`MAX_HELD_SIGNALS`], the oldest dropped first). False when `to` is unknown.
    pub fn signal(&mut self, to: &str, payload: J) -> bool {
        if !self.peers.contains_key(to) {
            return false;
        }
        if self.in_room {
            self.out.push(SessionAction::Send(ClientMsg::Signal {
                to: to.to_string(),
                payload,
            }));
        } else {
            if self.held_signals.len() >= MAX_HELD_SIGNALS {
                self.held_signals.remove(0);
            }
            self.held_signals.push((to.to_string(), payload));
        }
        true
    }

    /// A remote peer said `bye` in-band: it is gone now, before the server's `peer-left`.
    pub fn peer_bye(&mut self, id: &str) {
        self.held_signals.retain(|(to, _)| to != id);
        if self.peers.remove(id).is_some() {
            self.out.push(SessionAction::PeerLeft {
                id: id.to_string(),
                reason: LeaveReason::Left,
            });
        }
    }

    pub fn message(&mut self, msg: ServerMsg<J>, now: f64) {
        if self.state.over() || self.transport != Transport::Open {
            return;
        }
        self.last_heard = now;
        match msg {
            ServerMsg::Joined {
                peer_id,
                resume_token,
                peers,
                resumed,
                ..
            } => self.joined(peer_id, resume_token, peers, resumed, now),
            ServerMsg::PeerJoined { peer } => {
                // A peer we still know (it resumed after us) is confirmed, not new.
                if self.unconfirmed.remove(&peer.id).is_some() {
                    self.release_held(Some(&peer.id));
                }
                if Some(peer.id.as_str()) != self.local_id() && !self.peers.contains_key(&peer.id) {
                    self.peers.insert(peer.id.clone(), peer.metadata.clone());
                    self.out.push(SessionAction::PeerJoined {
                        id: peer.id,
                        metadata: peer.metadata,
                    });
                }
            }
            ServerMsg::PeerLeft { peer_id, reason } => {
                self.unconfirmed.remove(&peer_id);
                self.held_signals.retain(|(to, _)| *to != peer_id);
                if self.peers.remove(&peer_id).is_some() {
                    self.out.push(SessionAction::PeerLeft { id: peer_id, reason });
                }
            }
            ServerMsg::Signal { from, payload } => {
                if self.peers.contains_key(&from) {
                    self.out.push(SessionAction::Signal { from, payload });
                }
            }
            ServerMsg::MetadataUpdated { peer_id, metadata } => {
                if let Some(slot) = self.peers.get_mut(&peer_id) {
                    *slot = Some(metadata.clone());
                    self.out.push(SessionAction::PeerMetadata {
                        id: peer_id,
                        metadata,
                    });
                }
            }
            ServerMsg::RoomFull { room, capacity } => {
                self.fail(SdkError::new(
                    code::ROOM_FULL,
                    cat(&["room ", &room, " is full (", &int(capacity.into()), " peers)"]),
                    true,
                ));
            }
            // A signal to a peer that had just left (or to one not back since our resume): an
            // expected race, nothing for the app.
            ServerMsg::Error {
                code: ErrorCode::UnknownPeer,
                ..
            } => {}
            ServerMsg::Error {
                code: ErrorCode::InvalidResume,
                ..
            } => {
                // Our place expired while we were away: join afresh (new id) on this socket.
                self.resume_token = None;
                self.send_join();
            }
            ServerMsg::Error {
                code: error_code,
                message,
                fatal,
            } => {
                let sdk_code = match error_code {
                    ErrorCode::Unauthorized | ErrorCode::DuplicatePeer => code::UNAUTHORIZED,
                    ErrorCode::RoomLimit => code::ROOM_FULL,
                    ErrorCode::UnsupportedVersion => code::PROTOCOL,
                    _ => code::SERVER,
                };
                let error = SdkError::new(sdk_code, cat(&[error_code.as_str(), ": ", &message]), fatal);
                if fatal {
                    self.fail(error);
                } else {
                    self.out.push(SessionAction::Error(error));
                }
            }
            ServerMsg::Pong { resume_token, .. } => {
                // Tokens are short-lived: the newest one is what a resume presents.
                if resume_token.is_some() {
                    self.resume_token = resume_token;
                }
            }
        }
    }

    fn joined(
        &mut self,
        peer_id: String,
        resume_token: String,
        peers: Vec<PeerInfo<J>>,
        resumed: bool,
        now: f64,
    ) {
        let same_identity = resumed && self.local_id.as_deref() == Some(peer_id.as_str());
        if !same_identity && self.local_id.is_some() {
            // A new identity: the old peer connections belong to an id the others will see leave.
            self.drop_all_peers(LeaveReason::Timeout);
        }
        self.local_id = Some(peer_id);
        self.resume_token = Some(resume_token);
        self.attempts = 0;
        self.lost_at = None;
        let listed: Vec<String> = peers.iter().map(|p| p.id.clone()).collect();
        // Known peers the server does not list: they left while we were away (their queued
        // peer-left follows) or they have not resumed yet (after a server restart). Either way
        // they get `peer_rejoin_grace_ms` before we give up on them.
        self.unconfirmed.retain(|id, _| !listed.contains(id));
        for id in self.peers.keys().filter(|id| !listed.contains(id)) {
            self.unconfirmed.entry(id.clone()).or_insert(now);
        }
        let was_connecting = self.state == SessionState::Connecting;
        self.go(
            SessionState::Joined,
            if same_identity { "resumed" } else { "joined" },
        );
        if was_connecting {
            self.out.push(SessionAction::JoinResolved);
        }
        for peer in peers {
            if !self.peers.contains_key(&peer.id) {
                self.peers.insert(peer.id.clone(), peer.metadata.clone());
                self.out.push(SessionAction::PeerJoined {
                    id: peer.id,
                    metadata: peer.metadata,
                });
            }
        }
        self.in_room = true;
        self.release_held(None);
    }

    /// Sends the held signals for `peer` (every confirmed peer when `None`); those for peers
    /// not back yet (unconfirmed) stay held.
    fn release_held(&mut self, peer: Option<&str>) {
        if !self.in_room {
            return;
        }
        for (to, payload) in std::mem::take(&mut self.held_signals) {
            let due = peer.is_none_or(|p| p == to) && !self.unconfirmed.contains_key(&to);
            if due && self.peers.contains_key(&to) {
                self.out
                    .push(SessionAction::Send(ClientMsg::Signal { to, payload }));
            } else if self.peers.contains_key(&to) {
                self.held_signals.push((to, payload));
            }
        }
    }

    /// The transport closed (or failed to open). `close_code` is the WebSocket close code (1006
    /// when the connection failed or dropped); `close::recovery` decides what follows.
    pub fn transport_closed(&mut self, close_code: u16, reason: &str, now: f64) {
        if self.transport == Transport::Closed || self.state.over() {
            return;
        }
        self.transport = Transport::Closed;
        self.in_room = false;
        let reason_or = |fallback: &str| {
            if reason.is_empty() {
                fallback.to_string()
            } else {
                reason.to_string()
            }
        };
        let (kind, message) = match close::recovery(close_code) {
            Recovery::Reconnect => {
                let failure = if reason.is_empty() {
                    cat(&["close ", &int(close_code.into())])
                } else {
                    cat(&["close ", &int(close_code.into()), " ", reason])
                };
                return self.retry_later(failure, now);
            }
            Recovery::Refused => (code::UNAUTHORIZED, reason_or("refused by the server")),
            Recovery::Replaced => (code::SIGNALING_CLOSED, "this session resumed elsewhere".into()),
            Recovery::Kicked => (
                code::SIGNALING_CLOSED,
                reason_or("removed from the room for too many violations"),
            ),
        };
        self.fail(SdkError::new(kind, message, true));
    }

    /// One attempt failed (`failure` says how, for the final message): schedule the next one
    /// with backoff, or give up once the attempt budget is spent.
    fn retry_later(&mut self, failure: String, now: f64) {
        self.transport = Transport::Closed;
        self.in_room = false;
        self.attempts += 1;
        let url = &self.config.url;
        if self.state == SessionState::Connecting && self.local_id.is_none() {
            if self.attempts >= self.config.initial_attempts.max(1) {
                let attempts = int(self.attempts.into());
                let message = cat(&[
                    "signaling unreachable at ",
                    url,
                    " after ",
                    &attempts,
                    " attempts (last: ",
                    &failure,
                    ")",
                ]);
                return self.fail(SdkError::new(code::SIGNALING_UNREACHABLE, message, true));
            }
        } else {
            if self.config.retry.exhausted(self.attempts.saturating_sub(1)) {
                let attempts = int((self.attempts - 1).into());
                let message = cat(&[
                    "signaling at ",
                    url,
                    " lost; gave up after ",
                    &attempts,
                    " attempts (last: ",
                    &failure,
                    ")",
                ]);
                return self.fail(SdkError::new(code::SIGNALING_UNREACHABLE, message, true));
            }
            self.go(SessionState::Reconnecting, "signaling-lost");
        }
        let mut delay = self
            .config
            .retry
            .delay_ms(self.attempts - 1, self.jitter.next_unit());
        if self.local_id.is_some() {
            let lost_at = *self.lost_at.get_or_insert(now);
            let window = self.config.resume_window_ms;
            if now - lost_at < window {
                delay = delay.min(window / 5.0);
            }
        }
        self.reconnect_at = Some(now + delay);
    }

    /// Timers: reconnects, app-level pings, the heartbeat timeout, unconfirmed peers.
    pub fn tick(&mut self, now: f64) {
        if self.state.over() {
            return;
        }
        let grace = self.config.peer_rejoin_grace_ms;
        let expired: Vec<String> = self
            .unconfirmed
            .iter()
            .filter(|(_, since)| now - **since >= grace)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            self.unconfirmed.remove(&id);
            self.held_signals.retain(|(to, _)| *to != id);
            if self.peers.remove(&id).is_some() {
                self.out.push(SessionAction::PeerLeft {
                    id,
                    reason: LeaveReason::Timeout,
                });
            }
        }
        match self.transport {
            Transport::Closed if self.reconnect_at.is_some_and(|t| now >= t) => self.open(now),
            Transport::Opening if now - self.last_heard >= self.config.connect_timeout_ms => {
                // Stuck connecting (e.g. a black-holed address): drop this socket, try again.
                self.out.push(SessionAction::CloseTransport);
                let ms = self.config.connect_timeout_ms as u64;
                self.retry_later(cat(&["not open within ", &int(ms as i64), " ms"]), now);
            }
            Transport::Open if now - self.last_heard >= self.config.heartbeat_timeout_ms => {
                // Silent too long: drop this socket and reconnect.
                self.out.push(SessionAction::CloseTransport);
                let ms = self.config.heartbeat_timeout_ms as u64;
                self.retry_later(cat(&["nothing heard for ", &int(ms as i64), " ms"]), now);
            }
            Transport::Open if now - self.last_ping >= self.config.heartbeat_interval_ms => {
                self.last_ping = now;
                self.out
                    .push(SessionAction::Send(ClientMsg::Ping { ts: Some(now) }));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
