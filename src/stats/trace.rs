//! The generation-guarded trace: records events, buffers them, and carries them over one
//! WebSocket per dump, replaying what was not delivered when a socket drops.
//!
//! Sans-IO: inputs are method calls with `now` (epoch ms); outputs are [`Action`]s the shell
//! drains with [`Trace::poll_action`]. See `docs/stats-format.md` for the wire format, the ack
//! extension and the generation rules.

use std::collections::VecDeque;

use super::compress::{sanitize_configuration, StatsCompressor};
use super::methods::{compress_method, CREATE, GET_STATS, SET_CONFIGURATION};
use super::value::Value;
use crate::error::{code, SdkError};

/// Custom event sent before the first event of a peer connection on a socket when that pc's
/// `create` is not on this socket (it was delivered in an earlier dump, or dropped on overflow).
pub const RESUME_EVENT: &str = ":resume";
/// Custom event reporting how many events were dropped because the buffer was full.
pub const OVERFLOW_EVENT: &str = ":traceOverflow";
/// Custom event sent in place of a record over `max_record_bytes`:
/// `{"method", "bytes", "limit"}`.
pub const TOO_LARGE_EVENT: &str = ":traceTooLarge";
/// Default [`TraceConfig::max_record_bytes`]: half the collector's default largest message
/// (1 MiB), so a record the trace keeps is never refused for its size.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 512 * 1024;
/// Longest method name a [`TOO_LARGE_EVENT`] repeats (custom names can be anything).
const MARKER_METHOD_CHARS: usize = 64;

/// When a message counts as delivered (and may be forgotten).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// Acks once the collector has sent one; until then, a drained socket buffer.
    Auto,
    /// Only `["ack", n]` frames from the collector.
    Required,
    /// Only a drained socket buffer (collectors that never ack).
    Never,
}

/// Tunables; `Default` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct TraceConfig {
    /// Most messages held (not yet delivered) per generation; further ones are dropped and
    /// counted, then reported as [`OVERFLOW_EVENT`].
    pub max_buffered: usize,
    /// First reconnect delay; doubles per failed attempt up to `backoff_max_ms`.
    pub backoff_initial_ms: f64,
    pub backoff_max_ms: f64,
    /// How long a closed generation keeps trying to deliver what it holds.
    pub close_grace_ms: f64,
    pub ack_mode: AckMode,
    /// Largest line a record may make (bytes of JSON; getStats by its raw report). A larger
    /// one would be refused by the collector, or close its socket, on every replay: it is
    /// replaced by a [`TOO_LARGE_EVENT`] marker, counted and reported ([`Action::Error`]).
    pub max_record_bytes: usize,
}

impl Default for TraceConfig {
    fn default() -> Self {
        TraceConfig {
            max_buffered: 2000,
            backoff_initial_ms: 500.0,
            backoff_max_ms: 30_000.0,
            close_grace_ms: 5_000.0,
            ack_mode: AckMode::Auto,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        }
    }
}

/// What the shell must do. Socket ids are unique for the life of the [`Trace`].
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Open a WebSocket to the collector and report its events with `socket`.
    Open { generation: u32, socket: u32 },
    /// Send one text frame.
    Send { socket: u32, text: String },
    /// Close the socket (and forget it: later events for it are ignored anyway).
    Close { socket: u32 },
    /// Call [`Trace::timer`] for `generation` at `at` (replaces that generation's timer).
    Timer { generation: u32, at: f64 },
    /// Tell the app (a non-fatal `error` event): a record was too large
    /// (`stats-record-too-large`), or the collector refused messages (`stats-refused`).
    Error { generation: u32, error: SdkError },
}

/// Per-generation counters, for tests and diagnostics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Messages accepted into the buffer (each got a sequence number).
    pub recorded: u64,
    /// Messages refused because the buffer was full.
    pub dropped: u64,
    /// Messages known delivered.
    pub delivered: u64,
    /// Messages still undelivered when the close grace period ended.
    pub lost_at_close: u64,
    /// Records over `max_record_bytes`, replaced by a [`TOO_LARGE_EVENT`] marker.
    pub too_large: u64,
    /// Messages the collector refused for good (its `["refused", reason, count]` reports).
    pub refused: u64,
}

