//! The room: every decision of a call, as plain Rust with one way in and one way out.
//!
//! [`Room::handle`] takes an [`Input`] (an app call, a transport or browser event, the result
//! of a browser operation, a tick of the one timer) with the time; [`Room::poll_output`] gives
//! what to do, ending each round with [`Output::Timeout`], the one wake-up of the whole room.
//! Nothing here reads a clock, touches the browser or calls the app (the str0m pattern): the
//! executor in the browser carries outputs out and feeds results back, and native tests drive
//! several rooms against each other in simulated time.
//!
//! Inside: the [`Session`] (membership, join/resume, heartbeat, reconnects), per remote peer its
//! [`Negotiation`] (perfect negotiation, early candidates), [`PeerLife`] (state, ICE restarts),
//! remote stream roles and getStats schedule, and the call's stats [`Trace`]. The trace is fed
//! from the same operations and events the room handles, so it is open before the first peer
//! connection and closed after the last one because the room orders it so:
//! - `join`: the trace connects first; signaling starts once its socket is open (or after
//!   `connect_timeout_ms`, with a `stats-unavailable` error);
//! - `leave`: a final getStats of every peer connection, then bye and close, then the trace is
//!   closed and `LeaveDone` comes once it is flushed (or after `leave_flush_ms`);
//! - a peer that leaves mid-call: its connection closes after its final getStats (bounded).

use std::collections::VecDeque;

use litemap::LiteMap;
use rtcroom_protocol::{
    ClientMsg, IceCandidate, LeaveReason, SdpKind, SessionDescription, SignalPayload, StreamRole,
};

use super::{
    io::{
        BrowserCall, Input, LocalStream, OpId, OpOutput, Output, Payload, PcEvent, PcId, RequestId,
        RoomEvent, TraceSocketEvent, TransportOp,
    },
    session::{Session, SessionAction, SessionConfig, SessionState},
};
use crate::{
    error::{code, SdkError},
    peer::{
        lifecycle::{IcePolicy, PeerAction, PeerLife, PeerState},
        negotiation::{CandidateStep, DescriptionStep, Negotiation, SignalingState},
    },
    stats::{
        methods::{CLOSE, GET_STATS},
        summarize, Action as TraceAction, PollSchedule, Trace, TraceConfig, Value,
    },
};

/// Stats of a call: periodic getStats for `stats` events, and with a collector, the trace.
#[derive(Debug, Clone)]
pub struct StatsOptions {
    /// A collector is configured: the call is traced (the executor knows its URL).
    pub collector: bool,
    /// getStats period once connected (ms); 0: only the first and the final sample.
    pub interval_ms: f64,
    pub trace: TraceConfig,
    /// How long `join` waits for the collector before going on without it.
    pub connect_timeout_ms: f64,
    /// How long `leave` waits for the trace to be flushed.
    pub leave_flush_ms: f64,
}

