#![cfg(not(target_arch = "wasm32"))]
//! The generation-guarded trace against a simulated shell and collector: every dump it
//! produces must read back (see `stats::dump::read_dump`), nothing may be missing or
//! duplicated across the dumps of one generation, and no generation may leak into another's.

use std::collections::BTreeMap;

use proptest::prelude::*;
use rtcroom::stats::dump::{read_dump, write_dump, DumpEvent};
use rtcroom::stats::trace::{
    AckMode, Action, Counters, Trace, TraceConfig, OVERFLOW_EVENT, RESUME_EVENT, TOO_LARGE_EVENT,
};
use rtcroom::stats::value::Value;

const T0: f64 = 1_712_345_678_000.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SockState {
    Pending,
    Open,
    Closed,
}

#[derive(Debug)]
struct Sock {
    generation: u32,
    state: SockState,
    lines: Vec<String>,
    /// Lines known delivered by the core's own rules (acks, or drain while they count).
    delivered: usize,
}

/// The shell and the collector, simulated.
struct Sim {
    trace: Trace,
    mode: AckMode,
    now: f64,
    sockets: BTreeMap<u32, Sock>,
    timers: BTreeMap<u32, f64>,
    collector_acks: bool,
    generations: Vec<u32>,
    /// Generations left open by `detach_current` (still recording until closed).
    detached: Vec<u32>,
    pcs: BTreeMap<u32, Vec<String>>,
    /// (generation, payload n) of every record the trace accepted.
    accepted: Vec<(u32, u64)>,
    /// Latest counters seen per generation: the trace keeps only the last 16 finished ones.
    counters: BTreeMap<u32, Counters>,
    next_payload: u64,
    /// (generation, code) of every `Action::Error`.
    errors: Vec<(u32, &'static str)>,
    max_record_bytes: usize,
}

impl Sim {
    fn new(config: TraceConfig) -> Self {
        Sim {
            mode: config.ack_mode,
            max_record_bytes: config.max_record_bytes,
            errors: Vec::new(),
            trace: Trace::new(config),
            now: T0,
            sockets: BTreeMap::new(),
            timers: BTreeMap::new(),
            collector_acks: false,
            generations: Vec::new(),
            detached: Vec::new(),
            pcs: BTreeMap::new(),
            accepted: Vec::new(),
            counters: BTreeMap::new(),
            next_payload: 0,
        }
    }

    fn pump(&mut self) {
        while let Some(action) = self.trace.poll_action() {
            match action {
                Action::Open { generation, socket } => {
                    assert!(!self.sockets.contains_key(&socket), "socket id reused");
                    let sock = Sock {
                        generation,
                        state: SockState::Pending,
                        lines: Vec::new(),
                        delivered: 0,
                    };
                    self.sockets.insert(socket, sock);
                }
                Action::Send { socket, text } => {
                    let sock = self.sockets.get_mut(&socket).expect("send on unknown socket");
                    assert_eq!(sock.state, SockState::Open, "send on a socket that is not open");
                    sock.lines.push(text);
                }
                Action::Close { socket } => {
                    if let Some(sock) = self.sockets.get_mut(&socket) {
                        sock.state = SockState::Closed;
                    }
                }
                Action::Timer { generation, at } => {
                    self.timers.insert(generation, at);
                }
                Action::Error { generation, error } => self.errors.push((generation, error.code)),
            }
        }
        for &g in &self.generations {
            if let Some(c) = self.trace.counters(g) {
                self.counters.insert(g, c);
            }
        }
    }

    fn current(&self) -> Option<u32> {
        self.trace.current_generation()
    }

    fn sockets_in(&self, state: SockState) -> Vec<u32> {
        self.sockets
            .iter()
            .filter(|(_, s)| s.state == state)
            .map(|(id, _)| *id)
            .collect()
    }

