//! Perfect negotiation (W3C webrtc-pc §10.7) as plain decisions. Either side may offer at any
//! time. When offers collide, the *polite* peer rolls back its own offer and takes the other's.
//! The *impolite* peer ignores the incoming offer. Roles come from the two peer ids, so both
//! sides agree without talking: the smaller id is polite.
//!
//! Initial glare is avoided rather than resolved. Both sides add tracks when they first meet, so
//! both want to offer at once, and Chromium stalls ICE gathering after the resulting implicit
//! rollback (seen here: both sides `stable`, ICE `new`, no candidates after the answer). So the
//! polite side holds its first offer until the impolite side's offer has been applied (the
//! browser re-fires `negotiationneeded` afterwards if anything is still pending), or until
//! [`INITIAL_OFFER_WAIT_MS`] passes without one, and then offers. Later glare
//! (both renegotiating mid-call) goes through the perfect-negotiation path.
//!
//! The shell runs the browser calls (`setLocalDescription()`, `setRemoteDescription()`,
//! `addIceCandidate()`) and reports back. This type only decides what happens next.

use rtcroom_protocol::{IceCandidate, SdpKind};

/// `RTCSignalingState`, as far as negotiation cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalingState {
    Stable,
    HaveLocalOffer,
    HaveRemoteOffer,
    HaveLocalPranswer,
    HaveRemotePranswer,
    Closed,
}

impl SignalingState {
    /// Parses the browser's string (unknown values count as `Closed`: do nothing).
    pub fn parse(value: &str) -> SignalingState {
        match value {
            "stable" => SignalingState::Stable,
            "have-local-offer" => SignalingState::HaveLocalOffer,
            "have-remote-offer" => SignalingState::HaveRemoteOffer,
            "have-local-pranswer" => SignalingState::HaveLocalPranswer,
            "have-remote-pranswer" => SignalingState::HaveRemotePranswer,
            _ => SignalingState::Closed,
        }
    }
}

/// What to do with a description from the other side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DescriptionStep {
    /// Impolite side during a collision: drop the offer (and the candidates that follow it).
    Ignore,
    /// `setRemoteDescription(d)`. A polite peer with an offer of its own gets an implicit
    /// rollback from the browser. When `answer` is true, follow with `setLocalDescription()`
    /// and send the answer.
    Apply { answer: bool },
}

/// What to do with a candidate from the other side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CandidateStep {
    /// `addIceCandidate(c)` now.
    Add,
    /// No remote description yet: kept, and returned by [`Negotiation::remote_applied`].
    Queued,
}

/// How long the polite side waits for the impolite side's first offer before offering itself.
pub const INITIAL_OFFER_WAIT_MS: f64 = 3000.0;

/// Per-remote-peer negotiation flags (the `makingOffer` / `ignoreOffer` /
/// `isSettingRemoteAnswerPending` of the spec's example) and early candidates.
#[derive(Debug, Clone)]
pub struct Negotiation {
    polite: bool,
    making_offer: bool,
    ignore_offer: bool,
    setting_remote_answer: bool,
    has_remote_description: bool,
    early_candidates: Vec<Option<IceCandidate>>,
    /// The polite side's first offer, held since this time (see the module docs).
    deferred_since: Option<f64>,
}

/// The polite side of a pair: the one with the smaller id (ids differ within a room).
pub fn is_polite(local_id: &str, remote_id: &str) -> bool {
    local_id < remote_id
}

impl Negotiation {
    pub fn new(local_id: &str, remote_id: &str) -> Negotiation {
        Negotiation {
            polite: is_polite(local_id, remote_id),
            making_offer: false,
            ignore_offer: false,
            setting_remote_answer: false,
            has_remote_description: false,
            early_candidates: Vec::new(),
            deferred_since: None,
        }
    }

    pub fn polite(&self) -> bool {
        self.polite
    }

    /// `negotiationneeded` fired at `now`. True: run `setLocalDescription()` and send the offer,
    /// then call [`offer_sent`](Self::offer_sent). False: an offer is already being made, or the
    /// polite side holds its first offer (call [`deferred_offer`](Self::deferred_offer) later).
    pub fn negotiation_needed(&mut self, now: f64) -> bool {
        if self.making_offer {
            return false;
        }
        if self.polite && !self.has_remote_description {
            self.deferred_since.get_or_insert(now);
            return false;
        }
        self.making_offer = true;
        true
    }

    /// When a held first offer must go out even without the other side's offer.
    pub fn deferred_deadline(&self) -> Option<f64> {
        self.deferred_since.map(|t| t + INITIAL_OFFER_WAIT_MS)
    }

    /// True when a held offer must be made now: the other side stayed silent for
    /// [`INITIAL_OFFER_WAIT_MS`]. Then it counts as making an offer, as with
    /// [`negotiation_needed`](Self::negotiation_needed).
    pub fn deferred_offer(&mut self, state: SignalingState, now: f64) -> bool {
        let Some(since) = self.deferred_since else {
            return false;
        };
        if now - since < INITIAL_OFFER_WAIT_MS || self.making_offer || state == SignalingState::Closed {
            return false;
        }
        self.deferred_since = None;
        self.making_offer = true;
        true
    }