#[derive(Debug, Clone)]
struct Entry {
    seq: u64,
    time: f64,
    method: String,
    pc: Option<String>,
    value: Value,
    extra: Vec<Value>,
}

#[derive(Debug)]
struct Socket {
    id: u32,
    index: u32,
    open: bool,
    /// Lines sent so far (the header is line 0).
    lines: u64,
    acked_lines: u64,
    last_time: Option<f64>,
    /// Next sequence number to send on this socket.
    next_seq: u64,
    /// (line index, seq) of sent messages not yet known delivered.
    unacked: VecDeque<(u64, u64)>,
    compressors: Vec<(String, StatsCompressor)>,
    pcs_seen: Vec<String>,
    /// The collector's refusal counts on this socket, per reason (cumulative).
    refused: Vec<(String, u64)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Active,
    Closing { deadline: f64 },
    Done,
}

/// Shared output and trace-wide state handed to a generation.
struct Ctx<'a> {
    config: &'a TraceConfig,
    actions: &'a mut VecDeque<Action>,
    next_socket: &'a mut u32,
    collector_acks: &'a mut bool,
}

#[derive(Debug)]
struct Generation {
    id: u32,
    client_info: Value,
    phase: Phase,
    /// Undelivered messages in sequence order (sent-but-unacked ones included).
    queue: VecDeque<Entry>,
    next_seq: u64,
    last_time: f64,
    pcs: Vec<String>,
    socket: Option<Socket>,
    sockets_opened: u32,
    reconnect_at: Option<f64>,
    attempts: u32,
    overflow_unreported: u64,
    counters: Counters,
    timer_at: Option<f64>,
}

/// Events in, actions out. One generation per `connect()`; older generations finish delivering
/// on their own sockets and never touch a newer one.
#[derive(Debug)]
pub struct Trace {
    config: TraceConfig,
    generations: Vec<Generation>,
    current: Option<u32>,
    next_generation: u32,
    next_socket: u32,
    collector_acks: bool,
    actions: VecDeque<Action>,
    finished: Vec<(u32, Counters)>,
}

impl Trace {
    pub fn new(config: TraceConfig) -> Self {
        Trace {
            config,
            generations: Vec::new(),
            current: None,
            next_generation: 1,
            next_socket: 1,
            collector_acks: false,
            actions: VecDeque::new(),
            finished: Vec::new(),
        }
    }

    /// Next action for the shell, oldest first.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The generation that accepts records, if any.
    pub fn current_generation(&self) -> Option<u32> {
        self.current
    }

    /// Whether a generation still has work (accepting records, or delivering what it holds).
    /// False once it is done, or for an id that never existed.
    pub fn is_live(&self, generation: u32) -> bool {
        self.generations.iter().any(|g| g.id == generation)
    }

    /// True when no generation is live (nothing to deliver, no socket, no timer needed).
    pub fn is_idle(&self) -> bool {
        self.generations.is_empty()
    }

    /// Counters of a generation (live or finished).
    pub fn counters(&self, generation: u32) -> Option<Counters> {
        self.generations
            .iter()
            .find(|g| g.id == generation)
            .map(|g| g.counters.clone())
            .or_else(|| {
                self.finished
                    .iter()
                    .find(|(id, _)| *id == generation)
                    .map(|(_, c)| c.clone())
            })
    }

    /// Starts a new dump (a new call). The previous generation, if still active, is closed as
    /// by [`Trace::close`] and keeps delivering on its own socket. `client_info` becomes the
    /// value of the `create` header sent first on every socket of this generation.
    pub fn connect(&mut self, now: f64, client_info: Value) -> u32 {
        if let Some(previous) = self.current {
            self.close(previous, now);
        }
        let id = self.next_generation;
        self.next_generation += 1;
        let mut generation = Generation {
            id,
            client_info,
            phase: Phase::Active,
            queue: VecDeque::new(),
            next_seq: 0,
            last_time: if now.is_finite() { now } else { 0.0 },
            pcs: Vec::new(),
            socket: None,
            sockets_opened: 0,
            reconnect_at: None,
            attempts: 0,
            overflow_unreported: 0,
            counters: Counters::default(),
            timer_at: None,
        };
        let mut ctx = Ctx {
            config: &self.config,
            actions: &mut self.actions,
            next_socket: &mut self.next_socket,
            collector_acks: &mut self.collector_acks,
        };
        generation.open_socket(&mut ctx);
        self.generations.push(generation);
        self.current = Some(id);
        id
    }