    fn payload(&mut self, generation: u32) -> (Value, u64) {
        let n = self.next_payload;
        self.next_payload += 1;
        let mut v = Value::object();
        v.set("g", Value::Number(f64::from(generation)));
        v.set("n", Value::Number(n as f64));
        (v, n)
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Connect => {
                let g = self.trace.connect(self.now, Value::str("client"));
                self.generations.push(g);
            }
            Op::ConnectKeepingPrevious => {
                if let Some(g) = self.current() {
                    self.trace.detach_current();
                    self.detached.push(g);
                }
                let g = self.trace.connect(self.now, Value::str("client"));
                self.generations.push(g);
            }
            Op::Close(i) => {
                if !self.generations.is_empty() {
                    let g = self.generations[i % self.generations.len()];
                    self.detached.retain(|d| *d != g);
                    self.trace.close(g, self.now);
                }
            }
            Op::DetachedEvent(i) => {
                // A detached generation still takes its own late events (into its own dump).
                if self.detached.is_empty() {
                    return;
                }
                let g = self.detached[i % self.detached.len()];
                let (value, n) = self.payload(g);
                if self.trace.record(g, self.now, ":final", None, value, vec![]) {
                    self.accepted.push((g, n));
                }
            }
            Op::CreatePc => {
                if let Some(g) = self.current() {
                    if let Some(pc) = self.trace.create_pc(g, self.now, &Value::object()) {
                        self.pcs.entry(g).or_default().push(pc);
                    }
                }
            }
            Op::Event { pc, back } => {
                let Some(g) = self.current() else { return };
                let (value, n) = self.payload(g);
                let pcs = self.pcs.get(&g).cloned().unwrap_or_default();
                let pc = pc.and_then(|i| pcs.get(i % pcs.len().max(1)).cloned());
                let method = if pc.is_some() {
                    "onsignalingstatechange"
                } else {
                    ":custom"
                };
                if self.trace.record(
                    g,
                    self.now - f64::from(back),
                    method,
                    pc.as_deref(),
                    value,
                    vec![],
                ) {
                    self.accepted.push((g, n));
                }
            }
            Op::BigEvent { pc } => {
                // Over the limit: never accepted, a marker takes its place (or, with a full
                // buffer, it is dropped as any record).
                let Some(g) = self.current() else { return };
                let pcs = self.pcs.get(&g).cloned().unwrap_or_default();
                let pc = pc.and_then(|i| pcs.get(i % pcs.len().max(1)).cloned());
                let method = if pc.is_some() {
                    "setLocalDescription"
                } else {
                    ":big"
                };
                let mut value = Value::object();
                value.set("sdp", Value::String("a=x\r\n".repeat(self.max_record_bytes)));
                assert!(!self
                    .trace
                    .record(g, self.now, method, pc.as_deref(), value, vec![]));
            }
            Op::Stats(i) => {
                let Some(g) = self.current() else { return };
                let Some(pc) = self.pcs.get(&g).and_then(|p| p.get(i % p.len().max(1)).cloned()) else {
                    return;
                };
                let (mut report, n) = self.payload(g);
                report.set("id", Value::str("RTP1"));
                report.set("timestamp", Value::Number(self.now));
                report.set("type", Value::str("inbound-rtp"));
                report.set("bytesReceived", Value::Number(n as f64));
                let mut raw = Value::object();
                raw.set("RTP1", report);
                let reason = vec![Value::str("poll")];
                if self.trace.record(g, self.now, "getStats", Some(&pc), raw, reason) {
                    self.accepted.push((g, n));
                }
            }
            Op::StaleEvent => {
                let current = self.current();
                let detached = &self.detached;
                if let Some(&g) = self
                    .generations
                    .iter()
                    .find(|g| Some(**g) != current && !detached.contains(g))
                {
                    assert!(!self.trace.record(g, self.now, ":late", None, Value::Null, vec![]));
                }
            }
            Op::Open(i) => {
                let pending = self.sockets_in(SockState::Pending);
                if let Some(&id) = pending.get(i % pending.len().max(1)) {
                    self.sockets.get_mut(&id).unwrap().state = SockState::Open;
                    self.trace.socket_open(id, self.now);
                }
            }
            Op::Drop(i) => {
                let mut live = self.sockets_in(SockState::Pending);
                live.extend(self.sockets_in(SockState::Open));
                if let Some(&id) = live.get(i % live.len().max(1)) {
                    self.sockets.get_mut(&id).unwrap().state = SockState::Closed;
                    self.trace.socket_closed(id, self.now);
                }
            }
            Op::Refuse(i) => {
                let live = self.sockets_in(SockState::Open);
                if let Some(&id) = live.get(i % live.len().max(1)) {
                    self.sockets.get_mut(&id).unwrap().state = SockState::Closed;
                    self.trace.socket_refused(id, self.now);
                }
            }
            Op::Ack(i) => {
                let open = self.sockets_in(SockState::Open);
                if let Some(&id) = open.get(i % open.len().max(1)) {
                    let count = self.sockets[&id].lines.len();
                    if self.mode != AckMode::Never {
                        self.collector_acks = true;
                        let sock = self.sockets.get_mut(&id).unwrap();
                        sock.delivered = sock.delivered.max(count);
                    }
                    self.trace
                        .socket_message(id, self.now, &format!("[\"ack\",{count}]"));
                }
            }
            Op::Drain(i) => {
                let open = self.sockets_in(SockState::Open);
                if let Some(&id) = open.get(i % open.len().max(1)) {
                    let honoured = match self.mode {
                        AckMode::Never => true,
                        AckMode::Required => false,
                        AckMode::Auto => !self.collector_acks,
                    };
                    if honoured {
                        let sock = self.sockets.get_mut(&id).unwrap();
                        sock.delivered = sock.lines.len();
                    }
                    self.trace.buffered_drained(id, self.now);
                }
            }
            Op::Garbage(i) => {
                let open = self.sockets_in(SockState::Open);
                if let Some(&id) = open.get(i % open.len().max(1)) {
                    for text in [
                        "",
                        "[\"ack\"]",
                        "[\"ack\",1e300]",
                        "{\"ack\":1}",
                        "[\"ack\",99999]",
                    ] {
                        self.trace.socket_message(id, self.now, text);
                    }
                }
            }
            Op::Advance(ms) => {
                self.now += f64::from(ms);
                let due: Vec<u32> = self
                    .timers
                    .iter()
                    .filter(|(_, at)| **at <= self.now)
                    .map(|(g, _)| *g)
                    .collect();
                for g in due {
                    self.timers.remove(&g);
                    self.trace.timer(g, self.now);
                    self.pump();
                }
            }
        }
        self.pump();
    }

