//! `RoomCore`, the wasm half of the JS `RoomSession`: the executor of the sans-IO [`Room`].
//!
//! It makes no decision. Browser and transport callbacks only turn what happened into an
//! [`Input`] and queue it; one loop feeds the queue to the room and carries out what the room
//! answers ([`Output`]): web-sys calls, the signaling and trace sockets, one timer. Nothing that
//! arrives while the room is busy is dropped: it waits in the queue. No app code or JS that can
//! throw runs while the state is borrowed: borrows are short and end before any call into JS
//! that could reach app code (a custom transport, the `onPeerConnection` hook, a pc method a
//! tracer wrapped, a track's `stop`), and events and Promise settlements are delivered after
//! the loop, in order, with nothing borrowed. App calls and getters made from inside any of
//! those simply queue input or read the state.
//!
//! Every closure lives beside the object it listens to (a pc, a socket, the page) and is
//! dropped with it.

use std::{
    cell::{Cell, RefCell},
    collections::VecDeque,
    rc::{Rc, Weak},
};

use js_sys::{Array, Function, Promise};
use litemap::LiteMap;
use rtcroom_protocol::{js::ToJs, valid_room_name, IceCandidate, SdpKind, SessionDescription, SignalPayload};
use wasm_bindgen::prelude::*;
use web_sys::{MediaStream, RtcConfiguration, RtcPeerConnection, WebSocket};

use super::{
    decode::{
        client_msg_json, ice_candidate, raw_config, server_msg_from_json, signal_payload,
        signal_payload_value, Js,
    },
    js::{self, describe, error_value, invalid, now, object, stats_value, Listener, Timer},
    stats::{counters_value, get_stats, summary_value, trace_config},
    transport::{Socket, TransportEvent},
};
use crate::{
    data::{app_channel_id, files, AckMode, ChannelId, ChannelSpec, DataOut, SendId, HEADER, LOW_WATER},
    error::{code, SdkError},
    peer::lifecycle::IcePolicy,
    room::io::ChannelEvent,
    room::{
        session::SessionState, BrowserCall, Input, LocalStream, OpId, OpOutput, Output, Payload, PcEvent,
        PcId, RequestId, Room, RoomConfig, RoomEvent, StatsOptions, TraceSocketEvent, TransportOp,
    },
    signaling::retry::RetryPolicy,
    stats::Action as TraceAction,
};

/// Signal payloads between SDKs are JS values, read and written by the generated codec.
impl Payload for Js {
    fn decode(&self) -> Option<SignalPayload<Js>> {
        signal_payload(&self.0)
    }

    fn encode(payload: SignalPayload<Js>) -> Js {
        Js(signal_payload_value(&payload))
    }
}

/// The WebSocket subprotocol of rtcstats clients.
const TRACE_SUBPROTOCOL: &str = "rtcstats#5.0";
/// How often trace sockets with unsent data are checked for a drained buffer.
const DRAIN_CHECK_MS: u32 = 250;

/// One peer connection and what belongs to it in the browser.
struct PcShell {
    pc: RtcPeerConnection,
    /// Local track id → its `RTCRtpSender`.
    senders: Vec<(String, JsValue)>,
    /// Remote streams by id, as their `track` events brought them.
    remote: Vec<(String, MediaStream)>,
    /// Data channels by id, with their listeners.
    channels: Vec<(ChannelId, JsValue, [Listener; 4])>,
    listeners: Vec<Listener>,
}

impl Drop for PcShell {
    fn drop(&mut self) {
        self.listeners.clear();
        self.channels.clear();
        js::close(&self.pc);
    }
}

struct TraceSocket {
    id: u32,
    ws: WebSocket,
    _listeners: [Listener; 3],
}

impl Drop for TraceSocket {
    fn drop(&mut self) {
        let _ = self.ws.close_with_code(1000);
    }
}

/// The ids of an app's own pcs (`StatsTrace`) have this bit; the room numbers its own from 1.
const APP_PC: PcId = 1 << 31;

/// What the executor holds besides the room.
struct State {
    room: Room<Js>,
    emit: Function,
    url: String,
    /// An app-supplied transport object, used instead of a WebSocket to `url`.
    custom_transport: Option<JsValue>,
    rtc_config: RtcConfiguration,
    /// Called with `(pc, configuration, peerId)` right after each RTCPeerConnection is made.
    on_peer_connection: Option<Function>,
    socket: Option<Socket>,
    pcs: LiteMap<PcId, PcShell>,
    /// The streams given to `addStream`, by id.
    streams: Vec<MediaStream>,
    trace_sockets: Vec<TraceSocket>,
    /// An app's own pcs traced with `StatsTrace`, by the ids this executor gave them.
    app_pcs: Vec<(PcId, RtcPeerConnection)>,
    next_app_pc: PcId,
    /// `StatsTrace`'s Promises: connect (by generation), close, finalStats, and a pc's close.
    open_waiters: Vec<(u32, Function, Function)>,
    end_waiters: Vec<(u32, Function)>,
    final_waiters: Vec<(u32, Function)>,
    close_waiters: Vec<(PcId, Function)>,
    drain_timer: Option<Timer>,
    timer: Option<(f64, Timer)>,
    join_waiters: Vec<(Function, Function)>,
    leave_waiters: Vec<Function>,
    requests: Vec<(RequestId, Function, Function)>,
    next_request: RequestId,
    /// Bytes the data engine names by handle: outgoing messages and incoming chunks.
    payloads: Slab,
    /// `send()` Promises by send id.
    sends: Vec<(SendId, Function, Function)>,
    next_send: SendId,
    /// Files being sent (their Blobs, read slice by slice), and received (their chunks).
    files_out: Vec<(u32, JsValue)>,
    files_in: Vec<(u32, Array)>,
    next_file: u32,
    /// `pagehide` and `beforeunload`: leave when the page goes away (Firefox closes the page's
    /// sockets before `pagehide`, so the earlier `beforeunload` is what reaches the others).
    page_exit: Vec<Listener>,
}

/// JS values by a reusable index (the data engine's handles): O(1) in and out.
#[derive(Default)]
struct Slab {
    items: Vec<Option<JsValue>>,
    free: Vec<u32>,
}

impl Slab {
    fn insert(&mut self, value: JsValue) -> u32 {
        match self.free.pop() {
            Some(i) => {
                self.items[i as usize] = Some(value);
                i
            }
            None => {
                self.items.push(Some(value));
                (self.items.len() - 1) as u32
            }
        }
    }
    fn get(&self, i: u32) -> Option<&JsValue> {
        self.items.get(i as usize)?.as_ref()
    }
    fn take(&mut self, i: u32) -> Option<JsValue> {
        let value = self.items.get_mut(i as usize)?.take();
        if value.is_some() {
            self.free.push(i);
        }
        value
    }
}

/// What runs after the loop, in order: app calls, and acks of messages whose listeners ran.
enum AppCall {
    Call(Function, [JsValue; 3]),
    Delivered(PcId, ChannelId, u32),
}

/// The executor: the room's state, the input queue, and the app calls to make after the loop.
struct Shared {
    state: RefCell<State>,
    queue: RefCell<VecDeque<Input<Js>>>,
    running: Cell<bool>,
    app: RefCell<VecDeque<AppCall>>,
    delivering: Cell<bool>,
}

type Handle = Weak<Shared>;

impl State {
    fn new(
        room: Room<Js>,
        emit: Function,
        url: String,
        custom_transport: Option<JsValue>,
        rtc_config: RtcConfiguration,
        on_peer_connection: Option<Function>,
    ) -> State {
        State {
            room,
            emit,
            url,
            custom_transport,
            rtc_config,
            on_peer_connection,
            socket: None,
            pcs: LiteMap::new(),
            streams: Vec::new(),
            trace_sockets: Vec::new(),
            app_pcs: Vec::new(),
            next_app_pc: 0,
            open_waiters: Vec::new(),
            end_waiters: Vec::new(),
            final_waiters: Vec::new(),
            close_waiters: Vec::new(),
            drain_timer: None,
            timer: None,
            join_waiters: Vec::new(),
            leave_waiters: Vec::new(),
            requests: Vec::new(),
            next_request: 1,
            payloads: Slab::default(),
            sends: Vec::new(),
            next_send: 1,
            files_out: Vec::new(),
            files_in: Vec::new(),
            next_file: 1,
            page_exit: Vec::new(),
        }
    }
}

/// Queues an input and runs the loop unless it is running already (then the loop takes it).
fn feed(weak: &Handle, input: Input<Js>) {
    if let Some(shared) = weak.upgrade() {
        shared.queue.borrow_mut().push_back(input);
        run(&shared);
    }
}

