//! `StatsTraceCore`, the wasm half of the JS `StatsTrace` (pkg-template/index.js wraps peer
//! connections and adds the JS API). It carries the sans-IO [`Trace`] out in the browser:
//! WebSockets to the collector (subprotocol `rtcstats#5.0`), reconnect timers, and the getStats
//! polling of every traced peer connection ([`PollSchedule`]).
//!
//! Generations: each `connect()` starts one. Every record names its generation and the core
//! drops records of any generation but the current one, so late callbacks, buffered messages and
//! timers of an earlier call never reach a later call's socket, and `close(g)` only ever touches
//! generation `g`.

use std::{
    cell::RefCell,
    rc::{Rc, Weak},
};

use gloo_events::EventListener;
use gloo_timers::callback::Timeout;
use js_sys::{Array, Function, Object, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, spawn_local, JsFuture};
use web_sys::{CloseEvent, MessageEvent, RtcPeerConnection, WebSocket};

use super::js::{self, error_value, now, object, stats_value, with, Outbox, Shell};
use crate::{
    error::{code, SdkError},
    stats::{
        methods::{CLOSE, GET_STATS},
        summarize, AckMode, Action, Counters, MediaSummary, PollSchedule, Summary, Trace, TraceConfig, Value,
    },
};

/// The WebSocket subprotocol of rtcstats clients.
const SUBPROTOCOL: &str = "rtcstats#5.0";
/// How often a socket's `bufferedAmount` is checked (delivery without collector acks).
const DRAIN_CHECK_MS: u32 = 250;

fn opt_num(value: Option<f64>) -> JsValue {
    value.map_or(JsValue::NULL, JsValue::from_f64)
}

/// The in-page summary as the JS object of `peer.stats()` and the `stats` event.
pub(super) fn summary_value(summary: &Summary) -> JsValue {
    let media = |m: &MediaSummary| {
        object(&[
            ("inboundBitrateBps", opt_num(m.inbound_bitrate_bps)),
            ("outboundBitrateBps", opt_num(m.outbound_bitrate_bps)),
            ("inboundPacketLoss", opt_num(m.inbound_packet_loss)),
            ("outboundPacketLoss", opt_num(m.outbound_packet_loss)),
            ("jitterMs", opt_num(m.jitter_ms)),
            ("inboundFps", opt_num(m.inbound_fps)),
            ("outboundFps", opt_num(m.outbound_fps)),
        ])
    };
    let text = |s: &Option<String>| s.as_deref().map_or(JsValue::NULL, JsValue::from_str);
    object(&[
        ("localCandidateType", text(&summary.local_candidate_type)),
        ("remoteCandidateType", text(&summary.remote_candidate_type)),
        ("rttMs", opt_num(summary.rtt_ms)),
        ("audio", media(&summary.audio)),
        ("video", media(&summary.video)),
    ])
}

/// How long a getStats may take before it counts as failed: Firefox never settles one
/// started just before `close()`.
const GET_STATS_TIMEOUT_MS: i32 = 1000;

/// A getStats result as a plain stats value (report id → report); an error after
/// [`GET_STATS_TIMEOUT_MS`].
pub(super) async fn get_stats(promise: Promise) -> Result<Value, JsValue> {
    let timeout = Promise::new(&mut |_, reject| {
        if let Some(window) = web_sys::window() {
            let _ =
                window.set_timeout_with_callback_and_timeout_and_arguments_0(&reject, GET_STATS_TIMEOUT_MS);
        }
    });
    let report = JsFuture::from(Promise::race(&Array::of2(&promise, &timeout))).await?;
    Ok(stats_value(&Object::from_entries(&report)?.into()))
}

fn counters_value(counters: &Counters) -> JsValue {
    object(&[
        ("recorded", (counters.recorded as f64).into()),
        ("dropped", (counters.dropped as f64).into()),
        ("delivered", (counters.delivered as f64).into()),
        ("lostAtClose", (counters.lost_at_close as f64).into()),
        ("tooLarge", (counters.too_large as f64).into()),
        ("refused", (counters.refused as f64).into()),
    ])
}

struct TraceSocket {
    id: u32,
    ws: WebSocket,
    _listeners: [EventListener; 3],
}

