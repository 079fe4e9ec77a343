//! `RoomCore`, the wasm half of the JS `RoomSession` (pkg-template/index.js adds the event API
//! on top). It drives the browser for the sans-IO [`Session`] and the per-peer negotiation:
//! browser events go in, actions come out and run here.
//!
//! Every callback enters through [`with`]. It borrows the state, runs the core, carries out the
//! resulting actions, and releases the borrow *before* calling JS. An app listener that calls
//! back into the session (e.g. `leave()` inside `peer-left`) is therefore safe.

use std::{
    cell::RefCell,
    rc::{Rc, Weak},
};

use gloo_events::EventListener;
use gloo_timers::callback::Timeout;
use js_sys::{Array, Function, Promise};
use litemap::LiteMap;
use rtcroom_protocol::{
    valid_room_name, ClientMsg, IceCandidate, LeaveReason, SdpKind, SessionDescription, SignalPayload,
    StreamRole,
};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::{
    MediaStream, RtcConfiguration, RtcIceCandidateInit, RtcPeerConnection, RtcSdpType,
    RtcSessionDescriptionInit,
};

use super::{
    decode::{client_msg_json, raw_config, server_msg_from_json, signal_payload, signal_payload_value},
    js::{self, describe, error_value, invalid, now, object, with, Js, Outbox, Shell},
    peer::{Peer, PeerEvent},
    stats_trace::{get_stats, summary_value},
    transport::{Socket, TransportEvent},
};
use crate::{
    error::{code, SdkError},
    peer::{
        lifecycle::{IcePolicy, PeerAction},
        negotiation::{CandidateStep, DescriptionStep, SignalingState},
    },
    room::session::{Session, SessionAction, SessionConfig, SessionState},
    signaling::retry::RetryPolicy,
    text::cat,
};

/// `ws(s)://<this page's host>/signal`: the default when the page is served by rtcroom-server.
fn default_url() -> Option<String> {
    let location = js::get(&js_sys::global(), "location");
    let host = js::get(&location, "host").as_string()?;
    let secure = js::get(&location, "protocol").as_string()? == "https:";
    Some(cat(&[if secure { "wss://" } else { "ws://" }, &host, "/signal"]))
}

struct Inner {
    core: Session<Js>,
    emit: Function,
    url: String,
    /// An app-supplied transport object, used instead of a WebSocket to `url`.
    custom_transport: Option<JsValue>,
    rtc_config: RtcConfiguration,
    ice_policy: IcePolicy,
    /// Called with `(pc, configuration, peerId)` right after each RTCPeerConnection is made,
    /// before anything else touches it (stats tracing instruments it there).
    on_peer_connection: Option<Function>,
    socket: Option<Socket>,
    /// Events of an older socket are ignored.
    socket_generation: u64,
    peers: LiteMap<String, Peer>,
    next_serial: u64,
    streams: Vec<(MediaStream, String)>,
    timer: Option<Timeout>,
    join_waiters: Vec<(Function, Function)>,
    /// Events and Promise settlements, fired by [`with`] after the borrow ends.
    outbox: Outbox,
    /// `pagehide` and `beforeunload`: leave when the page goes away. Firefox closes the page's
    /// sockets before `pagehide`, so the earlier `beforeunload` is what reaches the others there.
    page_exit: Vec<EventListener>,
    weak: Weak<RefCell<Inner>>,
}

impl Shell for Inner {
    fn process(&mut self) {
        loop {
            let actions = self.core.drain();
            if actions.is_empty() {
                break;
            }
            for action in actions {
                self.act(action);
            }
        }
        self.schedule();
    }

    fn outbox(&mut self) -> &mut Outbox {
        &mut self.outbox
    }
}