fn run(shared: &Rc<Shared>) {
    if shared.running.replace(true) {
        return;
    }
    loop {
        let next = shared.queue.borrow_mut().pop_front();
        if let Some(input) = next {
            match shared.state.try_borrow_mut() {
                Ok(mut st) => st.room.handle(input, now()),
                Err(_) => {
                    // Cannot happen (no borrow outlives a step); keep the input rather than lose it.
                    shared.queue.borrow_mut().push_front(input);
                    break;
                }
            }
        }
        perform_all(shared);
        if shared.queue.borrow().is_empty() {
            break;
        }
    }
    shared.running.set(false);
    deliver(shared);
}

/// Calls the app (events, Promise settlements) in order, with nothing borrowed. A call that
/// feeds input runs the loop again; what it produces is delivered here, after what was queued.
fn deliver(shared: &Rc<Shared>) {
    if shared.delivering.replace(true) {
        return;
    }
    loop {
        let next = shared.app.borrow_mut().pop_front();
        match next {
            None => break,
            Some(AppCall::Call(f, [a, b, c])) => {
                let _ = f.call3(&JsValue::NULL, &a, &b, &c);
            }
            Some(AppCall::Delivered(pc, channel, seq)) => {
                feed(&Rc::downgrade(shared), Input::Delivered { pc, channel, seq });
            }
        }
    }
    shared.delivering.set(false);
}

fn app_call(shared: &Shared, f: &Function, args: [JsValue; 3]) {
    shared.app.borrow_mut().push_back(AppCall::Call(f.clone(), args));
}

fn emit(shared: &Shared, peer: Option<&str>, name: &str, detail: JsValue) {
    let f = shared.state.borrow().emit.clone();
    let peer = peer.map_or(JsValue::NULL, JsValue::from_str);
    app_call(shared, &f, [peer, name.into(), detail]);
}

fn perform_all(shared: &Rc<Shared>) {
    loop {
        let out = shared.state.borrow_mut().room.poll_output();
        match out {
            Output::Timeout(at) => return set_timer(shared, at),
            Output::Transport(op) => transport(shared, op),
            Output::Browser { pc, op, call } => browser(shared, pc, op, call),
            Output::Trace(action) => trace(shared, action),
            Output::Data(out) => data(shared, out),
            Output::ReadFile {
                transfer,
                offset,
                len,
            } => read_file(shared, transfer, offset, len),
            Output::StopTracks { streams } => {
                let tracks: Vec<JsValue> = {
                    let st = shared.state.borrow();
                    st.streams
                        .iter()
                        .filter(|s| streams.contains(&js::id(s)))
                        .flat_map(|s| js::tracks(s).iter().collect::<Vec<_>>())
                        .collect()
                };
                for track in tracks {
                    js::stop_track(&track); // a tracer may record it: it queues input
                }
            }
            Output::Event(event) => room_event(shared, event),
        }
    }
}

fn set_timer(shared: &Rc<Shared>, at: f64) {
    let mut st = shared.state.borrow_mut();
    if !at.is_finite() {
        st.timer = None;
        return;
    }
    if st.timer.as_ref().is_some_and(|(t, _)| *t == at) {
        return;
    }
    let weak = Rc::downgrade(shared);
    // Rounded up: a tick before `at` would find nothing due and ask for the same `at` again.
    let delay = (at - now()).ceil().clamp(0.0, 3_600_000.0) as u32;
    let tick = move || {
        if let Some(shared) = weak.upgrade() {
            // This timer is spent: whatever the tick asks for gets a new one. (Dropping a
            // closure while it runs is safe: wasm-bindgen frees it when the call returns.)
            let spent = shared.state.borrow_mut().timer.take();
            drop(spent);
            feed(&weak, Input::Tick);
        }
    };
    st.timer = Some((at, Timer::new(delay, tick)));
}

// ---- signaling

fn transport(shared: &Rc<Shared>, op: TransportOp<Js>) {
    match op {
        TransportOp::Open { transport } => {
            let old = shared.state.borrow_mut().socket.take();
            drop(old); // closes it (a custom transport's close() is app code: nothing borrowed)
            let (url, custom) = {
                let st = shared.state.borrow();
                (st.url.clone(), st.custom_transport.clone())
            };
            let weak = Rc::downgrade(shared);
            let on_event = move |event| {
                let input = match event {
                    TransportEvent::Open => Input::TransportOpen { transport },
                    TransportEvent::Message(text) => match server_msg_from_json(&text) {
                        Some(msg) => Input::TransportMessage { transport, msg },
                        None => Input::TransportGarbage { transport },
                    },
                    TransportEvent::Closed { code, reason } => Input::TransportClosed {
                        transport,
                        code,
                        reason,
                    },
                };
                feed(&weak, input);
            };
            let opened = match &custom {
                Some(target) => Socket::custom(target, on_event),
                None => Socket::websocket(&url, on_event),
            };
            match opened {
                Ok(socket) => shared.state.borrow_mut().socket = Some(socket),
                Err(reason) => shared.queue.borrow_mut().push_back(Input::TransportClosed {
                    transport,
                    code: 1006,
                    reason,
                }),
            }
        }
        TransportOp::Send(msg) => {
            // Encoding may call an app object's toJSON: nothing borrowed.
            let Some(text) = client_msg_json(&msg) else {
                return;
            };
            let sender = shared.state.borrow().socket.as_ref().map(Socket::sender);
            if let Some(sender) = sender {
                sender.send(&text);
            }
        }
        TransportOp::Close => {
            let old = shared.state.borrow_mut().socket.take();
            drop(old);
        }
    }
}

// ---- the browser

fn done(shared: &Rc<Shared>, op: Option<OpId>, result: Result<OpOutput, String>) {
    if let Some(op) = op {
        shared.queue.borrow_mut().push_back(Input::Done { op, result });
    }
}

fn pc_of(shared: &Shared, pc: PcId) -> Option<RtcPeerConnection> {
    let st = shared.state.borrow();
    st.pcs.get(&pc).map(|p| p.pc.clone()).or_else(|| {
        st.app_pcs
            .iter()
            .find(|(id, _)| *id == pc)
            .map(|(_, p)| p.clone())
    })
}

/// Awaits a browser Promise in the background and feeds its outcome back.
fn later(
    shared: &Rc<Shared>,
    op: Option<OpId>,
    promise: Promise,
    read: impl FnOnce(JsValue) -> OpOutput + 'static,
) {
    let weak = Rc::downgrade(shared);
    js::settle(
        &promise,
        Box::new(move |outcome| {
            let result = match outcome {
                Ok(value) => Ok(read(value)),
                Err(err) => Err(describe(&err)),
            };
            if let Some(op) = op {
                feed(&weak, Input::Done { op, result });
            }
        }),
    );
}

fn sdp_kind(kind: &str) -> Option<SdpKind> {
    Some(match kind {
        "offer" => SdpKind::Offer,
        "answer" => SdpKind::Answer,
        "pranswer" => SdpKind::Pranswer,
        "rollback" => SdpKind::Rollback,
        _ => return None,
    })
}