    /// Stops treating the current generation as current without closing it, so the next
    /// [`Trace::connect`] leaves it open: its owner is still recording its last events (final
    /// getStats of a call being closed) and will [`Trace::close`] it.
    pub fn detach_current(&mut self) {
        self.current = None;
    }

    /// Ends a generation: no more records; what is held is delivered within the close grace
    /// period, then its socket is closed. A stale or repeated close is a no-op.
    pub fn close(&mut self, generation: u32, now: f64) {
        if self.current == Some(generation) {
            self.current = None;
        }
        self.with_generation(|g| g.id == generation, |g, ctx| g.begin_close(now, ctx));
    }

    /// Registers a peer connection and records its `create` event with the sanitized
    /// configuration. Returns its id ("PC_0", "PC_1", … per generation), or None if the
    /// generation no longer accepts records.
    pub fn create_pc(&mut self, generation: u32, now: f64, configuration: &Value) -> Option<String> {
        let mut id = None;
        self.with_generation(
            |g| g.id == generation && g.phase == Phase::Active,
            |g, ctx| {
                let pc = "PC_".to_string() + &crate::text::int(g.pcs.len() as i64);
                g.pcs.push(pc.clone());
                let config = sanitize_configuration(configuration);
                g.enqueue(now, CREATE, Some(pc.clone()), config, Vec::new(), ctx);
                id = Some(pc);
            },
        );
        id
    }

    /// Records one event. `method` is the full rtcstats name (see `methods`) or a custom name
    /// starting with ':'; for `getStats`, `value` is the raw report object (compressed per
    /// socket when sent). Returns false when ignored: stale generation, unknown pc, a `create`
    /// (use [`Trace::create_pc`]), a full buffer (counted), or a record over
    /// `max_record_bytes` (counted, and a marker sent instead).
    pub fn record(
        &mut self,
        generation: u32,
        now: f64,
        method: &str,
        pc: Option<&str>,
        value: Value,
        extra: Vec<Value>,
    ) -> bool {
        let mut accepted = false;
        self.with_generation(
            |g| g.id == generation && g.phase == Phase::Active,
            |g, ctx| {
                if method == CREATE || pc.is_some_and(|p| !g.pcs.iter().any(|known| known == p)) {
                    return;
                }
                if method == GET_STATS && pc.is_none() {
                    return;
                }
                let value = if method == SET_CONFIGURATION {
                    sanitize_configuration(&value)
                } else {
                    value
                };
                accepted = g.enqueue(now, method, pc.map(str::to_string), value, extra, ctx);
            },
        );
        accepted
    }

    /// The socket opened: the header goes first, then everything undelivered.
    pub fn socket_open(&mut self, socket: u32, now: f64) {
        self.with_socket(socket, |g, ctx| g.on_open(now, ctx));
    }

    /// The socket closed or failed: reconnect with backoff (unless the generation is done).
    pub fn socket_closed(&mut self, socket: u32, now: f64) {
        self.with_socket(socket, |g, ctx| g.on_closed(now, ctx));
    }

    /// The collector refused the socket (closed it with 1008, policy: a bad or missing token).
    /// Retrying cannot help, so the generation ends now; what it held is counted in
    /// `lost_at_close`. The shell reports the refusal to the app.
    pub fn socket_refused(&mut self, socket: u32, _now: f64) {
        self.with_socket(socket, |g, ctx| {
            g.socket = None;
            g.finish(ctx);
        });
    }