impl Drop for TraceSocket {
    fn drop(&mut self) {
        let _ = self.ws.close_with_code(1000);
    }
}

/// A traced peer connection: its id in the dump and its getStats schedule.
struct Watched {
    generation: u32,
    pc_id: String,
    pc: RtcPeerConnection,
    poll: PollSchedule,
    timer: Option<Timeout>,
    /// The previous sample, for rates in the summary.
    last: Option<Value>,
    /// The final getStats started just before the native `close()`; `close` is recorded
    /// after it.
    closing: Option<Promise>,
}

struct Inner {
    trace: Trace,
    emit: Function,
    interval_ms: f64,
    /// Collector URL per live generation.
    urls: Vec<(u32, String)>,
    sockets: Vec<TraceSocket>,
    timers: Vec<(u32, Timeout)>,
    drain_timer: Option<Timeout>,
    sent_since_drain: bool,
    watched: Vec<Watched>,
    /// `connect()` Promises waiting for their generation's first open socket.
    open_waiters: Vec<(u32, Function, Function)>,
    /// `close()` Promises waiting for their generation to finish.
    close_waiters: Vec<(u32, Function)>,
    /// Generations whose `close()` is taking their final getStats: they still accept records
    /// even once a newer generation is current.
    ending: Vec<u32>,
    outbox: Outbox,
    weak: Weak<RefCell<Inner>>,
}

impl Shell for Inner {
    fn process(&mut self) {
        while let Some(action) = self.trace.poll_action() {
            self.act(action);
        }
        let trace = &self.trace;
        self.urls.retain(|(g, _)| trace.is_live(*g));
        self.timers.retain(|(g, _)| trace.is_live(*g));
        let current = trace.current_generation();
        let ending = &self.ending;
        self.watched
            .retain(|w| Some(w.generation) == current || ending.contains(&w.generation));
        for (generation, resolve) in std::mem::take(&mut self.close_waiters) {
            if self.trace.is_live(generation) {
                self.close_waiters.push((generation, resolve));
            } else {
                let counters = self.trace.counters(generation).unwrap_or_default();
                self.outbox.settle(resolve, counters_value(&counters));
            }
        }
        let (live, ended): (Vec<_>, Vec<_>) = std::mem::take(&mut self.open_waiters)
            .into_iter()
            .partition(|(g, _, _)| self.trace.is_live(*g));
        self.open_waiters = live;
        for (_, _, reject) in ended {
            // A generation that ended before any socket opened.
            let error = SdkError::new(
                code::STATS_UNAVAILABLE,
                "the trace closed before it opened",
                false,
            );
            self.outbox.settle(reject, error_value(&error));
        }
        if self.sent_since_drain && self.drain_timer.is_none() && !self.sockets.is_empty() {
            let weak = self.weak.clone();
            self.drain_timer = Some(Timeout::new(DRAIN_CHECK_MS, move || {
                with(&weak, Inner::check_drained)
            }));
        }
    }

    fn outbox(&mut self) -> &mut Outbox {
        &mut self.outbox
    }
}

impl Inner {
    fn act(&mut self, action: Action) {
        match action {
            Action::Open { generation, socket } => self.open(generation, socket),
            Action::Send { socket, text } => {
                if let Some(s) = self.sockets.iter().find(|s| s.id == socket) {
                    let _ = s.ws.send_with_str(&text);
                    self.sent_since_drain = true;
                }
            }
            Action::Close { socket } => self.sockets.retain(|s| s.id != socket),
            Action::Timer { generation, at } => {
                let weak = self.weak.clone();
                let delay = (at - now()).clamp(0.0, 3_600_000.0) as u32;
                let timer = Timeout::new(delay, move || {
                    with(&weak, |inner| inner.trace.timer(generation, now()))
                });
                self.timers.retain(|(g, _)| *g != generation);
                self.timers.push((generation, timer));
            }
            Action::Error { error, .. } => self.emit_error(&error),
        }
    }

    fn emit_error(&mut self, error: &SdkError) {
        let detail = error_value(error);
        self.outbox
            .call(&self.emit, ["error".into(), detail, JsValue::UNDEFINED]);
    }

