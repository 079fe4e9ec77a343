//! A simulated world: rooms ([`rtcroom::room::Room`]), each with a simulated browser, talking
//! through the server's real sans-IO hub, with time as an input. The test owns the clock and the
//! delays (a seeded generator picks them), cuts the media path or the signaling, restarts the
//! server, and runs until nothing is left to do.

use std::{
    cmp::Ordering,
    collections::{BTreeMap, BinaryHeap},
    time::{Duration, Instant},
};

use rtcroom::{
    data::DataOut,
    room::{
        io::ChannelEvent, BrowserCall, Input, LocalStream, OpId, OpOutput, Output, Payload, PcEvent, PcId,
        Room, RoomConfig, RoomEvent, StatsOptions, TraceSocketEvent, TransportOp,
    },
    stats::{dump, Action as TraceAction, Value},
};
use rtcroom_hub::{Binding, ConnHandle, ConnId, Full, HubLimits, JoinRequest, Link, Raw, ResumeKeys};
use rtcroom_protocol::{ClientMsg, ServerMsg, SignalPayload};
use serde::{Deserialize, Serialize};

type Outgoing = rtcroom_hub::Outgoing<String>;
type Hub = rtcroom_hub::Hub<Queue>;

/// A connection's frames from the hub, waiting for the world to carry them.
#[derive(Clone, Default)]
pub struct Queue(std::rc::Rc<std::cell::RefCell<std::collections::VecDeque<Outgoing>>>);

impl Link for Queue {
    type Text = String;
    fn try_send(&self, out: Outgoing) -> Result<(), Full> {
        self.0.borrow_mut().push_back(out);
        Ok(())
    }
    fn kill(&self) {}
}

use super::browser::{Effects, Later, SimPc};

/// Payloads as JSON values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct J(pub serde_json::Value);

impl Payload for J {
    fn decode(&self) -> Option<SignalPayload<J>> {
        serde_json::from_value(self.0.clone()).ok()
    }

    fn encode(payload: SignalPayload<J>) -> J {
        J(serde_json::to_value(payload).unwrap_or_default())
    }
}

/// A small deterministic generator (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A delay in `[lo, hi]` ms.
    pub fn between(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (self.next() % 10_000) as f64 / 10_000.0 * (hi - lo)
    }
}

/// Delays of the world (ms ranges).
#[derive(Debug, Clone)]
pub struct Delays {
    pub signaling: (f64, f64),
    pub op: (f64, f64),
    pub connect: (f64, f64),
}

impl Default for Delays {
    fn default() -> Self {
        Delays {
            signaling: (1.0, 20.0),
            op: (0.5, 10.0),
            connect: (10.0, 60.0),
        }
    }
}

#[derive(Debug)]
enum Ev {
    Input(usize, Input<J>),
    /// A client frame reaches the hub.
    ToHub(ConnId, String),
    /// The server notices a socket is gone.
    HubDisconnect(ConnId),
    HubTick,
    /// A node's timer.
    Timer(usize, f64),
    /// A browser call's turn on its pc.
    Call(usize, PcId, Option<OpId>, BrowserCall),
    Later(usize, PcId, Later),
}

struct Scheduled {
    at: f64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at && self.seq == other.seq
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        // Min-heap on (at, seq).
        other
            .at
            .partial_cmp(&self.at)
            .unwrap_or(Ordering::Equal)
            .then(other.seq.cmp(&self.seq))
    }
}

pub struct Node {
    pub room: Room<J>,
    pub pcs: BTreeMap<PcId, SimPc>,
    pub events: Vec<RoomEvent<J>>,
    /// Every output kind in order, for ordering checks ("trace-open", "create", "close", …).
    pub log: Vec<String>,
    /// Lines the collector got, per trace socket.
    pub trace_lines: BTreeMap<u32, Vec<String>>,
    pub local: Vec<LocalStream>,
    transport: Option<(u32, ConnId)>,
    timer: Option<f64>,
    pub stopped_tracks: Vec<String>,
    /// The executor's part of data: bytes by handle, the channels made per pc (and whether
    /// they are open), what the app received `(from, label, kind, bytes)`.
    pub payloads: BTreeMap<u32, Vec<u8>>,
    next_handle: u32,
    channels: Vec<(PcId, u16, bool)>,
    pub received: Vec<(String, String, u8, Vec<u8>)>,
}

