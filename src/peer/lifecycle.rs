//! A remote peer's public state and the ICE-restart policy that recovers it.
//!
//! `new → connecting → connected ⇄ reconnecting → failed | closed`. Every transition is
//! returned as [`PeerAction::Transition`], and nothing else changes the state. On `failed`,
//! the policy restarts ICE right away. On `disconnected`, it waits a grace period first, since
//! a disconnect often heals by itself. Attempts are bounded. An attempt that has not
//! reconnected within `restart_timeout_ms` counts as failed.

/// Public peer states (`RemotePeer.state`, `state-change` events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    New,
    Connecting,
    Connected,
    Reconnecting,
    Failed,
    Closed,
}

impl PeerState {
    pub fn as_str(self) -> &'static str {
        match self {
            PeerState::New => "new",
            PeerState::Connecting => "connecting",
            PeerState::Connected => "connected",
            PeerState::Reconnecting => "reconnecting",
            PeerState::Failed => "failed",
            PeerState::Closed => "closed",
        }
    }

    fn terminal(self) -> bool {
        matches!(self, PeerState::Failed | PeerState::Closed)
    }
}

/// Tunables of ICE recovery.
#[derive(Debug, Clone, Copy)]
pub struct IcePolicy {
    pub max_restarts: u32,
    /// Wait this long in `disconnected` before restarting ICE.
    pub disconnected_grace_ms: f64,
    /// A restart that has not reached `connected` after this long counts as failed.
    pub restart_timeout_ms: f64,
}