impl Default for StatsOptions {
    fn default() -> Self {
        StatsOptions {
            collector: false,
            interval_ms: crate::stats::poll::DEFAULT_INTERVAL_MS,
            trace: TraceConfig::default(),
            connect_timeout_ms: 5000.0,
            leave_flush_ms: 1000.0,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RoomConfig<J> {
    pub session: SessionConfig<J>,
    pub ice: IcePolicy,
    pub stats: Option<StatsOptions>,
    /// The `RTCConfiguration` every peer connection gets, as the trace records it (the trace
    /// removes credentials).
    pub rtc_configuration: Value,
}

impl<J> RoomConfig<J> {
    pub fn new(room: impl Into<String>) -> RoomConfig<J> {
        RoomConfig {
            session: SessionConfig::new(room),
            ice: IcePolicy::default(),
            stats: None,
            rtc_configuration: Value::object(),
        }
    }
}

/// The label and id of the data channel every peer connection has, pre-negotiated.
pub const DATA_CHANNEL: (&str, u16) = ("rtcroom", 0);
/// Descriptions kept per peer for a resync: an outage may swallow an answer and the offer that
/// followed it, and a collision one more.
const HISTORY: usize = 4;
/// How long a final getStats may take before its peer connection is closed anyway (Firefox
/// never settles a getStats started just before a close).
const FINAL_STATS_MS: f64 = 1000.0;

/// Why a getStats was taken.
#[derive(Debug, Clone, PartialEq)]
enum StatsFor {
    /// The schedule (`reason`: the trace's extra, e.g. "connected-0").
    Poll {
        reason: Option<String>,
    },
    /// Right before the pc closes.
    Final,
    Request(RequestId),
}

/// What an operation in flight was for.
#[derive(Debug, Clone, PartialEq)]
enum Pending {
    Create,
    SetLocal,
    SetRemote {
        answer: bool,
    },
    AddCandidate,
    /// One track of a stream sent to (taken from) a pc; the calls for one stream share a
    /// `batch`, whose first failure is reported once.
    AddTrack {
        batch: u32,
    },
    RemoveTrack {
        batch: u32,
    },
    RestartIce,
    Stats(StatsFor),
}

/// One remote peer.
#[derive(Debug)]
struct Peer {
    pc: PcId,
    negotiation: Negotiation,
    life: PeerLife,
    /// When `life` wants a tick.
    life_wake: Option<f64>,
    signaling: SignalingState,
    /// Roles the other side announced with its descriptions (stream id → role).
    remote_roles: LiteMap<String, String>,
    /// Streams announced with `stream-added` (stream id → role).
    remote_streams: LiteMap<String, String>,
    /// Local tracks sent on this pc: (track id, stream id).
    tracks: Vec<(String, String)>,
    poll: Option<PollSchedule>,
    last_stats: Option<Value>,
    /// What this side sent of the exchange lately: its last few descriptions (with their
    /// numbers) and the candidates of its current ICE generation. Sent again, in order, after
    /// a resume: a socket that died may have taken any of them along (an offer or answer lost
    /// in flight leaves both sides waiting for good), and the other side drops what it has seen.
    history: Vec<(SessionDescription, u32)>,
    candidates: Vec<Option<IceCandidate>>,
    /// The ICE ufrag of the latest remote description being applied: candidates of another
    /// (an earlier ICE generation, sent again after an outage) can only fail, so they are
    /// dropped.
    remote_ufrag: Option<String>,
    /// Descriptions sent (numbered 1, 2, …) and the highest number received: a description
    /// seen already (sent again after an outage) is dropped, or it would be taken for a new one.
    sent_seq: u32,
    seen_seq: u32,
}

/// A peer connection whose peer is gone, waiting for its final getStats before closing.
#[derive(Debug)]
struct Closing {
    pc: PcId,
    deadline: f64,
}

/// Where `join` is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum JoinPhase {
    Idle,
    /// The trace's socket is opening; signaling waits until `deadline`.
    WaitingForTrace {
        deadline: f64,
    },
    Started,
}

/// Where `leave` is.
#[derive(Debug, Clone, PartialEq)]
enum LeavePhase {
    None,
    /// Final getStats of these pcs, until `deadline`.
    FinalStats {
        waiting: Vec<PcId>,
        deadline: f64,
        stop_tracks: bool,
    },
    /// Bye sent, peer connections closing; the trace closes at `trace_at` (the next tick:
    /// records that the tracks' stops make come first).
    Closing {
        trace_at: f64,
    },
    /// The trace delivers what it holds, until `deadline`.
    Flushing {
        deadline: f64,
    },
    Done,
}

/// The call's trace: the sans-IO trace, this call's generation, and what the room knows of it.
#[derive(Debug)]
struct CallTrace {
    trace: Trace,
    generation: Option<u32>,
    /// The socket of this call's generation (for `join`'s wait).
    socket: Option<u32>,
    /// Trace ids ("PC_0", …) of the traced peer connections.
    pcs: LiteMap<PcId, String>,
    /// Wake-ups the trace asked for, per generation.
    timers: LiteMap<u32, f64>,
}

pub struct Room<J: Payload> {
    session: Session<J>,
    ice: IcePolicy,
    stats: Option<StatsOptions>,
    rtc_configuration: Value,
    trace: Option<CallTrace>,
    peers: LiteMap<String, Peer>,
    closing: Vec<Closing>,
    /// pc → the peer id it belongs to (also for closing pcs).
    pc_owner: LiteMap<PcId, String>,
    ops: LiteMap<OpId, (PcId, Pending)>,
    local: Vec<LocalStream>,
    next_pc: PcId,
    next_op: OpId,
    next_batch: u32,
    /// Track batches whose failure was reported (one error per stream and peer).
    failed_batches: Vec<u32>,
    transport: u32,
    join: JoinPhase,
    leave: LeavePhase,
    out: VecDeque<Output<J>>,
    now: f64,
}

fn error(code: &'static str, message: impl Into<String>) -> SdkError {
    SdkError::new(code, message, false)
}

fn description_value(d: &SessionDescription) -> Value {
    Value::Object(vec![
        ("type".into(), Value::str(sdp_kind_str(d.kind))),
        ("sdp".into(), Value::str(&d.sdp)),
    ])
}

fn sdp_kind_str(kind: SdpKind) -> &'static str {
    match kind {
        SdpKind::Offer => "offer",
        SdpKind::Answer => "answer",
        SdpKind::Pranswer => "pranswer",
        SdpKind::Rollback => "rollback",
    }
}

/// A candidate as `RTCIceCandidate.toJSON()` gives it.
fn candidate_value(c: &Option<IceCandidate>) -> Value {
    let Some(c) = c else { return Value::Null };
    let opt_str = |s: &Option<String>| s.as_deref().map_or(Value::Null, Value::str);
    Value::Object(vec![
        ("candidate".into(), Value::str(&c.candidate)),
        ("sdpMid".into(), opt_str(&c.sdp_mid)),
        (
            "sdpMLineIndex".into(),
            c.sdp_m_line_index
                .map_or(Value::Null, |i| Value::Number(f64::from(i))),
        ),
        ("usernameFragment".into(), opt_str(&c.username_fragment)),
    ])
}

/// The session-level `a=ice-ufrag:` of an SDP (the first one: bundled media share it).
fn ice_ufrag(sdp: &str) -> Option<&str> {
    const KEY: &[u8] = b"a=ice-ufrag:";
    // Bytes, not `str::find`: that links the two-way searcher into the wasm.
    let start = sdp.as_bytes().windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let rest = sdp.get(start..)?;
    let end = rest
        .bytes()
        .position(|b| b == b'\r' || b == b'\n')
        .unwrap_or(rest.len());
    rest.get(..end)
}

/// Whether a remote candidate belongs to the ICE generation of `ufrag` (no ufrag on either
/// side: assume so).
fn same_generation(candidate: &Option<IceCandidate>, ufrag: Option<&str>) -> bool {
    match (
        candidate.as_ref().and_then(|c| c.username_fragment.as_deref()),
        ufrag,
    ) {
        (Some(c), Some(u)) => c == u,
        _ => true,
    }
}

/// `kind:trackId stream:streamId`, as rtcstats-js writes tracks.
fn track_info(kind: &str, track: &str, stream: Option<&str>) -> Value {
    let mut text = String::with_capacity(kind.len() + track.len() + 16);
    text.push_str(kind);
    text.push(':');
    text.push_str(track);
    if let Some(stream) = stream {
        text.push_str(" stream:");
        text.push_str(stream);
    }
    Value::String(text)
}

impl<J: Payload> Room<J> {
    pub fn new(config: RoomConfig<J>) -> Room<J> {
        let trace = config.stats.as_ref().filter(|s| s.collector).map(|s| CallTrace {
            trace: Trace::new(s.trace.clone()),
            generation: None,
            socket: None,
            pcs: LiteMap::new(),
            timers: LiteMap::new(),
        });
        Room {
            session: Session::new(config.session),
            ice: config.ice,
            stats: config.stats,
            rtc_configuration: config.rtc_configuration,
            trace,
            peers: LiteMap::new(),
            closing: Vec::new(),
            pc_owner: LiteMap::new(),
            ops: LiteMap::new(),
            local: Vec::new(),
            next_pc: 1,
            next_op: 1,
            next_batch: 0,
            failed_batches: Vec::new(),
            transport: 0,
            join: JoinPhase::Idle,
            leave: LeavePhase::None,
            out: VecDeque::new(),
            now: 0.0,
        }
    }

    // ---------------------------------------------------------------------------------------
    // What the executor (and its getters) read
    // ---------------------------------------------------------------------------------------

    pub fn state(&self) -> SessionState {
        self.session.state()
    }

    pub fn local_id(&self) -> Option<&str> {
        self.session.local_id()
    }

    /// Remote peer ids, sorted.
    pub fn peer_ids(&self) -> impl Iterator<Item = &str> {
        self.peers.keys().map(String::as_str)
    }