fn browser(shared: &Rc<Shared>, id: PcId, op: Option<OpId>, call: BrowserCall) {
    if let BrowserCall::Create { peer } = call {
        return create_pc(shared, id, op, &peer);
    }
    if let BrowserCall::Close = call {
        let closing = shared.state.borrow_mut().pcs.remove(&id);
        drop(closing); // pc.close() (perhaps wrapped by a tracer): nothing borrowed
        return;
    }
    let Some(pc) = pc_of(shared, id) else {
        return done(shared, op, Err("the peer connection is closed".into()));
    };
    match call {
        BrowserCall::Create { .. } | BrowserCall::Close => {}
        BrowserCall::SetLocalDescription => {
            let reader = pc.clone();
            later(shared, op, js::set_local_description_implicit(&pc), move |_| {
                let local = js::get(&reader, "localDescription");
                match js::get(&local, "type").as_string().as_deref().and_then(sdp_kind) {
                    Some(kind) => OpOutput::LocalDescription(SessionDescription {
                        kind,
                        sdp: js::get(&local, "sdp").as_string().unwrap_or_default(),
                    }),
                    None => OpOutput::Empty,
                }
            });
        }
        BrowserCall::SetRemoteDescription(description) => {
            later(
                shared,
                op,
                js::set_remote_description(&pc, &description.to_js()),
                |_| OpOutput::Empty,
            );
        }
        BrowserCall::AddIceCandidate(candidate) => {
            let init = candidate.as_ref().map_or(JsValue::NULL, IceCandidate::to_js);
            later(shared, op, js::add_ice_candidate(&pc, &init), |_| OpOutput::Empty);
        }
        BrowserCall::AddTrack { stream, track } => {
            let found = {
                let st = shared.state.borrow();
                st.streams.iter().find(|s| js::id(s) == stream).and_then(|s| {
                    let t = js::tracks(s).iter().find(|t| js::id(t) == track)?;
                    Some((JsValue::from(Clone::clone(s)), t))
                })
            };
            let Some((stream, track_value)) = found else {
                return done(shared, op, Err("the track is gone".into()));
            };
            match js::add_track(&pc, &track_value, &stream) {
                Ok(sender) => {
                    if let Some(shell) = shared.state.borrow_mut().pcs.get_mut(&id) {
                        shell.senders.push((track, sender));
                    }
                    done(shared, op, Ok(OpOutput::Empty));
                }
                Err(err) => done(shared, op, Err(describe(&err))),
            }
        }
        BrowserCall::RemoveTrack { track } => {
            let sender = shared.state.borrow_mut().pcs.get_mut(&id).and_then(|shell| {
                let index = shell.senders.iter().position(|(t, _)| *t == track)?;
                Some(shell.senders.remove(index).1)
            });
            let result = match sender {
                Some(sender) => js::remove_track(&pc, &sender).map_err(|e| describe(&e)),
                None => Ok(()),
            };
            done(shared, op, result.map(|()| OpOutput::Empty));
        }
        BrowserCall::RestartIce => {
            let result = js::restart_ice(&pc).map_err(|e| describe(&e));
            done(shared, op, result.map(|()| OpOutput::Empty));
        }
        BrowserCall::CreateChannel(spec) => create_channel(shared, id, &pc, &spec),
        BrowserCall::GetStats => {
            let weak = Rc::downgrade(shared);
            let promise = js::get_stats(&pc);
            get_stats(promise, move |outcome| {
                let result = match outcome {
                    Ok(stats) => Ok(OpOutput::Stats(stats)),
                    Err(err) => Err(describe(&err)),
                };
                if let Some(op) = op {
                    feed(&weak, Input::Done { op, result });
                }
            });
        }
    }
}

fn create_pc(shared: &Rc<Shared>, id: PcId, op: Option<OpId>, peer: &str) {
    let (config, hook) = {
        let st = shared.state.borrow();
        (st.rtc_config.clone(), st.on_peer_connection.clone())
    };
    let pc = match RtcPeerConnection::new_with_configuration(&config) {
        Ok(pc) => pc,
        Err(err) => return done(shared, op, Err(describe(&err))),
    };
    if let Some(hook) = hook {
        // Before our listeners, tracks and data channel: a tracer sees everything. App code,
        // nothing borrowed: it may call back into the session.
        let _ = hook.call3(&JsValue::NULL, &pc, &config, &JsValue::from_str(peer));
    }
    let weak = Rc::downgrade(shared);
    let on = move |event: PcEvent| feed(&weak, Input::Pc { pc: id, event });
    let listen = |name: &'static str, f: Box<dyn Fn(&JsValue)>| Listener::new(&pc, name, move |e| f(e));
    let state_of = |property: &'static str, make: fn(String) -> PcEvent| {
        let (on, reader) = (on.clone(), pc.clone());
        Box::new(move |_: &JsValue| {
            on(make(js::get(&reader, property).as_string().unwrap_or_default()));
        }) as Box<dyn Fn(&JsValue)>
    };
    let mut listeners = vec![
        listen("negotiationneeded", {
            let on = on.clone();
            Box::new(move |_| on(PcEvent::NegotiationNeeded))
        }),
        listen("icecandidate", {
            let on = on.clone();
            Box::new(move |e| {
                // null: gathering is complete. (An RTCIceCandidate's fields are read as its
                // properties, as from its toJSON().)
                let candidate = js::get(e, "candidate");
                if candidate.is_null() {
                    on(PcEvent::IceCandidate(None));
                } else if let Some(candidate) = ice_candidate(candidate) {
                    on(PcEvent::IceCandidate(Some(candidate)));
                }
            })
        }),
        listen(
            "connectionstatechange",
            state_of("connectionState", PcEvent::ConnectionState),
        ),
        listen(
            "signalingstatechange",
            state_of("signalingState", PcEvent::SignalingState),
        ),
        listen(
            "iceconnectionstatechange",
            state_of("iceConnectionState", PcEvent::IceConnectionState),
        ),
        listen(
            "icegatheringstatechange",
            state_of("iceGatheringState", PcEvent::IceGatheringState),
        ),
    ];
    listeners.push(remote_tracks(shared, id, &pc));
    shared.state.borrow_mut().pcs.insert(
        id,
        PcShell {
            pc,
            senders: Vec::new(),
            remote: Vec::new(),
            channels: Vec::new(),
            listeners,
        },
    );
    done(shared, op, Ok(OpOutput::Empty));
}

/// `track` events: the stream is kept (the app gets it with `stream-added`) and watched for
/// losing its last track.
fn remote_tracks(shared: &Rc<Shared>, id: PcId, pc: &RtcPeerConnection) -> Listener {
    let weak = Rc::downgrade(shared);
    Listener::new(pc, "track", move |e| {
        let stream = js::get(&js::get(e, "streams"), "0");
        if !stream.is_object() {
            return; // a track without a stream: the room has no role for it
        }
        let stream = MediaStream::unchecked_from_js(stream);
        let Some(shared) = weak.upgrade() else { return };
        let stream_id = js::id(&stream);
        let track = js::get(e, "track");
        {
            let mut st = shared.state.borrow_mut();
            let Some(shell) = st.pcs.get_mut(&id) else {
                return;
            };
            if !shell.remote.iter().any(|(s, _)| *s == stream_id) {
                let watch = weak.clone();
                let (watched, sid) = (Clone::clone(&stream), stream_id.clone());
                shell
                    .listeners
                    .push(Listener::new(&stream, "removetrack", move |_| {
                        if js::tracks(&watched).length() == 0 {
                            let event = PcEvent::StreamEmptied { stream: sid.clone() };
                            feed(&watch, Input::Pc { pc: id, event });
                        }
                    }));
                // `Clone::clone`: MediaStream's own `.clone()` is the JS method that copies it.
                shell.remote.push((stream_id.clone(), Clone::clone(&stream)));
            }
        }
        let event = PcEvent::Track {
            stream: stream_id,
            track: js::id(&track),
            kind: js::get(&track, "kind").as_string().unwrap_or_default(),
        };
        feed(&weak, Input::Pc { pc: id, event });
    })
}

// ---- the stats trace's collector sockets

fn trace(shared: &Rc<Shared>, action: TraceAction) {
    match action {
        TraceAction::Open { socket, generation } => {
            let url = shared
                .state
                .borrow()
                .room
                .trace_url(generation)
                .unwrap_or_default()
                .to_string();
            let ws = match WebSocket::new_with_str(&url, TRACE_SUBPROTOCOL) {
                Ok(ws) => ws,
                Err(_) => {
                    let event = TraceSocketEvent::Closed {
                        socket,
                        code: 1006,
                        reason: "not a ws:// or wss:// URL".into(),
                    };
                    return shared.queue.borrow_mut().push_back(Input::TraceSocket(event));
                }
            };
            let listen = |name: &'static str, make: fn(u32, &JsValue) -> Option<TraceSocketEvent>| {
                let weak = Rc::downgrade(shared);
                Listener::new(&ws, name, move |e| {
                    if let Some(event) = make(socket, e) {
                        feed(&weak, Input::TraceSocket(event));
                    }
                })
            };
            let listeners = [
                listen("open", |socket, _| Some(TraceSocketEvent::Open { socket })),
                listen("message", |socket, e| {
                    let text = js::text_of(e)?;
                    Some(TraceSocketEvent::Message { socket, text })
                }),
                listen("close", |socket, e| {
                    let (code, reason) = js::close_of(e);
                    Some(TraceSocketEvent::Closed { socket, code, reason })
                }),
            ];
            shared.state.borrow_mut().trace_sockets.push(TraceSocket {
                id: socket,
                ws,
                _listeners: listeners,
            });
        }
        TraceAction::Send { socket, text } => {
            let ws = shared
                .state
                .borrow()
                .trace_sockets
                .iter()
                .find(|s| s.id == socket)
                .map(|s| s.ws.clone());
            if let Some(ws) = ws {
                let _ = ws.send_with_str(&text);
                arm_drain_check(shared);
            }
        }
        TraceAction::Close { socket } => {
            let closing = {
                let mut st = shared.state.borrow_mut();
                let index = st.trace_sockets.iter().position(|s| s.id == socket);
                index.map(|i| st.trace_sockets.remove(i))
            };
            drop(closing);
        }
        // The room keeps these itself.
        TraceAction::Timer { .. } | TraceAction::Error { .. } => {}
    }
}