    /// Closes the current generation and lets the collector cooperate until nothing is live.
    fn settle(&mut self) {
        if let Some(g) = self.current() {
            self.trace.close(g, self.now);
            self.pump();
        }
        for g in std::mem::take(&mut self.detached) {
            self.trace.close(g, self.now);
            self.pump();
        }
        for _ in 0..2000 {
            if self.trace.is_idle() {
                return;
            }
            for _ in self.sockets_in(SockState::Pending) {
                self.apply(&Op::Open(0));
            }
            for id in self.sockets_in(SockState::Open) {
                let count = self.sockets[&id].lines.len();
                if self.mode != AckMode::Never {
                    self.collector_acks = true;
                    self.sockets.get_mut(&id).unwrap().delivered = count;
                }
                self.trace
                    .socket_message(id, self.now, &format!("[\"ack\",{count}]"));
                if self.mode == AckMode::Never {
                    self.sockets.get_mut(&id).unwrap().delivered = count;
                    self.trace.buffered_drained(id, self.now);
                }
                self.pump();
            }
            self.apply(&Op::Advance(100));
        }
        panic!("trace never became idle");
    }

    /// Reads every dump and checks the cross-dump guarantees.
    fn check(&self) {
        // generation → seq → event, the first time it was seen
        let mut by_seq: BTreeMap<u32, BTreeMap<u64, DumpEvent>> = BTreeMap::new();
        // (generation, socket index, seq range sent, seqs delivered there)
        let mut spans: Vec<(u32, u32, std::ops::Range<u64>, Vec<u64>)> = Vec::new();
        let mut next_index: BTreeMap<u32, u32> = BTreeMap::new();
        for (id, sock) in &self.sockets {
            if sock.lines.is_empty() {
                continue;
            }
            for line in sock.lines.iter().skip(1) {
                assert!(
                    line.len() <= self.max_record_bytes,
                    "a line over the limit: {line}"
                );
            }
            let file = write_dump(&sock.lines, 1000, 0.0);
            let dump = read_dump(&file).unwrap_or_else(|e| panic!("socket {id}: {e:?}\n{file}"));
            let info = dump.events[0].extra.first().expect("header info");
            assert_eq!(
                info.get("generation").and_then(Value::as_f64),
                Some(f64::from(sock.generation))
            );
            let index = info.get("socket").and_then(Value::as_f64).unwrap() as u32;
            // Sockets that never opened sent nothing, so indices may skip but never repeat.
            let expected_index = next_index.entry(sock.generation).or_insert(0);
            assert!(index >= *expected_index, "socket index within the generation");
            *expected_index = index + 1;
            let first = info.get("seq").and_then(Value::as_f64).unwrap() as u64;
            let mut seq = first;
            let mut delivered = Vec::new();
            for (line, event) in dump.events.iter().enumerate().skip(1) {
                if event.method == RESUME_EVENT {
                    continue;
                }
                if let Some(g) = payload_generation(event) {
                    assert_eq!(
                        g, sock.generation,
                        "socket {id} carries another generation's event"
                    );
                }
                let seen = by_seq.entry(sock.generation).or_default();
                match seen.get(&seq) {
                    Some(earlier) => {
                        assert_eq!(canon(earlier), canon(event), "seq {seq} differs between dumps")
                    }
                    None => {
                        seen.insert(seq, event.clone());
                    }
                }
                if line < sock.delivered {
                    delivered.push(seq);
                }
                seq += 1;
            }
            spans.push((sock.generation, index, first..seq, delivered));
        }
        // A message delivered on one socket is never sent again on a later one.
        for (g, index, _, delivered) in &spans {
            for (g2, index2, range, _) in &spans {
                if g == g2 && index2 > index {
                    for seq in delivered {
                        assert!(
                            !range.contains(seq),
                            "seq {seq} delivered on socket {index} replayed on {index2}"
                        );
                    }
                }
            }
        }

        for &g in &self.generations {
            let counters = self
                .counters
                .get(&g)
                .cloned()
                .expect("counters of a finished generation");
            let seqs = by_seq.remove(&g).unwrap_or_default();
            // Delivered messages form a prefix and are all in the dumps.
            for s in 0..counters.delivered {
                assert!(seqs.contains_key(&s), "generation {g}: delivered seq {s} missing");
            }
            assert_eq!(
                counters.delivered + counters.lost_at_close,
                counters.recorded,
                "generation {g}"
            );
            assert!(seqs.keys().all(|s| *s < counters.recorded));
            // Accepted records: all present (once, after dedup by seq) unless lost at close.
            let mut present: Vec<u64> = seqs.values().filter_map(payload_n).collect();
            present.sort_unstable();
            let accepted: Vec<u64> = self
                .accepted
                .iter()
                .filter(|(ag, _)| *ag == g)
                .map(|(_, n)| *n)
                .collect();
            if counters.lost_at_close == 0 {
                assert_eq!(present, accepted, "generation {g}: accepted records vs dumps");
            } else {
                assert!(present.iter().all(|n| accepted.contains(n)));
            }
            // Records over the limit are never silent: an error each, and (once everything is
            // delivered) a marker each.
            let errors = self
                .errors
                .iter()
                .filter(|(eg, code)| *eg == g && *code == "stats-record-too-large");
            assert_eq!(
                errors.count() as u64,
                counters.too_large,
                "generation {g}: errors"
            );
            if counters.lost_at_close == 0 {
                let markers = seqs.values().filter(|e| e.method == TOO_LARGE_EVENT).count();
                assert_eq!(markers as u64, counters.too_large, "generation {g}: markers");
            }
            // Overflow is never silent.
            if counters.lost_at_close == 0 {
                let reported: f64 = seqs
                    .values()
                    .filter(|e| e.method == OVERFLOW_EVENT)
                    .filter_map(|e| e.value.get("dropped").and_then(Value::as_f64))
                    .sum();
                assert_eq!(
                    reported as u64, counters.dropped,
                    "generation {g}: overflow report"
                );
            }
        }
    }
}