    /// A text frame from the collector. `["ack", n]`: the first n lines of this socket (header
    /// included) are handled for good. `["refused", reason, count]`: `count` messages of this
    /// socket so far were refused for `reason` (they are acknowledged too); the increase is
    /// counted and reported. Anything else is ignored.
    pub fn socket_message(&mut self, socket: u32, now: f64, text: &str) {
        let ack = parse_ack(text);
        let refused = ack.is_none().then(|| parse_refused(text)).flatten();
        if ack.is_none() && refused.is_none() {
            return;
        }
        // One closure for both: each `with_socket` closure is a copy of `with_generation`.
        self.with_socket(socket, |g, ctx| match (ack, refused) {
            (Some(count), _) => g.on_ack(count, now, ctx),
            (None, Some((reason, count))) => g.on_refused(reason, count, ctx),
            (None, None) => {}
        });
    }

    /// The socket's `bufferedAmount` reached zero: everything sent was handed to the network.
    /// Counts as delivery only without collector acks (see [`AckMode`]).
    pub fn buffered_drained(&mut self, socket: u32, now: f64) {
        self.with_socket(socket, |g, ctx| {
            let use_drain = match ctx.config.ack_mode {
                AckMode::Never => true,
                AckMode::Required => false,
                AckMode::Auto => !*ctx.collector_acks,
            };
            if use_drain {
                if let Some(lines) = g.socket.as_ref().filter(|s| s.open).map(|s| s.lines) {
                    g.deliver_through(lines, now, ctx);
                }
            }
        });
    }

    /// A timer set with [`Action::Timer`] fired (early or stale calls are harmless).
    pub fn timer(&mut self, generation: u32, now: f64) {
        self.with_generation(|g| g.id == generation, |g, ctx| g.on_timer(now, ctx));
    }