/// Reports each trace socket whose buffer drained (delivery for collectors that do not ack).
fn arm_drain_check(shared: &Rc<Shared>) {
    let mut st = shared.state.borrow_mut();
    if st.drain_timer.is_some() {
        return;
    }
    let weak = Rc::downgrade(shared);
    st.drain_timer = Some(Timer::new(DRAIN_CHECK_MS, move || {
        let Some(shared) = weak.upgrade() else { return };
        let (drained, pending) = {
            let mut st = shared.state.borrow_mut();
            st.drain_timer = None;
            let (drained, pending): (Vec<_>, Vec<_>) = st
                .trace_sockets
                .iter()
                .partition(|s| js::get(&s.ws, "bufferedAmount").as_f64() == Some(0.0));
            (
                drained.iter().map(|s| s.id).collect::<Vec<_>>(),
                !pending.is_empty(),
            )
        };
        if pending {
            arm_drain_check(&shared);
        }
        for socket in drained {
            feed(&weak, Input::TraceSocket(TraceSocketEvent::Drained { socket }));
        }
    }));
}

// ---- data channels

/// A pre-negotiated channel (the same id on both sides), binary, with its pacing threshold.
fn create_channel(shared: &Rc<Shared>, id: PcId, pc: &RtcPeerConnection, spec: &ChannelSpec) {
    let mut init = vec![
        ("negotiated", true.into()),
        ("id", spec.id.into()),
        ("ordered", spec.ordered.into()),
    ];
    if let Some(n) = spec.max_retransmits {
        init.push(("maxRetransmits", n.into()));
    }
    if let Some(n) = spec.max_packet_life_time {
        init.push(("maxPacketLifeTime", n.into()));
    }
    let Ok(channel) = js::create_data_channel(pc, &spec.label, &object(&init)) else {
        return;
    };
    js::set(&channel, "binaryType", &"arraybuffer".into());
    js::set(&channel, "bufferedAmountLowThreshold", &(LOW_WATER as f64).into());
    let cid = spec.id;
    let weak = Rc::downgrade(shared);
    let on = move |event: ChannelEvent| {
        feed(
            &weak,
            Input::Channel {
                pc: id,
                channel: cid,
                event,
            },
        )
    };
    let open = {
        let (on, pc) = (on.clone(), pc.clone());
        Listener::new(&channel, "open", move |_| {
            let max = js::get(&js::get(&pc, "sctp"), "maxMessageSize").as_f64();
            on(ChannelEvent::Open {
                max_message_size: max,
            });
        })
    };
    let close = {
        let on = on.clone();
        Listener::new(&channel, "close", move |_| on(ChannelEvent::Closed))
    };
    let low = {
        let on = on.clone();
        Listener::new(&channel, "bufferedamountlow", move |e| {
            let amount = js::get(&js::get(e, "target"), "bufferedAmount")
                .as_f64()
                .unwrap_or(0.0);
            on(ChannelEvent::Buffered(amount));
        })
    };
    let message = {
        let weak = Rc::downgrade(shared);
        Listener::new(&channel, "message", move |e| {
            let Some(shared) = weak.upgrade() else { return };
            let event = match js::get(e, "data").dyn_into::<js_sys::ArrayBuffer>() {
                Ok(buffer) => frame_event(&shared, &buffer),
                // Text (or anything else) is not ours: refused by the engine.
                Err(_) => ChannelEvent::Frame {
                    head: Vec::new(),
                    part: None,
                    len: 0,
                },
            };
            feed(
                &weak,
                Input::Channel {
                    pc: id,
                    channel: cid,
                    event,
                },
            );
        })
    };
    if let Some(shell) = shared.state.borrow_mut().pcs.get_mut(&id) {
        shell.channels.push((cid, channel, [open, close, low, message]));
    }
}

/// Bytes of `buffer` as a Vec (one bulk copy: `to_vec` asserts lengths, which links core::fmt).
fn copy_bytes(buffer: &js_sys::ArrayBuffer, from: u32, len: u32) -> Vec<u8> {
    let view = js_sys::Uint8Array::new_with_byte_offset_and_length(buffer, from, len);
    let mut bytes = Vec::with_capacity(len as usize);
    // SAFETY: the view has exactly `len` bytes and the Vec that much capacity.
    unsafe {
        view.raw_copy_to_ptr(bytes.as_mut_ptr());
        bytes.set_len(len as usize);
    }
    bytes
}

/// A received frame for the engine: its header (a file frame whole: control frames are read,
/// chunks hashed), and a handle for the bytes after the header.
fn frame_event(shared: &Shared, buffer: &js_sys::ArrayBuffer) -> ChannelEvent {
    let total = buffer.byte_length();
    let first = if total > 0 {
        copy_bytes(buffer, 0, 1).first().copied().unwrap_or(0)
    } else {
        0
    };
    let (head_len, part_at) = match first {
        files::CONTROL => (total.min(files::MAX_CONTROL as u32), None),
        files::CHUNK => (total, Some(13u32.min(total))),
        1 if total >= HEADER as u32 => (HEADER as u32, Some(HEADER as u32)),
        _ => (total.min(HEADER as u32), None),
    };
    let head = copy_bytes(buffer, 0, head_len);
    let part = part_at.map(|at| {
        let view = js_sys::Uint8Array::new_with_byte_offset_and_length(buffer, at, total - at);
        shared.state.borrow_mut().payloads.insert(view.into())
    });
    let len = part_at.map_or(0, |at| total - at);
    ChannelEvent::Frame { head, part, len }
}

/// Reads one slice of an outgoing file for the files engine.
fn read_file(shared: &Rc<Shared>, transfer: u32, offset: u64, len: u32) {
    let blob = shared
        .state
        .borrow()
        .files_out
        .iter()
        .find(|(t, _)| *t == transfer)
        .map(|(_, b)| b.clone());
    let weak = Rc::downgrade(shared);
    let Some(blob) = blob else { return };
    let (start, end) = (offset as f64, (offset + u64::from(len)) as f64);
    let read = Function::from(js::get(&blob, "slice"))
        .call2(&blob, &start.into(), &end.into())
        .and_then(|slice| Function::from(js::get(&slice, "arrayBuffer")).call0(&slice));
    let done = move |result: Result<JsValue, JsValue>| {
        let input = match result.and_then(|b| b.dyn_into::<js_sys::ArrayBuffer>()) {
            Ok(buffer) if buffer.byte_length() == len => {
                let Some(shared) = weak.upgrade() else { return };
                let bytes = copy_bytes(&buffer, 0, len);
                let handle = shared
                    .state
                    .borrow_mut()
                    .payloads
                    .insert(js_sys::Uint8Array::new(&buffer).into());
                Input::FileSlice {
                    transfer,
                    offset,
                    handle,
                    bytes,
                }
            }
            Ok(_) => Input::FileReadFailed {
                transfer,
                why: "the file changed while it was sent".into(),
            },
            Err(err) => Input::FileReadFailed {
                transfer,
                why: describe(&err),
            },
        };
        feed(&weak, input);
    };
    match read {
        Ok(promise) => js::settle(&promise, Box::new(done)),
        Err(err) => done(Err(err)),
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        for d in [b >> 4, b & 15] {
            out.push(char::from(DIGITS.get(usize::from(d)).copied().unwrap_or(b'0')));
        }
    }
    out
}

fn channel_of(shared: &Shared, pc: PcId, channel: ChannelId) -> Option<JsValue> {
    let st = shared.state.borrow();
    let shell = st.pcs.get(&pc)?;
    shell
        .channels
        .iter()
        .find(|(c, _, _)| *c == channel)
        .map(|(_, ch, _)| ch.clone())
}

fn buffered_now(shared: &Rc<Shared>, pc: PcId, channel: ChannelId, ch: &JsValue) {
    let amount = js::get(ch, "bufferedAmount").as_f64().unwrap_or(0.0);
    feed(
        &Rc::downgrade(shared),
        Input::Channel {
            pc,
            channel,
            event: ChannelEvent::Buffered(amount),
        },
    );
}

