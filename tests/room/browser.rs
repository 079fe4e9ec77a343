//! A simulated browser: `RTCPeerConnection`s that follow the W3C signaling-state rules closely
//! enough to catch negotiation bugs. Descriptions carry, as JSON in their `sdp`, who made them,
//! their ICE ufrag and the tracks they send.
//!
//! Modelled: the operations chain (one call at a time per pc, each taking a while), implicit
//! `setLocalDescription()` (offer in `stable`, answer in `have-remote-offer`), implicit rollback
//! when a remote offer meets a local one, `InvalidStateError` for an answer in `stable`,
//! `addIceCandidate` failing without a remote description or for an unknown ufrag,
//! `negotiationneeded` (queued, fired only in `stable`, again after an exchange if still
//! needed), `track` events and emptied streams from remote descriptions, ICE restarts (new
//! ufrags, gathering again), and connectivity: a pair connects once both sides hold each
//! other's current descriptions and a candidate of each other's ufrag, drops to `disconnected`
//! when the media path is cut, and fails after 5 s of it.

use rtcroom::{
    room::{BrowserCall, OpOutput, PcEvent, PcId},
    stats::Value,
};
use rtcroom_protocol::{IceCandidate, SdpKind, SessionDescription};
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sig {
    Stable,
    HaveLocalOffer,
    HaveRemoteOffer,
    Closed,
}

impl Sig {
    fn name(self) -> &'static str {
        match self {
            Sig::Stable => "stable",
            Sig::HaveLocalOffer => "have-local-offer",
            Sig::HaveRemoteOffer => "have-remote-offer",
            Sig::Closed => "closed",
        }
    }
}

/// What a simulated description says.
#[derive(Debug, Clone, PartialEq)]
pub struct Desc {
    pub owner: (usize, PcId),
    pub ufrag: u32,
    /// (stream, track, kind)
    pub tracks: Vec<(String, String, String)>,
}

impl Desc {
    /// An SDP-shaped text: the ICE ufrag where SDP has it, the rest as JSON on a line of its own.
    pub fn sdp(&self) -> String {
        let sim = json!({"o": [self.owner.0, self.owner.1], "ufrag": self.ufrag, "tracks": self.tracks});
        format!("v=0\r\na=ice-ufrag:u{}\r\na=x-sim:{sim}\r\n", self.ufrag)
    }