    fn open(&mut self, generation: u32, socket: u32) {
        let Some(url) = self.urls.iter().find(|(g, _)| *g == generation).map(|(_, u)| u) else {
            return;
        };
        let ws = match WebSocket::new_with_str(url, SUBPROTOCOL) {
            Ok(ws) => ws,
            Err(_) => {
                // Not a WebSocket URL: nothing will ever open, so end the generation.
                let error = SdkError::new(code::INVALID_ARGUMENT, "not a ws:// or wss:// URL", false);
                self.reject_open(generation, &error);
                self.trace.close(generation, now());
                return;
            }
        };
        let listen = |name: &'static str, f: fn(&mut Inner, u32, u32, &web_sys::Event)| {
            let weak = self.weak.clone();
            EventListener::new(&ws, name, move |event| {
                with(&weak, |inner| f(inner, generation, socket, event))
            })
        };
        let listeners = [
            listen("open", |inner, generation, socket, _| {
                inner.trace.socket_open(socket, now());
                for (resolve, _) in inner.take_open_waiters(generation) {
                    inner.outbox.settle(resolve, generation.into());
                }
            }),
            listen("message", |inner, _, socket, event| {
                let text = event.dyn_ref::<MessageEvent>().and_then(|m| m.data().as_string());
                if let Some(text) = text {
                    inner.trace.socket_message(socket, now(), &text);
                }
            }),
            listen("close", |inner, generation, socket, event| {
                inner.sockets.retain(|s| s.id != socket);
                let close = event.dyn_ref::<CloseEvent>().map(|c| (c.code(), c.reason()));
                if let Some((1008, reason)) = close {
                    // Refused (token): retrying cannot help.
                    inner.trace.socket_refused(socket, now());
                    let error = SdkError::new(
                        code::UNAUTHORIZED,
                        crate::text::cat(&["the stats collector refused the trace: ", &reason]),
                        false,
                    );
                    inner.reject_open(generation, &error);
                    inner.emit_error(&error);
                    return;
                }
                if let Some((1013, reason)) = close {
                    // A dump ended at the collector's size cap or quota: retried with backoff,
                    // the trace goes on in a new dump.
                    let message = crate::text::cat(&["the stats collector ended the dump: ", &reason]);
                    inner.emit_error(&SdkError::new(code::STATS_REFUSED, message, false));
                }
                inner.trace.socket_closed(socket, now());
                let error = SdkError::new(
                    code::STATS_UNAVAILABLE,
                    "the stats collector is unreachable; retrying with backoff",
                    false,
                );
                inner.reject_open(generation, &error);
            }),
        ];
        self.sockets.push(TraceSocket {
            id: socket,
            ws,
            _listeners: listeners,
        });
    }

    /// The `connect()` Promises of `generation` (resolve, reject), removed from the waiters.
    fn take_open_waiters(&mut self, generation: u32) -> Vec<(Function, Function)> {
        let mut mine = Vec::new();
        for (g, resolve, reject) in std::mem::take(&mut self.open_waiters) {
            match g == generation {
                true => mine.push((resolve, reject)),
                false => self.open_waiters.push((g, resolve, reject)),
            }
        }
        mine
    }

    fn reject_open(&mut self, generation: u32, error: &SdkError) {
        for (_, reject) in self.take_open_waiters(generation) {
            self.outbox.settle(reject, error_value(error));
        }
    }

    fn check_drained(&mut self) {
        self.drain_timer = None;
        self.sent_since_drain = false;
        let mut drained = Vec::new();
        for socket in &self.sockets {
            match socket.ws.buffered_amount() {
                0 => drained.push(socket.id),
                _ => self.sent_since_drain = true,
            }
        }
        for socket in drained {
            self.trace.buffered_drained(socket, now());
        }
    }

    fn find(&mut self, generation: u32, pc_id: &str) -> Option<&mut Watched> {
        self.watched
            .iter_mut()
            .find(|w| w.generation == generation && w.pc_id == pc_id)
    }

    /// Arms the poll timer of a traced pc from its schedule.
    fn schedule_poll(&mut self, generation: u32, pc_id: &str) {
        let weak = self.weak.clone();
        let Some(w) = self.find(generation, pc_id) else {
            return;
        };
        let id = w.pc_id.clone();
        w.timer = w.poll.next_due().map(|at| {
            let delay = (at - now()).clamp(0.0, 3_600_000.0) as u32;
            Timeout::new(delay, move || {
                with(&weak, |inner| inner.poll_due(generation, &id))
            })
        });
    }

    fn poll_due(&mut self, generation: u32, pc_id: &str) {
        let Some(w) = self.find(generation, pc_id) else {
            return;
        };
        if w.poll.on_timer(now()) {
            let pc = w.pc.clone();
            self.sample(generation, pc_id, &pc, None);
        }
        self.schedule_poll(generation, pc_id);
    }

    /// Starts a getStats now; the result is recorded (and summarized) when it arrives.
    fn sample(&self, generation: u32, pc_id: &str, pc: &RtcPeerConnection, reason: Option<String>) {
        let (weak, pc_id, promise) = (self.weak.clone(), pc_id.to_string(), pc.get_stats());
        spawn_local(async move {
            let result = get_stats(promise).await;
            with(&weak, |inner| {
                inner.sampled(generation, &pc_id, result.ok(), reason)
            });
        });
    }

    /// The final getStats of a closing pc arrived (or failed): record it, then `close`. Runs
    /// once, whichever of the pc's own task and a trace `close()` gets here first.
    fn closed_sample(&mut self, generation: u32, pc_id: &str, report: Option<Value>) {
        if self.find(generation, pc_id).is_some_and(|w| w.closing.is_some()) {
            self.sampled(generation, pc_id, report, Some("close".into()));
            self.record_close(generation, pc_id);
        }
    }

    fn sampled(&mut self, generation: u32, pc_id: &str, report: Option<Value>, reason: Option<String>) {
        if let Some(report) = report {
            let extra = reason.map(Value::String).into_iter().collect();
            let time = now();
            self.trace
                .record(generation, time, GET_STATS, Some(pc_id), report.clone(), extra);
            if let Some(w) = self.find(generation, pc_id) {
                let summary = summarize(w.last.as_ref(), &report);
                w.last = Some(report);
                let detail = object(&[
                    ("generation", generation.into()),
                    ("pcId", pc_id.into()),
                    ("peerConnection", w.pc.clone().into()),
                    ("summary", summary_value(&summary)),
                ]);
                self.outbox
                    .call(&self.emit, ["stats".into(), detail, JsValue::UNDEFINED]);
            }
        }
    }

    fn record_close(&mut self, generation: u32, pc_id: &str) {
        self.trace
            .record(generation, now(), CLOSE, Some(pc_id), Value::Null, Vec::new());
        self.watched
            .retain(|w| !(w.generation == generation && w.pc_id == pc_id));
    }

    /// The final getStats of every traced pc of `generation`: started now for those that have
    /// not had it, and those of closing pcs still in flight (`true`).
    fn final_samples(&mut self, generation: u32) -> Vec<(String, Promise, bool)> {
        self.watched
            .iter_mut()
            .filter(|w| w.generation == generation)
            .filter_map(|w| {
                w.timer = None;
                match &w.closing {
                    Some(promise) => Some((w.pc_id.clone(), promise.clone(), true)),
                    None => w
                        .poll
                        .before_close()
                        .then(|| (w.pc_id.clone(), w.pc.get_stats(), false)),
                }
            })
            .collect()
    }
}