pub struct World {
    pub now: f64,
    pub rng: Rng,
    pub delays: Delays,
    queue: BinaryHeap<Scheduled>,
    seq: u64,
    pub nodes: Vec<Node>,
    hub: Hub,
    hub_base: Instant,
    conns: BTreeMap<ConnId, (usize, u32, Queue)>,
    /// The last delivery time per connection (TCP keeps order).
    last_delivery: BTreeMap<ConnId, f64>,
    secret: String,
    pub media_up: bool,
    pub signaling_up: bool,
    /// Inputs fed to every node so far (a measure of the work done).
    pub inputs: u64,
    /// Nodes that crashed: they get no more inputs.
    crashed: Vec<usize>,
    joins: u64,
}

pub fn config(room: &str) -> RoomConfig<J> {
    let mut c = RoomConfig::new(room);
    c.session.jitter_seed = 7;
    c
}

pub fn traced(room: &str) -> RoomConfig<J> {
    let mut c = config(room);
    c.stats = Some(StatsOptions {
        collector: Some("ws://collector".into()),
        ..StatsOptions::default()
    });
    c.rtc_configuration =
        Value::parse(r#"{"iceServers":[{"urls":"turn:t.example","username":"u","credential":"secret"}]}"#)
            .unwrap_or(Value::Null);
    c
}

fn hub(secret: &str) -> Hub {
    Hub::new(HubLimits::default(), ResumeKeys::new(Some(secret)))
}

impl World {
    pub fn new(seed: u64) -> World {
        let mut world = World {
            now: 1_764_000_000_000.0,
            rng: Rng::new(seed),
            delays: Delays::default(),
            queue: BinaryHeap::new(),
            seq: 0,
            nodes: Vec::new(),
            hub: hub("sim-secret"),
            hub_base: Instant::now(),
            conns: BTreeMap::new(),
            last_delivery: BTreeMap::new(),
            secret: "sim-secret".into(),
            media_up: true,
            signaling_up: true,
            inputs: 0,
            crashed: Vec::new(),
            joins: 0,
        };
        world.schedule(100.0, Ev::HubTick);
        world
    }

    fn schedule(&mut self, delay: f64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Scheduled {
            at: self.now + delay.max(0.0),
            seq: self.seq,
            ev,
        });
    }

    fn instant(&self) -> Instant {
        self.hub_base + Duration::from_micros((self.now * 1000.0) as u64)
    }

    pub fn add(&mut self, config: RoomConfig<J>) -> usize {
        self.nodes.push(Node {
            room: Room::new(config),
            pcs: BTreeMap::new(),
            events: Vec::new(),
            log: Vec::new(),
            trace_lines: BTreeMap::new(),
            local: Vec::new(),
            transport: None,
            timer: None,
            stopped_tracks: Vec::new(),
            payloads: BTreeMap::new(),
            next_handle: 1,
            channels: Vec::new(),
            received: Vec::new(),
        });
        self.nodes.len() - 1
    }

    /// `peer.send()` from `node`: the bytes are held by the node's executor.
    pub fn send(&mut self, node: usize, to: usize, label: &str, bytes: Vec<u8>, send: u32) {
        let n = &mut self.nodes[node];
        let handle = n.next_handle;
        n.next_handle += 1;
        let len = bytes.len() as u32;
        n.payloads.insert(handle, bytes);
        let peer = self.id(to);
        self.input(
            node,
            Input::Send {
                peer,
                label: label.into(),
                send,
                handle,
                kind: 1,
                len,
                ack: rtcroom::data::AckMode::Delivered,
            },
        );
    }

    /// How `send` settled, if it did.
    pub fn send_result(&self, node: usize, send: u32) -> Option<Result<bool, &'static str>> {
        self.nodes[node].events.iter().find_map(|e| match e {
            RoomEvent::SendDone { send: s, result } if *s == send => Some(result.clone().map_err(|e| e.code)),
            _ => None,
        })
    }

    /// Opens a node's channels on `pc` once it is connected (as SCTP comes up).
    fn open_channels(&mut self, node: usize, pc: PcId) {
        let connected = self.nodes[node]
            .pcs
            .get(&pc)
            .is_some_and(|p| p.connection == "connected");
        if !connected {
            return;
        }
        let opening: Vec<u16> = self.nodes[node]
            .channels
            .iter_mut()
            .filter(|(p, _, open)| *p == pc && !*open)
            .map(|(_, c, open)| {
                *open = true;
                *c
            })
            .collect();
        for channel in opening {
            let event = ChannelEvent::Open {
                max_message_size: Some(65536.0),
            };
            self.schedule(1.0, Ev::Input(node, Input::Channel { pc, channel, event }));
        }
    }

    /// A frame from `(node, pc)` on `channel` reaches the counterpart pc, in order.
    fn carry(&mut self, node: usize, pc: PcId, channel: u16, frame: Vec<u8>) {
        let Some((other_node, other_pc)) = self.nodes[node].pcs.get(&pc).and_then(|p| p.counterpart()) else {
            return;
        };
        let open = self.nodes[other_node]
            .channels
            .iter()
            .any(|(p, c, open)| *p == other_pc && *c == channel && *open);
        if !open || self.crashed.contains(&other_node) {
            return;
        }
        let head = frame[..frame.len().min(rtcroom::data::HEADER)].to_vec();
        let (part, len) = if frame.len() > rtcroom::data::HEADER {
            let n = &mut self.nodes[other_node];
            let h = n.next_handle;
            n.next_handle += 1;
            n.payloads.insert(h, frame[rtcroom::data::HEADER..].to_vec());
            (Some(h), (frame.len() - rtcroom::data::HEADER) as u32)
        } else {
            (None, 0)
        };
        // SCTP keeps a channel's order: one fixed delay.
        let event = ChannelEvent::Frame { head, part, len };
        self.schedule(
            5.0,
            Ev::Input(
                other_node,
                Input::Channel {
                    pc: other_pc,
                    channel,
                    event,
                },
            ),
        );
    }

    fn data_out(&mut self, node: usize, out: DataOut) {
        match out {
            DataOut::Send {
                pc,
                channel,
                header,
                handle,
                offset,
                len,
            } => {
                let Some(bytes) = self.nodes[node].payloads.get(&handle) else {
                    return;
                };
                let mut frame = header.to_vec();
                frame.extend_from_slice(&bytes[offset as usize..(offset + len) as usize]);
                self.carry(node, pc, channel, frame);
            }
            DataOut::Control { pc, channel, bytes } => self.carry(node, pc, channel, bytes),
            DataOut::Poll { pc, channel } => {
                let event = ChannelEvent::Buffered(0.0);
                self.schedule(0.0, Ev::Input(node, Input::Channel { pc, channel, event }));
            }
            DataOut::Release(handles) => {
                for h in handles {
                    self.nodes[node].payloads.remove(&h);
                }
            }
            DataOut::Deliver { .. }
            | DataOut::Settled { .. }
            | DataOut::Refused { .. }
            | DataOut::File { .. } => {}
        }
    }

    /// Feeds an input to a node now (as an app call would) and carries out what follows.
    pub fn input(&mut self, node: usize, input: Input<J>) {
        if self.crashed.contains(&node) {
            return;
        }
        if let Input::AddStream(stream) = &input {
            self.nodes[node].local.push(stream.clone());
        }
        self.inputs += 1;
        let now = self.now;
        self.nodes[node].room.handle(input, now);
        self.perform(node);
    }

    pub fn join(&mut self, node: usize) {
        self.input(
            node,
            Input::Join {
                client_info: Value::parse(r#"{"sdk":"sim"}"#).unwrap_or(Value::Null),
            },
        );
    }

    pub fn add_camera(&mut self, node: usize, stream: &str) {
        self.input(
            node,
            Input::AddStream(LocalStream {
                id: stream.into(),
                role: "camera".into(),
                tracks: vec![
                    (format!("{stream}-a"), "audio".into()),
                    (format!("{stream}-v"), "video".into()),
                ],
            }),
        );
    }

    /// Runs every event up to `until` (absolute ms).
    pub fn run_until(&mut self, until: f64) {
        while let Some(next) = self.queue.peek() {
            if next.at > until {
                break;
            }
            let Some(Scheduled { at, ev, .. }) = self.queue.pop() else {
                break;
            };
            self.now = self.now.max(at);
            self.step(ev);
        }
        self.now = self.now.max(until);
    }

    pub fn run_for(&mut self, ms: f64) {
        self.run_until(self.now + ms);
    }

    fn step(&mut self, ev: Ev) {
        match ev {
            Ev::Input(node, input) => self.input(node, input),
            Ev::Timer(node, at) => {
                if self.nodes[node].timer == Some(at) {
                    self.nodes[node].timer = None;
                    self.input(node, Input::Tick);
                }
            }
            Ev::ToHub(conn, text) => {
                if self.conns.contains_key(&conn) {
                    self.hub_frame(conn, &text);
                    self.drain_hub();
                }
            }
            Ev::HubDisconnect(conn) => {
                if std::env::var("SIM_DEBUG").is_ok() {
                    eprintln!("{:>8.0} hub: conn{conn} gone", self.now - 1_764_000_000_000.0);
                }
                let at = self.instant();
                self.hub.disconnected(conn, at);
                self.conns.remove(&conn);
                self.drain_hub();
            }
            Ev::HubTick => {
                let at = self.instant();
                self.hub.tick(at);
                self.drain_hub();
                self.schedule(100.0, Ev::HubTick);
            }
            Ev::Call(node, pc, op, call) => self.browser_call(node, pc, op, call),
            Ev::Later(node, pc, step) => {
                let up = self.media_up;
                let Some(sim) = self.nodes[node].pcs.get_mut(&pc) else {
                    return;
                };
                let fx = sim.later(node, &step, up);
                self.effects(node, pc, None, fx);
            }
        }
    }

    /// Carries out a node's outputs until it says when to wake it.
    fn perform(&mut self, node: usize) {
        loop {
            let out = self.nodes[node].room.poll_output();
            match out {
                Output::Timeout(at) => {
                    if at.is_finite() && self.nodes[node].timer != Some(at) {
                        self.nodes[node].timer = Some(at);
                        let delay = at - self.now;
                        self.schedule(delay, Ev::Timer(node, at));
                    }
                    return;
                }
                Output::Transport(op) => self.transport(node, op),
                Output::Browser { pc, op, call } => {
                    let label = match &call {
                        BrowserCall::Create { .. } => "create",
                        BrowserCall::Close => "close",
                        _ => "call",
                    };
                    self.nodes[node].log.push(format!("{label}:{pc}"));
                    if let BrowserCall::Create { peer } = &call {
                        self.nodes[node].pcs.insert(pc, SimPc::new(pc, peer.clone()));
                    }
                    if let BrowserCall::CreateChannel(spec) = &call {
                        self.nodes[node].channels.push((pc, spec.id, false));
                        self.open_channels(node, pc);
                    }
                    // The operations chain: after whatever this pc is still doing.
                    let delay = self.rng.between(self.delays.op.0, self.delays.op.1);
                    let Some(sim) = self.nodes[node].pcs.get_mut(&pc) else {
                        continue;
                    };
                    let at = sim.busy_until.max(self.now) + delay;
                    sim.busy_until = at;
                    let wait = at - self.now;
                    self.schedule(wait, Ev::Call(node, pc, op, call));
                }
                Output::Trace(action) => self.collector(node, action),
                Output::StopTracks { streams } => self.nodes[node].stopped_tracks.extend(streams),
                Output::Data(out) => self.data_out(node, out),
                // Files are tests/files.rs's (their engine) and the browser tests'.
                Output::ReadFile { .. } => {}
                Output::Event(RoomEvent::Message {
                    peer,
                    label,
                    kind,
                    parts,
                    ack,
                }) => {
                    let mut bytes = Vec::new();
                    for h in parts {
                        bytes.extend(self.nodes[node].payloads.remove(&h).unwrap_or_default());
                    }
                    self.nodes[node].received.push((peer, label, kind, bytes));
                    if let Some((pc, channel, seq)) = ack {
                        self.schedule(0.0, Ev::Input(node, Input::Delivered { pc, channel, seq }));
                    }
                }
                Output::Event(e) => self.nodes[node].events.push(e),
            }
        }
    }

    fn transport(&mut self, node: usize, op: TransportOp<J>) {
        match op {
            TransportOp::Open { transport } => {
                if std::env::var("SIM_DEBUG").is_ok() {
                    eprintln!(
                        "{:>8.0} node{node} opens t{transport} (signaling {})",
                        self.now - 1_764_000_000_000.0,
                        if self.signaling_up { "up" } else { "down" }
                    );
                }
                self.nodes[node].log.push("signaling-open".into());
                if let Some((_, old)) = self.nodes[node].transport.take() {
                    self.schedule(1.0, Ev::HubDisconnect(old));
                }
                if !self.signaling_up {
                    let delay = self.rng.between(1.0, 30.0);
                    self.schedule(
                        delay,
                        Ev::Input(
                            node,
                            Input::TransportClosed {
                                transport,
                                code: 1006,
                                reason: String::new(),
                            },
                        ),
                    );
                    return;
                }
                let queue = Queue::default();
                let conn = self.hub.register(ConnHandle::new(queue.clone()));
                self.conns.insert(conn, (node, transport, queue));
                self.nodes[node].transport = Some((transport, conn));
                let delay = self.rng.between(self.delays.signaling.0, self.delays.signaling.1);
                self.schedule(delay, Ev::Input(node, Input::TransportOpen { transport }));
            }
            TransportOp::Send(msg) => {
                let Some((_, conn)) = self.nodes[node].transport else {
                    return;
                };
                let text = serde_json::to_string(&msg).unwrap_or_default();
                let at = self.delivery_time(conn);
                self.schedule(at - self.now, Ev::ToHub(conn, text));
            }
            TransportOp::Close => {
                if let Some((_, conn)) = self.nodes[node].transport.take() {
                    let at = self.delivery_time(conn);
                    self.schedule(at - self.now, Ev::HubDisconnect(conn));
                }
            }
        }
    }

    fn delivery_time(&mut self, conn: ConnId) -> f64 {
        let delay = self.rng.between(self.delays.signaling.0, self.delays.signaling.1);
        let last = self.last_delivery.get(&conn).copied().unwrap_or(0.0);
        let at = (self.now + delay).max(last);
        self.last_delivery.insert(conn, at);
        at
    }

    /// What `rtcroom_hub::Reader` does with a client frame, minus the limits.
    fn hub_frame(&mut self, conn: ConnId, text: &str) {
        let Ok(msg) = serde_json::from_str::<ClientMsg<Raw>>(text) else {
            panic!("the SDK sent a frame the server cannot read: {text}");
        };
        let at = self.instant();
        if std::env::var("SIM_DEBUG").is_ok() && text.contains("\"join\"") {
            eprintln!(
                "{:>8.0} conn{conn}→hub: {}",
                self.now - 1_764_000_000_000.0,
                &text[..text.len().min(120)]
            );
        }
        let id = matches!(msg, ClientMsg::Join { .. }).then(|| self.fresh_id(conn));
        match msg {
            ClientMsg::Join {
                room,
                version,
                metadata,
                resume,
                capacity,
            } => self.hub.join(
                conn,
                JoinRequest {
                    room: room.unwrap_or_default(),
                    version,
                    metadata,
                    resume,
                    capacity,
                    // Ids as a JWT would name them: deterministic, so runs repeat exactly (the
                    // polite side follows from the ids).
                    peer_id: id,
                    principal: Binding::anonymous(),
                },
                at,
            ),
            ClientMsg::Signal { to, payload } => self.hub.signal(conn, &to, &payload),
            ClientMsg::Metadata { metadata } => self.hub.update_metadata(conn, metadata),
            ClientMsg::Leave => self.hub.leave(conn),
            ClientMsg::Ping { ts } => self.hub.ping(conn, ts),
        }
    }

    fn fresh_id(&mut self, conn: ConnId) -> String {
        self.joins += 1;
        let node = self.conns.get(&conn).map_or(99, |(n, _, _)| *n);
        format!("n{node}-{}", self.joins)
    }

    /// Frames the hub queued for every connection, on their way to the nodes.
    fn drain_hub(&mut self) {
        let mut deliveries = Vec::new();
        for (&conn, (node, transport, rx)) in self.conns.iter_mut() {
            while let Some(out) = rx.0.borrow_mut().pop_front() {
                deliveries.push((conn, *node, *transport, out));
            }
        }
        deliveries.sort_by_key(|(conn, ..)| *conn);
        for (conn, node, transport, out) in deliveries {
            let at = self.delivery_time(conn);
            let input = match out {
                Outgoing::Text(text) | Outgoing::Shared(text, _) => {
                    if std::env::var("SIM_DEBUG").is_ok()
                        && (text.contains("\"error\"") || text.contains("\"joined\""))
                    {
                        eprintln!(
                            "{:>8.0} hub→{node} t{transport}: {}",
                            self.now - 1_764_000_000_000.0,
                            &text.as_str()[..text.len().min(160)]
                        );
                    }
                    match serde_json::from_str::<ServerMsg<J>>(text.as_str()) {
                        Ok(msg) => Input::TransportMessage { transport, msg },
                        Err(_) => Input::TransportGarbage { transport },
                    }
                }
                Outgoing::Close(code, reason) => {
                    self.schedule(at - self.now + 1.0, Ev::HubDisconnect(conn));
                    Input::TransportClosed {
                        transport,
                        code,
                        reason: reason.into(),
                    }
                }
                Outgoing::Ping => continue,
            };
            self.schedule(at - self.now, Ev::Input(node, input));
        }
    }

    /// A browser call at its turn on the pc's operations chain.
    fn browser_call(&mut self, node: usize, pc: PcId, op: Option<OpId>, call: BrowserCall) {
        let local = self.nodes[node].local.clone();
        let kinds = move |track: &str| {
            local
                .iter()
                .flat_map(|s| s.tracks.iter())
                .find(|(t, _)| t == track)
                .map_or_else(|| "video".to_string(), |(_, k)| k.clone())
        };
        let Some(sim) = self.nodes[node].pcs.get_mut(&pc) else {
            return;
        };
        let before = (
            sim.sig,
            sim.local.as_ref().map(|d| d.ufrag),
            sim.remote.as_ref().map(|d| d.ufrag),
        );
        let fx = sim.call(node, &call, &kinds);
        if std::env::var("SIM_DEBUG").is_ok() {
            let what = match &call {
                BrowserCall::SetLocalDescription => "SLD".to_string(),
                BrowserCall::SetRemoteDescription(d) => format!(
                    "SRD({:?} u{:?})",
                    d.kind,
                    super::browser::Desc::parse(&d.sdp).map(|d| d.ufrag)
                ),
                BrowserCall::RestartIce => "restartIce".into(),
                _ => String::new(),
            };
            if !what.is_empty() {
                eprintln!(
                    "{:>8.0} node{node} pc{pc} {what}: {before:?} -> ({:?} {:?} {:?}) {:?}",
                    self.now - 1_764_000_000_000.0,
                    sim.sig,
                    sim.local.as_ref().map(|d| d.ufrag),
                    sim.remote.as_ref().map(|d| d.ufrag),
                    fx.result.as_ref().map(|r| r.as_ref().map(|o| match o {
                        OpOutput::LocalDescription(d) => format!(
                            "{:?} u{:?}",
                            d.kind,
                            super::browser::Desc::parse(&d.sdp).map(|d| d.ufrag)
                        ),
                        _ => String::new(),
                    }))
                );
            }
        }
        self.effects(node, pc, op, fx);
    }

    /// Delivers what a pc did: events first, then the op's result; schedules its later steps.
    fn effects(&mut self, node: usize, pc: PcId, op: Option<OpId>, fx: Effects) {
        let Effects {
            events,
            result,
            later,
            check_ice,
        } = fx;
        let connected = events.contains(&PcEvent::ConnectionState("connected".into()));
        for event in events {
            self.input(node, Input::Pc { pc, event });
        }
        if connected {
            self.open_channels(node, pc);
        }
        if let (Some(op), Some(result)) = (op, result) {
            self.input(node, Input::Done { op, result });
        }
        for (delay, step) in later {
            self.schedule(delay, Ev::Later(node, pc, step));
        }
        if check_ice {
            self.check_ice(node, pc);
        }
    }

    /// Whether `(node, pc)` and its counterpart hold each other's current descriptions and a
    /// candidate of each other's ufrag, and the media path is up.
    fn reachable(&self, node: usize, pc: PcId) -> Option<(usize, PcId, bool)> {
        let me = self.nodes[node].pcs.get(&pc)?;
        let (other_node, other_pc) = me.counterpart()?;
        let other = self.nodes.get(other_node)?.pcs.get(&other_pc)?;
        let paired = other.counterpart() == Some((node, pc))
            && me.local.as_ref().map(|d| d.ufrag) == other.remote.as_ref().map(|d| d.ufrag)
            && other.local.as_ref().map(|d| d.ufrag) == me.remote.as_ref().map(|d| d.ufrag)
            && me
                .local
                .as_ref()
                .is_some_and(|l| other.got_candidates.contains(&l.ufrag))
            && other
                .local
                .as_ref()
                .is_some_and(|l| me.got_candidates.contains(&l.ufrag));
        Some((other_node, other_pc, paired && self.media_up))
    }

    fn check_ice(&mut self, node: usize, pc: PcId) {
        let Some((other_node, other_pc, ok)) = self.reachable(node, pc) else {
            return;
        };
        for (n, p) in [(node, pc), (other_node, other_pc)] {
            let delay = self.rng.between(self.delays.connect.0, self.delays.connect.1);
            let up = self.media_up;
            let Some(sim) = self.nodes[n].pcs.get_mut(&p) else {
                continue;
            };
            let fx = sim.connectivity(ok, up, delay);
            self.effects(n, p, None, fx);
        }
    }

    /// Cuts or restores the media path of every pair.
    pub fn set_media(&mut self, up: bool) {
        self.media_up = up;
        let all: Vec<(usize, PcId)> = self
            .nodes
            .iter()
            .enumerate()
            .flat_map(|(n, node)| node.pcs.keys().map(move |p| (n, *p)))
            .collect();
        for (n, p) in all {
            self.check_ice(n, p);
        }
    }

    /// Drops every signaling socket (as a dead network would): the clients see 1006, the
    /// server sees the sockets go; reconnects fail while `up` is false.
    pub fn set_signaling(&mut self, up: bool) {
        self.signaling_up = up;
        if up {
            return;
        }
        let conns: Vec<(ConnId, usize, u32)> = self.conns.iter().map(|(c, (n, t, _))| (*c, *n, *t)).collect();
        for (conn, node, transport) in conns {
            self.nodes[node].transport = None;
            self.schedule(
                1.0,
                Ev::Input(
                    node,
                    Input::TransportClosed {
                        transport,
                        code: 1006,
                        reason: String::new(),
                    },
                ),
            );
            self.schedule(2.0, Ev::HubDisconnect(conn));
        }
    }

    /// A node vanishes without a word: its socket dies (the server notices), its browser stops.
    pub fn crash(&mut self, node: usize) {
        if let Some((_, conn)) = self.nodes[node].transport.take() {
            self.schedule(1.0, Ev::HubDisconnect(conn));
        }
        self.crashed.push(node);
    }

    /// The server process restarts (same resume secret): every client gets 1001.
    pub fn restart_server(&mut self) {
        let conns: Vec<(ConnId, usize, u32)> = std::mem::take(&mut self.conns)
            .into_iter()
            .map(|(c, (n, t, _))| (c, n, t))
            .collect();
        for (_, node, transport) in conns {
            self.nodes[node].transport = None;
            self.schedule(
                1.0,
                Ev::Input(
                    node,
                    Input::TransportClosed {
                        transport,
                        code: 1001,
                        reason: "server shutting down".into(),
                    },
                ),
            );
        }
        self.hub = hub(&self.secret);
    }

    /// A collector that takes every line and reports the socket drained.
    fn collector(&mut self, node: usize, action: TraceAction) {
        match action {
            TraceAction::Open { socket, .. } => {
                self.nodes[node].log.push("trace-open".into());
                self.nodes[node].trace_lines.entry(socket).or_default();
                let delay = self.rng.between(1.0, 30.0);
                self.schedule(
                    delay,
                    Ev::Input(node, Input::TraceSocket(TraceSocketEvent::Open { socket })),
                );
            }
            TraceAction::Send { socket, text } => {
                self.nodes[node].trace_lines.entry(socket).or_default().push(text);
                let delay = self.rng.between(1.0, 10.0);
                self.schedule(
                    delay,
                    Ev::Input(node, Input::TraceSocket(TraceSocketEvent::Drained { socket })),
                );
            }
            TraceAction::Close { .. } => self.nodes[node].log.push("trace-close".into()),
            TraceAction::Timer { .. } | TraceAction::Error { .. } => {}
        }
    }

    // ---- what tests read

    pub fn id(&self, node: usize) -> String {
        self.nodes[node].room.local_id().unwrap_or_default().to_string()
    }

    /// The dumps of a node's trace, one per socket, as the collector would write them, read
    /// back and checked by the reader.
    pub fn dumps(&self, node: usize) -> Vec<Result<dump::Dump, dump::DumpError>> {
        let mut sockets: Vec<_> = self.nodes[node].trace_lines.iter().collect();
        sockets.sort_by_key(|(s, _)| **s);
        sockets
            .into_iter()
            .filter(|(_, lines)| !lines.is_empty())
            .map(|(_, lines)| dump::read_dump(&dump::write_dump(lines, 1000, 1.0)))
            .collect()
    }
}