    pub fn peer_pc(&self, peer: &str) -> Option<PcId> {
        self.peers.get(peer).map(|p| p.pc)
    }

    pub fn peer_state(&self, peer: &str) -> Option<PeerState> {
        self.peers.get(peer).map(|p| p.life.state())
    }

    pub fn peer_metadata(&self, peer: &str) -> Option<&J> {
        self.session.peer_metadata(peer)
    }

    /// `(stream id, role)` of the streams a peer sends us.
    pub fn peer_streams(&self, peer: &str) -> Vec<(&str, &str)> {
        self.peers.get(peer).map_or(Vec::new(), |p| {
            p.remote_streams
                .iter()
                .map(|(s, r)| (s.as_str(), r.as_str()))
                .collect()
        })
    }

    /// The generation of this call's trace, while it accepts records.
    pub fn trace_generation(&self) -> Option<u32> {
        let t = self.trace.as_ref()?;
        t.generation.filter(|g| t.trace.current_generation() == Some(*g))
    }

    /// Counters of the call's trace (`recorded`, `delivered`, …), for diagnostics and tests.
    pub fn trace_counters(&self) -> Option<crate::stats::Counters> {
        let t = self.trace.as_ref()?;
        t.trace.counters(t.generation?)
    }

    /// True once nothing is left to do: left or failed, every pc closed, the trace idle.
    pub fn is_finished(&self) -> bool {
        matches!(self.state(), SessionState::Left | SessionState::Failed)
            && self.closing.is_empty()
            && self.trace.as_ref().is_none_or(|t| t.trace.is_idle())
    }

    // ---------------------------------------------------------------------------------------
    // The way in and the way out
    // ---------------------------------------------------------------------------------------

    /// Feeds one input at `now` (ms).
    pub fn handle(&mut self, input: Input<J>, now: f64) {
        self.now = now;
        match input {
            Input::Join { client_info } => self.join(client_info),
            Input::Leave { stop_tracks } => self.leave(stop_tracks),
            Input::AddStream(stream) => self.add_stream(stream),
            Input::RemoveStream { stream } => self.remove_stream(&stream),
            Input::UpdateMetadata(metadata) => self.session.update_metadata(metadata),
            Input::RestartIce { peer } => {
                if let Some(pc) = self.peer_pc(&peer) {
                    self.call(pc, BrowserCall::RestartIce, Some(Pending::RestartIce));
                }
            }
            Input::PeerStats { peer, request } => match self.peer_pc(&peer) {
                Some(pc) => self.call(
                    pc,
                    BrowserCall::GetStats,
                    Some(Pending::Stats(StatsFor::Request(request))),
                ),
                None => self.event(RoomEvent::StatsReply {
                    request,
                    result: Err(SdkError::new(code::INVALID_STATE, "this peer has left", false)),
                }),
            },
            Input::TraceRecord {
                generation,
                method,
                value,
                extra,
            } => {
                if let Some(t) = self.trace.as_mut() {
                    t.trace.record(generation, now, &method, None, value, extra);
                }
            }
            Input::TransportOpen { transport } if transport == self.transport => {
                self.session.transport_open(now)
            }
            Input::TransportMessage { transport, msg } if transport == self.transport => {
                self.session.message(msg, now)
            }
            Input::TransportGarbage { transport } if transport == self.transport => self.event(
                RoomEvent::Error(error(code::PROTOCOL, "unreadable frame from the server")),
            ),
            Input::TransportClosed {
                transport,
                code: close_code,
                reason,
            } if transport == self.transport => self.session.transport_closed(close_code, &reason, now),
            Input::TransportOpen { .. }
            | Input::TransportMessage { .. }
            | Input::TransportGarbage { .. }
            | Input::TransportClosed { .. } => {}
            Input::Pc { pc, event } => self.pc_event(pc, event),
            Input::Done { op, result } => self.done(op, result),
            Input::TraceSocket(event) => self.trace_socket(event),
            Input::Tick => self.tick(),
        }
        self.settle();
    }

    /// The next thing to do; the last one of a round is always [`Output::Timeout`].
    pub fn poll_output(&mut self) -> Output<J> {
        match self.out.pop_front() {
            Some(out) => out,
            None => Output::Timeout(self.next_wake()),
        }
    }

    // ---------------------------------------------------------------------------------------
    // Internals
    // ---------------------------------------------------------------------------------------

    fn event(&mut self, event: RoomEvent<J>) {
        self.out.push_back(Output::Event(event));
    }

    /// Queues a browser call; records it in the trace when the pc is traced.
    fn call(&mut self, pc: PcId, call: BrowserCall, pending: Option<Pending>) {
        let op = pending.map(|pending| {
            let op = self.next_op;
            self.next_op = self.next_op.wrapping_add(1);
            self.ops.insert(op, (pc, pending));
            op
        });
        self.trace_call(pc, &call);
        self.out.push_back(Output::Browser { pc, op, call });
    }

    fn trace_call(&mut self, pc: PcId, call: &BrowserCall) {
        let (method, value) = match call {
            BrowserCall::Create { .. } | BrowserCall::GetStats => return,
            BrowserCall::Close => (CLOSE, Value::Null),
            BrowserCall::SetLocalDescription => ("setLocalDescription", Value::Null),
            BrowserCall::SetRemoteDescription(d) => ("setRemoteDescription", description_value(d)),
            BrowserCall::AddIceCandidate(c) => ("addIceCandidate", candidate_value(c)),
            BrowserCall::AddTrack { stream, track } => {
                let kind = self.track_kind(track).unwrap_or("unknown");
                ("addTrack", track_info(kind, track, Some(stream)))
            }
            BrowserCall::RemoveTrack { track } => {
                let kind = self.track_kind(track).unwrap_or("unknown");
                ("removeTrack", track_info(kind, track, None))
            }
            BrowserCall::RestartIce => ("restartIce", Value::Null),
        };
        self.trace_pc(pc, method, value, Vec::new());
    }

    fn track_kind(&self, track: &str) -> Option<&str> {
        self.local
            .iter()
            .flat_map(|s| s.tracks.iter())
            .find(|(id, _)| id == track)
            .map(|(_, kind)| kind.as_str())
    }

    /// A record for one traced pc of this call.
    fn trace_pc(&mut self, pc: PcId, method: &str, value: Value, extra: Vec<Value>) {
        let now = self.now;
        if let Some(t) = self.trace.as_mut() {
            if let (Some(generation), Some(id)) = (t.generation, t.pcs.get(&pc)) {
                t.trace.record(generation, now, method, Some(id), value, extra);
            }
        }
    }