/// Awaits final samples from [`Inner::final_samples`] and records them.
async fn record_final(weak: Weak<RefCell<Inner>>, generation: u32, samples: Vec<(String, Promise, bool)>) {
    for (pc_id, promise, closing) in samples {
        let report = get_stats(promise).await.ok();
        with(&weak, |inner| match closing {
            true => inner.closed_sample(generation, &pc_id, report),
            false => inner.sampled(generation, &pc_id, report, Some("close".into())),
        });
    }
}

fn num(options: &JsValue, key: &str) -> Option<f64> {
    js::get(options, key)
        .as_f64()
        .filter(|n| n.is_finite() && *n >= 0.0)
}

/// The trace options of `StatsTrace` and of `RoomSession`'s `config.stats`: the trace's
/// tunables and the getStats interval.
pub(super) fn trace_config(options: &JsValue) -> (TraceConfig, f64) {
    let defaults = TraceConfig::default();
    let ack_mode = match js::get(options, "ackMode").as_string().as_deref() {
        Some("required") => AckMode::Required,
        Some("never") => AckMode::Never,
        _ => AckMode::Auto,
    };
    let config = TraceConfig {
        max_buffered: num(options, "maxBuffered").map_or(defaults.max_buffered, |n| n.max(1.0) as usize),
        backoff_initial_ms: num(options, "backoffInitialMs").unwrap_or(defaults.backoff_initial_ms),
        backoff_max_ms: num(options, "backoffMaxMs").unwrap_or(defaults.backoff_max_ms),
        close_grace_ms: num(options, "closeGraceMs").unwrap_or(defaults.close_grace_ms),
        ack_mode,
        // At least room for a marker: a smaller limit would refuse every record.
        max_record_bytes: num(options, "maxRecordBytes")
            .map_or(defaults.max_record_bytes, |n| n.max(1024.0) as usize),
    };
    let interval_ms = num(options, "intervalMs").unwrap_or(crate::stats::poll::DEFAULT_INTERVAL_MS);
    (config, interval_ms)
}

