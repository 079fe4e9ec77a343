//! One remote peer in the browser: its `RTCPeerConnection`, the listeners on it (removed on
//! drop), its local senders and remote streams. Decisions come from `crate::peer`.

use litemap::LiteMap;

use gloo_events::EventListener;
use gloo_timers::callback::Timeout;
use rtcroom_protocol::IceCandidate;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{
    MediaStream, RtcConfiguration, RtcDataChannelInit, RtcPeerConnection, RtcPeerConnectionIceEvent,
    RtcTrackEvent,
};

use super::{decode::ice_candidate, js};
use crate::peer::{
    lifecycle::{IcePolicy, PeerLife},
    negotiation::Negotiation,
};

/// What a peer connection reports to the session.
pub enum PeerEvent {
    NegotiationNeeded,
    /// A local candidate to send (`None`: end of candidates).
    IceCandidate(Option<IceCandidate>),
    Track(MediaStream),
    /// A remote stream lost its last track.
    StreamEmptied(String),
    ConnectionState(String),
}

pub struct Peer {
    /// Distinguishes this peer from a later one with the same id (after a re-join).
    pub serial: u64,
    pub pc: RtcPeerConnection,
    pub negotiation: Negotiation,
    pub life: PeerLife,
    /// (local track id, local stream id, its `RTCRtpSender`).
    senders: Vec<(String, String, JsValue)>,
    /// Remote stream id → (stream, role) once announced by `stream-added`.
    pub remote_streams: LiteMap<String, (MediaStream, String)>,
    /// Roles the remote side announced with its descriptions.
    pub remote_roles: LiteMap<String, String>,
    pub timer: Option<Timeout>,
    /// The previous raw getStats result, for rates in `peer.stats()`.
    pub last_stats: Option<crate::stats::Value>,
    /// Fires when a held first offer must go out (see `Negotiation::deferred_deadline`).
    pub offer_timer: Option<Timeout>,
    _data: JsValue,
    listeners: Vec<EventListener>,
    on_event: std::rc::Rc<dyn Fn(PeerEvent)>,
}

impl Peer {
    pub fn new(
        id: String,
        serial: u64,
        local_id: &str,
        config: &RtcConfiguration,
        policy: IcePolicy,
        on_created: Option<&js_sys::Function>,
        on_event: impl Fn(PeerEvent) + 'static,
    ) -> Result<Peer, JsValue> {
        let pc = RtcPeerConnection::new_with_configuration(config)?;
        if let Some(hook) = on_created {
            // Before our listeners, tracks and data channel: a tracer sees everything.
            let _ = hook.call3(&JsValue::NULL, &pc, config, &JsValue::from_str(&id));
        }
        let on_event: std::rc::Rc<dyn Fn(PeerEvent)> = std::rc::Rc::new(on_event);
        let listen = |name: &'static str, f: Box<dyn Fn(&web_sys::Event)>| {
            EventListener::new(&pc, name, move |e| f(e))
        };
        let mut listeners = Vec::with_capacity(4);
        {
            let on = on_event.clone();
            listeners.push(listen(
                "negotiationneeded",
                Box::new(move |_| on(PeerEvent::NegotiationNeeded)),
            ));
        }
        {
            let on = on_event.clone();
            listeners.push(listen(
                "icecandidate",
                Box::new(move |e| {
                    let Some(event) = e.dyn_ref::<RtcPeerConnectionIceEvent>() else {
                        return;
                    };
                    let candidate = event.candidate().and_then(|c| ice_candidate(c.to_json().into()));
                    on(PeerEvent::IceCandidate(candidate));
                }),
            ));
        }
        {
            let on = on_event.clone();
            listeners.push(listen(
                "track",
                Box::new(move |e| {
                    let Some(event) = e.dyn_ref::<RtcTrackEvent>() else {
                        return;
                    };
                    // `Clone::clone`: MediaStream's own `.clone()` is the JS method that copies
                    // the stream (new id, cloned tracks), not a second handle to it.
                    if let Ok(stream) = event.streams().get(0).dyn_into::<MediaStream>() {
                        on(PeerEvent::Track(stream));
                    }
                }),
            ));
        }
        {
            let on = on_event.clone();
            let pc2 = pc.clone();
            listeners.push(listen(
                "connectionstatechange",
                Box::new(move |_| {
                    let state = super::js::get(&pc2, "connectionState")
                        .as_string()
                        .unwrap_or_default();
                    on(PeerEvent::ConnectionState(state));
                }),
            ));
        }
        // A pre-negotiated channel on both sides: the first offer always has an m=application
        // section (so data works without renegotiation) and no `datachannel` event is needed.
        let init = RtcDataChannelInit::new();
        init.set_negotiated(true);
        init.set_id(0);
        // Fails only on a pc the hook closed: no peer then (the listeners go with this scope).
        let data = match js::create_data_channel(&pc, "rtcroom", &init) {
            Ok(data) => data,
            Err(err) => {
                js::close(&pc);
                return Err(err);
            }
        };
        Ok(Peer {
            negotiation: Negotiation::new(local_id, &id),
            life: PeerLife::new(policy),
            serial,
            pc,
            senders: Vec::new(),
            remote_streams: LiteMap::new(),
            remote_roles: LiteMap::new(),
            timer: None,
            last_stats: None,
            offer_timer: None,
            _data: data,
            listeners,
            on_event,
        })
    }

    /// Sends every track of `stream` to this peer (renegotiation follows by itself). `Err` with
    /// what `addTrack` threw (e.g. the app closed this peer connection).
    pub fn add_stream(&mut self, stream: &MediaStream) -> Result<(), JsValue> {
        let stream_id = js::id(stream);
        for track in js::tracks(stream).iter() {
            let track_id = js::id(&track);
            if self.senders.iter().any(|(t, _, _)| *t == track_id) {
                continue;
            }
            let sender = js::add_track(&self.pc, &track, stream)?;
            self.senders.push((track_id, stream_id.clone(), sender));
        }
        Ok(())
    }

    /// Stops sending a stream's tracks. Every sender is forgotten; `Err` with the first thing
    /// `removeTrack` threw.
    pub fn remove_stream(&mut self, stream_id: &str) -> Result<(), JsValue> {
        let mut result = Ok(());
        let pc = &self.pc;
        self.senders.retain(|(_, stream, sender)| {
            let keep = stream != stream_id;
            if !keep {
                if let (Err(err), Ok(())) = (js::remove_track(pc, sender), &result) {
                    result = Err(err);
                }
            }
            keep
        });
        result
    }

    /// Watches a newly announced remote stream for losing its tracks.
    pub fn watch_stream(&mut self, stream: &MediaStream) {
        let on = self.on_event.clone();
        let id = js::id(stream);
        let watched = Clone::clone(stream);
        self.listeners
            .push(EventListener::new(stream, "removetrack", move |_| {
                if js::tracks(&watched).length() == 0 {
                    on(PeerEvent::StreamEmptied(id.clone()));
                }
            }));
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.listeners.clear();
        js::close(&self.pc);
    }
}