    // ---- join and leave

    fn join(&mut self, client_info: Value) {
        match self.join {
            // The first join() of the session, below.
            JoinPhase::Idle if self.state() == SessionState::Idle => {}
            // The pending join settles for every caller at once.
            JoinPhase::WaitingForTrace { .. } => return,
            // The session answers: waits while connecting, resolves once joined, rejects after.
            _ => return self.session.join(self.now),
        }
        let now = self.now;
        let (Some(t), Some(stats)) = (self.trace.as_mut(), self.stats.as_ref()) else {
            self.join = JoinPhase::Started;
            return self.session.join(now);
        };
        let generation = t.trace.connect(now, client_info);
        t.generation = Some(generation);
        self.join = JoinPhase::WaitingForTrace {
            deadline: now + stats.connect_timeout_ms,
        };
    }

    /// The trace is open (or the wait is over): signaling starts.
    fn trace_ready(&mut self, late: bool) {
        if !matches!(self.join, JoinPhase::WaitingForTrace { .. }) {
            return;
        }
        self.join = JoinPhase::Started;
        if late {
            self.event(RoomEvent::Error(error(
                code::STATS_UNAVAILABLE,
                "the stats collector did not answer in time; the call goes on and the trace keeps trying",
            )));
        }
        if let Some(generation) = self.trace.as_ref().and_then(|t| t.generation) {
            self.event(RoomEvent::TraceStarted { generation });
        }
        self.session.join(self.now);
    }

    fn leave(&mut self, stop_tracks: bool) {
        match self.leave {
            LeavePhase::None => {}
            LeavePhase::Done => return self.event(RoomEvent::LeaveDone),
            _ => return,
        }
        if let JoinPhase::WaitingForTrace { .. } = self.join {
            // Left before signaling even started.
            self.join = JoinPhase::Started;
            self.event(RoomEvent::Joined(Err(SdkError::new(
                code::INVALID_STATE,
                "left before the join completed",
                false,
            ))));
        }
        let traced: Vec<PcId> = self
            .trace
            .as_ref()
            .map(|t| {
                self.peers
                    .values()
                    .map(|p| p.pc)
                    .filter(|pc| t.pcs.contains_key(pc))
                    .collect()
            })
            .unwrap_or_default();
        if traced.is_empty() {
            return self.finish_leave(stop_tracks);
        }
        for &pc in &traced {
            self.call(pc, BrowserCall::GetStats, Some(Pending::Stats(StatsFor::Final)));
        }
        self.leave = LeavePhase::FinalStats {
            waiting: traced,
            deadline: self.now + FINAL_STATS_MS,
            stop_tracks,
        };
    }

    /// Final stats are in: bye, close everything, then flush the trace.
    fn finish_leave(&mut self, stop_tracks: bool) {
        self.leave = LeavePhase::Closing { trace_at: self.now };
        self.session.leave();
        self.settle_session();
        if stop_tracks && !self.local.is_empty() {
            let streams = self.local.iter().map(|s| s.id.clone()).collect();
            self.out.push_back(Output::StopTracks { streams });
        }
    }

    /// After the last records of the call: the trace is closed and flushed, then `leave` is done.
    fn end_trace(&mut self) {
        self.close_trace();
        match self.trace.as_ref() {
            Some(t) if !t.trace.is_idle() => {
                let flush = self.stats.as_ref().map_or(1000.0, |s| s.leave_flush_ms);
                self.leave = LeavePhase::Flushing {
                    deadline: self.now + flush,
                };
            }
            _ => {
                self.leave = LeavePhase::Done;
                self.event(RoomEvent::LeaveDone);
            }
        }
    }

    /// Ends the call's trace generation (it keeps delivering what it holds).
    fn close_trace(&mut self) {
        let now = self.now;
        if let Some(t) = self.trace.as_mut() {
            if let Some(generation) = t.generation {
                t.trace.close(generation, now);
            }
        }
    }

    // ---- streams

    fn add_stream(&mut self, stream: LocalStream) {
        if self.local.iter().any(|s| s.id == stream.id) {
            return;
        }
        let pcs: Vec<PcId> = self.peers.values().map(|p| p.pc).collect();
        self.local.push(stream.clone());
        for pc in pcs {
            self.send_stream(pc, &stream);
        }
    }

    fn send_stream(&mut self, pc: PcId, stream: &LocalStream) {
        let batch = self.new_batch();
        for (track, _) in &stream.tracks {
            let Some((_, peer)) = self.peers.iter_mut().find(|(_, p)| p.pc == pc) else {
                return;
            };
            if peer.tracks.iter().any(|(t, _)| t == track) {
                continue;
            }
            peer.tracks.push((track.clone(), stream.id.clone()));
            let call = BrowserCall::AddTrack {
                stream: stream.id.clone(),
                track: track.clone(),
            };
            self.call(pc, call, Some(Pending::AddTrack { batch }));
        }
    }

    fn remove_stream(&mut self, stream: &str) {
        self.local.retain(|s| s.id != stream);
        let mut calls = Vec::new();
        for (_, peer) in self.peers.iter_mut() {
            peer.tracks.retain(|(track, s)| {
                let keep = s != stream;
                if !keep {
                    calls.push((peer.pc, track.clone()));
                }
                keep
            });
        }
        let batch = self.new_batch();
        for (pc, track) in calls {
            self.call(
                pc,
                BrowserCall::RemoveTrack { track },
                Some(Pending::RemoveTrack { batch }),
            );
        }
    }

    fn new_batch(&mut self) -> u32 {
        self.next_batch = self.next_batch.wrapping_add(1);
        self.next_batch
    }

    // ---- the session's decisions, carried into the room

    /// Carries out what the session decided, until it has nothing more to say.
    fn settle_session(&mut self) {
        loop {
            let actions = self.session.drain();
            if actions.is_empty() {
                break;
            }
            for action in actions {
                self.session_action(action);
            }
        }
    }