/// The wasm half of `StatsTrace`. Use the `StatsTrace` class from the package entry.
#[wasm_bindgen]
pub struct StatsTraceCore {
    inner: Rc<RefCell<Inner>>,
}

#[wasm_bindgen]
impl StatsTraceCore {
    /// Options: `maxBuffered`, `backoffInitialMs`, `backoffMaxMs`, `closeGraceMs`,
    /// `intervalMs` (getStats polling; 0 = only the first and final samples), `ackMode`
    /// ('auto' | 'required' | 'never') and `maxRecordBytes` (default 512 KiB, at least 1 KiB).
    /// `emit(name, detail)` receives `stats` and `error` events.
    #[wasm_bindgen(constructor)]
    pub fn new(options: JsValue, emit: Function) -> StatsTraceCore {
        let (config, interval_ms) = trace_config(&options);
        let inner = Rc::new_cyclic(|weak| {
            RefCell::new(Inner {
                trace: Trace::new(config),
                emit,
                interval_ms,
                urls: Vec::new(),
                sockets: Vec::new(),
                timers: Vec::new(),
                drain_timer: None,
                sent_since_drain: false,
                watched: Vec::new(),
                open_waiters: Vec::new(),
                close_waiters: Vec::new(),
                ending: Vec::new(),
                outbox: Outbox::default(),
                weak: weak.clone(),
            })
        });
        StatsTraceCore { inner }
    }

    fn weak(&self) -> Weak<RefCell<Inner>> {
        Rc::downgrade(&self.inner)
    }

    /// Starts a new generation (closing the previous one) and returns its number at once;
    /// `opened` resolves with it when its first socket is open, or rejects
    /// (`stats-unavailable`, not fatal) if that socket fails; the trace keeps buffering and
    /// retrying with backoff either way.
    pub fn connect(&self, url: String, client_info: JsValue, opened: Function, failed: Function) -> u32 {
        let mut generation = 0;
        with(&self.weak(), |inner| {
            if inner
                .trace
                .current_generation()
                .is_some_and(|g| inner.ending.contains(&g))
            {
                inner.trace.detach_current();
            }
            generation = inner.trace.connect(now(), stats_value(&client_info));
            inner.urls.push((generation, url));
            inner.open_waiters.push((generation, opened, failed));
        });
        generation
    }

    /// The generation that accepts records, if any.
    #[wasm_bindgen(getter)]
    pub fn generation(&self) -> Option<u32> {
        self.inner.borrow().trace.current_generation()
    }

    /// Ends `generation`: final getStats of its still-open peer connections, then delivery of
    /// everything it holds (within `closeGraceMs`). Resolves with its counters
    /// `{recorded, dropped, delivered, lostAtClose, tooLarge, refused}` when it is done. A stale or repeated
    /// close touches nothing else.
    pub fn close(&self, generation: u32) -> Promise {
        let weak = self.weak();
        let mut samples = Vec::new();
        with(&weak, |inner| {
            samples = inner.final_samples(generation);
            inner.ending.push(generation);
        });
        future_to_promise(async move {
            record_final(weak.clone(), generation, samples).await;
            let mut waiter = None;
            let done = Promise::new(&mut |resolve, _| waiter = Some(resolve));
            with(&weak, |inner| {
                inner.ending.retain(|g| *g != generation);
                inner.watched.retain(|w| w.generation != generation);
                inner.trace.close(generation, now());
                if let Some(resolve) = waiter {
                    inner.close_waiters.push((generation, resolve));
                }
            });
            JsFuture::from(done).await
        })
    }