/// The data engine's work: frames out, buffered amounts in, handles freed.
fn data(shared: &Rc<Shared>, out: DataOut) {
    match out {
        DataOut::Send {
            pc,
            channel,
            header,
            handle,
            offset,
            len,
        } => {
            let Some(ch) = channel_of(shared, pc, channel) else {
                return;
            };
            let payload = shared.state.borrow().payloads.get(handle).cloned();
            let Some(payload) = payload else { return };
            let bytes: js_sys::Uint8Array = payload.unchecked_into();
            let at = header.len() as u32;
            let frame = js_sys::Uint8Array::new_with_length(at + len);
            frame.set(&js_sys::Uint8Array::from(&header[..]), 0);
            frame.set(&bytes.subarray(offset, offset + len), at);
            if js::channel_send(&ch, &frame).is_err() {
                let weak = Rc::downgrade(shared);
                feed(
                    &weak,
                    Input::Channel {
                        pc,
                        channel,
                        event: ChannelEvent::Closed,
                    },
                );
            }
        }
        DataOut::Control { pc, channel, bytes } => {
            if let Some(ch) = channel_of(shared, pc, channel) {
                let _ = js::channel_send(&ch, &js_sys::Uint8Array::from(&bytes[..]));
            }
        }
        DataOut::Poll { pc, channel } => {
            if let Some(ch) = channel_of(shared, pc, channel) {
                buffered_now(shared, pc, channel, &ch);
            }
        }
        DataOut::Release(handles) => {
            let mut st = shared.state.borrow_mut();
            for h in handles {
                st.payloads.take(h);
            }
        }
        // Come as room events.
        DataOut::Deliver { .. }
        | DataOut::Settled { .. }
        | DataOut::Refused { .. }
        | DataOut::File { .. } => {}
    }
}

// ---- events for the app

fn room_event(shared: &Rc<Shared>, event: RoomEvent<Js>) {
    match event {
        RoomEvent::StateChange { from, to, reason } => {
            let detail = object(&[
                ("from", from.as_str().into()),
                ("to", to.as_str().into()),
                ("reason", reason.into()),
            ]);
            emit(shared, None, "state-change", detail);
            if matches!(to, SessionState::Left | SessionState::Failed) {
                let exits = std::mem::take(&mut shared.state.borrow_mut().page_exit);
                drop(exits);
            }
        }
        RoomEvent::Joined(result) => {
            let waiters = std::mem::take(&mut shared.state.borrow_mut().join_waiters);
            for (resolve, reject) in waiters {
                match &result {
                    Ok(()) => app_call(
                        shared,
                        &resolve,
                        [JsValue::UNDEFINED, JsValue::UNDEFINED, JsValue::UNDEFINED],
                    ),
                    Err(e) => app_call(
                        shared,
                        &reject,
                        [error_value(e), JsValue::UNDEFINED, JsValue::UNDEFINED],
                    ),
                }
            }
        }
        RoomEvent::LeaveDone => {
            let waiters = std::mem::take(&mut shared.state.borrow_mut().leave_waiters);
            resolve_all(shared, waiters);
        }
        RoomEvent::TraceStarted { generation } => {
            emit(
                shared,
                None,
                "_trace",
                object(&[("generation", generation.into())]),
            );
        }
        RoomEvent::PeerJoined { peer, metadata } => {
            let metadata = metadata.map_or(JsValue::NULL, |m| m.0);
            emit(
                shared,
                None,
                "peer-joined",
                object(&[("peerId", peer.as_str().into()), ("metadata", metadata)]),
            );
        }
        RoomEvent::PeerLeft { peer, reason } => {
            let reason = match reason {
                rtcroom_protocol::LeaveReason::Left => "left",
                rtcroom_protocol::LeaveReason::Timeout => "timeout",
                rtcroom_protocol::LeaveReason::Kicked => "kicked",
            };
            emit(
                shared,
                Some(&peer),
                "peer-left",
                object(&[("reason", reason.into())]),
            );
            let detail = object(&[("peerId", peer.as_str().into()), ("reason", reason.into())]);
            emit(shared, None, "peer-left", detail);
        }
        RoomEvent::PeerState { peer, from, to } => {
            let detail = object(&[("from", from.as_str().into()), ("to", to.as_str().into())]);
            emit(shared, Some(&peer), "state-change", detail);
        }
        RoomEvent::StreamAdded {
            peer,
            pc,
            stream,
            role,
        } => stream_event(shared, &peer, pc, &stream, &role, "stream-added"),
        RoomEvent::StreamRemoved {
            peer,
            pc,
            stream,
            role,
        } => stream_event(shared, &peer, pc, &stream, &role, "stream-removed"),
        RoomEvent::MetadataUpdated { peer, metadata } => {
            emit(
                shared,
                Some(&peer),
                "metadata-updated",
                object(&[("metadata", metadata.0)]),
            );
        }
        RoomEvent::AppSignal { peer, data } => {
            emit(shared, Some(&peer), "app-signal", object(&[("data", data.0)]));
        }
        RoomEvent::Stats { peer, summary } => emit(shared, Some(&peer), "stats", summary_value(&summary)),
        RoomEvent::Message {
            peer,
            label,
            kind,
            parts,
            ack,
        } => {
            let parts: Array = {
                let mut st = shared.state.borrow_mut();
                parts.into_iter().filter_map(|h| st.payloads.take(h)).collect()
            };
            let detail = object(&[
                ("channel", label.into()),
                ("kind", kind.into()),
                ("parts", parts.into()),
            ]);
            emit(shared, Some(&peer), "message", detail);
            if let Some((pc, channel, seq)) = ack {
                shared
                    .app
                    .borrow_mut()
                    .push_back(AppCall::Delivered(pc, channel, seq));
            }
        }
        RoomEvent::FileOffered {
            peer,
            transfer,
            name,
            size,
            mime,
        } => {
            let detail = object(&[
                ("transfer", transfer.into()),
                ("name", name.into()),
                ("size", (size as f64).into()),
                ("mimeType", mime.into()),
            ]);
            emit(shared, Some(&peer), "file-offer", detail);
        }
        RoomEvent::FileProgress {
            transfer,
            bytes,
            total,
        } => {
            let detail = object(&[
                ("transfer", transfer.into()),
                ("bytes", (bytes as f64).into()),
                ("total", (total as f64).into()),
            ]);
            emit(shared, None, "file-progress", detail);
        }
        RoomEvent::FileChunk { transfer, handle } => {
            let mut st = shared.state.borrow_mut();
            let Some(chunk) = st.payloads.take(handle) else {
                return;
            };
            if !st.files_in.iter().any(|(t, _)| *t == transfer) {
                st.files_in.push((transfer, Array::new()));
            }
            if let Some((_, parts)) = st.files_in.iter_mut().find(|(t, _)| *t == transfer) {
                parts.push(&chunk);
                // Every 64 chunks become one Blob: the browser may keep it out of memory.
                if parts.length() >= 64 {
                    let blob = js_sys::Reflect::construct(
                        &js::get(&js::global(), "Blob").into(),
                        &Array::of1(parts),
                    );
                    if let Ok(blob) = blob {
                        *parts = Array::of1(&blob);
                    }
                }
            }
        }
        RoomEvent::FileDone { transfer, sha256 } => {
            let parts = {
                let mut st = shared.state.borrow_mut();
                st.files_out.retain(|(t, _)| *t != transfer);
                let index = st.files_in.iter().position(|(t, _)| *t == transfer);
                index.map(|i| st.files_in.swap_remove(i).1)
            };
            let mut detail = vec![("transfer", transfer.into()), ("sha256", hex(&sha256).into())];
            if transfer & files::INCOMING != 0 {
                detail.push(("parts", parts.unwrap_or_default().into()));
            }
            emit(shared, None, "file-done", object(&detail));
        }
        RoomEvent::FileFailed { transfer, error } => {
            {
                let mut st = shared.state.borrow_mut();
                st.files_out.retain(|(t, _)| *t != transfer);
                st.files_in.retain(|(t, _)| *t != transfer);
            }
            let detail = object(&[("transfer", transfer.into()), ("error", error_value(&error))]);
            emit(shared, None, "file-failed", detail);
        }
        RoomEvent::SendDone { send, result } => {
            let pair = take_pair(&mut shared.state.borrow_mut().sends, send);
            settle_pair(shared, pair, result.map(JsValue::from));
        }
        RoomEvent::StatsReply { request, result } => {
            let pair = take_pair(&mut shared.state.borrow_mut().requests, request);
            settle_pair(shared, pair, result.map(|summary| summary_value(&summary)));
        }
        RoomEvent::Error(error) => emit(shared, None, "error", error_value(&error)),
        RoomEvent::PcStats { pc, trace, summary } => {
            let Some(object_pc) = pc_of(shared, pc) else {
                return;
            };
            let (generation, id) =
                trace.map_or((JsValue::NULL, JsValue::NULL), |(g, id)| (g.into(), id.into()));
            let detail = object(&[
                ("generation", generation),
                ("pcId", id),
                ("peerConnection", object_pc.into()),
                ("summary", summary_value(&summary)),
            ]);
            emit(shared, None, "stats", detail);
        }
        RoomEvent::PcClosed { pc } => {
            let waiters = {
                let mut st = shared.state.borrow_mut();
                st.app_pcs.retain(|(id, _)| *id != pc);
                take_waiters(&mut st.close_waiters, pc)
            };
            resolve_all(shared, waiters);
        }
        RoomEvent::TraceOpened { generation } => {
            let waiters = take_open_waiters(shared, generation);
            for (resolve, _) in waiters {
                app_call(
                    shared,
                    &resolve,
                    [generation.into(), JsValue::UNDEFINED, JsValue::UNDEFINED],
                );
            }
        }
        RoomEvent::TraceOpenFailed { generation, error } => {
            let waiters = take_open_waiters(shared, generation);
            for (_, reject) in waiters {
                let value = error_value(&error);
                let _ = js_sys::Reflect::set(&value, &"generation".into(), &generation.into());
                app_call(shared, &reject, [value, JsValue::UNDEFINED, JsValue::UNDEFINED]);
            }
        }
        RoomEvent::TraceEnded { generation, counters } => {
            let waiters = take_waiters(&mut shared.state.borrow_mut().end_waiters, generation);
            for resolve in waiters {
                app_call(
                    shared,
                    &resolve,
                    [counters_value(&counters), JsValue::UNDEFINED, JsValue::UNDEFINED],
                );
            }
        }
        RoomEvent::TraceFinalsDone { generation } => {
            let waiters = take_waiters(&mut shared.state.borrow_mut().final_waiters, generation);
            resolve_all(shared, waiters);
        }
    }
}