    fn session_action(&mut self, action: SessionAction<J>) {
        match action {
            SessionAction::Transition { from, to, reason } => {
                self.event(RoomEvent::StateChange { from, to, reason });
                if to == SessionState::Joined && from == SessionState::Reconnecting {
                    self.resync();
                }
                if to == SessionState::Failed {
                    // Its peers were closed just before: the trace can end.
                    self.close_trace();
                }
            }
            SessionAction::OpenTransport => {
                self.transport += 1;
                self.out.push_back(Output::Transport(TransportOp::Open {
                    transport: self.transport,
                }));
            }
            SessionAction::CloseTransport => self.out.push_back(Output::Transport(TransportOp::Close)),
            SessionAction::Send(msg) => self.out.push_back(Output::Transport(TransportOp::Send(msg))),
            SessionAction::JoinResolved => self.event(RoomEvent::Joined(Ok(()))),
            SessionAction::JoinRejected(e) => self.event(RoomEvent::Joined(Err(e))),
            SessionAction::PeerJoined { id, metadata } => self.add_peer(id, metadata),
            SessionAction::PeerLeft { id, reason } => self.remove_peer(&id, reason),
            SessionAction::PeerMetadata { id, metadata } => {
                self.event(RoomEvent::MetadataUpdated { peer: id, metadata })
            }
            SessionAction::Signal { from, payload } => self.signal(&from, payload),
            SessionAction::SayBye { to } => {
                for to in to {
                    let bye = J::encode(SignalPayload::Bye);
                    self.out
                        .push_back(Output::Transport(TransportOp::Send(ClientMsg::Signal {
                            to,
                            payload: bye,
                        })));
                }
            }
            SessionAction::Error(e) => self.event(RoomEvent::Error(e)),
        }
    }

    fn add_peer(&mut self, id: String, metadata: Option<J>) {
        let local_id = self.session.local_id().unwrap_or_default().to_string();
        let pc = self.next_pc;
        self.next_pc += 1;
        let poll = self.stats.as_ref().map(|s| PollSchedule::new(s.interval_ms));
        self.peers.insert(
            id.clone(),
            Peer {
                pc,
                negotiation: Negotiation::new(&local_id, &id),
                life: PeerLife::new(self.ice),
                life_wake: None,
                signaling: SignalingState::Stable,
                remote_roles: LiteMap::new(),
                remote_streams: LiteMap::new(),
                tracks: Vec::new(),
                poll,
                last_stats: None,
                history: Vec::new(),
                candidates: Vec::new(),
                remote_ufrag: None,
                sent_seq: 0,
                seen_seq: 0,
            },
        );
        self.pc_owner.insert(pc, id.clone());
        self.event(RoomEvent::PeerJoined {
            peer: id.clone(),
            metadata,
        });
        // Traced from its first call: `create`, then everything the room does with it.
        let now = self.now;
        if let Some(t) = self.trace.as_mut() {
            if let Some(trace_id) = t
                .generation
                .and_then(|g| t.trace.create_pc(g, now, &self.rtc_configuration))
            {
                t.pcs.insert(pc, trace_id);
            }
        }
        self.call(pc, BrowserCall::Create { peer: id }, Some(Pending::Create));
        let (label, channel_id) = DATA_CHANNEL;
        let init = Value::Object(vec![
            ("negotiated".into(), Value::Bool(true)),
            ("id".into(), Value::Number(f64::from(channel_id))),
        ]);
        self.trace_pc(
            pc,
            "createDataChannel",
            Value::Array(vec![Value::str(label), init]),
            Vec::new(),
        );
        for stream in self.local.clone() {
            self.send_stream(pc, &stream);
        }
    }

    fn remove_peer(&mut self, id: &str, reason: LeaveReason) {
        let Some(mut peer) = self.peers.remove(id) else {
            return;
        };
        for (stream, role) in std::mem::take(&mut peer.remote_streams) {
            self.event(RoomEvent::StreamRemoved {
                peer: id.to_string(),
                pc: peer.pc,
                stream,
                role,
            });
        }
        let actions = peer.life.close();
        self.life_actions(id, peer.pc, actions);
        self.event(RoomEvent::PeerLeft {
            peer: id.to_string(),
            reason,
        });
        self.close_pc(peer.pc);
    }

    /// Closes a pc; a traced one first takes its final getStats (bounded).
    fn close_pc(&mut self, pc: PcId) {
        let traced = self.trace.as_ref().is_some_and(|t| t.pcs.contains_key(&pc));
        // Leaving takes every final sample itself, and a failed session has no time for them.
        let final_taken = self.leave != LeavePhase::None;
        if traced && !final_taken && self.state() != SessionState::Failed {
            self.call(pc, BrowserCall::GetStats, Some(Pending::Stats(StatsFor::Final)));
            self.closing.push(Closing {
                pc,
                deadline: self.now + FINAL_STATS_MS,
            });
        } else {
            self.finish_close(pc);
        }
    }

    fn finish_close(&mut self, pc: PcId) {
        self.closing.retain(|c| c.pc != pc);
        self.call(pc, BrowserCall::Close, None);
        self.pc_owner.remove(&pc);
        self.ops.retain(|_, (p, _)| *p != pc);
        if let Some(t) = self.trace.as_mut() {
            t.pcs.remove(&pc);
        }
        self.leave_waits_no_more(pc);
    }

    /// `leave` no longer waits for this pc's final sample (taken, given up on, or its peer
    /// left meanwhile); once it waits for none, it goes on.
    fn leave_waits_no_more(&mut self, pc: PcId) {
        if let LeavePhase::FinalStats {
            waiting, stop_tracks, ..
        } = &mut self.leave
        {
            waiting.retain(|p| *p != pc);
            if waiting.is_empty() {
                let stop_tracks = *stop_tracks;
                self.finish_leave(stop_tracks);
            }
        }
    }

    fn peer_of(&self, pc: PcId) -> Option<&str> {
        self.peers
            .iter()
            .find(|(_, p)| p.pc == pc)
            .map(|(id, _)| id.as_str())
    }

    // ---- signals from the other side

