//! Connection limits: how many TCP connections the server holds at once, in all and per client
//! address, and the guard that answers connections over a limit.
//!
//! Every accepted connection is counted until its socket closes (a WebSocket keeps its slot for
//! its whole life). Over a limit, a connection is still served briefly so the client learns why:
//! a WebSocket upgrade is completed and closed with 1013 (try again later), any other request
//! gets 503. Far over a limit (a margin beyond it), connections are closed at once, unanswered,
//! so a flood cannot hold descriptors. Idle connections are bounded by the header-read timeout.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
};

use axum::{
    extract::{FromRequestParts, Request, WebSocketUpgrade},
    http::{header::RETRY_AFTER, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::{auth, hub::close_code};

/// Request extension on connections over a limit: why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverLimit(pub &'static str);

pub struct ConnLimits {
    max_total: usize,
    max_per_ip: usize,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// What to do with a new connection.
pub enum Admission {
    /// Serve it (over a limit: with the reason, so it is told and closed).
    Serve(Slot, Option<OverLimit>),
    /// Close it now, unanswered.
    Drop,
}

/// One counted connection; dropping it frees the place.
pub struct Slot {
    limits: Arc<ConnLimits>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.limits.lock();
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.per_ip.remove(&self.ip);
            }
        }
    }
}

/// How far over a limit connections are still answered (then closed) rather than dropped.
fn margin(limit: usize) -> usize {
    (limit / 16).clamp(4, 256)
}

impl ConnLimits {
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<ConnLimits> {
        Arc::new(ConnLimits {
            max_total: max_total.max(1),
            max_per_ip: max_per_ip.max(1),
            counts: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Admission {
        let mut counts = self.lock();
        let here = counts.per_ip.get(&ip).copied().unwrap_or(0);
        if counts.total >= self.max_total + margin(self.max_total)
            || here >= self.max_per_ip + margin(self.max_per_ip)
        {
            return Admission::Drop;
        }
        let over = if counts.total >= self.max_total {
            Some(OverLimit("the server is at its connection limit"))
        } else if here >= self.max_per_ip {
            Some(OverLimit("too many connections from this address"))
        } else {
            None
        };
        counts.total += 1;
        *counts.per_ip.entry(ip).or_insert(0) += 1;
        Admission::Serve(
            Slot {
                limits: self.clone(),
                ip,
            },
            over,
        )
    }

    /// Connections held now (in all).
    pub fn total(&self) -> usize {
        self.lock().total
    }
}

/// Middleware: a connection over a limit gets a WebSocket closed with 1013 and the reason, or
/// a 503; `/healthz` still answers.
pub async fn guard(request: Request, next: Next) -> Response {
    let Some(OverLimit(reason)) = request.extensions().get::<OverLimit>().copied() else {
        return next.run(request).await;
    };
    if request.uri().path() == "/healthz" {
        return next.run(request).await;
    }
    let (mut parts, _body) = request.into_parts();
    match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(ws) => auth::close_at_once(ws, close_code::TRY_AGAIN_LATER, reason),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, [(RETRY_AFTER, "5")], reason).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_answer_then_drop_and_free_their_places() {
        let limits = ConnLimits::new(100, 2);
        let (a, b) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let mut held = Vec::new();
        for _ in 0..2 {
            match limits.admit(a) {
                Admission::Serve(slot, None) => held.push(slot),
                _ => panic!("within the limit"),
            }
        }
        let mut over = Vec::new();
        for _ in 0..margin(2) {
            match limits.admit(a) {
                Admission::Serve(slot, Some(OverLimit(reason))) => {
                    assert!(reason.contains("address"));
                    over.push(slot);
                }
                _ => panic!("over the limit: answered"),
            }
        }
        assert!(matches!(limits.admit(a), Admission::Drop), "far over: dropped");
        assert!(
            matches!(limits.admit(b), Admission::Serve(_, None)),
            "other addresses unaffected"
        );
        assert_eq!(limits.total(), 2 + margin(2));
        drop(over);
        held.pop();
        assert_eq!(limits.total(), 1);
        assert!(matches!(limits.admit(a), Admission::Serve(_, None)));
    }
}