    fn with_socket(&mut self, socket: u32, f: impl FnOnce(&mut Generation, &mut Ctx<'_>)) {
        self.with_generation(|g| g.socket.as_ref().is_some_and(|s| s.id == socket), f);
    }

    /// Runs `f` on the matching generation, then updates its timer and retires it when done.
    fn with_generation(
        &mut self,
        matches: impl Fn(&Generation) -> bool,
        f: impl FnOnce(&mut Generation, &mut Ctx<'_>),
    ) {
        let Some(index) = self.generations.iter().position(matches) else {
            return;
        };
        let mut ctx = Ctx {
            config: &self.config,
            actions: &mut self.actions,
            next_socket: &mut self.next_socket,
            collector_acks: &mut self.collector_acks,
        };
        let generation = &mut self.generations[index];
        f(generation, &mut ctx);
        generation.update_timer(&mut ctx);
        if generation.phase == Phase::Done {
            let done = self.generations.remove(index);
            if self.current == Some(done.id) {
                self.current = None;
            }
            self.finished.push((done.id, done.counters));
            if self.finished.len() > 16 {
                self.finished.remove(0);
            }
        }
    }
}

/// `["ack", n]` with n a non-negative integer (whitespace allowed between tokens). Hand-read,
/// as `["refused", …]`: the only JSON the browser side ever parses, so the wasm needs no JSON
/// or float parser.
fn parse_ack(text: &str) -> Option<u64> {
    let rest = text.trim().strip_prefix('[')?.trim_start();
    let rest = rest.strip_prefix("\"ack\"")?.trim_start();
    let rest = rest.strip_prefix(',')?.trim_start();
    parse_count(rest.strip_suffix(']')?)
}

/// `["refused", "<reason>", n]`: a reason of lowercase letters and dashes, n as in an ack.
fn parse_refused(text: &str) -> Option<(&str, u64)> {
    let rest = text.trim().strip_prefix('[')?.trim_start();
    let rest = rest.strip_prefix("\"refused\"")?.trim_start();
    let rest = rest.strip_prefix(',')?.trim_start().strip_prefix('"')?;
    // Byte-wise (no `str` searcher in the wasm): the reason ends at the first non-reason byte.
    let len = rest
        .bytes()
        .take_while(|b| b.is_ascii_lowercase() || *b == b'-')
        .count();
    let (reason, rest) = (rest.get(..len)?, rest.get(len..)?.strip_prefix('"')?);
    let rest = rest.trim_start().strip_prefix(',')?;
    let count = parse_count(rest.strip_suffix(']')?)?;
    (!reason.is_empty() && reason.len() <= 32).then_some((reason, count))
}

/// A non-negative integer of at most 15 digits, whitespace around it allowed.
fn parse_count(text: &str) -> Option<u64> {
    let digits = text.trim();
    if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Upper bound of the line a record makes: `[method,pc,value,…extra,delta]`, the delta at its
/// longest.
fn line_len(method: &str, pc: Option<&str>, value: &Value, extra: &[Value]) -> usize {
    let pc_len = pc.map_or(4, |p| Value::str(p).json_len());
    let extra_len: usize = extra.iter().map(|v| 1 + v.json_len()).sum();
    2 + compress_method(method).json_len() + 1 + pc_len + 1 + value.json_len() + extra_len + 1 + 24
}

impl Generation {
    /// Times never go backwards within a generation (Date.now() can).
    fn clamp(&mut self, now: f64) -> f64 {
        if now.is_finite() && now > self.last_time {
            self.last_time = now;
        }
        self.last_time
    }

    fn open_socket(&mut self, ctx: &mut Ctx<'_>) {
        let id = *ctx.next_socket;
        *ctx.next_socket = ctx.next_socket.wrapping_add(1);
        let next_seq = self.queue.front().map_or(self.next_seq, |e| e.seq);
        self.socket = Some(Socket {
            id,
            index: self.sockets_opened,
            open: false,
            lines: 0,
            acked_lines: 0,
            last_time: None,
            next_seq,
            unacked: VecDeque::new(),
            compressors: Vec::new(),
            pcs_seen: Vec::new(),
            refused: Vec::new(),
        });
        self.sockets_opened += 1;
        self.reconnect_at = None;
        ctx.actions.push_back(Action::Open {
            generation: self.id,
            socket: id,
        });
    }

    fn enqueue(
        &mut self,
        now: f64,
        method: &str,
        pc: Option<String>,
        value: Value,
        extra: Vec<Value>,
        ctx: &mut Ctx<'_>,
    ) -> bool {
        let time = self.clamp(now);
        self.report_overflow(time, false, ctx);
        if self.queue.len() >= ctx.config.max_buffered {
            self.overflow_unreported += 1;
            self.counters.dropped += 1;
            return false;
        }
        let bytes = line_len(method, pc.as_deref(), &value, &extra);
        let limit = ctx.config.max_record_bytes;
        let fits = bytes <= limit;
        let entry = if fits {
            Entry {
                seq: self.next_seq,
                time,
                method: method.to_string(),
                pc,
                value,
                extra,
            }
        } else {
            // Kept, the record would be refused (or close the socket) on every replay and hold
            // back everything after it. The marker takes its place and sequence number.
            self.counters.too_large += 1;
            let name: String = method.chars().take(MARKER_METHOD_CHARS).collect();
            let mut info = Value::object();
            info.set("method", Value::String(name));
            info.set("bytes", Value::Number(bytes as f64));
            info.set("limit", Value::Number(limit as f64));
            // The marker's own JSON says it all (and no `format!` machinery in the wasm).
            let message = "a record over maxRecordBytes was dropped: ".to_string() + &info.to_json();
            ctx.actions.push_back(Action::Error {
                generation: self.id,
                error: SdkError::new(code::STATS_RECORD_TOO_LARGE, message, false),
            });
            Entry {
                seq: self.next_seq,
                time,
                method: TOO_LARGE_EVENT.to_string(),
                pc,
                value: info,
                extra: Vec::new(),
            }
        };
        self.push(entry, ctx);
        fits
    }

    fn push(&mut self, entry: Entry, ctx: &mut Ctx<'_>) {
        self.next_seq += 1;
        self.counters.recorded += 1;
        self.queue.push_back(entry);
        self.flush(ctx);
    }

    /// Queues the overflow report once there is room (or always when `force`, so a closing
    /// generation never drops silently).
    fn report_overflow(&mut self, time: f64, force: bool, ctx: &mut Ctx<'_>) {
        if self.overflow_unreported == 0 || (!force && self.queue.len() + 1 >= ctx.config.max_buffered) {
            return;
        }
        let mut value = Value::object();
        value.set("dropped", Value::Number(self.overflow_unreported as f64));
        self.overflow_unreported = 0;
        let entry = Entry {
            seq: self.next_seq,
            time,
            method: OVERFLOW_EVENT.to_string(),
            pc: None,
            value,
            extra: Vec::new(),
        };
        self.push(entry, ctx);
    }

    /// Sends every queued message not yet sent on the open socket.
    fn flush(&mut self, ctx: &mut Ctx<'_>) {
        let Some(socket) = self.socket.as_mut().filter(|s| s.open) else {
            return;
        };
        let from = socket.next_seq;
        for entry in self.queue.iter().filter(|e| e.seq >= from) {
            socket.send_entry(entry, ctx);
        }
    }

    fn on_open(&mut self, now: f64, ctx: &mut Ctx<'_>) {
        let now = self.clamp(now);
        let Some(socket) = self.socket.as_mut().filter(|s| !s.open) else {
            return;
        };
        socket.open = true;
        // The header is the dump's only absolute time, so it must not be later than anything
        // replayed after it.
        let time = self.queue.front().map_or(now, |e| e.time.min(now));
        let mut info = Value::object();
        info.set("generation", Value::Number(f64::from(self.id)));
        info.set("socket", Value::Number(f64::from(socket.index)));
        info.set("seq", Value::Number(socket.next_seq as f64));
        let header = [
            compress_method(CREATE),
            Value::Null,
            self.client_info.clone(),
            info,
        ];
        socket.send_line(header.to_vec(), time, None, ctx);
        self.flush(ctx);
    }

    fn on_closed(&mut self, now: f64, ctx: &mut Ctx<'_>) {
        self.socket = None;
        if self.phase == Phase::Done {
            return;
        }
        let delay = (ctx.config.backoff_initial_ms * 2f64.powi(self.attempts.min(30) as i32))
            .min(ctx.config.backoff_max_ms)
            .max(0.0);
        self.attempts = self.attempts.saturating_add(1);
        self.reconnect_at = Some(if now.is_finite() {
            now + delay
        } else {
            self.last_time + delay
        });
        self.on_timer(now, ctx);
    }

    fn on_ack(&mut self, count: u64, now: f64, ctx: &mut Ctx<'_>) {
        let Some(socket) = self.socket.as_ref() else {
            return;
        };
        if count > socket.lines {
            return; // acks lines never sent: ignore rather than forget undelivered messages
        }
        *ctx.collector_acks = true;
        self.deliver_through(count, now, ctx);
    }

    /// The collector's cumulative count of refusals for `reason` on this socket.
    fn on_refused(&mut self, reason: &str, count: u64, ctx: &mut Ctx<'_>) {
        let Some(socket) = self.socket.as_mut() else {
            return;
        };
        let known = match socket.refused.iter().position(|(r, _)| r == reason) {
            Some(index) => &mut socket.refused[index].1,
            None => {
                socket.refused.push((reason.to_string(), 0));
                let last = socket.refused.len() - 1;
                &mut socket.refused[last].1
            }
        };
        let new = count.saturating_sub(*known);
        if new == 0 {
            return;
        }
        *known = count;
        self.counters.refused += new;
        let count = Value::Number(new as f64).to_json();
        let message = "the stats collector refused messages: ".to_string() + reason + " (" + &count + ")";
        ctx.actions.push_back(Action::Error {
            generation: self.id,
            error: SdkError::new(code::STATS_REFUSED, message, false),
        });
    }

    /// The first `lines` lines of the current socket are delivered.
    fn deliver_through(&mut self, lines: u64, now: f64, ctx: &mut Ctx<'_>) {
        let Some(socket) = self.socket.as_mut() else {
            return;
        };
        if lines <= socket.acked_lines {
            return;
        }
        socket.acked_lines = lines;
        let mut delivered_seq = None;
        while socket.unacked.front().is_some_and(|(line, _)| *line < lines) {
            delivered_seq = socket.unacked.pop_front().map(|(_, seq)| seq);
        }
        if let Some(last) = delivered_seq {
            while self.queue.front().is_some_and(|e| e.seq <= last) {
                self.queue.pop_front();
                self.counters.delivered += 1;
            }
            self.attempts = 0;
        }
        let time = self.clamp(now);
        if matches!(self.phase, Phase::Closing { .. }) {
            self.report_overflow(time, true, ctx);
        } else {
            self.report_overflow(time, false, ctx);
        }
        self.finish_if_drained(ctx);
    }

    fn begin_close(&mut self, now: f64, ctx: &mut Ctx<'_>) {
        if self.phase != Phase::Active {
            return;
        }
        let time = self.clamp(now);
        self.phase = Phase::Closing {
            deadline: time + ctx.config.close_grace_ms.max(0.0),
        };
        self.report_overflow(time, true, ctx);
        self.finish_if_drained(ctx);
    }

    fn finish_if_drained(&mut self, ctx: &mut Ctx<'_>) {
        if matches!(self.phase, Phase::Closing { .. }) && self.queue.is_empty() {
            self.finish(ctx);
        }
    }

    fn finish(&mut self, ctx: &mut Ctx<'_>) {
        if let Some(socket) = self.socket.take() {
            ctx.actions.push_back(Action::Close { socket: socket.id });
        }
        self.counters.lost_at_close += self.queue.len() as u64;
        self.queue.clear();
        self.reconnect_at = None;
        self.phase = Phase::Done;
    }

    fn on_timer(&mut self, now: f64, ctx: &mut Ctx<'_>) {
        if let Phase::Closing { deadline } = self.phase {
            if now >= deadline || self.queue.is_empty() {
                self.finish(ctx);
                return;
            }
        }
        if self.phase == Phase::Done {
            return;
        }
        if self.socket.is_none() && self.reconnect_at.is_some_and(|at| now >= at) {
            self.open_socket(ctx);
        }
    }

    fn update_timer(&mut self, ctx: &mut Ctx<'_>) {
        let reconnect = self.reconnect_at.filter(|_| self.socket.is_none());
        let deadline = match self.phase {
            Phase::Closing { deadline } => Some(deadline),
            _ => None,
        };
        let wanted = match (reconnect, deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if self.phase != Phase::Done && wanted.is_some() && wanted != self.timer_at {
            ctx.actions.push_back(Action::Timer {
                generation: self.id,
                at: wanted.unwrap_or_default(),
            });
        }
        self.timer_at = wanted;
    }
}

impl Socket {
    fn send_entry(&mut self, entry: &Entry, ctx: &mut Ctx<'_>) {
        if let Some(pc) = &entry.pc {
            if !self.pcs_seen.contains(pc) {
                self.pcs_seen.push(pc.clone());
                if entry.method != CREATE {
                    let marker = vec![Value::str(RESUME_EVENT), Value::str(pc), Value::Null];
                    self.send_line(marker, entry.time, None, ctx);
                }
            }
        }
        let value = match (&entry.pc, entry.method.as_str()) {
            (Some(pc), GET_STATS) => {
                let index = match self.compressors.iter().position(|(p, _)| p == pc) {
                    Some(index) => index,
                    None => {
                        self.compressors.push((pc.clone(), StatsCompressor::new()));
                        self.compressors.len() - 1
                    }
                };
                self.compressors[index].1.compress(&entry.value)
            }
            _ => entry.value.clone(),
        };
        let pc = entry.pc.as_deref().map_or(Value::Null, Value::str);
        let mut line = vec![compress_method(&entry.method), pc, value];
        line.extend(entry.extra.iter().cloned());
        self.send_line(line, entry.time, Some(entry.seq), ctx);
        self.next_seq = entry.seq + 1;
    }

    /// Appends the time delta (absolute for the first line) and sends.
    fn send_line(&mut self, mut line: Vec<Value>, time: f64, seq: Option<u64>, ctx: &mut Ctx<'_>) {
        let delta = match self.last_time {
            None => time,
            Some(last) => (time - last).max(0.0),
        };
        self.last_time = Some(self.last_time.map_or(time, |last| last.max(time)));
        line.push(Value::Number(delta));
        if let Some(seq) = seq {
            self.unacked.push_back((self.lines, seq));
        }
        self.lines += 1;
        ctx.actions.push_back(Action::Send {
            socket: self.id,
            text: Value::Array(line).to_json(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(trace: &mut Trace) -> Vec<Action> {
        std::iter::from_fn(|| trace.poll_action()).collect()
    }

    fn sent(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send { text, .. } => Some(text.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn buffers_until_open_then_header_first() {
        let mut t = Trace::new(TraceConfig::default());
        let g = t.connect(1000.0, Value::object());
        let pc = t.create_pc(g, 1001.0, &Value::object()).unwrap();
        assert!(t.record(
            g,
            1002.0,
            "onconnectionstatechange",
            Some(&pc),
            Value::str("connected"),
            vec![]
        ));
        let actions = drain(&mut t);
        assert_eq!(
            actions,
            vec![Action::Open {
                generation: g,
                socket: 1
            }]
        );
        t.socket_open(1, 1500.0);
        let lines = sent(&drain(&mut t));
        assert_eq!(
            lines,
            vec![
                r#"[39,null,{},{"generation":1,"socket":0,"seq":0},1001]"#,
                r#"[39,"PC_0",{},0]"#,
                r#"[25,"PC_0","connected",1]"#,
            ]
        );
    }

    #[test]
    fn stale_generation_inputs_are_ignored() {
        let mut t = Trace::new(TraceConfig::default());
        let g1 = t.connect(0.0, Value::object());
        let g2 = t.connect(1.0, Value::object());
        assert!(!t.record(g1, 2.0, ":x", None, Value::Null, vec![]));
        assert!(t.create_pc(g1, 2.0, &Value::Null).is_none());
        t.close(g1, 3.0);
        assert_eq!(t.current_generation(), Some(g2));
        assert!(t.record(g2, 4.0, ":x", None, Value::Null, vec![]));
    }

    #[test]
    fn a_refused_socket_ends_its_generation_without_retrying() {
        let mut t = Trace::new(TraceConfig::default());
        let g = t.connect(0.0, Value::object());
        assert!(t.record(g, 1.0, ":x", None, Value::Null, vec![]));
        drain(&mut t);
        t.socket_open(1, 2.0);
        t.socket_refused(1, 3.0);
        let actions = drain(&mut t);
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, Action::Open { .. } | Action::Timer { .. })),
            "{actions:?}"
        );
        assert!(!t.is_live(g));
        assert_eq!(t.counters(g).map(|c| c.lost_at_close), Some(1));
        assert!(!t.record(g, 4.0, ":y", None, Value::Null, vec![]));
    }

    #[test]
    fn ack_parsing() {
        assert_eq!(parse_ack(r#"["ack",3]"#), Some(3));
        assert_eq!(parse_ack(r#"["ack",-1]"#), None);
        assert_eq!(parse_ack(r#"["ack",1.5]"#), None);
        assert_eq!(parse_ack(r#"["nope",1]"#), None);
        assert_eq!(parse_ack("garbage"), None);
        assert_eq!(parse_ack(r#" [ "ack" , 12 ] "#), Some(12));
        assert_eq!(parse_ack(r#"["ack",1e3]"#), None);
        assert_eq!(parse_ack(r#"["ack",]"#), None);
        assert_eq!(parse_ack(r#"["ack",1234567890123456]"#), None);
    }

    #[test]
    fn refused_parsing() {
        assert_eq!(
            parse_refused(r#"["refused","rate-limited",3]"#),
            Some(("rate-limited", 3))
        );
        assert_eq!(
            parse_refused(r#" [ "refused" , "malformed" , 0 ] "#),
            Some(("malformed", 0))
        );
        for bad in [
            r#"["refused","Rate",3]"#,
            r#"["refused","",3]"#,
            r#"["refused","a\"b",3]"#,
            r#"["refused","x",-1]"#,
            r#"["refused","x"]"#,
            r#"["refused",3,"x"]"#,
            r#"["ack","x",3]"#,
        ] {
            assert_eq!(parse_refused(bad), None, "{bad}");
        }
    }
}