    fn signal(&mut self, from: &str, payload: J) {
        let Some(payload) = payload.decode() else {
            let mut message = String::from("unreadable signal from ");
            message.push_str(from);
            return self.event(RoomEvent::Error(error(code::PEER_SIGNAL, message)));
        };
        match payload {
            SignalPayload::Bye => self.session.peer_bye(from),
            SignalPayload::App { data } => self.event(RoomEvent::AppSignal {
                peer: from.to_string(),
                data,
            }),
            SignalPayload::Description {
                description,
                roles,
                seq,
            } => {
                let Some(peer) = self.peers.get_mut(from) else {
                    return;
                };
                if let Some(seq) = seq {
                    if seq <= peer.seen_seq {
                        return; // seen already
                    }
                    peer.seen_seq = seq;
                }
                for role in roles {
                    peer.remote_roles.insert(role.stream, role.role);
                }
                let step = peer
                    .negotiation
                    .remote_description(description.kind, peer.signaling);
                let actions = peer.life.negotiating();
                let pc = peer.pc;
                if let (DescriptionStep::Apply { .. }, Some(ufrag)) = (step, ice_ufrag(&description.sdp)) {
                    peer.remote_ufrag = Some(ufrag.to_string());
                }
                self.life_actions(from, pc, actions);
                if let DescriptionStep::Apply { answer } = step {
                    self.call(
                        pc,
                        BrowserCall::SetRemoteDescription(description),
                        Some(Pending::SetRemote { answer }),
                    );
                }
            }
            SignalPayload::Candidate { candidate } => {
                let Some(peer) = self.peers.get_mut(from) else {
                    return;
                };
                if !same_generation(&candidate, peer.remote_ufrag.as_deref()) {
                    return; // stale: of an ICE generation already replaced
                }
                if peer.negotiation.remote_candidate(candidate.clone()) == CandidateStep::Add {
                    let pc = peer.pc;
                    self.call(
                        pc,
                        BrowserCall::AddIceCandidate(candidate),
                        Some(Pending::AddCandidate),
                    );
                }
            }
        }
    }

    /// Sends a signal of the exchange (a description or a candidate). Out of the room it is not
    /// held: [`Room::resync`] sends the history again, in order, once back.
    fn send_signal(&mut self, peer: &str, payload: SignalPayload<J>) {
        if self.session.in_room() {
            self.session.signal(peer, J::encode(payload));
        }
    }

    fn roles(&self) -> Vec<StreamRole> {
        self.local
            .iter()
            .map(|s| StreamRole {
                stream: s.id.clone(),
                role: s.role.clone(),
            })
            .collect()
    }

    /// Back in the room after an outage: the recent descriptions and the current candidates
    /// go out again, in order (see `Peer::history`).
    fn resync(&mut self) {
        let again: Vec<_> = self
            .peers
            .iter()
            .map(|(id, p)| (id.clone(), p.history.clone(), p.candidates.clone()))
            .collect();
        let roles = self.roles();
        for (id, history, candidates) in again {
            for (description, seq) in history {
                let roles = roles.clone();
                let seq = Some(seq);
                self.send_signal(
                    &id,
                    SignalPayload::Description {
                        description,
                        roles,
                        seq,
                    },
                );
            }
            for candidate in candidates {
                self.send_signal(&id, SignalPayload::Candidate { candidate });
            }
        }
    }

    // ---- browser events and results

    fn pc_event(&mut self, pc: PcId, event: PcEvent) {
        let trace = match &event {
            PcEvent::NegotiationNeeded => Some(("onnegotiationneeded", Value::Null)),
            PcEvent::IceCandidate(c) => Some(("onicecandidate", candidate_value(c))),
            PcEvent::Track { stream, track, kind } => {
                Some(("ontrack", track_info(kind, track, Some(stream))))
            }
            PcEvent::StreamEmptied { .. } => None,
            PcEvent::ConnectionState(s) => Some(("onconnectionstatechange", Value::str(s))),
            PcEvent::SignalingState(s) => Some(("onsignalingstatechange", Value::str(s))),
            PcEvent::IceConnectionState(s) => Some(("oniceconnectionstatechange", Value::str(s))),
            PcEvent::IceGatheringState(s) => Some(("onicegatheringstatechange", Value::str(s))),
        };
        if let Some((method, value)) = trace {
            self.trace_pc(pc, method, value, Vec::new());
        }
        let Some(id) = self.peer_of(pc).map(str::to_string) else {
            return; // a closing pc: traced, nothing else
        };
        let now = self.now;
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        match event {
            PcEvent::NegotiationNeeded => {
                let actions = peer.life.negotiating();
                let offer = peer.negotiation.negotiation_needed(now);
                self.life_actions(&id, pc, actions);
                if offer {
                    self.call(pc, BrowserCall::SetLocalDescription, Some(Pending::SetLocal));
                }
            }
            PcEvent::IceCandidate(candidate) => {
                // The current generation only: a new ufrag (an ICE restart) starts a new list.
                if let Some(new) = &candidate {
                    if peer
                        .candidates
                        .iter()
                        .flatten()
                        .any(|c| c.username_fragment != new.username_fragment)
                    {
                        peer.candidates.clear();
                    }
                }
                if peer.candidates.len() < 64 {
                    peer.candidates.push(candidate.clone());
                }
                self.send_signal(&id, SignalPayload::Candidate { candidate })
            }
            PcEvent::Track { stream, .. } => {
                if peer.remote_streams.contains_key(&stream) {
                    return;
                }
                let role = peer
                    .remote_roles
                    .get(&stream)
                    .cloned()
                    .unwrap_or_else(|| "unknown".into());
                peer.remote_streams.insert(stream.clone(), role.clone());
                self.event(RoomEvent::StreamAdded {
                    peer: id,
                    pc,
                    stream,
                    role,
                });
            }
            PcEvent::StreamEmptied { stream } => {
                if let Some(role) = peer.remote_streams.remove(&stream) {
                    self.event(RoomEvent::StreamRemoved {
                        peer: id,
                        pc,
                        stream,
                        role,
                    });
                }
            }
            PcEvent::ConnectionState(state) => {
                let actions = peer.life.connection_state(&state, now);
                let poll = peer
                    .poll
                    .as_mut()
                    .and_then(|p| p.on_connection_state(&state, now));
                self.life_actions(&id, pc, actions);
                if let Some(reason) = poll {
                    let stats = Pending::Stats(StatsFor::Poll { reason: Some(reason) });
                    self.call(pc, BrowserCall::GetStats, Some(stats));
                }
            }
            PcEvent::SignalingState(state) => peer.signaling = SignalingState::parse(&state),
            PcEvent::IceConnectionState(_) | PcEvent::IceGatheringState(_) => {}
        }
    }

    fn life_actions(&mut self, id: &str, pc: PcId, actions: Vec<PeerAction>) {
        for action in actions {
            match action {
                PeerAction::Transition { from, to } => self.event(RoomEvent::PeerState {
                    peer: id.to_string(),
                    from,
                    to,
                }),
                PeerAction::RestartIce { .. } => {
                    self.call(pc, BrowserCall::RestartIce, Some(Pending::RestartIce))
                }
                PeerAction::WakeAt(at) => {
                    if let Some(peer) = self.peers.get_mut(id) {
                        peer.life_wake = Some(at);
                    }
                }
            }
        }
    }