fn sdp_type(kind: SdpKind) -> RtcSdpType {
    match kind {
        SdpKind::Offer => RtcSdpType::Offer,
        SdpKind::Answer => RtcSdpType::Answer,
        SdpKind::Pranswer => RtcSdpType::Pranswer,
        SdpKind::Rollback => RtcSdpType::Rollback,
    }
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

async fn add_candidate(pc: &RtcPeerConnection, candidate: Option<IceCandidate>) -> Result<JsValue, JsValue> {
    let init = match candidate {
        Some(c) => {
            let init = RtcIceCandidateInit::new(&c.candidate);
            init.set_sdp_mid(c.sdp_mid.as_deref());
            init.set_sdp_m_line_index(c.sdp_m_line_index);
            if let Some(ufrag) = c.username_fragment.as_deref() {
                let _ = js_sys::Reflect::set(&init, &"usernameFragment".into(), &ufrag.into());
            }
            init.into()
        }
        None => JsValue::NULL,
    };
    JsFuture::from(js::add_ice_candidate(pc, &init)).await
}

impl Inner {
    fn event(&mut self, peer: Option<&str>, name: &'static str, detail: JsValue) {
        let peer = peer.map_or(JsValue::NULL, JsValue::from_str);
        self.outbox.call(&self.emit, [peer, name.into(), detail]);
    }

    fn error(&mut self, error: SdkError) {
        let value = error_value(&error);
        self.event(None, "error", value);
    }

    fn peer_mut(&mut self, id: &str, serial: u64) -> Option<&mut Peer> {
        self.peers.get_mut(id).filter(|p| p.serial == serial)
    }

    fn schedule(&mut self) {
        self.timer = self.core.next_wake().map(|at| {
            let weak = self.weak.clone();
            let delay = (at - now()).clamp(0.0, 3_600_000.0) as u32;
            Timeout::new(delay, move || with(&weak, |inner| inner.core.tick(now())))
        });
    }

    fn act(&mut self, action: SessionAction<Js>) {
        match action {
            SessionAction::Transition { from, to, reason } => {
                let detail = object(&[
                    ("from", from.as_str().into()),
                    ("to", to.as_str().into()),
                    ("reason", reason.into()),
                ]);
                self.event(None, "state-change", detail);
                if matches!(to, SessionState::Left | SessionState::Failed) {
                    self.page_exit.clear();
                }
            }
            SessionAction::OpenTransport => self.open_socket(),
            SessionAction::CloseTransport => self.socket = None,
            SessionAction::Send(msg) => self.send(&msg),
            SessionAction::JoinResolved => {
                for (resolve, _) in std::mem::take(&mut self.join_waiters) {
                    self.outbox.settle(resolve, JsValue::UNDEFINED);
                }
            }
            SessionAction::JoinRejected(error) => {
                for (_, reject) in std::mem::take(&mut self.join_waiters) {
                    self.outbox.settle(reject, error_value(&error));
                }
            }
            SessionAction::PeerJoined { id, metadata } => self.add_peer(id, metadata.map(|m| m.0)),
            SessionAction::PeerLeft { id, reason } => self.remove_peer(&id, reason),
            SessionAction::PeerMetadata { id, metadata } => {
                self.event(Some(&id), "metadata-updated", object(&[("metadata", metadata.0)]));
            }
            SessionAction::Signal { from, payload } => self.on_signal(&from, payload.0),
            SessionAction::SayBye { to } => {
                let bye = Js(signal_payload_value(&SignalPayload::Bye));
                for to in to {
                    self.send(&ClientMsg::Signal {
                        to,
                        payload: bye.clone(),
                    });
                }
            }
            SessionAction::Error(error) => self.error(error),
        }
    }

    fn open_socket(&mut self) {
        self.socket_generation += 1;
        let generation = self.socket_generation;
        let weak = self.weak.clone();
        let on_event = move |event| with(&weak, |inner| inner.on_transport(generation, event));
        let opened = match &self.custom_transport {
            Some(target) => Socket::custom(target, on_event),
            None => Socket::websocket(&self.url, on_event),
        };
        match opened {
            Ok(socket) => self.socket = Some(socket),
            Err(message) => {
                self.socket = None;
                self.core.transport_closed(1006, &message, now());
            }
        }
    }

    fn on_transport(&mut self, generation: u64, event: TransportEvent) {
        if generation != self.socket_generation || self.socket.is_none() {
            return;
        }
        match event {
            TransportEvent::Open => self.core.transport_open(now()),
            TransportEvent::Message(text) => match server_msg_from_json(&text) {
                Some(msg) => self.core.message(msg, now()),
                None => self.error(SdkError::new(
                    code::PROTOCOL,
                    "unreadable frame from the server",
                    false,
                )),
            },
            TransportEvent::Closed { code, reason } => {
                self.socket = None;
                self.core.transport_closed(code, &reason, now());
            }
        }
    }

    fn send(&self, msg: &ClientMsg<Js>) {
        if let (Some(socket), Some(text)) = (&self.socket, client_msg_json(msg)) {
            socket.send(&text);
        }
    }

    fn add_peer(&mut self, id: String, metadata: Option<JsValue>) {
        let serial = self.next_serial;
        self.next_serial += 1;
        let metadata = metadata.unwrap_or(JsValue::NULL);
        let local_id = self.core.local_id().unwrap_or_default().to_string();
        let weak = self.weak.clone();
        let peer_id = id.clone();
        let on_event = move |event| with(&weak, |inner| inner.on_peer(&peer_id, serial, event));
        match Peer::new(
            id.clone(),
            serial,
            &local_id,
            &self.rtc_config,
            self.ice_policy,
            self.on_peer_connection.as_ref(),
            on_event,
        ) {
            Ok(mut peer) => {
                let added = self
                    .streams
                    .iter()
                    .try_for_each(|(stream, _)| peer.add_stream(stream));
                if let Err(err) = added {
                    self.error(add_track_failed(&id, &err));
                }
                let pc = peer.pc.clone();
                self.peers.insert(id.clone(), peer);
                let detail = object(&[
                    ("peerId", id.as_str().into()),
                    ("metadata", metadata),
                    ("peerConnection", pc.into()),
                ]);
                self.event(None, "peer-joined", detail);
            }
            Err(err) => self.error(SdkError::new(
                code::NEGOTIATION,
                cat(&["cannot create a peer connection for ", &id, ": ", &describe(&err)]),
                false,
            )),
        }
    }

    fn remove_peer(&mut self, id: &str, reason: LeaveReason) {
        let Some(mut peer) = self.peers.remove(id) else {
            return;
        };
        let actions = peer.life.close();
        for (stream, role) in std::mem::take(&mut peer.remote_streams)
            .into_iter()
            .map(|(_, v)| v)
        {
            self.event(
                Some(id),
                "stream-removed",
                object(&[("stream", stream.into()), ("role", role.into())]),
            );
        }
        self.life_events(id, actions);
        drop(peer); // closes the RTCPeerConnection and removes its listeners
        let reason = match reason {
            LeaveReason::Left => "left",
            LeaveReason::Timeout => "timeout",
            LeaveReason::Kicked => "kicked",
        };
        self.event(Some(id), "peer-left", object(&[("reason", reason.into())]));
        self.event(
            None,
            "peer-left",
            object(&[("peerId", id.into()), ("reason", reason.into())]),
        );
    }

    /// Carries out a peer's lifecycle actions: events, ICE restarts, timers.
    fn life_events(&mut self, id: &str, actions: Vec<PeerAction>) {
        for action in actions {
            match action {
                PeerAction::Transition { from, to } => {
                    let detail = object(&[("from", from.as_str().into()), ("to", to.as_str().into())]);
                    self.event(Some(id), "state-change", detail);
                }
                PeerAction::RestartIce { .. } => self.restart_ice(id),
                PeerAction::WakeAt(at) => {
                    let weak = self.weak.clone();
                    if let Some(peer) = self.peers.get_mut(id) {
                        let (peer_id, serial) = (id.to_string(), peer.serial);
                        let delay = (at - now()).clamp(0.0, 3_600_000.0) as u32;
                        peer.timer = Some(Timeout::new(delay, move || {
                            with(&weak, |inner| {
                                let actions = match inner.peer_mut(&peer_id, serial) {
                                    Some(peer) => peer.life.tick(now()),
                                    None => return,
                                };
                                inner.life_events(&peer_id, actions);
                            })
                        }));
                    }
                }
            }
        }
    }

    fn on_peer(&mut self, id: &str, serial: u64, event: PeerEvent) {
        let weak = self.weak.clone();
        let Some(peer) = self.peer_mut(id, serial) else {
            return;
        };
        match event {
            PeerEvent::NegotiationNeeded => {
                let actions = peer.life.negotiating();
                if peer.negotiation.negotiation_needed(now()) {
                    self.start_offer(id, serial);
                } else if let Some(at) = peer.negotiation.deferred_deadline() {
                    let peer_id = id.to_string();
                    let delay = (at - now()).clamp(0.0, 60_000.0) as u32;
                    peer.offer_timer = Some(Timeout::new(delay, move || {
                        with(&weak, |inner| inner.deferred_offer(&peer_id, serial))
                    }));
                }
                self.life_events(id, actions);
            }
            PeerEvent::IceCandidate(candidate) => {
                let payload = Js(signal_payload_value(&SignalPayload::Candidate { candidate }));
                self.core.signal(id, payload);
            }
            PeerEvent::Track(stream) => {
                let stream_id = js::id(&stream);
                if peer.remote_streams.contains_key(&stream_id) {
                    return;
                }
                let role = peer
                    .remote_roles
                    .get(&stream_id)
                    .cloned()
                    .unwrap_or_else(|| "unknown".into());
                peer.watch_stream(&stream);
                peer.remote_streams
                    .insert(stream_id, (Clone::clone(&stream), role.clone()));
                self.event(
                    Some(id),
                    "stream-added",
                    object(&[("stream", stream.into()), ("role", role.into())]),
                );
            }
            PeerEvent::StreamEmptied(stream_id) => {
                if let Some((stream, role)) = peer.remote_streams.remove(&stream_id) {
                    self.event(
                        Some(id),
                        "stream-removed",
                        object(&[("stream", stream.into()), ("role", role.into())]),
                    );
                }
            }
            PeerEvent::ConnectionState(state) => {
                let actions = peer.life.connection_state(&state, now());
                self.life_events(id, actions);
            }
        }
    }

    /// `setLocalDescription()` now, and send the offer it creates.
    fn start_offer(&mut self, id: &str, serial: u64) {
        let Some(peer) = self.peer_mut(id, serial) else {
            return;
        };
        let (pc, weak, peer_id) = (peer.pc.clone(), self.weak.clone(), id.to_string());
        spawn_local(async move {
            let result = JsFuture::from(js::set_local_description_implicit(&pc)).await;
            with(&weak, |inner| {
                inner.local_description_done(&peer_id, serial, result.err())
            });
        });
    }

    /// Makes the polite side's held first offer if the other side stayed silent (see `Negotiation`).
    fn deferred_offer(&mut self, id: &str, serial: u64) {
        let Some(peer) = self.peer_mut(id, serial) else {
            return;
        };
        let state = SignalingState::parse(
            &js::get(&peer.pc, "signalingState")
                .as_string()
                .unwrap_or_default(),
        );
        if peer.negotiation.deferred_offer(state, now()) {
            peer.offer_timer = None;
            self.start_offer(id, serial);
        }
    }

    /// `setLocalDescription()` finished: send the description (offer or answer).
    fn local_description_done(&mut self, id: &str, serial: u64, error: Option<JsValue>) {
        let Some(peer) = self.peer_mut(id, serial) else {
            return;
        };
        peer.negotiation.offer_sent();
        if let Some(err) = error {
            let message = cat(&["setLocalDescription with ", id, ": ", &describe(&err)]);
            return self.error(SdkError::new(code::NEGOTIATION, message, false));
        }
        // Read with Reflect: the pc is the app's too (a closed or wrapped one must not throw here).
        let local = js::get(&peer.pc, "localDescription");
        let (Some(kind), Some(sdp)) = (
            js::get(&local, "type").as_string().as_deref().and_then(sdp_kind),
            js::get(&local, "sdp").as_string(),
        ) else {
            return;
        };
        let roles = self
            .streams
            .iter()
            .map(|(s, role)| StreamRole {
                stream: js::id(s),
                role: role.clone(),
            })
            .collect();
        let payload = SignalPayload::<Js>::Description {
            description: SessionDescription { kind, sdp },
            roles,
            seq: None,
        };
        self.core.signal(id, Js(signal_payload_value(&payload)));
    }

    fn on_signal(&mut self, from: &str, payload: JsValue) {
        let Some(payload) = signal_payload(&payload) else {
            let message = cat(&["unreadable signal from ", from]);
            return self.error(SdkError::new(code::PEER_SIGNAL, message, false));
        };
        let weak = self.weak.clone();
        match payload {
            SignalPayload::Bye => self.core.peer_bye(from),
            SignalPayload::App { data } => self.event(Some(from), "app-signal", object(&[("data", data.0)])),
            SignalPayload::Description {
                description, roles, ..
            } => {
                let Some(peer) = self.peers.get_mut(from) else {
                    return;
                };
                // One insert each: LiteMap's `extend` links a whole sort (~3 KB of wasm).
                for role in roles {
                    peer.remote_roles.insert(role.stream, role.role);
                }
                let state = SignalingState::parse(
                    &js::get(&peer.pc, "signalingState")
                        .as_string()
                        .unwrap_or_default(),
                );
                let step = peer.negotiation.remote_description(description.kind, state);
                let actions = peer.life.negotiating();
                let (pc, serial, peer_id) = (peer.pc.clone(), peer.serial, from.to_string());
                self.life_events(from, actions);
                let DescriptionStep::Apply { answer } = step else {
                    return;
                };
                spawn_local(async move {
                    let init = RtcSessionDescriptionInit::new(sdp_type(description.kind));
                    init.set_sdp(&description.sdp);
                    let result = JsFuture::from(js::set_remote_description(&pc, &init)).await;
                    let mut early = Vec::new();
                    with(&weak, |inner| {
                        if let Some(peer) = inner.peer_mut(&peer_id, serial) {
                            early = peer.negotiation.remote_applied(result.is_ok());
                        }
                        if let Err(err) = &result {
                            let message =
                                cat(&["setRemoteDescription from ", &peer_id, ": ", &describe(err)]);
                            inner.error(SdkError::new(code::NEGOTIATION, message, false));
                        }
                    });
                    if result.is_err() {
                        return;
                    }
                    for candidate in early {
                        let added = add_candidate(&pc, candidate).await;
                        with(&weak, |inner| {
                            inner.candidate_added(&peer_id, serial, added.err())
                        });
                    }
                    if answer {
                        let result = JsFuture::from(js::set_local_description_implicit(&pc)).await;
                        with(&weak, |inner| {
                            inner.local_description_done(&peer_id, serial, result.err())
                        });
                    }
                });
            }
            SignalPayload::Candidate { candidate } => {
                let Some(peer) = self.peers.get_mut(from) else {
                    return;
                };
                if peer.negotiation.remote_candidate(candidate.clone()) == CandidateStep::Add {
                    let (pc, serial, peer_id) = (peer.pc.clone(), peer.serial, from.to_string());
                    spawn_local(async move {
                        let added = add_candidate(&pc, candidate).await;
                        with(&weak, |inner| {
                            inner.candidate_added(&peer_id, serial, added.err())
                        });
                    });
                }
            }
        }
    }

    fn candidate_added(&mut self, id: &str, serial: u64, error: Option<JsValue>) {
        let Some(err) = error else { return };
        let Some(peer) = self.peer_mut(id, serial) else {
            return;
        };
        if peer.negotiation.candidate_failed() {
            let message = cat(&["addIceCandidate from ", id, ": ", &describe(&err)]);
            self.error(SdkError::new(code::NEGOTIATION, message, false));
        }
    }

    fn restart_ice(&mut self, id: &str) {
        let Some(peer) = self.peers.get(id) else {
            return;
        };
        if let Err(err) = js::restart_ice(&peer.pc) {
            let message = cat(&["restartIce with ", id, ": ", &describe(&err)]);
            self.error(SdkError::new(code::NEGOTIATION, message, false));
        }
    }

    fn add_stream(&mut self, stream: MediaStream, role: String) {
        let id = js::id(&stream);
        if self.streams.iter().any(|(s, _)| js::id(s) == id) {
            return;
        }
        let mut failed = Vec::new();
        for (peer_id, peer) in self.peers.iter_mut() {
            if let Err(err) = peer.add_stream(&stream) {
                failed.push(add_track_failed(peer_id, &err));
            }
        }
        for error in failed {
            self.error(error);
        }
        self.streams.push((stream, role));
    }

    fn remove_stream(&mut self, stream: &MediaStream) {
        let id = js::id(stream);
        self.streams.retain(|(s, _)| js::id(s) != id);
        let mut failed = Vec::new();
        for (peer_id, peer) in self.peers.iter_mut() {
            if let Err(err) = peer.remove_stream(&id) {
                let message = cat(&["removeTrack for peer ", peer_id, ": ", &describe(&err)]);
                failed.push(SdkError::new(code::MEDIA, message, false));
            }
        }
        for error in failed {
            self.error(error);
        }
    }
}

fn add_track_failed(peer_id: &str, err: &JsValue) -> SdkError {
    let message = cat(&["addTrack for peer ", peer_id, ": ", &describe(err)]);
    SdkError::new(code::MEDIA, message, false)
}

/// `metadata` (config or update): a JSON object, as it goes over the wire.
fn valid_metadata(metadata: &JsValue) -> bool {
    metadata.is_object()
        && !Array::is_array(metadata)
        && !metadata.is_function()
        && js_sys::JSON::stringify(metadata).is_ok()
}

/// The wasm half of `RoomSession`. Use the `RoomSession` class from the package entry; it adds
/// `on()` and `RemotePeer` objects on top.
#[wasm_bindgen]
pub struct RoomCore {
    inner: Rc<RefCell<Inner>>,
}

#[wasm_bindgen]
impl RoomCore {
    /// `emit(peerIdOrNull, eventName, detail)` receives every event.
    #[wasm_bindgen(constructor)]
    pub fn new(config: JsValue, emit: Function) -> Result<RoomCore, JsValue> {
        let raw = raw_config(&config).map_err(invalid)?;
        if !valid_room_name(&raw.room) {
            return Err(invalid("room names are 1-64 characters of [A-Za-z0-9_.-]"));
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
        // For messages: the URL without its query (tokens go there), or what carries the signaling.
        let endpoint = match custom_transport {
            Some(_) => "config.transport".to_string(),
            // A byte search: `split_once` links the pattern searcher (~300 B of wasm).
            None => url
                .get(..url.bytes().position(|b| b == b'?').unwrap_or(url.len()))
                .unwrap_or_default()
                .to_string(),
        };
        if let Some(token) = raw.token.as_deref() {
            let separator = if url.bytes().any(|b| b == b'?') { '&' } else { '?' };
            url.push(separator);
            url.push_str("token=");
            url.push_str(&String::from(js_sys::encode_uri_component(token)));
        }
        let metadata = js::get(&config, "metadata");
        if !(metadata.is_undefined() || metadata.is_null() || valid_metadata(&metadata)) {
            return Err(invalid("config.metadata must be a JSON object"));
        }
        let defaults = RetryPolicy::default();
        let mut session = SessionConfig::new(raw.room);
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
        let ice_defaults = IcePolicy::default();
        let ice_policy = IcePolicy {
            max_restarts: raw.ice.max_restarts.unwrap_or(ice_defaults.max_restarts),
            disconnected_grace_ms: raw
                .ice
                .disconnected_grace_ms
                .unwrap_or(ice_defaults.disconnected_grace_ms),
            restart_timeout_ms: raw
                .ice
                .restart_timeout_ms
                .unwrap_or(ice_defaults.restart_timeout_ms),
        };
        let rtc_config = RtcConfiguration::new();
        let ice_servers = js::get(&config, "iceServers");
        if Array::is_array(&ice_servers) {
            rtc_config.set_ice_servers(&ice_servers);
        } else if !(ice_servers.is_undefined() || ice_servers.is_null()) {
            return Err(invalid("config.iceServers must be an array"));
        }
        let on_peer_connection = match js::get(&config, "onPeerConnection") {
            f if f.is_undefined() || f.is_null() => None,
            f => Some(
                f.dyn_into::<Function>()
                    .map_err(|_| invalid("config.onPeerConnection must be a function"))?,
            ),
        };
        let inner = Rc::new_cyclic(|weak| {
            RefCell::new(Inner {
                core: Session::new(session),
                emit,
                url,
                custom_transport,
                rtc_config,
                ice_policy,
                on_peer_connection,
                socket: None,
                socket_generation: 0,
                peers: LiteMap::new(),
                next_serial: 0,
                streams: Vec::new(),
                timer: None,
                join_waiters: Vec::new(),
                outbox: Outbox::default(),
                page_exit: Vec::new(),
                weak: weak.clone(),
            })
        });
        Ok(RoomCore { inner })
    }

    fn weak(&self) -> Weak<RefCell<Inner>> {
        Rc::downgrade(&self.inner)
    }

    /// Resolves once joined; rejects with `{code, message, fatal}`.
    pub fn join(&self) -> Promise {
        let mut waiter = None;
        let promise = Promise::new(&mut |resolve, reject| waiter = Some((resolve, reject)));
        self.write(|inner| {
            if let Some(waiter) = waiter {
                inner.join_waiters.push(waiter);
            }
            if inner.core.state() == SessionState::Idle {
                if let Some(window) = web_sys::window() {
                    for name in ["pagehide", "beforeunload"] {
                        let weak = inner.weak.clone();
                        let leave = move |_: &web_sys::Event| with(&weak, |i| i.core.leave());
                        inner.page_exit.push(EventListener::new(&window, name, leave));
                    }
                }
            }
            inner.core.join(now());
        });
        promise
    }

    /// Leaves: bye to every peer, closes every peer connection, the socket, timers, listeners.
    /// With `stopTracks`, also stops the tracks of the streams given to `addStream`.
    pub fn leave(&self, stop_tracks: Option<bool>) -> Promise {
        self.write(|inner| {
            inner.core.leave();
            if stop_tracks == Some(true) {
                for (stream, _) in &inner.streams {
                    js::tracks(stream).iter().for_each(|track| js::stop_track(&track));
                }
            }
        });
        Promise::resolve(&JsValue::UNDEFINED)
    }

    /// Sends `stream` to every peer, now and later; `role` labels it on the other side.
    #[wasm_bindgen(js_name = addStream)]
    pub fn add_stream(&self, stream: JsValue, role: JsValue) -> Result<(), JsValue> {
        let stream = media_stream(stream, "addStream(stream): stream must be a MediaStream")?;
        let role = role
            .as_string()
            .filter(|r| !r.is_empty())
            .ok_or_else(|| invalid("addStream(stream, { role }): role must be a non-empty string"))?;
        self.write(|inner| inner.add_stream(stream, role));
        Ok(())
    }

    #[wasm_bindgen(js_name = removeStream)]
    pub fn remove_stream(&self, stream: JsValue) -> Result<(), JsValue> {
        let stream = media_stream(stream, "removeStream(stream): stream must be a MediaStream")?;
        self.write(|inner| inner.remove_stream(&stream));
        Ok(())
    }

    /// Reads the state. Called back from inside the session (e.g. from the `onPeerConnection`
    /// hook) it throws `invalid-state`, where `borrow()` would panic and end the session for
    /// good. Thrown, not returned: nothing is borrowed then, and a `Result` in every getter's
    /// glue cost ~2 KB of wasm.
    fn read<T>(&self, f: impl FnOnce(&Inner) -> T) -> T {
        match self.inner.try_borrow() {
            Ok(inner) => f(&inner),
            Err(_) => busy(),
        }
    }

    /// Runs an app call through [`with`]; called back from inside the session it throws
    /// `invalid-state` rather than being dropped silently.
    fn write(&self, f: impl FnOnce(&mut Inner)) {
        if self.inner.try_borrow_mut().is_err() {
            busy()
        }
        with(&self.weak(), f);
    }

    #[wasm_bindgen(getter)]
    pub fn state(&self) -> String {
        self.read(|inner| inner.core.state().as_str().to_string())
    }

    #[wasm_bindgen(getter, js_name = localPeerId)]
    pub fn local_peer_id(&self) -> Option<String> {
        self.read(|inner| inner.core.local_id().map(String::from))
    }

    #[wasm_bindgen(js_name = peerIds)]
    pub fn peer_ids(&self) -> Vec<String> {
        self.read(|inner| inner.peers.keys().cloned().collect())
    }

    #[wasm_bindgen(js_name = peerConnection)]
    pub fn peer_connection(&self, id: &str) -> Option<RtcPeerConnection> {
        self.read(|inner| inner.peers.get(id).map(|p| p.pc.clone()))
    }

    #[wasm_bindgen(js_name = peerState)]
    pub fn peer_state(&self, id: &str) -> Option<String> {
        self.read(|inner| inner.peers.get(id).map(|p| p.life.state().as_str().to_string()))
    }

    #[wasm_bindgen(js_name = peerMetadata)]
    pub fn peer_metadata(&self, id: &str) -> JsValue {
        // The core keeps every peer's metadata current; the shell keeps no copy.
        self.read(|inner| {
            inner
                .core
                .peer_metadata(id)
                .map_or(JsValue::NULL, |m| m.0.clone())
        })
    }

    /// `[{stream, role}]` received from a peer.
    #[wasm_bindgen(js_name = peerStreams)]
    pub fn peer_streams(&self, id: &str) -> Array {
        self.read(|inner| {
            let list = Array::new();
            if let Some(peer) = inner.peers.get(id) {
                for (stream, role) in peer.remote_streams.values() {
                    list.push(&object(&[
                        ("stream", stream.into()),
                        ("role", role.as_str().into()),
                    ]));
                }
            }
            list
        })
    }

    /// Replaces this peer's metadata (a JSON object); the others get `metadata-updated`.
    #[wasm_bindgen(js_name = updateMetadata)]
    pub fn update_metadata(&self, metadata: JsValue) -> Result<(), JsValue> {
        if !valid_metadata(&metadata) {
            return Err(invalid(
                "updateMetadata(metadata): metadata must be a JSON object",
            ));
        }
        self.write(|inner| inner.core.update_metadata(Js(metadata)));
        Ok(())
    }

    /// What a UI shows about the connection with one peer: candidate types, RTT, bitrates,
    /// loss, jitter and frame rates, computed by `stats::summarize` from this getStats sample
    /// and the previous one (rates need two).
    #[wasm_bindgen(js_name = peerStats)]
    pub fn peer_stats(&self, id: &str) -> Promise {
        let found = self.read(|inner| inner.peers.get(id).map(|p| (p.pc.clone(), p.serial)));
        let (weak, peer_id) = (self.weak(), id.to_string());
        wasm_bindgen_futures::future_to_promise(async move {
            let Some((pc, serial)) = found else {
                return Err(error_value(&SdkError::new(
                    code::INVALID_STATE,
                    "no such peer",
                    false,
                )));
            };
            let current = get_stats(js::get_stats(&pc)).await?;
            let mut previous = None;
            with(&weak, |inner| {
                if let Some(peer) = inner.peer_mut(&peer_id, serial) {
                    previous = peer.last_stats.replace(current.clone());
                }
            });
            Ok(summary_value(&crate::stats::summarize(
                previous.as_ref(),
                &current,
            )))
        })
    }

    /// Restarts ICE with one peer now (recovery does this by itself; for apps and tests).
    #[wasm_bindgen(js_name = restartIce)]
    pub fn restart_ice(&self, id: &str) {
        self.write(|inner| inner.restart_ice(id));
    }
}

fn busy() -> ! {
    let message = "the session is busy: call it after onPeerConnection returns";
    wasm_bindgen::throw_val(error_value(&SdkError::new(code::INVALID_STATE, message, false)))
}

/// A `MediaStream` argument, checked (wasm-bindgen does not check imported types).
fn media_stream(stream: JsValue, message: &'static str) -> Result<MediaStream, JsValue> {
    stream.dyn_into::<MediaStream>().map_err(|_| invalid(message))
}