/// An event with key order ignored (decompressed reports merge in their own order).
fn canon(
    event: &DumpEvent,
) -> (
    String,
    String,
    Option<String>,
    serde_json::Value,
    serde_json::Value,
) {
    let json = |v: &Value| serde_json::from_str::<serde_json::Value>(&v.to_json()).unwrap();
    (
        event.time.to_string(),
        event.method.clone(),
        event.pc.clone(),
        json(&event.value),
        json(&Value::Array(event.extra.clone())),
    )
}

fn payload_of(event: &DumpEvent) -> Option<&Value> {
    if event.method == "getStats" {
        event.value.as_object()?.iter().map(|(_, r)| r).next()
    } else {
        Some(&event.value)
    }
}

fn payload_generation(event: &DumpEvent) -> Option<u32> {
    payload_of(event)?.get("g")?.as_f64().map(|g| g as u32)
}

fn payload_n(event: &DumpEvent) -> Option<u64> {
    payload_of(event)?.get("n")?.as_f64().map(|n| n as u64)
}

#[derive(Debug, Clone)]
enum Op {
    Connect,
    ConnectKeepingPrevious,
    DetachedEvent(usize),
    Close(usize),
    Refuse(usize),
    CreatePc,
    Event { pc: Option<usize>, back: u8 },
    BigEvent { pc: Option<usize> },
    Stats(usize),
    StaleEvent,
    Open(usize),
    Drop(usize),
    Ack(usize),
    Drain(usize),
    Garbage(usize),
    Advance(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => Just(Op::Connect),
        1 => Just(Op::ConnectKeepingPrevious),
        1 => any::<usize>().prop_map(Op::DetachedEvent),
        1 => any::<usize>().prop_map(Op::Close),
        2 => Just(Op::CreatePc),
        6 => (proptest::option::of(any::<usize>()), 0u8..3).prop_map(|(pc, back)| Op::Event { pc, back }),
        4 => any::<usize>().prop_map(Op::Stats),
        1 => proptest::option::of(any::<usize>()).prop_map(|pc| Op::BigEvent { pc }),
        1 => Just(Op::StaleEvent),
        4 => any::<usize>().prop_map(Op::Open),
        2 => any::<usize>().prop_map(Op::Drop),
        1 => any::<usize>().prop_map(Op::Refuse),
        3 => any::<usize>().prop_map(Op::Ack),
        2 => any::<usize>().prop_map(Op::Drain),
        1 => any::<usize>().prop_map(Op::Garbage),
        4 => (0u16..4000).prop_map(Op::Advance),
    ]
}