    /// Takes the final getStats of every open traced pc of `generation` now (the SDK does this
    /// before closing its peer connections). Resolves when they are recorded.
    #[wasm_bindgen(js_name = finalStats)]
    pub fn final_stats(&self, generation: u32) -> Promise {
        let weak = self.weak();
        future_to_promise(async move {
            let mut samples = Vec::new();
            with(&weak, |inner| samples = inner.final_samples(generation));
            record_final(weak, generation, samples).await;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Registers a peer connection with its configuration (credentials are removed) and starts
    /// its getStats schedule. Returns its id ("PC_0", …) or undefined for a stale generation.
    pub fn attach(&self, generation: u32, pc: RtcPeerConnection, configuration: JsValue) -> Option<String> {
        let mut id = None;
        with(&self.weak(), |inner| {
            id = inner
                .trace
                .create_pc(generation, now(), &stats_value(&configuration));
            if let Some(pc_id) = &id {
                inner.watched.push(Watched {
                    generation,
                    pc_id: pc_id.clone(),
                    pc,
                    poll: PollSchedule::new(inner.interval_ms),
                    timer: None,
                    last: None,
                    closing: None,
                });
            }
        });
        id
    }

    /// Records one API call or event (`method` is the rtcstats name, or `:custom`). A
    /// `onconnectionstatechange` also drives the pc's polling. False when ignored (stale
    /// generation, unknown pc, full buffer).
    pub fn record(
        &self,
        generation: u32,
        method: &str,
        pc_id: Option<String>,
        value: JsValue,
        extra: JsValue,
    ) -> bool {
        let mut accepted = false;
        with(&self.weak(), |inner| {
            let extra = match Array::is_array(&extra) {
                true => Array::from(&extra).iter().map(|v| stats_value(&v)).collect(),
                false => Vec::new(),
            };
            let value = stats_value(&value);
            let state = value.as_str().map(String::from);
            accepted = inner
                .trace
                .record(generation, now(), method, pc_id.as_deref(), value, extra);
            let (Some(pc_id), Some(state), true) = (pc_id, state, method == "onconnectionstatechange") else {
                return;
            };
            let Some(w) = inner.find(generation, &pc_id) else {
                return;
            };
            if let Some(reason) = w.poll.on_connection_state(&state, now()) {
                let pc = w.pc.clone();
                inner.sample(generation, &pc_id, &pc, Some(reason));
            }
            inner.schedule_poll(generation, &pc_id);
        });
        accepted
    }

    /// Call just before a traced pc's native `close()`: takes its final getStats (if it has
    /// not had it) and records `close` after it; stops its polling. Resolves once `close` is
    /// recorded (at most ~1 s: getStats is bounded), so an owner that can wait closes the pc
    /// after its final sample (Firefox never settles a getStats started before `close()`).
    #[wasm_bindgen(js_name = pcClosing)]
    pub fn pc_closing(&self, generation: u32, pc_id: &str) -> Promise {
        let mut sample = None;
        with(&self.weak(), |inner| {
            let Some(w) = inner.find(generation, pc_id) else {
                return;
            };
            w.timer = None;
            if w.closing.is_some() {
                return;
            }
            if !w.poll.before_close() {
                return inner.record_close(generation, pc_id);
            }
            let promise = w.pc.get_stats();
            w.closing = Some(promise.clone());
            sample = Some(promise);
        });
        let Some(promise) = sample else {
            return Promise::resolve(&JsValue::UNDEFINED);
        };
        let (weak, pc_id) = (self.weak(), pc_id.to_string());
        future_to_promise(async move {
            let report = get_stats(promise).await.ok();
            with(&weak, |inner| inner.closed_sample(generation, &pc_id, report));
            Ok(JsValue::UNDEFINED)
        })
    }
}