    pub fn parse(sdp: &str) -> Option<Desc> {
        let line = sdp.lines().find_map(|l| l.strip_prefix("a=x-sim:"))?;
        let v: serde_json::Value = serde_json::from_str(line.trim_end()).ok()?;
        let tracks = v["tracks"]
            .as_array()?
            .iter()
            .map(|t| {
                Some((
                    t[0].as_str()?.to_string(),
                    t[1].as_str()?.to_string(),
                    t[2].as_str()?.to_string(),
                ))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Desc {
            owner: (v["o"][0].as_u64()? as usize, v["o"][1].as_u64()? as PcId),
            ufrag: v["ufrag"].as_u64()? as u32,
            tracks,
        })
    }
}

/// Something a pc does on its own, later.
#[derive(Debug, Clone, PartialEq)]
pub enum Later {
    /// Fire `negotiationneeded` if still needed (a queued task).
    NegotiationNeeded,
    /// Emit gathered candidate `index` of `ufrag` (`count` of them, then `null`).
    Candidate { ufrag: u32, index: u32, count: u32 },
    /// Re-check connectivity (e.g. the end of a connect delay).
    Connectivity,
    /// `disconnected` for 5 s becomes `failed`.
    FailIfStillDown { since: u64 },
}

#[derive(Debug)]
pub struct SimPc {
    pub id: PcId,
    /// The remote peer it is for (for debugging output).
    #[allow(dead_code)]
    pub peer: String,
    pub sig: Sig,
    /// (stream, track, kind) this pc sends.
    pub local_tracks: Vec<(String, String, String)>,
    /// Track ids covered by the last completed exchange.
    negotiated: Vec<String>,
    restart_pending: bool,
    next_ufrag: u32,
    /// The current (completed) descriptions and the pending local offer.
    pub local: Option<Desc>,
    pub remote: Option<Desc>,
    pending_offer: Option<Desc>,
    /// The remote description in `have-remote-offer`.
    pending_remote: Option<Desc>,
    /// Ufrags of the remote candidates added.
    pub got_candidates: Vec<u32>,
    /// Ufrags gathering has run for.
    gathered: Vec<u32>,
    /// (stream, track) seen in remote descriptions.
    pub remote_tracks: Vec<(String, String)>,
    pub connection: &'static str,
    /// The ufrag pair a failure happened on: only new ufrags can recover.
    failed_on: Option<(u32, u32)>,
    /// A counter that invalidates older `FailIfStillDown` checks.
    pub down_epoch: u64,
    nn_queued: bool,
    /// Busy until this time (the operations chain).
    pub busy_until: f64,
}

/// What a call or a later step produced: events (in order) and, last, the op's result.
#[derive(Debug, Default)]
pub struct Effects {
    pub events: Vec<PcEvent>,
    pub result: Option<Result<OpOutput, String>>,
    /// Steps to schedule: (delay ms, step).
    pub later: Vec<(f64, Later)>,
    /// Connectivity may have changed: re-check this pc and its counterpart.
    pub check_ice: bool,
}

impl SimPc {
    pub fn new(id: PcId, peer: String) -> SimPc {
        SimPc {
            id,
            peer,
            sig: Sig::Stable,
            local_tracks: Vec::new(),
            negotiated: Vec::new(),
            restart_pending: false,
            next_ufrag: 1,
            local: None,
            remote: None,
            pending_offer: None,
            pending_remote: None,
            got_candidates: Vec::new(),
            gathered: Vec::new(),
            remote_tracks: Vec::new(),
            connection: "new",
            failed_on: None,
            down_epoch: 0,
            nn_queued: false,
            busy_until: 0.0,
        }
    }

    fn set_sig(&mut self, sig: Sig, fx: &mut Effects) {
        if self.sig != sig {
            self.sig = sig;
            fx.events.push(PcEvent::SignalingState(sig.name().into()));
        }
    }

    fn needed(&self) -> bool {
        self.restart_pending
            || self.local_tracks.len() != self.negotiated.len()
            || self
                .local_tracks
                .iter()
                .any(|(_, t, _)| !self.negotiated.contains(t))
    }

    /// The negotiation-needed check (webrtc-pc §4.7.3): queue the event when needed in stable.
    fn update_nn(&mut self, fx: &mut Effects) {
        if self.sig == Sig::Stable && self.needed() && !self.nn_queued {
            self.nn_queued = true;
            fx.later.push((0.0, Later::NegotiationNeeded));
        }
    }

    fn gather(&mut self, ufrag: u32, fx: &mut Effects) {
        if !self.gathered.contains(&ufrag) {
            self.gathered.push(ufrag);
            fx.events.push(PcEvent::IceGatheringState("gathering".into()));
            fx.later.push((
                1.0,
                Later::Candidate {
                    ufrag,
                    index: 0,
                    count: 2,
                },
            ));
        }
    }

    fn new_ufrag(&mut self) -> u32 {
        let u = self.next_ufrag;
        self.next_ufrag += 1;
        u
    }

    fn owner(&self, node: usize) -> (usize, PcId) {
        (node, self.id)
    }