    fn done(&mut self, op: OpId, result: Result<OpOutput, String>) {
        let Some((pc, pending)) = self.ops.remove(&op) else {
            return; // its pc closed meanwhile
        };
        let failure = result.as_ref().err().cloned();
        // The trace gets each outcome as rtcstats-js records it.
        let outcome = match (&pending, &result) {
            (Pending::SetLocal, Ok(OpOutput::LocalDescription(d))) => {
                Some(("setLocalDescriptionOnSuccess", description_value(d)))
            }
            (Pending::SetLocal, Err(e)) => Some(("setLocalDescriptionOnFailure", Value::str(e))),
            (Pending::SetRemote { .. }, Ok(_)) => Some(("setRemoteDescriptionOnSuccess", Value::Null)),
            (Pending::SetRemote { .. }, Err(e)) => Some(("setRemoteDescriptionOnFailure", Value::str(e))),
            (Pending::AddCandidate, Ok(_)) => Some(("addIceCandidateOnSuccess", Value::Null)),
            (Pending::AddCandidate, Err(e)) => Some(("addIceCandidateOnFailure", Value::str(e))),
            _ => None,
        };
        if let Some((method, value)) = outcome {
            self.trace_pc(pc, method, value, Vec::new());
        }
        if let Pending::Stats(reason) = pending {
            let stats = match result {
                Ok(OpOutput::Stats(stats)) => Some(stats),
                _ => None,
            };
            return self.stats_taken(pc, reason, stats, failure);
        }
        let Some(id) = self.peer_of(pc).map(str::to_string) else {
            return;
        };
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let message = |what: &str| {
            let mut m = String::from(what);
            m.push_str(&id);
            m.push_str(": ");
            m.push_str(failure.as_deref().unwrap_or_default());
            m
        };
        match pending {
            Pending::Create => {
                if failure.is_some() {
                    let e = error(code::NEGOTIATION, message("cannot create a peer connection for "));
                    self.event(RoomEvent::Error(e));
                }
            }
            Pending::SetLocal => {
                peer.negotiation.offer_sent();
                match result {
                    Ok(OpOutput::LocalDescription(description)) => {
                        peer.sent_seq += 1;
                        let seq = peer.sent_seq;
                        if peer.history.len() >= HISTORY {
                            peer.history.remove(0);
                        }
                        peer.history.push((description.clone(), seq));
                        let roles = self.roles();
                        let seq = Some(seq);
                        self.send_signal(
                            &id,
                            SignalPayload::Description {
                                description,
                                roles,
                                seq,
                            },
                        );
                    }
                    Ok(_) => {}
                    Err(_) => {
                        let e = error(code::NEGOTIATION, message("setLocalDescription with "));
                        self.event(RoomEvent::Error(e));
                    }
                }
            }
            Pending::SetRemote { answer } => {
                let early = peer.negotiation.remote_applied(failure.is_none());
                if failure.is_some() {
                    let e = error(code::NEGOTIATION, message("setRemoteDescription from "));
                    return self.event(RoomEvent::Error(e));
                }
                let ufrag = peer.remote_ufrag.clone();
                let current = early.into_iter().filter(|c| same_generation(c, ufrag.as_deref()));
                for candidate in current {
                    self.call(
                        pc,
                        BrowserCall::AddIceCandidate(candidate),
                        Some(Pending::AddCandidate),
                    );
                }
                if answer {
                    self.call(pc, BrowserCall::SetLocalDescription, Some(Pending::SetLocal));
                }
            }
            Pending::AddCandidate => {
                if failure.is_some() && peer.negotiation.candidate_failed() {
                    let e = error(code::NEGOTIATION, message("addIceCandidate from "));
                    self.event(RoomEvent::Error(e));
                }
            }
            Pending::AddTrack { batch } | Pending::RemoveTrack { batch } => {
                if failure.is_some() && !self.failed_batches.contains(&batch) {
                    if self.failed_batches.len() >= 16 {
                        self.failed_batches.remove(0);
                    }
                    self.failed_batches.push(batch);
                    let what = if matches!(pending, Pending::AddTrack { .. }) {
                        "addTrack for peer "
                    } else {
                        "removeTrack for peer "
                    };
                    let e = error(code::MEDIA, message(what));
                    self.event(RoomEvent::Error(e));
                }
            }
            Pending::RestartIce => {
                if failure.is_some() {
                    let e = error(code::NEGOTIATION, message("restartIce with "));
                    self.event(RoomEvent::Error(e));
                }
            }
            Pending::Stats(_) => {}
        }
    }

    /// A getStats came back (or failed): the trace, the `stats` events, and what waited for it.
    fn stats_taken(&mut self, pc: PcId, reason: StatsFor, stats: Option<Value>, failure: Option<String>) {
        // The trace gets the schedule's samples and the final one (an app's `peer.stats()` is
        // its own business, as with rtcstats-js).
        if let Some(stats) = &stats {
            let extra = match &reason {
                StatsFor::Poll { reason: Some(r) } => Some(vec![Value::str(r)]),
                StatsFor::Poll { reason: None } => Some(Vec::new()),
                StatsFor::Final => Some(vec![Value::str("close")]),
                StatsFor::Request(_) => None,
            };
            if let Some(extra) = extra {
                self.trace_pc(pc, GET_STATS, stats.clone(), extra);
            }
        }
        let owner = self.peer_of(pc).map(str::to_string);
        if let (Some(id), Some(stats)) = (owner.as_deref(), stats) {
            if let Some(peer) = self.peers.get_mut(id) {
                let summary = Box::new(summarize(peer.last_stats.as_ref(), &stats));
                peer.last_stats = Some(stats);
                match &reason {
                    StatsFor::Poll { .. } => self.event(RoomEvent::Stats {
                        peer: id.to_string(),
                        summary,
                    }),
                    StatsFor::Request(request) => self.event(RoomEvent::StatsReply {
                        request: *request,
                        result: Ok(summary),
                    }),
                    StatsFor::Final => {}
                }
            }
        } else if let StatsFor::Request(request) = reason {
            let message = failure.unwrap_or_else(|| "this peer has left".into());
            self.event(RoomEvent::StatsReply {
                request,
                result: Err(error(code::INVALID_STATE, message)),
            });
        }
        if reason == StatsFor::Final {
            self.final_stats_in(pc);
        }
    }

