//! The trace of calls and the peer connections it watches: the [`Trace`] (generations,
//! buffering, sockets, acks) plus, per peer connection, its getStats schedule, its samples for
//! the app, and the final sample before it closes. One piece of code for the `Room`'s own peer
//! connections and for those an app makes and traces with `StatsTrace`.
//!
//! Sans-IO like the rest: calls with `now` in, [`TracerOut`]s out (drained with
//! [`Tracer::poll_output`]), and [`Tracer::next_wake`] says when to call [`Tracer::tick`].

use std::collections::VecDeque;

use super::{
    methods::{CLOSE, GET_STATS},
    poll::PollSchedule,
    summarize,
    trace::{Action, Counters, Trace, TraceConfig},
    Summary, Value,
};
use crate::error::SdkError;

/// A peer connection (the `Room`'s pc ids; `StatsTrace` numbers the app's own).
pub type Key = u32;

/// How long a final getStats may take before its peer connection closes anyway (Firefox never
/// settles a getStats started just before a close).
pub const FINAL_SAMPLE_MS: f64 = 1000.0;

/// Why a getStats is taken.
#[derive(Debug, Clone, PartialEq)]
pub enum Why {
    /// The schedule (`reason`: the trace's extra, e.g. "connected-0").
    Poll(Option<String>),
    /// The last one, before the pc closes.
    Final,
    /// An app's request (`peer.stats()`): not traced.
    Request(u32),
}

#[derive(Debug, Clone, PartialEq)]
pub enum TracerOut {
    /// A collector socket action: `Open`, `Send` or `Close` (timers and errors stay inside).
    Socket(Action),
    /// Take `pc`'s getStats now and report it with [`Tracer::sampled`].
    GetStats {
        pc: Key,
        why: Why,
    },
    /// A scheduled sample, summarized for the app (`stats` events).
    Stats {
        pc: Key,
        summary: Box<Summary>,
    },
    /// The answer to a [`Why::Request`].
    Reply {
        request: u32,
        result: Option<Box<Summary>>,
    },
    /// `pc`'s final sample and `close` are recorded: close it now.
    Close {
        pc: Key,
    },
    /// A generation's first socket opened.
    Opened {
        generation: u32,
    },
    /// A generation delivered what it could and ended.
    Ended {
        generation: u32,
        counters: Counters,
    },
    /// The final samples [`Tracer::final_samples`] asked for are in (or given up on).
    FinalsDone {
        generation: u32,
    },
    /// A generation's socket closed before it ever opened (`refused`: by the collector, for
    /// the token), or the generation ended first; it keeps retrying unless refused or ended.
    OpenFailed {
        generation: u32,
        refused: bool,
    },
    Error(SdkError),
}

/// Where a pc's final sample is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Final {
    NotYet,
    /// Asked for; given up on at this time.
    Pending(f64),
    Done,
}

#[derive(Debug)]
struct Watched {
    pc: Key,
    /// The generation it is traced in and its id there ("PC_0"); none: sampled for the app only.
    traced: Option<(u32, String)>,
    /// None: sampled on request only.
    poll: Option<PollSchedule>,
    last: Option<Value>,
    last_sample: Final,
    /// It closes once its final sample is in.
    closing: bool,
}

#[derive(Debug)]
pub struct Tracer {
    trace: Trace,
    interval_ms: f64,
    watched: Vec<Watched>,
    /// Wake-ups the trace asked for, per generation.
    timers: Vec<(u32, f64)>,
    /// Generations waiting for their first open socket, with that socket once known.
    opening: Vec<(u32, Option<u32>)>,
    /// Generations whose `close` waits for the final samples of their pcs.
    ending: Vec<u32>,
    /// Generations whose [`Tracer::final_samples`] are not all in.
    finals: Vec<u32>,
    /// Generations whose end is still to be reported.
    live: Vec<u32>,
    out: VecDeque<TracerOut>,
}

impl Tracer {
    /// `interval_ms`: getStats period once connected (0: only the first and final samples).
    pub fn new(config: TraceConfig, interval_ms: f64) -> Tracer {
        Tracer {
            trace: Trace::new(config),
            interval_ms,
            watched: Vec::new(),
            timers: Vec::new(),
            opening: Vec::new(),
            ending: Vec::new(),
            finals: Vec::new(),
            live: Vec::new(),
            out: VecDeque::new(),
        }
    }

    /// The generation that accepts records, if any.
    pub fn generation(&self) -> Option<u32> {
        self.trace.current_generation()
    }

    /// Whether a generation still has work (records, or delivering what it holds).
    pub fn is_live(&self, generation: u32) -> bool {
        self.trace.is_live(generation)
    }