fn mode() -> impl Strategy<Value = AckMode> {
    prop_oneof![Just(AckMode::Auto), Just(AckMode::Required), Just(AckMode::Never)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    #[test]
    fn random_interleavings_keep_every_guarantee(
        ops in prop::collection::vec(op(), 1..120),
        mode in mode(),
        max_buffered in prop_oneof![Just(6usize), Just(2000usize)],
    ) {
        let config = TraceConfig {
            max_buffered,
            backoff_initial_ms: 200.0,
            backoff_max_ms: 2000.0,
            close_grace_ms: 5000.0,
            ack_mode: mode,
            max_record_bytes: 1000,
        };
        let mut sim = Sim::new(config);
        sim.apply(&Op::Connect);
        for op in &ops {
            sim.apply(op);
        }
        sim.settle();
        sim.check();
    }
}

/// Regression (CI seed): more than 16 generations in one run. The trace keeps counters of only
/// the last 16 finished generations; every one of the 40 dumps must still check out.
#[test]
fn many_generations_outlive_the_finished_history() {
    let mut sim = Sim::new(TraceConfig {
        max_buffered: 6,
        ..TraceConfig::default()
    });
    for round in 0..40 {
        sim.apply(&Op::Connect);
        sim.apply(&Op::Open(0));
        sim.apply(&Op::Event { pc: None, back: 0 });
        if round % 3 == 0 {
            sim.apply(&Op::Close(round));
        }
    }
    sim.settle();
    assert!(sim.trace.counters(1).is_none(), "history is bounded");
    assert_eq!(sim.counters.len(), 40);
    sim.check();
}

fn sent_on(sim: &Sim, socket: u32) -> Vec<String> {
    sim.sockets[&socket].lines.clone()
}

#[test]
fn reconnect_replays_unacked_with_a_fresh_header_and_full_stats() {
    let mut sim = Sim::new(TraceConfig::default());
    sim.apply(&Op::Connect);
    sim.apply(&Op::CreatePc);
    sim.apply(&Op::Open(0));
    sim.apply(&Op::Stats(0));
    sim.apply(&Op::Ack(0)); // header, create, getStats written
    sim.apply(&Op::Advance(1000));
    sim.apply(&Op::Stats(0));
    sim.apply(&Op::Event { pc: Some(0), back: 0 });
    sim.apply(&Op::Drop(0));
    assert_eq!(sim.sockets.len(), 1, "reconnect waits for the backoff");
    sim.apply(&Op::Advance(499));
    assert_eq!(sim.sockets.len(), 1);
    sim.apply(&Op::Advance(1));
    assert_eq!(sim.sockets.len(), 2, "reconnect after 500 ms");
    sim.apply(&Op::Open(0));
    let lines = sent_on(&sim, 2);
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert!(
        lines[0].starts_with(r#"[39,null,"client",{"generation":1,"socket":1,"seq":2},1712345679000]"#),
        "{}",
        lines[0]
    );
    assert_eq!(lines[1], r#"[":resume","PC_0",null,0]"#);
    // The replayed getStats is a full report again (new socket, new compressor).
    assert!(
        lines[2]
            .starts_with(r#"["g","PC_0",{"0":{"41":1,"g":1,"n":1,"type":1},"t":1712345679000},"poll",0]"#),
        "{}",
        lines[2]
    );
    sim.settle();
    sim.check();
}

#[test]
fn collector_without_acks_falls_back_to_drained_buffer() {
    let config = TraceConfig {
        ack_mode: AckMode::Auto,
        ..TraceConfig::default()
    };
    let mut sim = Sim::new(config);
    sim.apply(&Op::Connect);
    sim.apply(&Op::Open(0));
    sim.apply(&Op::Event { pc: None, back: 0 });
    sim.apply(&Op::Drain(0));
    sim.apply(&Op::Event { pc: None, back: 0 });
    sim.apply(&Op::Drop(0));
    sim.apply(&Op::Advance(600));
    sim.apply(&Op::Open(0));
    let lines = sent_on(&sim, 2);
    assert_eq!(lines.len(), 2, "only the undrained event is replayed: {lines:#?}");
    assert!(lines[1].starts_with(r#"[":custom",null,{"g":1,"n":1},0]"#));
    assert_eq!(sim.trace.counters(1).unwrap().delivered, 1);
}

#[test]
fn older_generation_finishes_on_its_own_socket() {
    let mut sim = Sim::new(TraceConfig::default());
    sim.apply(&Op::Connect);
    sim.apply(&Op::Event { pc: None, back: 0 });
    sim.apply(&Op::Connect); // generation 1 closes but still holds one event
    sim.apply(&Op::Event { pc: None, back: 0 });
    sim.apply(&Op::Close(0)); // a close for generation 1 again: no-op on generation 2
    assert_eq!(sim.current(), Some(2));
    sim.apply(&Op::Open(0)); // socket 1, generation 1
    sim.apply(&Op::Open(0)); // socket 2, generation 2
    assert_eq!(sent_on(&sim, 1).len(), 2);
    assert!(sent_on(&sim, 1)[1].contains(r#""g":1"#));
    assert!(sent_on(&sim, 2)[1].contains(r#""g":2"#));
    sim.apply(&Op::Ack(0));
    assert_eq!(
        sim.sockets[&1].state,
        SockState::Closed,
        "generation 1 closes once delivered"
    );
    sim.settle();
    sim.check();
}

#[test]
fn overflow_is_counted_and_reported() {
    let config = TraceConfig {
        max_buffered: 3,
        ..TraceConfig::default()
    };
    let mut sim = Sim::new(config);
    sim.apply(&Op::Connect);
    for _ in 0..6 {
        sim.apply(&Op::Event { pc: None, back: 0 });
    }
    assert_eq!(sim.trace.counters(1).unwrap().dropped, 3);
    sim.apply(&Op::Open(0));
    sim.apply(&Op::Ack(0));
    let lines = sent_on(&sim, 1);
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with(r#"[":traceOverflow",null,{"dropped":3},0]"#),
        "{lines:#?}"
    );
    sim.settle();
    sim.check();
}

#[test]
fn close_deadline_counts_what_was_lost() {
    let config = TraceConfig {
        close_grace_ms: 1000.0,
        ..TraceConfig::default()
    };
    let mut sim = Sim::new(config);
    sim.apply(&Op::Connect);
    sim.apply(&Op::Event { pc: None, back: 0 });
    sim.apply(&Op::Close(0));
    sim.apply(&Op::Advance(999));
    assert!(!sim.trace.is_idle());
    sim.apply(&Op::Advance(1));
    assert!(sim.trace.is_idle());
    assert_eq!(sim.sockets[&1].state, SockState::Closed);
    assert_eq!(sim.trace.counters(1).unwrap().lost_at_close, 1);
}

#[test]
fn credentials_never_reach_the_wire() {
    let mut sim = Sim::new(TraceConfig::default());
    sim.apply(&Op::Connect);
    let config =
        Value::parse(r#"{"iceServers":[{"urls":["turn:t.example"],"username":"u","credential":"secret"}]}"#)
            .unwrap();
    let pc = sim.trace.create_pc(1, T0, &config).unwrap();
    sim.trace
        .record(1, T0, "setConfiguration", Some(&pc), config.clone(), vec![]);
    sim.pump();
    sim.apply(&Op::Open(0));
    let lines = sent_on(&sim, 1);
    assert_eq!(
        lines[1],
        r#"[39,"PC_0",{"iceServers":[{"urls":["turn:t.example"]}]},0]"#
    );
    assert_eq!(
        lines[2],
        r#"[38,"PC_0",{"iceServers":[{"urls":["turn:t.example"]}]},0]"#
    );
}

/// Reproduced: `StatsTrace.event('big', <3 MiB string>)` made the collector close with 1009 and
/// the trace replayed that record first on every reconnect, so nothing after it was ever
/// delivered and the app got no error. A huge SDP did the same. The record is replaced by a
/// marker (same sequence number), counted and reported; the records after it go out.
#[test]
fn a_record_over_max_record_bytes_becomes_a_marker_and_the_trace_goes_on() {
    let mut sim = Sim::new(TraceConfig::default());
    sim.apply(&Op::Connect);
    sim.apply(&Op::CreatePc);
    sim.apply(&Op::Open(0));
    let big = Value::String("x".repeat(3 * 1024 * 1024));
    let mut sdp = Value::object();
    sdp.set("type", Value::str("offer"));
    sdp.set(
        "sdp",
        Value::String("a=candidate:1 1 udp 1 10.0.0.1 9 typ host\r\n".repeat(80_000)),
    );
    assert!(sim.trace.record(1, T0, ":before", None, Value::Null, vec![]));
    assert!(!sim.trace.record(1, T0, ":big", None, big, vec![]));
    assert!(!sim
        .trace
        .record(1, T0, "setLocalDescription", Some("PC_0"), sdp, vec![]));
    assert!(sim.trace.record(1, T0, ":after", None, Value::Null, vec![]));
    sim.pump();
    let lines = sent_on(&sim, 1);
    // The collector's default largest message is 1 MiB; the SDK's default limit half of it.
    assert!(
        lines.iter().all(|l| l.len() <= 512 * 1024),
        "{:?}",
        lines.iter().map(String::len).collect::<Vec<_>>()
    );
    let methods: Vec<&str> = lines.iter().map(|l| l.split(',').next().unwrap()).collect();
    assert_eq!(
        methods,
        [
            "[39",
            "[39",
            "[\":before\"",
            "[\":traceTooLarge\"",
            "[\":traceTooLarge\"",
            "[\":after\""
        ]
    );
    assert!(
        lines[3].starts_with(r#"[":traceTooLarge",null,{"method":":big","bytes":3145769,"limit":524288}"#),
        "{}",
        lines[3]
    );
    assert!(
        lines[4].starts_with(r#"[":traceTooLarge","PC_0",{"method":"setLocalDescription","bytes":"#),
        "{}",
        lines[4]
    );
    assert_eq!(
        sim.errors,
        [(1, "stats-record-too-large"), (1, "stats-record-too-large")]
    );
    assert_eq!(sim.trace.counters(1).map(|c| c.too_large), Some(2));
    sim.settle();
    sim.check();
}

/// A record exactly at the limit is kept; one byte more is not (the estimate is exact for
/// strings and integers).
#[test]
fn the_record_limit_is_exact_for_strings() {
    let config = TraceConfig {
        max_record_bytes: 100,
        ..TraceConfig::default()
    };
    let mut sim = Sim::new(config);
    sim.apply(&Op::Connect);
    sim.apply(&Op::Open(0));
    // [":e",null,"…",<delta: 24 bytes kept for it>] = 2 + 4 + 1 + 4 + 1 + (n + 2) + 1 + 24,
    // with n the escaped string's bytes: 29 two-byte chars, an escaped line break, one byte.
    let fits = "é".repeat(29) + "\na";
    assert!(sim
        .trace
        .record(1, T0, ":e", None, Value::String(fits.clone()), vec![]));
    assert!(!sim
        .trace
        .record(1, T0, ":e", None, Value::String(fits + "b"), vec![]));
    sim.pump();
    assert_eq!(sim.trace.counters(1).map(|c| c.too_large), Some(1));
}

/// The collector's `["refused", reason, count]` reports (cumulative per socket) are counted
/// once each and reported as non-fatal `stats-refused` errors; the lines they cover are
/// acknowledged as usual.
#[test]
fn collector_refusals_are_counted_and_reported_once() {
    let mut sim = Sim::new(TraceConfig::default());
    sim.apply(&Op::Connect);
    sim.apply(&Op::Open(0));
    for text in [
        r#"["refused","rate-limited",2]"#,
        r#"["refused","rate-limited",2]"#,
        r#"["refused","message-too-large",1]"#,
        r#"["refused","rate-limited",5]"#,
        r#"["refused","rate-limited",4]"#,
        r#"["refused","Bad Reason",9]"#,
    ] {
        sim.trace.socket_message(1, T0, text);
        sim.pump();
    }
    assert_eq!(sim.trace.counters(1).map(|c| c.refused), Some(6));
    assert_eq!(
        sim.errors,
        [(1, "stats-refused"), (1, "stats-refused"), (1, "stats-refused")]
    );
    // A new socket counts from zero again.
    sim.apply(&Op::Drop(0));
    sim.apply(&Op::Advance(1000));
    sim.apply(&Op::Open(0));
    sim.trace
        .socket_message(2, T0 + 2000.0, r#"["refused","rate-limited",1]"#);
    sim.pump();
    assert_eq!(sim.trace.counters(1).map(|c| c.refused), Some(7));
}
