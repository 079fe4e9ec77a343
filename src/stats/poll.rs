//! When to call getStats for one peer connection.
//!
//! Like rtcstats-js: the first poll happens at the first `connected` or `failed` connection
//! state (with the reason "connected-0"/"failed-0" as extra), then every `interval_ms` until the
//! pc closes, plus one final poll just before the SDK closes it (reason "close").

/// The poll schedule of one peer connection.
#[derive(Debug, Clone, PartialEq)]
pub struct PollSchedule {
    interval_ms: f64,
    state: PollState,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum PollState {
    /// Not connected yet.
    Waiting,
    /// Polling; the next poll is due at this time (None: interval disabled).
    Polling(Option<f64>),
    /// Closed: never poll again.
    Stopped,
}

/// Default polling interval (ms).
pub const DEFAULT_INTERVAL_MS: f64 = 1000.0;

impl Default for PollSchedule {
    fn default() -> Self {
        PollSchedule::new(DEFAULT_INTERVAL_MS)
    }
}

impl PollSchedule {
    /// `interval_ms` <= 0 (or not finite) disables periodic polls; the first and final polls
    /// still happen.
    pub fn new(interval_ms: f64) -> Self {
        let interval_ms = if interval_ms.is_finite() && interval_ms > 0.0 {
            interval_ms
        } else {
            0.0
        };
        PollSchedule {
            interval_ms,
            state: PollState::Waiting,
        }
    }

    /// Feed every `connectionstatechange` (the pc's `connectionState`). Returns the reason
    /// string when a getStats must be taken now (the first connected/failed).
    pub fn on_connection_state(&mut self, state: &str, now: f64) -> Option<String> {
        match (self.state, state) {
            (PollState::Waiting, "connected" | "failed") => {
                self.state = PollState::Polling(self.after(now));
                Some(crate::text::cat(&[state, "-0"]))
            }
            (_, "closed") => {
                self.state = PollState::Stopped;
                None
            }
            _ => None,
        }
    }

    /// When the next periodic getStats is due (None: no poll scheduled).
    pub fn next_due(&self) -> Option<f64> {
        match self.state {
            PollState::Polling(due) => due,
            _ => None,
        }
    }

    /// Call when a timer fires. True if a getStats is due now; the next due time then moves on
    /// by whole intervals (missed polls are skipped, not bunched up).
    pub fn on_timer(&mut self, now: f64) -> bool {
        let PollState::Polling(Some(due)) = self.state else {
            return false;
        };
        if now.is_nan() || now < due {
            return false;
        }
        let missed = ((now - due) / self.interval_ms).floor().max(0.0);
        let next = due + (missed + 1.0) * self.interval_ms;
        self.state = PollState::Polling(Some(if next.is_finite() {
            next
        } else {
            now + self.interval_ms
        }));
        true
    }

    /// Call just before the SDK closes the pc. True (once) if a final getStats should be taken
    /// first; afterwards the schedule is stopped.
    pub fn before_close(&mut self) -> bool {
        let take = self.state != PollState::Stopped;
        self.state = PollState::Stopped;
        take
    }

    /// Whether polling has ended.
    pub fn is_stopped(&self) -> bool {
        self.state == PollState::Stopped
    }

    fn after(&self, now: f64) -> Option<f64> {
        (self.interval_ms > 0.0 && now.is_finite()).then_some(now + self.interval_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_from_first_connected_until_closed() {
        let mut p = PollSchedule::default();
        assert_eq!(p.on_connection_state("connecting", 0.0), None);
        assert_eq!(p.next_due(), None);
        assert!(!p.on_timer(5000.0));
        assert_eq!(
            p.on_connection_state("connected", 100.0).as_deref(),
            Some("connected-0")
        );
        assert_eq!(p.next_due(), Some(1100.0));
        assert!(!p.on_timer(1099.0));
        assert!(p.on_timer(1100.0));
        assert_eq!(p.next_due(), Some(2100.0));
        // A late timer skips the missed polls.
        assert!(p.on_timer(4500.0));
        assert_eq!(p.next_due(), Some(5100.0));
        // Reconnecting later does not restart the reason counter.
        assert_eq!(p.on_connection_state("disconnected", 4600.0), None);
        assert_eq!(p.on_connection_state("connected", 4700.0), None);
        assert!(p.before_close());
        assert!(!p.before_close());
        assert!(p.is_stopped());
        assert_eq!(p.next_due(), None);
        assert!(!p.on_timer(1e12));
    }

    #[test]
    fn failed_starts_polling_and_closed_stops() {
        let mut p = PollSchedule::new(0.0);
        assert_eq!(p.on_connection_state("failed", 1.0).as_deref(), Some("failed-0"));
        assert_eq!(p.next_due(), None);
        p.on_connection_state("closed", 2.0);
        assert!(!p.before_close());
        let mut never = PollSchedule::default();
        assert!(
            never.before_close(),
            "a pc closed before connecting still gets its final getStats"
        );
    }
}