    pub fn counters(&self, generation: u32) -> Option<Counters> {
        self.trace.counters(generation)
    }

    /// True when nothing is left to deliver.
    pub fn is_idle(&self) -> bool {
        self.trace.is_idle()
    }

    /// Whether `pc` is watched (its close waits for [`TracerOut::Close`]).
    pub fn watches(&self, pc: Key) -> bool {
        self.watched.iter().any(|w| w.pc == pc)
    }

    /// The generation and trace id ("PC_0") of a watched pc.
    pub fn traced(&self, pc: Key) -> Option<(u32, &str)> {
        let w = self.watched.iter().find(|w| w.pc == pc)?;
        w.traced.as_ref().map(|(g, id)| (*g, id.as_str()))
    }

    pub fn poll_output(&mut self) -> Option<TracerOut> {
        self.out.pop_front()
    }

    /// Starts a generation (a new dump); the previous one, if current, is closed.
    pub fn connect(&mut self, now: f64, client_info: Value) -> u32 {
        if let Some(previous) = self.trace.current_generation() {
            self.close(previous, now);
            if self.ending.contains(&previous) {
                // Still taking its final samples: the new generation must not close it first.
                self.trace.detach_current();
            }
        }
        let generation = self.trace.connect(now, client_info);
        self.opening.push((generation, None));
        self.live.push(generation);
        self.settle();
        generation
    }

    /// Ends a generation: the final samples of its open pcs first (bounded), then what it
    /// holds is delivered and [`TracerOut::Ended`] follows. Stale or repeated: no-op.
    pub fn close(&mut self, generation: u32, now: f64) {
        if self.ending.contains(&generation) || !self.live.contains(&generation) {
            return;
        }
        self.ending.push(generation);
        self.take_finals(generation, now);
        self.check_finals(now);
    }

    /// The final sample of every open pc traced in `generation`, now (once per pc);
    /// [`TracerOut::FinalsDone`] follows when they are in.
    pub fn final_samples(&mut self, generation: u32, now: f64) {
        self.take_finals(generation, now);
        if !self.finals.contains(&generation) {
            self.finals.push(generation);
        }
        self.check_finals(now);
    }

    fn take_finals(&mut self, generation: u32, now: f64) {
        for w in &mut self.watched {
            let mine = w.traced.as_ref().is_some_and(|(g, _)| *g == generation);
            if mine && !w.closing && w.last_sample == Final::NotYet {
                let wanted = w.poll.as_mut().is_none_or(PollSchedule::before_close);
                w.last_sample = if wanted {
                    Final::Pending(now + FINAL_SAMPLE_MS)
                } else {
                    Final::Done
                };
                if wanted {
                    self.out.push_back(TracerOut::GetStats {
                        pc: w.pc,
                        why: Why::Final,
                    });
                }
            }
        }
    }

    /// Watches a peer connection: its getStats schedule (`poll`), and in `generation` its
    /// `create` with the configuration (if that generation accepts records). Returns its trace
    /// id ("PC_0", …).
    pub fn attach(
        &mut self,
        pc: Key,
        generation: Option<u32>,
        poll: bool,
        now: f64,
        configuration: &Value,
    ) -> Option<String> {
        let traced = generation
            .filter(|g| !self.ending.contains(g))
            .and_then(|g| Some((g, self.trace.create_pc(g, now, configuration)?)));
        let id = traced.as_ref().map(|(_, id)| id.clone());
        self.watched.retain(|w| w.pc != pc);
        self.watched.push(Watched {
            pc,
            traced,
            poll: poll.then(|| PollSchedule::new(self.interval_ms)),
            last: None,
            last_sample: Final::NotYet,
            closing: false,
        });
        self.settle();
        id
    }

    fn find(&mut self, pc: Key) -> Option<&mut Watched> {
        self.watched.iter_mut().find(|w| w.pc == pc)
    }

    /// A record for a watched pc in its generation (`pc`), or for no pc in `generation`. An
    /// `onconnectionstatechange` also drives that pc's schedule.
    pub fn record(
        &mut self,
        pc: Option<Key>,
        generation: Option<u32>,
        now: f64,
        method: &str,
        value: Value,
        extra: Vec<Value>,
    ) {
        if let (Some(pc), Some(state)) = (
            pc,
            (method == "onconnectionstatechange")
                .then(|| value.as_str())
                .flatten(),
        ) {
            let state = String::from(state);
            self.connection_state(pc, &state, now);
        }
        let target = match pc {
            Some(pc) => self
                .watched
                .iter()
                .find(|w| w.pc == pc)
                .and_then(|w| w.traced.clone()),
            None => generation.map(|g| (g, String::new())),
        };
        if let Some((g, id)) = target {
            let id = (!id.is_empty()).then_some(id.as_str());
            self.trace.record(g, now, method, id, value, extra);
            self.settle();
        }
    }