impl Default for IcePolicy {
    fn default() -> Self {
        IcePolicy {
            max_restarts: 3,
            disconnected_grace_ms: 2000.0,
            restart_timeout_ms: 10_000.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum PeerAction {
    Transition {
        from: PeerState,
        to: PeerState,
    },
    /// Call `pc.restartIce()` (renegotiation follows through `negotiationneeded`).
    RestartIce {
        attempt: u32,
    },
    /// Call [`PeerLife::tick`] at this time (ms).
    WakeAt(f64),
}

#[derive(Debug, Clone)]
pub struct PeerLife {
    state: PeerState,
    policy: IcePolicy,
    restarts: u32,
    disconnected_since: Option<f64>,
    restart_started: Option<f64>,
}

impl PeerLife {
    pub fn new(policy: IcePolicy) -> PeerLife {
        PeerLife {
            state: PeerState::New,
            policy,
            restarts: 0,
            disconnected_since: None,
            restart_started: None,
        }
    }

    pub fn state(&self) -> PeerState {
        self.state
    }

    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    fn go(&mut self, to: PeerState, out: &mut Vec<PeerAction>) {
        if self.state != to && !self.state.terminal() {
            out.push(PeerAction::Transition { from: self.state, to });
            self.state = to;
        }
    }

    fn restart(&mut self, now: f64, out: &mut Vec<PeerAction>) {
        if self.restarts >= self.policy.max_restarts {
            self.go(PeerState::Failed, out);
            return;
        }
        self.restarts += 1;
        self.restart_started = Some(now);
        self.disconnected_since = None;
        self.go(PeerState::Reconnecting, out);
        out.push(PeerAction::RestartIce {
            attempt: self.restarts,
        });
        out.push(PeerAction::WakeAt(now + self.policy.restart_timeout_ms));
    }

    /// Negotiation with this peer started (first offer or answer on the way).
    pub fn negotiating(&mut self) -> Vec<PeerAction> {
        let mut out = Vec::new();
        if self.state == PeerState::New {
            self.go(PeerState::Connecting, &mut out);
        }
        out
    }

    /// `RTCPeerConnection.connectionState` changed.
    pub fn connection_state(&mut self, pc_state: &str, now: f64) -> Vec<PeerAction> {
        let mut out = Vec::new();
        if self.state.terminal() {
            return out;
        }
        match pc_state {
            "connecting" if self.state == PeerState::New => self.go(PeerState::Connecting, &mut out),
            "connected" => {
                self.restarts = 0;
                self.disconnected_since = None;
                self.restart_started = None;
                self.go(PeerState::Connected, &mut out);
            }
            "disconnected" if self.restart_started.is_none() => {
                if self.disconnected_since.is_none() {
                    self.disconnected_since = Some(now);
                    out.push(PeerAction::WakeAt(now + self.policy.disconnected_grace_ms));
                }
                if self.state == PeerState::Connected {
                    self.go(PeerState::Reconnecting, &mut out);
                }
            }
            "failed" => self.restart(now, &mut out),
            "closed" => self.go(PeerState::Closed, &mut out),
            _ => {}
        }
        out
    }

    /// Timers: the disconnected grace period and the restart timeout.
    pub fn tick(&mut self, now: f64) -> Vec<PeerAction> {
        let mut out = Vec::new();
        if self.state.terminal() {
            return out;
        }
        let grace_over = self
            .disconnected_since
            .is_some_and(|t| now - t >= self.policy.disconnected_grace_ms);
        let attempt_over = self
            .restart_started
            .is_some_and(|t| now - t >= self.policy.restart_timeout_ms);
        if grace_over || attempt_over {
            self.restart(now, &mut out);
        }
        out
    }

    /// The peer left or the session ended: `closed`, whatever the state was.
    pub fn close(&mut self) -> Vec<PeerAction> {
        let mut out = Vec::new();
        self.go(PeerState::Closed, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PeerAction::*;
    use PeerState::*;

    fn life() -> PeerLife {
        PeerLife::new(IcePolicy {
            max_restarts: 2,
            disconnected_grace_ms: 1000.0,
            restart_timeout_ms: 5000.0,
        })
    }

    fn t(from: PeerState, to: PeerState) -> PeerAction {
        Transition { from, to }
    }

    #[test]
    fn happy_path() {
        let mut p = life();
        assert_eq!(p.negotiating(), vec![t(New, Connecting)]);
        assert_eq!(p.negotiating(), vec![]);
        assert_eq!(p.connection_state("connecting", 0.0), vec![]);
        assert_eq!(
            p.connection_state("connected", 1.0),
            vec![t(Connecting, Connected)]
        );
        assert_eq!(p.close(), vec![t(Connected, Closed)]);
        assert_eq!(p.connection_state("connected", 2.0), vec![], "closed is terminal");
    }

    #[test]
    fn disconnected_heals_within_grace_without_restart() {
        let mut p = life();
        p.connection_state("connected", 0.0);
        assert_eq!(
            p.connection_state("disconnected", 100.0),
            vec![WakeAt(1100.0), t(Connected, Reconnecting)]
        );
        assert_eq!(p.tick(1099.0), vec![]);
        assert_eq!(
            p.connection_state("connected", 1099.5),
            vec![t(Reconnecting, Connected)]
        );
        assert_eq!(
            p.tick(1100.0),
            vec![],
            "the timer of a healed disconnect does nothing"
        );
    }

    #[test]
    fn disconnected_past_grace_restarts_ice() {
        let mut p = life();
        p.connection_state("connected", 0.0);
        p.connection_state("disconnected", 0.0);
        assert_eq!(p.tick(1000.0), vec![RestartIce { attempt: 1 }, WakeAt(6000.0)]);
        assert_eq!(
            p.connection_state("connected", 2000.0),
            vec![t(Reconnecting, Connected)]
        );
        assert_eq!(p.restarts(), 0, "budget resets after a recovery");
    }

    #[test]
    fn failed_restarts_until_the_budget_is_spent() {
        let mut p = life();
        p.connection_state("connected", 0.0);
        assert_eq!(
            p.connection_state("failed", 10.0),
            vec![
                t(Connected, Reconnecting),
                RestartIce { attempt: 1 },
                WakeAt(5010.0)
            ]
        );
        assert_eq!(p.tick(5009.0), vec![]);
        assert_eq!(
            p.tick(5010.0),
            vec![RestartIce { attempt: 2 }, WakeAt(10010.0)],
            "timed-out attempt"
        );
        assert_eq!(
            p.connection_state("failed", 6000.0),
            vec![t(Reconnecting, Failed)]
        );
        assert_eq!(p.tick(20_000.0), vec![]);
        assert_eq!(p.close(), vec![], "failed stays failed");
    }

    #[test]
    fn disconnected_during_a_restart_does_not_stack_timers() {
        let mut p = life();
        p.connection_state("connected", 0.0);
        p.connection_state("failed", 0.0);
        assert_eq!(p.connection_state("disconnected", 10.0), vec![]);
        assert_eq!(p.state(), Reconnecting);
    }

    #[test]
    fn failing_before_ever_connecting_also_restarts() {
        let mut p = life();
        p.negotiating();
        assert_eq!(
            p.connection_state("failed", 0.0),
            vec![
                t(Connecting, Reconnecting),
                RestartIce { attempt: 1 },
                WakeAt(5000.0)
            ]
        );
    }
}