    /// Applies remote tracks: `track` for new ones, emptied streams for gone ones.
    fn remote_tracks_from(&mut self, desc: &Desc, fx: &mut Effects) {
        for (stream, track, kind) in &desc.tracks {
            if !self.remote_tracks.iter().any(|(s, t)| s == stream && t == track) {
                self.remote_tracks.push((stream.clone(), track.clone()));
                fx.events.push(PcEvent::Track {
                    stream: stream.clone(),
                    track: track.clone(),
                    kind: kind.clone(),
                });
            }
        }
        let gone: Vec<(String, String)> = self
            .remote_tracks
            .iter()
            .filter(|(s, t)| !desc.tracks.iter().any(|(ds, dt, _)| ds == s && dt == t))
            .cloned()
            .collect();
        for (stream, track) in gone {
            self.remote_tracks.retain(|(s, t)| !(*s == stream && *t == track));
            if !self.remote_tracks.iter().any(|(s, _)| *s == stream) {
                fx.events.push(PcEvent::StreamEmptied { stream });
            }
        }
    }

    /// Runs one call of the operations chain at its turn.
    pub fn call(&mut self, node: usize, call: &BrowserCall, local_kinds: &dyn Fn(&str) -> String) -> Effects {
        let mut fx = Effects::default();
        if self.sig == Sig::Closed {
            if !matches!(call, BrowserCall::Close) {
                fx.result = Some(Err("InvalidStateError: the peer connection is closed".into()));
            }
            return fx;
        }
        match call {
            BrowserCall::Create { .. } => fx.result = Some(Ok(OpOutput::Empty)),
            // Data channels are the data engine's (tests/data.rs); the room only makes them.
            BrowserCall::CreateChannel(_) => {}
            BrowserCall::Close => {
                self.sig = Sig::Closed;
                self.connection = "closed";
            }
            BrowserCall::AddTrack { stream, track } => {
                if self.local_tracks.iter().any(|(_, t, _)| t == track) {
                    fx.result = Some(Err(
                        "InvalidAccessError: a sender already exists for the track".into()
                    ));
                } else {
                    self.local_tracks
                        .push((stream.clone(), track.clone(), local_kinds(track)));
                    self.update_nn(&mut fx);
                    fx.result = Some(Ok(OpOutput::Empty));
                }
            }
            BrowserCall::RemoveTrack { track } => {
                self.local_tracks.retain(|(_, t, _)| t != track);
                self.update_nn(&mut fx);
                fx.result = Some(Ok(OpOutput::Empty));
            }
            BrowserCall::RestartIce => {
                self.restart_pending = true;
                self.update_nn(&mut fx);
                fx.result = Some(Ok(OpOutput::Empty));
            }
            BrowserCall::GetStats => {
                fx.result = Some(Ok(OpOutput::Stats(stats_report(self.connection == "connected"))));
            }
            BrowserCall::SetLocalDescription => match self.sig {
                Sig::Stable | Sig::HaveLocalOffer => {
                    let offer = match (&self.pending_offer, self.sig) {
                        (Some(pending), Sig::HaveLocalOffer) => pending.clone(),
                        _ => {
                            let ufrag = match (&self.local, self.restart_pending) {
                                (Some(local), false) => local.ufrag,
                                _ => self.new_ufrag(),
                            };
                            Desc {
                                owner: self.owner(node),
                                ufrag,
                                tracks: self.local_tracks.clone(),
                            }
                        }
                    };
                    self.pending_offer = Some(offer.clone());
                    self.set_sig(Sig::HaveLocalOffer, &mut fx);
                    self.gather(offer.ufrag, &mut fx);
                    fx.result = Some(Ok(OpOutput::LocalDescription(SessionDescription {
                        kind: SdpKind::Offer,
                        sdp: offer.sdp(),
                    })));
                }
                Sig::HaveRemoteOffer => {
                    let remote = self.pending_remote.take();
                    let ufrag = match (&self.local, &self.remote, &remote) {
                        // The other side restarted ICE: so do we.
                        (Some(local), Some(old), Some(new))
                            if old.ufrag == new.ufrag && !self.restart_pending =>
                        {
                            local.ufrag
                        }
                        _ => self.new_ufrag(),
                    };
                    let answer = Desc {
                        owner: self.owner(node),
                        ufrag,
                        tracks: self.local_tracks.clone(),
                    };
                    self.local = Some(answer.clone());
                    self.remote = remote;
                    self.restart_pending = false;
                    self.negotiated = self.local_tracks.iter().map(|(_, t, _)| t.clone()).collect();
                    self.set_sig(Sig::Stable, &mut fx);
                    self.gather(answer.ufrag, &mut fx);
                    self.update_nn(&mut fx);
                    fx.check_ice = true;
                    fx.result = Some(Ok(OpOutput::LocalDescription(SessionDescription {
                        kind: SdpKind::Answer,
                        sdp: answer.sdp(),
                    })));
                }
                Sig::Closed => unreachable!(),
            },
            BrowserCall::SetRemoteDescription(d) => {
                let Some(desc) = (d.kind != SdpKind::Rollback)
                    .then(|| Desc::parse(&d.sdp))
                    .flatten()
                else {
                    if d.kind == SdpKind::Rollback && self.sig == Sig::HaveLocalOffer {
                        self.pending_offer = None;
                        self.set_sig(Sig::Stable, &mut fx);
                        self.update_nn(&mut fx);
                        fx.result = Some(Ok(OpOutput::Empty));
                    } else {
                        fx.result = Some(Err("InvalidAccessError: unreadable description".into()));
                    }
                    return fx;
                };
                match (d.kind, self.sig) {
                    (SdpKind::Offer, Sig::Stable | Sig::HaveLocalOffer | Sig::HaveRemoteOffer) => {
                        if self.sig == Sig::HaveLocalOffer {
                            // Implicit rollback (perfect negotiation's polite side).
                            self.pending_offer = None;
                            self.set_sig(Sig::Stable, &mut fx);
                        }
                        self.remote_tracks_from(&desc, &mut fx);
                        self.pending_remote = Some(desc);
                        self.set_sig(Sig::HaveRemoteOffer, &mut fx);
                        fx.result = Some(Ok(OpOutput::Empty));
                    }
                    (SdpKind::Answer, Sig::HaveLocalOffer) => {
                        let offer = self.pending_offer.take();
                        if let Some(offer) = &offer {
                            if self.local.as_ref().is_none_or(|l| l.ufrag != offer.ufrag) {
                                self.restart_pending = false;
                            }
                            self.negotiated = offer.tracks.iter().map(|(_, t, _)| t.clone()).collect();
                        }
                        self.local = offer;
                        self.remote_tracks_from(&desc, &mut fx);
                        self.remote = Some(desc);
                        self.set_sig(Sig::Stable, &mut fx);
                        self.update_nn(&mut fx);
                        fx.check_ice = true;
                        fx.result = Some(Ok(OpOutput::Empty));
                    }
                    (_, sig) => {
                        fx.result = Some(Err(format!(
                            "InvalidStateError: cannot set remote {:?} in state {}",
                            d.kind,
                            sig.name()
                        )))
                    }
                }
            }
            BrowserCall::AddIceCandidate(c) => {
                let remote = match self.sig {
                    Sig::HaveRemoteOffer => self.pending_remote.as_ref(),
                    _ => self.remote.as_ref(),
                };
                fx.result = Some(match (remote, c) {
                    (None, _) => Err("InvalidStateError: no remote description".into()),
                    (Some(_), None) => Ok(OpOutput::Empty),
                    (Some(remote), Some(c)) => {
                        let ufrag = c
                            .username_fragment
                            .as_deref()
                            .and_then(|u| u.strip_prefix('u'))
                            .and_then(|u| u.parse::<u32>().ok());
                        match ufrag {
                            Some(u) if u == remote.ufrag => {
                                self.got_candidates.push(u);
                                fx.check_ice = true;
                                Ok(OpOutput::Empty)
                            }
                            _ => Err("OperationError: unknown ufrag".into()),
                        }
                    }
                });
            }
        }
        fx
    }