    /// `connectionState` of a watched pc changed: the first sample comes at connected/failed.
    fn connection_state(&mut self, pc: Key, state: &str, now: f64) {
        let Some(poll) = self.find(pc).and_then(|w| w.poll.as_mut()) else {
            return;
        };
        if let Some(reason) = poll.on_connection_state(state, now) {
            self.out.push_back(TracerOut::GetStats {
                pc,
                why: Why::Poll(Some(reason)),
            });
        }
    }

    /// An app asks for a summary now.
    pub fn request(&mut self, pc: Key, request: u32) {
        let out = match self.find(pc) {
            Some(_) => TracerOut::GetStats {
                pc,
                why: Why::Request(request),
            },
            None => TracerOut::Reply {
                request,
                result: None,
            },
        };
        self.out.push_back(out);
    }

    /// A getStats came back (`None`: it failed).
    pub fn sampled(&mut self, pc: Key, why: Why, stats: Option<Value>, now: f64) {
        let Some(w) = self.watched.iter_mut().find(|w| w.pc == pc) else {
            if let Why::Request(request) = why {
                self.out.push_back(TracerOut::Reply {
                    request,
                    result: None,
                });
            }
            return;
        };
        let summary = stats.as_ref().map(|s| {
            let summary = Box::new(summarize(w.last.as_ref(), s));
            w.last = Some(s.clone());
            summary
        });
        let extra = match &why {
            Why::Poll(Some(reason)) => Some(vec![Value::str(reason)]),
            Why::Poll(None) => Some(Vec::new()),
            Why::Final => Some(vec![Value::str("close")]),
            Why::Request(_) => None,
        };
        if let (Some((g, id)), Some(stats), Some(extra)) = (w.traced.clone(), stats, extra) {
            self.trace.record(g, now, GET_STATS, Some(&id), stats, extra);
        }
        match why {
            Why::Poll(_) => {
                if let Some(summary) = summary {
                    self.out.push_back(TracerOut::Stats { pc, summary });
                }
            }
            Why::Request(request) => self.out.push_back(TracerOut::Reply {
                request,
                result: summary,
            }),
            Why::Final => self.final_in(pc, now),
        }
        self.settle();
    }

    /// A pc is about to close: with `take_final`, its final sample first (if it is traced and
    /// has not had it); then `close` is recorded and [`TracerOut::Close`] says to close it.
    pub fn closing(&mut self, pc: Key, now: f64, take_final: bool) {
        let Some(w) = self.find(pc) else {
            return self.out.push_back(TracerOut::Close { pc });
        };
        if w.closing {
            return;
        }
        w.closing = true;
        let wanted =
            take_final && w.traced.is_some() && w.poll.as_mut().is_none_or(PollSchedule::before_close);
        match w.last_sample {
            Final::NotYet if wanted => {
                w.last_sample = Final::Pending(now + FINAL_SAMPLE_MS);
                self.out.push_back(TracerOut::GetStats { pc, why: Why::Final });
            }
            Final::Pending(_) => {} // it closes when the sample is in
            _ => self.closed(pc, now),
        }
        self.settle();
    }

    /// The final sample of `pc` is in (or given up on).
    fn final_in(&mut self, pc: Key, now: f64) {
        let Some(w) = self.find(pc) else { return };
        w.last_sample = Final::Done;
        if w.closing {
            self.closed(pc, now);
        }
        self.check_finals(now);
    }

    /// `close` is recorded: the pc may close.
    fn closed(&mut self, pc: Key, now: f64) {
        let Some(index) = self.watched.iter().position(|w| w.pc == pc) else {
            return;
        };
        let w = self.watched.remove(index);
        if let Some((g, id)) = w.traced {
            self.trace
                .record(g, now, CLOSE, Some(&id), Value::Null, Vec::new());
        }
        self.out.push_back(TracerOut::Close { pc });
    }

    /// Generations whose final samples are all in: those asked for report it, those closing
    /// end now.
    fn check_finals(&mut self, now: f64) {
        let watched = &self.watched;
        let pending = |g: &u32| {
            watched.iter().any(|w| {
                w.traced.as_ref().is_some_and(|(wg, _)| wg == g) && matches!(w.last_sample, Final::Pending(_))
            })
        };
        let (waiting, done): (Vec<u32>, Vec<u32>) = self.finals.iter().partition(|g| pending(g));
        let (still, ending): (Vec<u32>, Vec<u32>) = self.ending.iter().partition(|g| pending(g));
        self.finals = waiting;
        self.ending = still;
        for generation in done {
            self.out.push_back(TracerOut::FinalsDone { generation });
        }
        for g in ending {
            self.watched
                .retain(|w| w.closing || w.traced.as_ref().is_none_or(|(wg, _)| *wg != g));
            self.trace.close(g, now);
        }
        self.settle();
    }