    /// The local offer was sent (or creating it failed): collisions are judged by state again.
    pub fn offer_sent(&mut self) {
        self.making_offer = false;
    }

    pub fn making_offer(&self) -> bool {
        self.making_offer
    }

    /// A description arrived while the connection is in `state`.
    pub fn remote_description(&mut self, kind: SdpKind, state: SignalingState) -> DescriptionStep {
        if state == SignalingState::Closed {
            return DescriptionStep::Ignore;
        }
        // An answer with no offer of ours out is a duplicate or a late one (sent again after a
        // signaling outage): applying it could only fail.
        if kind == SdpKind::Answer && (state != SignalingState::HaveLocalOffer || self.setting_remote_answer)
        {
            return DescriptionStep::Ignore;
        }
        let ready_for_offer =
            !self.making_offer && (state == SignalingState::Stable || self.setting_remote_answer);
        let collision = kind == SdpKind::Offer && !ready_for_offer;
        self.ignore_offer = !self.polite && collision;
        if self.ignore_offer {
            return DescriptionStep::Ignore;
        }
        self.setting_remote_answer = kind == SdpKind::Answer;
        DescriptionStep::Apply {
            answer: kind == SdpKind::Offer,
        }
    }

    /// `setRemoteDescription` finished (or failed): candidates that came early are due now.
    pub fn remote_applied(&mut self, ok: bool) -> Vec<Option<IceCandidate>> {
        self.setting_remote_answer = false;
        if ok {
            self.has_remote_description = true;
            // The hold ends: when the answer takes the connection back to `stable`, the browser
            // fires `negotiationneeded` again if our side still has something to offer (webrtc-pc
            // §4.4.1.6), and that offer goes out directly. No forced second round.
            self.deferred_since = None;
            std::mem::take(&mut self.early_candidates)
        } else {
            Vec::new()
        }
    }

    /// A trickled candidate (`None` = end of candidates) arrived.
    pub fn remote_candidate(&mut self, candidate: Option<IceCandidate>) -> CandidateStep {
        if self.has_remote_description {
            CandidateStep::Add
        } else {
            // Bounded by the remote's own candidate count; dropped with the peer.
            self.early_candidates.push(candidate);
            CandidateStep::Queued
        }
    }