    /// Runs a step scheduled by an earlier call.
    pub fn later(&mut self, node: usize, step: &Later, network_up: bool) -> Effects {
        let mut fx = Effects::default();
        if self.sig == Sig::Closed {
            return fx;
        }
        match *step {
            Later::NegotiationNeeded => {
                self.nn_queued = false;
                if self.sig == Sig::Stable && self.needed() {
                    fx.events.push(PcEvent::NegotiationNeeded);
                }
            }
            Later::Candidate { ufrag, index, count } => {
                if index < count {
                    fx.events.push(PcEvent::IceCandidate(Some(IceCandidate {
                        candidate: format!(
                            "candidate:{node}-{}-{ufrag}-{index} 1 udp 1 10.0.{node}.1 {} typ host",
                            self.id,
                            5000 + index
                        ),
                        sdp_mid: Some("0".into()),
                        sdp_m_line_index: Some(0),
                        username_fragment: Some(format!("u{ufrag}")),
                    })));
                    fx.later.push((
                        2.0,
                        Later::Candidate {
                            ufrag,
                            index: index + 1,
                            count,
                        },
                    ));
                } else {
                    fx.events.push(PcEvent::IceCandidate(None));
                    fx.events.push(PcEvent::IceGatheringState("complete".into()));
                }
            }
            Later::Connectivity => fx.check_ice = true,
            Later::FailIfStillDown { since } => {
                if since == self.down_epoch && self.connection == "disconnected" && !network_up {
                    self.connection = "failed";
                    self.failed_on = self
                        .local
                        .as_ref()
                        .zip(self.remote.as_ref())
                        .map(|(l, r)| (l.ufrag, r.ufrag));
                    fx.events.push(PcEvent::IceConnectionState("failed".into()));
                    fx.events.push(PcEvent::ConnectionState("failed".into()));
                }
            }
        }
        fx
    }