    /// The collector socket of a generation opened.
    pub fn socket_open(&mut self, socket: u32, now: f64) {
        self.trace.socket_open(socket, now);
        if let Some(i) = self.opening.iter().position(|(_, s)| *s == Some(socket)) {
            let (generation, _) = self.opening.remove(i);
            self.out.push_back(TracerOut::Opened { generation });
        }
        self.settle();
    }

    pub fn socket_message(&mut self, socket: u32, now: f64, text: &str) {
        self.trace.socket_message(socket, now, text);
        self.settle();
    }

    pub fn socket_drained(&mut self, socket: u32, now: f64) {
        self.trace.buffered_drained(socket, now);
        self.settle();
    }

    /// The socket closed; `refused` (1008, the token): that generation ends.
    pub fn socket_closed(&mut self, socket: u32, refused: bool, now: f64) {
        if let Some((generation, _)) = self.opening.iter().find(|(_, s)| *s == Some(socket)) {
            let generation = *generation;
            self.out.push_back(TracerOut::OpenFailed { generation, refused });
            if refused {
                self.opening.retain(|(g, _)| *g != generation);
            }
        }
        match refused {
            true => self.trace.socket_refused(socket, now),
            false => self.trace.socket_closed(socket, now),
        }
        self.settle();
    }

    /// Timers: the schedules, final samples given up on, the trace's own.
    pub fn tick(&mut self, now: f64) {
        let mut due = Vec::new();
        let mut overdue = Vec::new();
        for w in &mut self.watched {
            if w.poll.as_mut().is_some_and(|p| p.on_timer(now)) {
                due.push(w.pc);
            }
            if matches!(w.last_sample, Final::Pending(at) if now >= at) {
                overdue.push(w.pc);
            }
        }
        for pc in due {
            self.out.push_back(TracerOut::GetStats {
                pc,
                why: Why::Poll(None),
            });
        }
        for pc in overdue {
            self.final_in(pc, now);
        }
        let timers: Vec<u32> = self
            .timers
            .iter()
            .filter(|(_, at)| now >= *at)
            .map(|(g, _)| *g)
            .collect();
        self.timers.retain(|(_, at)| now < *at);
        for g in timers {
            self.trace.timer(g, now);
        }
        self.settle();
    }

    /// When [`Tracer::tick`] next has something to do.
    pub fn next_wake(&self) -> Option<f64> {
        let polls = self.watched.iter().filter_map(|w| w.poll.as_ref()?.next_due());
        let finals = self.watched.iter().filter_map(|w| match w.last_sample {
            Final::Pending(at) => Some(at),
            _ => None,
        });
        let timers = self.timers.iter().map(|(_, at)| *at);
        polls.chain(finals).chain(timers).reduce(f64::min)
    }

    /// The trace's actions, sorted out: timers and errors kept, socket actions passed on.
    fn settle(&mut self) {
        while let Some(action) = self.trace.poll_action() {
            match action {
                Action::Timer { generation, at } => {
                    self.timers.retain(|(g, _)| *g != generation);
                    self.timers.push((generation, at));
                }
                Action::Error { error, .. } => self.out.push_back(TracerOut::Error(error)),
                Action::Open { generation, socket } => {
                    if let Some(o) = self.opening.iter_mut().find(|(g, _)| *g == generation) {
                        o.1 = Some(socket);
                    }
                    self.out
                        .push_back(TracerOut::Socket(Action::Open { generation, socket }));
                }
                other => self.out.push_back(TracerOut::Socket(other)),
            }
        }
        let trace = &self.trace;
        self.timers.retain(|(g, _)| trace.is_live(*g));
        for (generation, _) in self.opening.iter().filter(|(g, _)| !trace.is_live(*g)) {
            self.out.push_back(TracerOut::OpenFailed {
                generation: *generation,
                refused: false,
            });
        }
        self.opening.retain(|(g, _)| trace.is_live(*g));
        let ended: Vec<u32> = self.live.iter().copied().filter(|g| !trace.is_live(*g)).collect();
        for generation in ended {
            self.live.retain(|g| *g != generation);
            let counters = self.trace.counters(generation).unwrap_or_default();
            self.out.push_back(TracerOut::Ended { generation, counters });
        }
    }
}