/// Resolves every one of `waiters` with `undefined` (after the loop, like every app call).
fn resolve_all(shared: &Shared, waiters: Vec<Function>) {
    for resolve in waiters {
        app_call(
            shared,
            &resolve,
            [JsValue::UNDEFINED, JsValue::UNDEFINED, JsValue::UNDEFINED],
        );
    }
}

/// Takes the `(resolve, reject)` pair waiting under `key`.
fn take_pair(list: &mut Vec<(u32, Function, Function)>, key: u32) -> Option<(Function, Function)> {
    let index = list.iter().position(|(k, _, _)| *k == key)?;
    let (_, resolve, reject) = list.swap_remove(index);
    Some((resolve, reject))
}

/// Settles a Promise (after the loop, like every app call).
fn settle_pair(shared: &Shared, pair: Option<(Function, Function)>, result: Result<JsValue, SdkError>) {
    if let Some((resolve, reject)) = pair {
        let (f, value) = match result {
            Ok(value) => (resolve, value),
            Err(e) => (reject, error_value(&e)),
        };
        app_call(shared, &f, [value, JsValue::UNDEFINED, JsValue::UNDEFINED]);
    }
}

/// The waiters for `key`, removed from `list`.
fn take_waiters(list: &mut Vec<(u32, Function)>, key: u32) -> Vec<Function> {
    let mut mine = Vec::new();
    list.retain(|(k, f)| {
        let keep = *k != key;
        if !keep {
            mine.push(f.clone());
        }
        keep
    });
    mine
}

fn take_open_waiters(shared: &Shared, generation: u32) -> Vec<(Function, Function)> {
    let mut st = shared.state.borrow_mut();
    let mut mine = Vec::new();
    st.open_waiters.retain(|(g, resolve, reject)| {
        let keep = *g != generation;
        if !keep {
            mine.push((resolve.clone(), reject.clone()));
        }
        keep
    });
    mine
}

fn stream_event(shared: &Rc<Shared>, peer: &str, pc: PcId, stream: &str, role: &str, name: &str) {
    let media = shared.state.borrow().pcs.get(&pc).and_then(|shell| {
        shell
            .remote
            .iter()
            .find(|(s, _)| s == stream)
            .map(|(_, m)| Clone::clone(m))
    });
    if let Some(media) = media {
        let detail = object(&[("stream", media.into()), ("role", role.into())]);
        emit(shared, Some(peer), name, detail);
    }
}

// ---- the app's side

/// `ws(s)://<this page's host>/signal`: the default when the page is served by rtcroom-server.
fn default_url() -> Option<String> {
    let location = js::get(&js::global(), "location");
    let host = js::get(&location, "host").as_string()?;
    let secure = js::get(&location, "protocol").as_string()? == "https:";
    Some(crate::text::cat(&[
        if secure { "wss://" } else { "ws://" },
        &host,
        "/signal",
    ]))
}

/// `metadata` (config or update): a JSON object, as it goes over the wire.
fn valid_metadata(metadata: &JsValue) -> bool {
    metadata.is_object()
        && !Array::is_array(metadata)
        && !metadata.is_function()
        && js_sys::JSON::stringify(metadata).is_ok()
}

/// A `MediaStream` argument, checked (wasm-bindgen does not check imported types).
fn media_stream(stream: JsValue, message: &'static str) -> Result<MediaStream, JsValue> {
    // Duck-typed (the package entry checks `instanceof MediaStream` before).
    match js::get(&stream, "getTracks").is_function() {
        true => Ok(MediaStream::unchecked_from_js(stream)),
        false => Err(invalid(message)),
    }
}

fn busy() -> ! {
    let message = "the session is busy: call it again from a later task";
    wasm_bindgen::throw_val(error_value(&SdkError::new(code::INVALID_STATE, message, false)))
}

/// A pending Promise and its settle functions.
fn promise() -> (Promise, Function, Function) {
    let mut settle = None;
    let promise = Promise::new(&mut |resolve, reject| settle = Some((resolve, reject)));
    let (resolve, reject) = settle.unwrap_or_else(|| (Function::new_no_args(""), Function::new_no_args("")));
    (promise, resolve, reject)
}

/// The wasm half of `RoomSession`. Use the `RoomSession` class from the package entry; it adds
/// `on()` and `RemotePeer` objects on top.
#[wasm_bindgen]
pub struct RoomCore {
    shared: Rc<Shared>,
}

#[wasm_bindgen]
impl RoomCore {
    /// `emit(peerIdOrNull, eventName, detail)` receives every event.
    #[wasm_bindgen(constructor)]
    pub fn new(config: JsValue, emit: Function) -> Result<RoomCore, JsValue> {
        let raw = raw_config(&config).map_err(invalid)?;
        if !valid_room_name(&raw.room) {
            return Err(invalid(
                "room names are 1-64 characters of [A-Za-z0-9_.-], not only dots",
            ));
        }
        let transport = js::get(&config, "transport");
        let custom_transport = match transport {
            t if t.is_undefined() || t.is_null() => None,
            t if js::get(&t, "send").is_function() => Some(t),
            _ => {
                return Err(invalid(
                    "config.transport must be an object with a send(text) method",
                ))
            }
        };
        let mut url = match raw.url.or_else(default_url) {
            Some(url) => url,
            None if custom_transport.is_some() => String::new(),
            None => return Err(invalid("config.url (or config.transport) is required here")),
        };
        // For messages: the URL without its query (tokens go there), or what carries signaling.
        let endpoint = match custom_transport {
            Some(_) => "config.transport".to_string(),
            // A byte search: `split_once` links the pattern searcher (~300 B of wasm).
            None => url
                .get(..url.bytes().position(|b| b == b'?').unwrap_or(url.len()))
                .unwrap_or_default()
                .to_string(),
        };
        if let Some(token) = raw.token.as_deref() {
            url.push(if url.bytes().any(|b| b == b'?') { '&' } else { '?' });
            url.push_str("token=");
            url.push_str(&String::from(js_sys::encode_uri_component(token)));
        }
        let metadata = js::get(&config, "metadata");
        if !(metadata.is_undefined() || metadata.is_null() || valid_metadata(&metadata)) {
            return Err(invalid("config.metadata must be a JSON object"));
        }
        let mut room = RoomConfig::new(raw.room);
        let session = &mut room.session;
        let defaults = RetryPolicy::default();
        session.url = endpoint;
        session.metadata = metadata.is_object().then_some(Js(metadata));
        session.capacity = raw.capacity;
        session.retry = RetryPolicy {
            initial_delay_ms: raw.retry.initial_delay_ms.unwrap_or(defaults.initial_delay_ms),
            max_delay_ms: raw.retry.max_delay_ms.unwrap_or(defaults.max_delay_ms),
            factor: raw.retry.factor.unwrap_or(defaults.factor),
            jitter: raw.retry.jitter.unwrap_or(defaults.jitter),
            max_attempts: raw.retry.max_attempts.unwrap_or(defaults.max_attempts),
        };
        if let Some(ms) = raw.heartbeat_interval_ms {
            session.heartbeat_interval_ms = ms.max(100.0);
        }
        if let Some(ms) = raw.heartbeat_timeout_ms {
            session.heartbeat_timeout_ms = ms.max(300.0);
        }
        if let Some(ms) = raw.connect_timeout_ms {
            session.connect_timeout_ms = ms.max(100.0);
        }
        if let Some(n) = raw.join_attempts {
            session.initial_attempts = n.max(1);
        }
        session.jitter_seed = (js_sys::Math::random() * u64::MAX as f64) as u64;
        let ice = IcePolicy::default();
        room.ice = IcePolicy {
            max_restarts: raw.ice.max_restarts.unwrap_or(ice.max_restarts),
            disconnected_grace_ms: raw.ice.disconnected_grace_ms.unwrap_or(ice.disconnected_grace_ms),
            restart_timeout_ms: raw.ice.restart_timeout_ms.unwrap_or(ice.restart_timeout_ms),
        };
        let rtc_config = RtcConfiguration::new();
        let ice_servers = js::get(&config, "iceServers");
        if Array::is_array(&ice_servers) {
            rtc_config.set_ice_servers(&ice_servers);
        } else if !(ice_servers.is_undefined() || ice_servers.is_null()) {
            return Err(invalid("config.iceServers must be an array"));
        }
        room.rtc_configuration = stats_value(&rtc_config);
        let stats = js::get(&config, "stats");
        let trace_url = js::get(&stats, "url").as_string();
        if stats.is_object() {
            let (trace, interval_ms) = trace_config(&stats);
            let num = |key: &str, default: f64| {
                js::get(&stats, key)
                    .as_f64()
                    .filter(|n| n.is_finite() && *n >= 0.0)
                    .unwrap_or(default)
            };
            room.stats = Some(StatsOptions {
                collector: trace_url,
                interval_ms,
                trace,
                connect_timeout_ms: num("connectTimeoutMs", 5000.0),
                leave_flush_ms: num("leaveFlushMs", 1000.0),
            });
        }
        let on_peer_connection = match js::get(&config, "onPeerConnection") {
            f if f.is_undefined() || f.is_null() => None,
            f => Some(
                f.dyn_into::<Function>()
                    .map_err(|_| invalid("config.onPeerConnection must be a function"))?,
            ),
        };
        Ok(RoomCore::with(State::new(
            Room::new(room),
            emit,
            url,
            custom_transport,
            rtc_config,
            on_peer_connection,
        )))
    }