    /// The counterpart this pc's current remote description names.
    pub fn counterpart(&self) -> Option<(usize, PcId)> {
        self.remote.as_ref().map(|r| r.owner)
    }

    /// Moves the connection state given whether the pair can reach each other now.
    pub fn connectivity(&mut self, reachable: bool, network_up: bool, delay: f64) -> Effects {
        let mut fx = Effects::default();
        if self.sig == Sig::Closed {
            return fx;
        }
        let pair = self
            .local
            .as_ref()
            .zip(self.remote.as_ref())
            .map(|(l, r)| (l.ufrag, r.ufrag));
        let dead_pair = self.failed_on.is_some() && self.failed_on == pair;
        match (reachable && !dead_pair, self.connection) {
            (true, "new" | "failed") => {
                self.connection = "connecting";
                self.failed_on = None;
                fx.events.push(PcEvent::ConnectionState("connecting".into()));
                fx.later.push((delay, Later::Connectivity));
            }
            (true, "connecting" | "disconnected") => {
                self.connection = "connected";
                fx.events.push(PcEvent::IceConnectionState("connected".into()));
                fx.events.push(PcEvent::ConnectionState("connected".into()));
            }
            (false, "connected") if !network_up => {
                self.connection = "disconnected";
                self.down_epoch += 1;
                fx.events.push(PcEvent::IceConnectionState("disconnected".into()));
                fx.events.push(PcEvent::ConnectionState("disconnected".into()));
                fx.later.push((
                    5000.0,
                    Later::FailIfStillDown {
                        since: self.down_epoch,
                    },
                ));
            }
            _ => {}
        }
        fx
    }
}

/// A getStats report with what `stats::summarize` reads.
fn stats_report(connected: bool) -> Value {
    let text = json!({
        "CP1": {"id": "CP1", "type": "candidate-pair", "state": if connected { "succeeded" } else { "in-progress" },
                "nominated": true, "selected": true, "currentRoundTripTime": 0.004, "localCandidateId": "L1", "remoteCandidateId": "R1"},
        "L1": {"id": "L1", "type": "local-candidate", "candidateType": "host"},
        "R1": {"id": "R1", "type": "remote-candidate", "candidateType": "host"},
    })
    .to_string();
    Value::parse(&text).unwrap_or(Value::Null)
}