    /// A final getStats is in (or given up on): the pc may close, and `leave` may go on.
    fn final_stats_in(&mut self, pc: PcId) {
        self.ops
            .retain(|_, (p, pending)| !(*p == pc && *pending == Pending::Stats(StatsFor::Final)));
        if self.closing.iter().any(|c| c.pc == pc) {
            self.finish_close(pc);
        } else {
            self.leave_waits_no_more(pc);
        }
    }

    // ---- the trace's sockets

    fn trace_socket(&mut self, event: TraceSocketEvent) {
        let now = self.now;
        let Some(t) = self.trace.as_mut() else {
            return;
        };
        match event {
            TraceSocketEvent::Open { socket } => {
                t.trace.socket_open(socket, now);
                if t.socket == Some(socket) {
                    self.trace_ready(false);
                }
            }
            TraceSocketEvent::Message { socket, text } => t.trace.socket_message(socket, now, &text),
            TraceSocketEvent::Drained { socket } => t.trace.buffered_drained(socket, now),
            TraceSocketEvent::Closed {
                socket,
                code: 1008,
                reason,
            } => {
                // Refused (the token): retrying cannot help; the call goes on untraced.
                t.trace.socket_refused(socket, now);
                let mut message = String::from("the stats collector refused the trace: ");
                message.push_str(&reason);
                self.event(RoomEvent::Error(error(code::UNAUTHORIZED, message)));
                self.trace_ready(false);
            }
            TraceSocketEvent::Closed { socket, code, reason } => {
                if code == 1013 {
                    // The dump hit the collector's size cap or quota: the trace goes on in a new one.
                    let mut message = String::from("the stats collector ended the dump: ");
                    message.push_str(&reason);
                    self.event(RoomEvent::Error(error(code::STATS_REFUSED, message)));
                }
                if let Some(t) = self.trace.as_mut() {
                    t.trace.socket_closed(socket, now);
                }
            }
        }
    }

    // ---- time

    fn tick(&mut self) {
        let now = self.now;
        self.session.tick(now);
        if let JoinPhase::WaitingForTrace { deadline } = self.join {
            if now >= deadline {
                self.trace_ready(true);
            }
        }
        let ids: Vec<String> = self.peers.keys().cloned().collect();
        for id in ids {
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            let pc = peer.pc;
            if peer.life_wake.is_some_and(|at| now >= at) {
                peer.life_wake = None;
                let actions = peer.life.tick(now);
                self.life_actions(&id, pc, actions);
            }
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            if peer.negotiation.deferred_deadline().is_some_and(|at| now >= at)
                && peer.negotiation.deferred_offer(peer.signaling, now)
            {
                self.call(pc, BrowserCall::SetLocalDescription, Some(Pending::SetLocal));
            }
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            if peer.poll.as_mut().is_some_and(|p| p.on_timer(now)) {
                let stats = Pending::Stats(StatsFor::Poll { reason: None });
                self.call(pc, BrowserCall::GetStats, Some(stats));
            }
        }
        let late: Vec<PcId> = self
            .closing
            .iter()
            .filter(|c| now >= c.deadline)
            .map(|c| c.pc)
            .collect();
        for pc in late {
            self.final_stats_in(pc);
        }
        let overdue = match &self.leave {
            LeavePhase::FinalStats {
                deadline, waiting, ..
            } if now >= *deadline => waiting.clone(),
            _ => Vec::new(),
        };
        for pc in overdue {
            self.final_stats_in(pc);
        }
        if matches!(self.leave, LeavePhase::Closing { trace_at } if now >= trace_at) {
            self.end_trace();
        }
        if matches!(self.leave, LeavePhase::Flushing { deadline } if now >= deadline) {
            self.leave = LeavePhase::Done;
            self.event(RoomEvent::LeaveDone);
        }
        if let Some(t) = self.trace.as_mut() {
            let due: Vec<u32> = t
                .timers
                .iter()
                .filter(|(_, at)| now >= **at)
                .map(|(g, _)| *g)
                .collect();
            for generation in due {
                t.timers.remove(&generation);
                t.trace.timer(generation, now);
            }
        }
    }

    /// After every input: the session's decisions, the trace's actions, and whether `leave`
    /// is done.
    fn settle(&mut self) {
        self.settle_session();
        let Some(t) = self.trace.as_mut() else {
            return;
        };
        while let Some(action) = t.trace.poll_action() {
            match action {
                TraceAction::Timer { generation, at } => {
                    t.timers.insert(generation, at);
                }
                TraceAction::Error { error, .. } => {
                    self.out.push_back(Output::Event(RoomEvent::Error(error)))
                }
                TraceAction::Open { generation, socket } => {
                    if t.generation == Some(generation) {
                        t.socket = Some(socket);
                    }
                    self.out
                        .push_back(Output::Trace(TraceAction::Open { generation, socket }));
                }
                other => self.out.push_back(Output::Trace(other)),
            }
        }
        t.timers.retain(|generation, _| t.trace.is_live(*generation));
        if matches!(self.leave, LeavePhase::Flushing { .. }) && t.trace.is_idle() {
            self.leave = LeavePhase::Done;
            self.out.push_back(Output::Event(RoomEvent::LeaveDone));
        }
    }

    /// The earliest time anything here wants a tick.
    fn next_wake(&self) -> f64 {
        let mut at = self.session.next_wake().unwrap_or(f64::INFINITY);
        let mut consider = |t: Option<f64>| {
            if let Some(t) = t {
                at = at.min(t);
            }
        };
        if let JoinPhase::WaitingForTrace { deadline } = self.join {
            consider(Some(deadline));
        }
        for peer in self.peers.values() {
            consider(peer.life_wake);
            consider(peer.negotiation.deferred_deadline());
            consider(peer.poll.as_ref().and_then(PollSchedule::next_due));
        }
        for c in &self.closing {
            consider(Some(c.deadline));
        }
        match &self.leave {
            LeavePhase::FinalStats { deadline, .. }
            | LeavePhase::Flushing { deadline }
            | LeavePhase::Closing { trace_at: deadline } => consider(Some(*deadline)),
            _ => {}
        }
        if let Some(t) = &self.trace {
            for at in t.timers.values() {
                consider(Some(*at));
            }
        }
        at
    }
}
