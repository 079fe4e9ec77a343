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
        BrowserCall, ChannelEvent, Input, LocalStream, OpId, OpOutput, Output, Payload, PcEvent, PcId,
        RoomEvent, TraceSocketEvent, TransportOp,
    },
    session::{Session, SessionAction, SessionConfig, SessionState},
};
use crate::{
    data::{
        files::{FileOut, Files},
        AckMode, ChannelSpec, Data, DataOut, FILES,
    },
    error::{code, SdkError},
    peer::{
        lifecycle::{IcePolicy, PeerAction, PeerLife, PeerState},
        negotiation::{CandidateStep, DescriptionStep, Negotiation, SignalingState},
    },
    stats::{
        tracer::{Tracer, TracerOut, Why},
        TraceConfig, Value,
    },
};

/// Stats of a call: periodic getStats for `stats` events, and with a collector, the trace.
#[derive(Debug, Clone)]
pub struct StatsOptions {
    /// The collector's URL: the call is traced there.
    pub collector: Option<String>,
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
            collector: None,
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

/// Descriptions kept per peer for a resync: an outage may swallow an answer and the offer that
/// followed it, and a collision one more.
const HISTORY: usize = 4;

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
    Stats(Why),
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
    /// Final getStats of the call's pcs (the tracer bounds the wait).
    FinalStats {
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

pub struct Room<J: Payload> {
    session: Session<J>,
    ice: IcePolicy,
    stats: Option<StatsOptions>,
    rtc_configuration: Value,
    /// The trace and the getStats of every pc (the room's, and an app's with `StatsTrace`).
    tracer: Tracer,
    /// The generation of this call's trace (`join` starts it).
    call_trace: Option<u32>,
    /// Collector URLs of live generations.
    trace_urls: Vec<(u32, String)>,
    peers: LiteMap<String, Peer>,
    /// pcs whose peer is gone, waiting for their final getStats before closing.
    closing: Vec<PcId>,
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
    /// Messages, acks, pacing and reassembly on every pc's data channels.
    data: Data,
    /// File transfers, on each pc's `files` channel.
    files: Files,
    /// The channels every pc has: the two built-in ones, then the app's in creation order.
    channels: Vec<ChannelSpec>,
    /// Frames refused per pc (reported at 1, 2, 4, 8… so a hostile peer cannot flood the app).
    refused: LiteMap<PcId, u32>,
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
        let tracer = match &config.stats {
            Some(s) => Tracer::new(s.trace.clone(), s.interval_ms),
            None => Tracer::new(TraceConfig::default(), 0.0),
        };
        Room {
            session: Session::new(config.session),
            ice: config.ice,
            stats: config.stats,
            rtc_configuration: config.rtc_configuration,
            tracer,
            call_trace: None,
            trace_urls: Vec::new(),
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
            data: Data::new(),
            files: Files::new(),
            channels: vec![
                ChannelSpec::reliable(),
                ChannelSpec::unreliable(),
                ChannelSpec::files(),
            ],
            refused: LiteMap::new(),
        }
    }

    /// The id of the channel `label`, if every pc has it.
    pub fn channel_id(&self, label: &str) -> Option<u16> {
        self.channels.iter().find(|c| c.label == label).map(|c| c.id)
    }

    /// Whether `createChannel(spec)` can be done: a new label whose id no other channel has.
    pub fn check_channel(&self, spec: &ChannelSpec) -> Result<(), &'static str> {
        match self.channels.iter().find(|c| c.id == spec.id) {
            Some(c) if c.label == spec.label && *c == *spec => Ok(()),
            Some(c) if c.label == spec.label => Err("a channel with this label exists with other options"),
            Some(_) => Err("this label's channel id is taken by another label; pick another label"),
            None => Ok(()),
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

    /// The trace generation that accepts records (the call's, or `StatsTrace`'s latest).
    pub fn trace_generation(&self) -> Option<u32> {
        self.tracer.generation()
    }

    /// The collector URL of a live generation (for its sockets).
    pub fn trace_url(&self, generation: u32) -> Option<&str> {
        self.trace_urls
            .iter()
            .find(|(g, _)| *g == generation)
            .map(|(_, url)| url.as_str())
    }

    /// Counters of the call's trace (`recorded`, `delivered`, …), for diagnostics and tests.
    pub fn trace_counters(&self) -> Option<crate::stats::Counters> {
        self.tracer.counters(self.call_trace?)
    }

    /// True once nothing is left to do: left or failed, every pc closed, the trace idle.
    pub fn is_finished(&self) -> bool {
        matches!(self.state(), SessionState::Left | SessionState::Failed)
            && self.closing.is_empty()
            && self.tracer.is_idle()
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
                    Some(Pending::Stats(Why::Request(request))),
                ),
                None => self.event(RoomEvent::StatsReply {
                    request,
                    result: Err(error(code::INVALID_STATE, "this peer has left")),
                }),
            },
            Input::Send {
                peer,
                label,
                send,
                handle,
                kind,
                len,
                ack,
            } => self.send_data(&peer, &label, send, handle, kind, len, ack),
            Input::CreateChannel(spec) => self.create_channel(spec),
            Input::Channel { pc, channel, event } => match event {
                ChannelEvent::Open { max_message_size } => self.data.open(now, pc, channel, max_message_size),
                ChannelEvent::Closed => self.data.closed(pc, channel),
                ChannelEvent::Buffered(amount) => self.data.buffered(now, pc, channel, amount),
                ChannelEvent::Frame { head, part, len } => self.data.frame(pc, channel, &head, part, len),
            },
            Input::Delivered { pc, channel, seq } => self.data.delivered(pc, channel, seq),
            Input::SendFile {
                peer,
                transfer,
                size,
                name,
                mime,
            } => match self
                .peer_pc(&peer)
                .filter(|pc| self.data.has_pc(*pc) && self.leave == LeavePhase::None)
            {
                Some(pc) => self.files.offer(pc, transfer, size, &name, &mime),
                None => self.event(RoomEvent::FileFailed {
                    transfer,
                    error: error(code::PEER_LEFT, "this peer has left"),
                }),
            },
            Input::FileSlice {
                transfer,
                offset,
                handle,
                bytes,
            } => self.files.slice(transfer, offset, handle, &bytes),
            Input::FileReadFailed { transfer, why } => self.files.read_failed(transfer, &why),
            Input::FileAccept { transfer } => self.files.accept(transfer),
            Input::FileCancel { transfer, reason } => self.files.cancel(transfer, &reason),
            Input::TraceRecord {
                generation,
                pc,
                method,
                value,
                extra,
            } => {
                // An app pc's records go to the generation it is traced in, and only that one.
                if pc.is_none_or(|pc| self.tracer.traced(pc).is_some_and(|(g, _)| g == generation)) {
                    self.tracer
                        .record(pc, Some(generation), now, &method, value, extra);
                }
            }
            Input::TraceConnect { client_info, url } => {
                self.connect_trace(client_info, url);
            }
            Input::TraceClose { generation } => {
                if self.tracer.is_live(generation) {
                    self.tracer.close(generation, now);
                } else {
                    let counters = self.tracer.counters(generation).unwrap_or_default();
                    self.event(RoomEvent::TraceEnded { generation, counters });
                }
            }
            Input::TraceFinal { generation } => self.tracer.final_samples(generation, now),
            Input::TraceAttach {
                pc,
                generation,
                configuration,
            } => {
                if self.tracer.generation() == Some(generation) && self.pc_owner.get(&pc).is_none() {
                    self.tracer
                        .attach(pc, Some(generation), true, now, &configuration);
                }
            }
            Input::TraceClosing { pc } => {
                if self.pc_owner.get(&pc).is_none() {
                    self.tracer.closing(pc, now, true);
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
            // The tracer records `close` (after the final sample) and its own getStats.
            BrowserCall::Create { .. } | BrowserCall::GetStats | BrowserCall::Close => return,
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
            BrowserCall::CreateChannel(spec) => {
                let mut init = vec![
                    ("negotiated".into(), Value::Bool(true)),
                    ("id".into(), Value::Number(f64::from(spec.id))),
                    ("ordered".into(), Value::Bool(spec.ordered)),
                ];
                if let Some(n) = spec.max_retransmits {
                    init.push(("maxRetransmits".into(), Value::Number(f64::from(n))));
                }
                if let Some(n) = spec.max_packet_life_time {
                    init.push(("maxPacketLifeTime".into(), Value::Number(f64::from(n))));
                }
                let value = Value::Array(vec![Value::str(&spec.label), Value::Object(init)]);
                ("createDataChannel", value)
            }
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
        self.tracer.record(Some(pc), None, self.now, method, value, extra);
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
        let collector = self
            .stats
            .as_ref()
            .and_then(|s| Some((s.collector.clone()?, s.connect_timeout_ms)));
        let Some((url, timeout)) = collector else {
            self.join = JoinPhase::Started;
            return self.session.join(now);
        };
        self.call_trace = Some(self.connect_trace(client_info, url));
        self.join = JoinPhase::WaitingForTrace {
            deadline: now + timeout,
        };
    }

    /// Starts a trace generation at `url` (closing the current one).
    fn connect_trace(&mut self, client_info: Value, url: String) -> u32 {
        let tracer = &self.tracer;
        self.trace_urls.retain(|(g, _)| tracer.is_live(*g));
        let generation = self.tracer.connect(self.now, client_info);
        self.trace_urls.push((generation, url));
        generation
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
        if let Some(generation) = self.call_trace {
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
        let cancelled = error(
            code::CANCELLED,
            "the session left before the message was delivered",
        );
        let ended = error(code::CANCELLED, "the session left during the transfer");
        for pc in self.peers.values().map(|p| p.pc).collect::<Vec<_>>() {
            self.data.remove_pc(pc, &cancelled);
            self.files.remove_pc(pc, &ended);
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
        match self.call_trace {
            // The final samples first; `TracerOut::FinalsDone` goes on.
            Some(generation) => {
                self.leave = LeavePhase::FinalStats { stop_tracks };
                self.tracer.final_samples(generation, self.now);
            }
            None => self.finish_leave(stop_tracks),
        }
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
        match self.call_trace {
            Some(_) if !self.tracer.is_idle() => {
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
        if let Some(generation) = self.call_trace {
            self.tracer.close(generation, self.now);
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
        // (Without the stats option: no schedule, but `peer.stats()` works.)
        let generation = self.call_trace.filter(|g| self.tracer.generation() == Some(*g));
        let poll = self.stats.is_some();
        self.tracer
            .attach(pc, generation, poll, self.now, &self.rtc_configuration);
        self.call(pc, BrowserCall::Create { peer: id }, Some(Pending::Create));
        // Pre-negotiated channels on both sides: the first offer always has an m=application
        // section (data works without renegotiation) and no `datachannel` event is needed.
        for spec in self.channels.clone() {
            self.call(pc, BrowserCall::CreateChannel(spec), None);
        }
        self.data.add_pc(pc, &self.channels);
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
        let gone = error(code::PEER_LEFT, "the peer left before the message was delivered");
        self.data.remove_pc(peer.pc, &gone);
        self.files.remove_pc(
            peer.pc,
            &error(code::PEER_LEFT, "the peer left during the transfer"),
        );
        self.event(RoomEvent::PeerLeft {
            peer: id.to_string(),
            reason,
        });
        self.close_pc(peer.pc);
    }

    /// Closes a pc once the tracer says so: a traced one takes its final getStats first
    /// (bounded). Leaving took every final sample already, and a failed session has no time.
    fn close_pc(&mut self, pc: PcId) {
        let take_final = self.leave == LeavePhase::None && self.state() != SessionState::Failed;
        self.closing.push(pc);
        self.tracer.closing(pc, self.now, take_final);
    }

    fn finish_close(&mut self, pc: PcId) {
        self.closing.retain(|c| *c != pc);
        self.call(pc, BrowserCall::Close, None);
        self.pc_owner.remove(&pc);
        // What was in flight on it is moot; an app's `peer.stats()` gets its answer.
        let mut requests = Vec::new();
        self.ops.retain(|_, (p, pending)| {
            if let (true, Pending::Stats(Why::Request(r))) = (*p == pc, &pending) {
                requests.push(*r);
            }
            *p != pc
        });
        for request in requests {
            self.event(RoomEvent::StatsReply {
                request,
                result: Err(error(code::INVALID_STATE, "this peer has left")),
            });
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
                // (The tracer saw it with the record above: its schedule's first sample.)
                let actions = peer.life.connection_state(&state, now);
                self.life_actions(&id, pc, actions);
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
        if let Pending::Stats(why) = pending {
            let stats = match result {
                Ok(OpOutput::Stats(stats)) => Some(stats),
                _ => None,
            };
            return self.tracer.sampled(pc, why, stats, self.now);
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

    // ---- the trace's sockets

    fn trace_socket(&mut self, event: TraceSocketEvent) {
        let now = self.now;
        match event {
            TraceSocketEvent::Open { socket } => self.tracer.socket_open(socket, now),
            TraceSocketEvent::Message { socket, text } => self.tracer.socket_message(socket, now, &text),
            TraceSocketEvent::Drained { socket } => self.tracer.socket_drained(socket, now),
            TraceSocketEvent::Closed { socket, code, reason } => {
                // 1008: refused (the token), retrying cannot help: that generation ends.
                // 1013: the dump hit the collector's size cap or quota: it goes on in a new one.
                let said = match code {
                    1008 => Some((code::UNAUTHORIZED, "the stats collector refused the trace: ")),
                    1013 => Some((code::STATS_REFUSED, "the stats collector ended the dump: ")),
                    _ => None,
                };
                if let Some((code, what)) = said {
                    self.event(RoomEvent::Error(error(code, crate::text::cat(&[what, &reason]))));
                }
                self.tracer.socket_closed(socket, code == 1008, now);
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
        }
        self.tracer.tick(now);
        self.data.tick(now);
        if matches!(self.leave, LeavePhase::Closing { trace_at } if now >= trace_at) {
            self.end_trace();
        }
        if matches!(self.leave, LeavePhase::Flushing { deadline } if now >= deadline) {
            self.leave = LeavePhase::Done;
            self.event(RoomEvent::LeaveDone);
        }
    }

    /// After every input: the session's decisions, the tracer's, and whether `leave` is done.
    fn settle(&mut self) {
        loop {
            if let Some(out) = self.data.poll() {
                self.data_output(out);
            } else if let Some(out) = self.files.poll() {
                self.file_output(out);
            } else {
                break;
            }
        }
        self.settle_session();
        while let Some(out) = self.tracer.poll_output() {
            self.tracer_output(out);
            self.settle_session();
        }
        if matches!(self.leave, LeavePhase::Flushing { .. }) && self.tracer.is_idle() {
            self.leave = LeavePhase::Done;
            self.event(RoomEvent::LeaveDone);
        }
    }

    // ---- data

    #[allow(clippy::too_many_arguments)]
    fn send_data(
        &mut self,
        peer: &str,
        label: &str,
        send: u32,
        handle: u32,
        kind: u8,
        len: u32,
        ack: AckMode,
    ) {
        let refuse = |room: &mut Self, err: SdkError| {
            room.out.push_back(Output::Data(DataOut::Release(vec![handle])));
            room.event(RoomEvent::SendDone {
                send,
                result: Err(err),
            });
        };
        let Some(spec) = self.channels.iter().find(|c| c.label == label) else {
            let message = crate::text::cat(&["no channel ", label, ": createChannel() it first"]);
            return refuse(self, error(code::INVALID_ARGUMENT, message));
        };
        let channel = spec.id;
        // Reliable channels always settle on the ack; unreliable ones when handed over,
        // unless an ack with a timeout was asked for.
        let ack = match (spec.is_unreliable(), ack) {
            (false, _) => AckMode::Delivered,
            (true, AckMode::Within(ms)) => AckMode::Within(ms),
            (true, _) => AckMode::Handed,
        };
        if self.leave != LeavePhase::None {
            return refuse(self, error(code::CANCELLED, "the session is leaving"));
        }
        match self.peer_pc(peer).filter(|pc| self.data.has_pc(*pc)) {
            Some(pc) => self
                .data
                .send(self.now, pc, channel, send, handle, kind, len, ack),
            None => refuse(self, error(code::PEER_LEFT, "this peer has left")),
        }
    }

    fn create_channel(&mut self, spec: ChannelSpec) {
        if self.check_channel(&spec).is_err() || self.channels.contains(&spec) {
            return;
        }
        self.channels.push(spec.clone());
        let pcs: Vec<PcId> = self.peers.values().map(|p| p.pc).collect();
        for pc in pcs {
            self.call(pc, BrowserCall::CreateChannel(spec.clone()), None);
            self.data.add_channel(pc, &spec);
        }
    }

    fn data_output(&mut self, out: DataOut) {
        match out {
            DataOut::Deliver {
                pc,
                channel,
                seq,
                kind,
                parts,
                ack,
            } => {
                let peer = self.peer_of(pc).map(str::to_string);
                let label = self
                    .channels
                    .iter()
                    .find(|c| c.id == channel)
                    .map(|c| c.label.clone());
                match (peer, label) {
                    (Some(peer), Some(label)) => self.event(RoomEvent::Message {
                        peer,
                        label,
                        kind,
                        parts,
                        ack: ack.then_some((pc, channel, seq)),
                    }),
                    _ => self.out.push_back(Output::Data(DataOut::Release(parts))),
                }
            }
            DataOut::Settled { send, result } => self.event(RoomEvent::SendDone { send, result }),
            DataOut::Refused { pc, why, .. } => {
                let count = self.refused.get(&pc).copied().unwrap_or(0) + 1;
                self.refused.insert(pc, count);
                if count.is_power_of_two() {
                    let peer = self.peer_of(pc).unwrap_or("a peer").to_string();
                    let message = crate::text::cat(&[
                        &peer,
                        " sent data that was dropped (",
                        why,
                        "); ",
                        &crate::text::int(count.into()),
                        " frame(s) so far",
                    ]);
                    self.event(RoomEvent::Error(error(code::BAD_PEER_DATA, message)));
                }
            }
            DataOut::File {
                pc,
                channel,
                frame,
                part,
            } => {
                let refused = if channel == FILES {
                    self.files.frame(pc, &frame, part).err()
                } else {
                    if let Some(h) = part {
                        self.out.push_back(Output::Data(DataOut::Release(vec![h])));
                    }
                    Some("a file frame outside the files channel")
                };
                if let Some(why) = refused {
                    self.data_output(DataOut::Refused { pc, channel, why });
                }
            }
            other => self.out.push_back(Output::Data(other)),
        }
    }

    fn file_output(&mut self, out: FileOut) {
        match out {
            FileOut::Frame {
                pc,
                header,
                handle,
                len,
            } => match handle {
                Some(handle) => self.data.send_raw(self.now, pc, FILES, header, handle, len),
                None => self.data.control(pc, FILES, header),
            },
            FileOut::Read {
                transfer,
                offset,
                len,
            } => self.out.push_back(Output::ReadFile {
                transfer,
                offset,
                len,
            }),
            FileOut::Offered {
                pc,
                transfer,
                name,
                size,
                mime,
            } => match self.peer_of(pc).map(str::to_string) {
                Some(peer) => self.event(RoomEvent::FileOffered {
                    peer,
                    transfer,
                    name,
                    size,
                    mime,
                }),
                None => self.files.cancel(transfer, "the peer is gone"),
            },
            FileOut::Progress {
                transfer,
                bytes,
                total,
            } => self.event(RoomEvent::FileProgress {
                transfer,
                bytes,
                total,
            }),
            FileOut::Chunk { transfer, handle } => self.event(RoomEvent::FileChunk { transfer, handle }),
            FileOut::Done { transfer, sha256 } => self.event(RoomEvent::FileDone { transfer, sha256 }),
            FileOut::Failed { transfer, error } => self.event(RoomEvent::FileFailed { transfer, error }),
            FileOut::Release(handles) => self.out.push_back(Output::Data(DataOut::Release(handles))),
        }
    }

    fn tracer_output(&mut self, out: TracerOut) {
        match out {
            TracerOut::Socket(action) => self.out.push_back(Output::Trace(action)),
            TracerOut::GetStats { pc, why } => {
                self.call(pc, BrowserCall::GetStats, Some(Pending::Stats(why)))
            }
            TracerOut::Stats { pc, summary } => match self.peer_of(pc) {
                Some(peer) => {
                    let peer = peer.to_string();
                    self.event(RoomEvent::Stats { peer, summary })
                }
                None if self.pc_owner.get(&pc).is_none() => {
                    let trace = self.tracer.traced(pc).map(|(g, id)| (g, id.to_string()));
                    self.event(RoomEvent::PcStats { pc, trace, summary })
                }
                None => {}
            },
            TracerOut::Reply { request, result } => {
                let result = result
                    .ok_or_else(|| error(code::INVALID_STATE, "this peer has left, or getStats failed"));
                self.event(RoomEvent::StatsReply { request, result })
            }
            TracerOut::Close { pc } => match self.closing.contains(&pc) {
                true => self.finish_close(pc),
                false => self.event(RoomEvent::PcClosed { pc }),
            },
            TracerOut::Opened { generation } => {
                self.event(RoomEvent::TraceOpened { generation });
                if self.call_trace == Some(generation) {
                    self.trace_ready(false);
                }
            }
            TracerOut::OpenFailed { generation, refused } => {
                let e = match refused {
                    true => error(code::UNAUTHORIZED, "the stats collector refused the trace"),
                    false => error(
                        code::STATS_UNAVAILABLE,
                        "the stats collector is unreachable; the trace keeps retrying with backoff",
                    ),
                };
                self.event(RoomEvent::TraceOpenFailed { generation, error: e });
                if refused && self.call_trace == Some(generation) {
                    // The call goes on untraced.
                    self.trace_ready(false);
                }
            }
            TracerOut::Ended { generation, counters } => {
                self.event(RoomEvent::TraceEnded { generation, counters })
            }
            TracerOut::FinalsDone { generation } => {
                self.event(RoomEvent::TraceFinalsDone { generation });
                if let (LeavePhase::FinalStats { stop_tracks }, true) =
                    (&self.leave, self.call_trace == Some(generation))
                {
                    let stop_tracks = *stop_tracks;
                    self.finish_leave(stop_tracks);
                }
            }
            TracerOut::Error(e) => self.event(RoomEvent::Error(e)),
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
        }
        consider(self.tracer.next_wake());
        consider(Some(self.data.next_wake()));
        if let LeavePhase::Flushing { deadline } | LeavePhase::Closing { trace_at: deadline } = &self.leave {
            consider(Some(*deadline));
        }
        at
    }
}