    /// The core of a `StatsTrace`: a room that never joins, tracing the app's own peer
    /// connections with the same code as a session's (`emit(null, eventName, detail)`).
    pub fn tracer(options: JsValue, emit: Function) -> RoomCore {
        let (trace, interval_ms) = trace_config(&options);
        let mut room = RoomConfig::new("trace");
        room.stats = Some(StatsOptions {
            interval_ms,
            trace,
            ..StatsOptions::default()
        });
        let state = State::new(
            Room::new(room),
            emit,
            String::new(),
            None,
            RtcConfiguration::new(),
            None,
        );
        RoomCore::with(state)
    }

    fn with(state: State) -> RoomCore {
        RoomCore {
            shared: Rc::new(Shared {
                state: RefCell::new(state),
                queue: RefCell::new(VecDeque::new()),
                running: Cell::new(false),
                app: RefCell::new(VecDeque::new()),
                delivering: Cell::new(false),
            }),
        }
    }

    fn weak(&self) -> Handle {
        Rc::downgrade(&self.shared)
    }

    /// Reads the state; from inside a step of the loop (never, by construction) it throws
    /// `invalid-state` rather than panicking.
    fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        match self.shared.state.try_borrow() {
            Ok(st) => f(&st),
            Err(_) => busy(),
        }
    }

    /// Resolves once joined; rejects with `{code, message, fatal}`. `clientInfo` heads the
    /// call's stats dump.
    pub fn join(&self, client_info: JsValue) -> Promise {
        let (promise, resolve, reject) = promise();
        if let Ok(mut st) = self.shared.state.try_borrow_mut() {
            st.join_waiters.push((resolve, reject));
            if st.page_exit.is_empty() && st.room.state() == SessionState::Idle {
                let page = js::global();
                if js::get(&page, "addEventListener").is_function() {
                    for name in ["pagehide", "beforeunload"] {
                        let weak = self.weak();
                        let leave = move |_: &JsValue| feed(&weak, Input::Leave { stop_tracks: false });
                        st.page_exit.push(Listener::new(&page, name, leave));
                    }
                }
            }
        }
        feed(
            &self.weak(),
            Input::Join {
                client_info: stats_value(&client_info),
            },
        );
        promise
    }

    /// Leaves: final stats, bye to every peer, every peer connection closed, the socket, timers
    /// and listeners gone, the trace flushed. With `stopTracks`, also stops the tracks of the
    /// streams given to `addStream`. Resolves when all that is done.
    pub fn leave(&self, stop_tracks: Option<bool>) -> Promise {
        let (promise, resolve, _) = promise();
        if let Ok(mut st) = self.shared.state.try_borrow_mut() {
            st.leave_waiters.push(resolve);
        }
        feed(
            &self.weak(),
            Input::Leave {
                stop_tracks: stop_tracks == Some(true),
            },
        );
        promise
    }

    /// `peer.send()`: `bytes` (a Uint8Array, kept until sent) to `peer` on channel `label`;
    /// `kind` is the wrapper's (how the other side rebuilds the value). Resolves `true` once
    /// the other app has it (reliable), once it left the queue (unreliable), or with
    /// `ackTimeoutMs` on an unreliable channel, `true` on the ack or `false` after that long.
    pub fn send(
        &self,
        peer: String,
        label: String,
        kind: u8,
        bytes: JsValue,
        ack_timeout_ms: Option<f64>,
    ) -> Promise {
        let (promise, resolve, reject) = promise();
        let Ok(bytes) = bytes.dyn_into::<js_sys::Uint8Array>() else {
            let _ = reject.call1(
                &JsValue::NULL,
                &invalid("send(peer, channel, kind, bytes): bytes must be a Uint8Array"),
            );
            return promise;
        };
        let len = bytes.length();
        let (send, handle) = {
            let Ok(mut st) = self.shared.state.try_borrow_mut() else {
                busy()
            };
            let send = st.next_send;
            st.next_send = st.next_send.wrapping_add(1);
            st.sends.push((send, resolve, reject));
            (send, st.payloads.insert(bytes.into()))
        };
        let ack = match ack_timeout_ms {
            Some(ms) if ms.is_finite() && ms >= 0.0 => AckMode::Within(ms),
            _ => AckMode::Delivered,
        };
        feed(
            &self.weak(),
            Input::Send {
                peer,
                label,
                send,
                handle,
                kind,
                len,
                ack,
            },
        );
        promise
    }

    /// `peer.sendFile()`: offers `blob` (anything with `size` and `slice()`) to `peer`; returns
    /// the transfer's id for the `file-progress`, `file-done` and `file-failed` events.
    #[wasm_bindgen(js_name = sendFile)]
    pub fn send_file(&self, peer: String, blob: JsValue, name: String, mime: String) -> Result<u32, JsValue> {
        let size = js::get(&blob, "size")
            .as_f64()
            .filter(|s| s.is_finite() && *s >= 0.0);
        let (Some(size), true) = (size, js::get(&blob, "slice").is_function()) else {
            return Err(invalid("sendFile(file): file must be a File or Blob"));
        };
        let transfer = {
            let Ok(mut st) = self.shared.state.try_borrow_mut() else {
                busy()
            };
            let transfer = st.next_file;
            st.next_file = (st.next_file + 1) % files::INCOMING;
            st.files_out.push((transfer, blob));
            transfer
        };
        let input = Input::SendFile {
            peer,
            transfer,
            size: size as u64,
            name,
            mime,
        };
        feed(&self.weak(), input);
        Ok(transfer)
    }

    /// Accepts an offered file (`file-offer`'s `transfer`).
    #[wasm_bindgen(js_name = fileAccept)]
    pub fn file_accept(&self, transfer: u32) {
        feed(&self.weak(), Input::FileAccept { transfer });
    }

    /// Rejects an offer, or cancels a transfer, either way.
    #[wasm_bindgen(js_name = fileCancel)]
    pub fn file_cancel(&self, transfer: u32, reason: String) {
        feed(&self.weak(), Input::FileCancel { transfer, reason });
    }

    /// `session.createChannel()`: a channel negotiated with the same id (from its label) on
    /// every peer connection, now and later. The options govern this side's sending.
    #[wasm_bindgen(js_name = createChannel)]
    pub fn create_channel(
        &self,
        label: String,
        ordered: bool,
        max_retransmits: Option<u16>,
        max_packet_life_time: Option<u16>,
    ) -> Result<(), JsValue> {
        if label.is_empty()
            || label.len() > 64
            || ["reliable", "unreliable", "files"].contains(&label.as_str())
        {
            return Err(invalid(
                "createChannel(label): label must be 1-64 bytes and not 'reliable', 'unreliable' or 'files' (built in)",
            ));
        }
        if max_retransmits.is_some() && max_packet_life_time.is_some() {
            return Err(invalid(
                "createChannel(label, options): maxRetransmits and maxPacketLifeTime exclude each other",
            ));
        }
        let spec = ChannelSpec {
            id: app_channel_id(&label),
            label,
            ordered,
            max_retransmits,
            max_packet_life_time,
        };
        self.read(|st| st.room.check_channel(&spec)).map_err(invalid)?;
        feed(&self.weak(), Input::CreateChannel(spec));
        Ok(())
    }

    /// Sends `stream` to every peer, now and later; `role` labels it on the other side.
    #[wasm_bindgen(js_name = addStream)]
    pub fn add_stream(&self, stream: JsValue, role: JsValue) -> Result<(), JsValue> {
        let stream = media_stream(stream, "addStream(stream): stream must be a MediaStream")?;
        let role = role
            .as_string()
            .filter(|r| !r.is_empty())
            .ok_or_else(|| invalid("addStream(stream, { role }): role must be a non-empty string"))?;
        let id = js::id(&stream);
        let tracks = js::tracks(&stream)
            .iter()
            .map(|t| (js::id(&t), js::get(&t, "kind").as_string().unwrap_or_default()))
            .collect();
        if let Ok(mut st) = self.shared.state.try_borrow_mut() {
            if !st.streams.iter().any(|s| js::id(s) == id) {
                st.streams.push(stream);
            }
        }
        feed(&self.weak(), Input::AddStream(LocalStream { id, role, tracks }));
        Ok(())
    }

    #[wasm_bindgen(js_name = removeStream)]
    pub fn remove_stream(&self, stream: JsValue) -> Result<(), JsValue> {
        let stream = media_stream(stream, "removeStream(stream): stream must be a MediaStream")?;
        let id = js::id(&stream);
        feed(&self.weak(), Input::RemoveStream { stream: id.clone() });
        if let Ok(mut st) = self.shared.state.try_borrow_mut() {
            st.streams.retain(|s| js::id(s) != id);
        }
        Ok(())
    }

    /// Replaces this peer's metadata (a JSON object); the others get `metadata-updated`.
    #[wasm_bindgen(js_name = updateMetadata)]
    pub fn update_metadata(&self, metadata: JsValue) -> Result<(), JsValue> {
        if !valid_metadata(&metadata) {
            return Err(invalid(
                "updateMetadata(metadata): metadata must be a JSON object",
            ));
        }
        feed(&self.weak(), Input::UpdateMetadata(Js(metadata)));
        Ok(())
    }

    /// Restarts ICE with one peer now (recovery does this by itself; for apps and tests).
    #[wasm_bindgen(js_name = restartIce)]
    pub fn restart_ice(&self, id: &str) {
        feed(&self.weak(), Input::RestartIce { peer: id.to_string() });
    }

    /// What a UI shows about the connection with one peer: candidate types, RTT, bitrates, loss,
    /// jitter and frame rates, from this getStats sample and the previous one.
    #[wasm_bindgen(js_name = peerStats)]
    pub fn peer_stats(&self, id: &str) -> Promise {
        let (promise, resolve, reject) = promise();
        let request = match self.shared.state.try_borrow_mut() {
            Ok(mut st) => {
                let request = st.next_request;
                st.next_request = st.next_request.wrapping_add(1);
                st.requests.push((request, resolve, reject));
                request
            }
            Err(_) => busy(),
        };
        feed(
            &self.weak(),
            Input::PeerStats {
                peer: id.to_string(),
                request,
            },
        );
        promise
    }

    /// A record in `generation` (getUserMedia, track events, …; with `pc`, of an app's pc
    /// from [`RoomCore::trace_attach`]): dropped unless that generation still accepts records.
    pub fn record(&self, generation: u32, method: String, pc: Option<u32>, value: JsValue, extra: JsValue) {
        let extra = if Array::is_array(&extra) {
            Array::from(&extra).iter().map(|v| stats_value(&v)).collect()
        } else {
            Vec::new()
        };
        let input = Input::TraceRecord {
            generation,
            pc,
            method,
            value: stats_value(&value),
            extra,
        };
        feed(&self.weak(), input);
    }

    /// The trace generation that accepts records (a session's call, a `StatsTrace`'s latest).
    #[wasm_bindgen(getter)]
    pub fn generation(&self) -> Option<u32> {
        self.read(|st| st.room.trace_generation())
    }

    /// Starts a trace generation at `url`: resolves with its number once its socket is open;
    /// rejects (with `generation`) when it cannot open.
    #[wasm_bindgen(js_name = traceConnect)]
    pub fn trace_connect(&self, url: String, client_info: JsValue) -> Promise {
        let (promise, resolve, reject) = promise();
        feed(
            &self.weak(),
            Input::TraceConnect {
                client_info: stats_value(&client_info),
                url,
            },
        );
        match self.generation() {
            Some(g) => self.write(|st| st.open_waiters.push((g, resolve, reject))),
            None => busy(),
        }
        promise
    }

    /// `StatsTrace`'s waits, one entry for three: `"close"` ends generation `n` and resolves
    /// with its counters once it has delivered what it could; `"final"` takes the final getStats
    /// of generation `n`'s open pcs and resolves when they are in; `"pc"` says app pc `n` is
    /// about to close and resolves once its final getStats and `close` are recorded.
    #[wasm_bindgen(js_name = traceWait)]
    pub fn trace_wait(&self, what: &str, n: u32) -> Promise {
        let (promise, resolve, _) = promise();
        let input = match what {
            "close" => {
                self.write(|st| st.end_waiters.push((n, resolve)));
                Input::TraceClose { generation: n }
            }
            "final" => {
                self.write(|st| st.final_waiters.push((n, resolve)));
                Input::TraceFinal { generation: n }
            }
            _ => {
                self.write(|st| st.close_waiters.push((n, resolve)));
                Input::TraceClosing { pc: n }
            }
        };
        feed(&self.weak(), input);
        promise
    }

    /// Traces an app's pc in `generation`; returns the id its records name.
    #[wasm_bindgen(js_name = traceAttach)]
    pub fn trace_attach(&self, generation: u32, pc: RtcPeerConnection, configuration: JsValue) -> u32 {
        let id = self.write(|st| {
            st.next_app_pc = st.next_app_pc.wrapping_add(1);
            let id = APP_PC | st.next_app_pc;
            st.app_pcs.push((id, pc));
            id
        });
        let configuration = stats_value(&configuration);
        feed(
            &self.weak(),
            Input::TraceAttach {
                pc: id,
                generation,
                configuration,
            },
        );
        id
    }

    fn write<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        match self.shared.state.try_borrow_mut() {
            Ok(mut st) => f(&mut st),
            Err(_) => busy(),
        }
    }

    #[wasm_bindgen(getter)]
    pub fn state(&self) -> String {
        self.read(|st| st.room.state().as_str().to_string())
    }

    #[wasm_bindgen(getter, js_name = localPeerId)]
    pub fn local_peer_id(&self) -> Option<String> {
        self.read(|st| st.room.local_id().map(String::from))
    }

    /// What a `RemotePeer` shows: `{ state, metadata, peerConnection, streams: [{stream, role}] }`,
    /// or null once the peer is gone. One call for all of it (each export costs package size).
    pub fn peer(&self, id: &str) -> JsValue {
        self.read(|st| {
            let Some(state) = st.room.peer_state(id) else {
                return JsValue::NULL;
            };
            let shell = st.room.peer_pc(id).and_then(|pc| st.pcs.get(&pc));
            let streams = Array::new();
            for (stream, role) in st.room.peer_streams(id) {
                let media = shell
                    .and_then(|s| s.remote.iter().find(|(r, _)| r == stream))
                    .map(|(_, m)| Clone::clone(m));
                if let Some(media) = media {
                    streams.push(&object(&[("stream", media.into()), ("role", role.into())]));
                }
            }
            object(&[
                ("state", state.as_str().into()),
                (
                    "metadata",
                    st.room.peer_metadata(id).map_or(JsValue::NULL, |m| m.0.clone()),
                ),
                (
                    "peerConnection",
                    shell.map_or(JsValue::NULL, |s| s.pc.clone().into()),
                ),
                ("streams", streams.into()),
            ])
        })
    }
}