    /// `addIceCandidate` failed. True: report it. False: it belonged to an offer we ignored.
    pub fn candidate_failed(&self) -> bool {
        !self.ignore_offer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SignalingState::*;

    fn pair() -> (Negotiation, Negotiation) {
        (Negotiation::new("a", "b"), Negotiation::new("b", "a"))
    }

    #[test]
    fn an_answer_without_an_offer_out_is_ignored() {
        let (mut a, _) = pair();
        for state in [Stable, HaveRemoteOffer] {
            assert_eq!(
                a.remote_description(SdpKind::Answer, state),
                DescriptionStep::Ignore
            );
        }
        assert_eq!(
            a.remote_description(SdpKind::Answer, HaveLocalOffer),
            DescriptionStep::Apply { answer: false }
        );
        // A second answer while the first is being applied (sent again after an outage).
        assert_eq!(
            a.remote_description(SdpKind::Answer, HaveLocalOffer),
            DescriptionStep::Ignore
        );
        a.remote_applied(true);
        assert_eq!(
            a.remote_description(SdpKind::Answer, HaveLocalOffer),
            DescriptionStep::Apply { answer: false }
        );
    }

    #[test]
    fn roles_are_opposite_and_deterministic() {
        let (a, b) = pair();
        assert!(a.polite() && !b.polite());
        assert_eq!(Negotiation::new("a", "b").polite(), a.polite());
    }

    #[test]
    fn description_decisions() {
        // (polite, making_offer, answer pending, kind, state) -> step
        let table = [
            (
                true,
                false,
                false,
                SdpKind::Offer,
                Stable,
                DescriptionStep::Apply { answer: true },
            ),
            (
                false,
                false,
                false,
                SdpKind::Offer,
                Stable,
                DescriptionStep::Apply { answer: true },
            ),
            (
                true,
                true,
                false,
                SdpKind::Offer,
                HaveLocalOffer,
                DescriptionStep::Apply { answer: true },
            ),
            (
                false,
                true,
                false,
                SdpKind::Offer,
                HaveLocalOffer,
                DescriptionStep::Ignore,
            ),
            (
                false,
                false,
                false,
                SdpKind::Offer,
                HaveLocalOffer,
                DescriptionStep::Ignore,
            ),
            (
                false,
                false,
                false,
                SdpKind::Answer,
                HaveLocalOffer,
                DescriptionStep::Apply { answer: false },
            ),
            (
                true,
                false,
                false,
                SdpKind::Answer,
                HaveLocalOffer,
                DescriptionStep::Apply { answer: false },
            ),
            (
                false,
                false,
                true,
                SdpKind::Offer,
                HaveLocalOffer,
                DescriptionStep::Apply { answer: true },
            ),
            (
                true,
                false,
                false,
                SdpKind::Offer,
                Closed,
                DescriptionStep::Ignore,
            ),
        ];
        for (polite, making, pending, kind, state, want) in table {
            let mut n = if polite {
                Negotiation::new("a", "z")
            } else {
                Negotiation::new("z", "a")
            };
            n.making_offer = making;
            n.setting_remote_answer = pending;
            assert_eq!(
                n.remote_description(kind, state),
                want,
                "{polite} {making} {pending} {kind:?} {state:?}"
            );
        }
    }

    #[test]
    fn polite_side_holds_its_first_offer_until_the_other_offer_is_in() {
        let (mut polite, mut impolite) = pair();
        assert!(!polite.negotiation_needed(0.0), "held");
        assert!(impolite.negotiation_needed(0.0));
        assert_eq!(polite.deferred_deadline(), Some(INITIAL_OFFER_WAIT_MS));
        assert!(
            !polite.deferred_offer(Stable, 10.0),
            "nothing from the other side yet"
        );
        assert_eq!(
            polite.remote_description(SdpKind::Offer, Stable),
            DescriptionStep::Apply { answer: true }
        );
        polite.remote_applied(true);
        assert_eq!(
            polite.deferred_deadline(),
            None,
            "the hold ends with the other side's offer"
        );
        assert!(
            !polite.deferred_offer(Stable, 30.0),
            "no forced offer after the answer"
        );
        // If something is still unnegotiated, the browser fires negotiationneeded again.
        assert!(polite.negotiation_needed(50.0));
    }

    #[test]
    fn a_held_offer_goes_out_after_the_wait_if_the_other_side_stays_silent() {
        let (mut polite, _) = pair();
        assert!(!polite.negotiation_needed(100.0));
        assert!(!polite.negotiation_needed(500.0), "the first hold time counts");
        assert!(!polite.deferred_offer(Stable, 100.0 + INITIAL_OFFER_WAIT_MS - 1.0));
        assert!(polite.deferred_offer(Stable, 100.0 + INITIAL_OFFER_WAIT_MS));
    }

    #[test]
    fn glare_resolves_to_exactly_one_offer_applied() {
        let (mut polite, mut impolite) = pair();
        // Mid-call: both have negotiated before, then both renegotiate at once.
        polite.has_remote_description = true;
        impolite.has_remote_description = true;
        assert!(polite.negotiation_needed(0.0) && impolite.negotiation_needed(0.0));
        // Both offers cross on the wire.
        assert_eq!(
            impolite.remote_description(SdpKind::Offer, HaveLocalOffer),
            DescriptionStep::Ignore
        );
        assert_eq!(
            polite.remote_description(SdpKind::Offer, HaveLocalOffer),
            DescriptionStep::Apply { answer: true }
        );
        // The polite side's candidates for its rolled-back offer fail on the impolite side: swallowed.
        assert!(!impolite.candidate_failed());
        polite.offer_sent();
        impolite.offer_sent();
        // The answer to the impolite offer comes back and applies.
        assert_eq!(
            impolite.remote_description(SdpKind::Answer, HaveLocalOffer),
            DescriptionStep::Apply { answer: false }
        );
        assert!(
            impolite.candidate_failed(),
            "after a real answer, failures are reported again"
        );
    }

    #[test]
    fn a_second_negotiation_needed_while_offering_is_coalesced() {
        let (_, mut a) = pair();
        assert!(a.negotiation_needed(0.0));
        assert!(!a.negotiation_needed(0.0));
        a.offer_sent();
        assert!(a.negotiation_needed(0.0));
    }

    #[test]
    fn candidates_before_the_remote_description_wait_for_it() {
        let (mut a, _) = pair();
        let c = |n: u16| {
            Some(IceCandidate {
                candidate: format!("candidate:{n}"),
                sdp_mid: None,
                sdp_m_line_index: Some(0),
                username_fragment: None,
            })
        };
        assert_eq!(a.remote_candidate(c(1)), CandidateStep::Queued);
        assert_eq!(a.remote_candidate(c(2)), CandidateStep::Queued);
        assert_eq!(a.remote_candidate(None), CandidateStep::Queued);
        assert_eq!(
            a.remote_description(SdpKind::Offer, Stable),
            DescriptionStep::Apply { answer: true }
        );
        assert!(
            a.remote_applied(false).is_empty(),
            "a failed apply releases nothing"
        );
        a.remote_description(SdpKind::Offer, Stable);
        assert_eq!(a.remote_applied(true), vec![c(1), c(2), None], "in arrival order");
        assert_eq!(a.remote_candidate(c(3)), CandidateStep::Add);
    }

    #[test]
    fn signaling_state_strings() {
        assert_eq!(SignalingState::parse("have-remote-offer"), HaveRemoteOffer);
        assert_eq!(SignalingState::parse("bogus"), Closed);
    }
}
