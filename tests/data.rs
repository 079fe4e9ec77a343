#![cfg(not(target_arch = "wasm32"))]
//! The data engine natively: two engines joined by simulated channels that buffer, drain,
//! and (on the unreliable path) lose, duplicate and reorder frames. The executor's part (holding
//! payload bytes by handle, building frames, reading headers) is played by `Side`.

use std::collections::{BTreeMap, HashMap, VecDeque};

use proptest::prelude::*;
use rtcroom::data::{
    AckMode, ChannelId, ChannelSpec, Data, DataOut, Handle, SendId, HEADER, HIGH_WATER, LOW_WATER,
    MAX_MESSAGE, POLL_MS, RELIABLE, UNRELIABLE,
};

/// One end: its engine, the bytes behind its handles, what its app received, what settled.
#[derive(Default)]
struct Side {
    data: Data,
    store: HashMap<Handle, Vec<u8>>,
    next_handle: Handle,
    received: Vec<(ChannelId, u8, Vec<u8>)>,
    settled: BTreeMap<SendId, Result<bool, &'static str>>,
    /// (send, number of messages the other app had when it settled)
    settle_order: Vec<(SendId, usize)>,
    refused: Vec<&'static str>,
    polls: usize,
    /// Polls not answered yet: the browser reads `bufferedAmount` when the executor gets to it.
    pending_polls: Vec<ChannelId>,
    /// Whether this app acks (false: a frozen page).
    acks: bool,
}

/// A channel direction: frames in flight, the sender's buffered amount.
#[derive(Default)]
struct Wire {
    frames: VecDeque<Vec<u8>>,
    buffered: u64,
}

struct Net {
    a: Side,
    b: Side,
    /// (from a?, channel) → wire
    wires: BTreeMap<(bool, ChannelId), Wire>,
    now: f64,
    /// Unreliable path misbehaviour, from a seed.
    rng: u64,
    loss: u32,
    dup: u32,
    reorder: u32,
    max_buffered_seen: u64,
}

const PC: u32 = 7;

impl Net {
    fn new(max_message_size: Option<f64>) -> Net {
        let mut net = Net {
            a: Side {
                acks: true,
                ..Side::default()
            },
            b: Side {
                acks: true,
                ..Side::default()
            },
            wires: BTreeMap::new(),
            now: 0.0,
            rng: 1,
            loss: 0,
            dup: 0,
            reorder: 0,
            max_buffered_seen: 0,
        };
        let specs = [ChannelSpec::reliable(), ChannelSpec::unreliable()];
        for side in [&mut net.a, &mut net.b] {
            side.data.add_pc(PC, &specs);
            for c in [RELIABLE, UNRELIABLE] {
                side.data.open(0.0, PC, c, max_message_size);
            }
        }
        net.flush();
        net
    }

    fn rand(&mut self, n: u32) -> u32 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng % u64::from(n.max(1))) as u32
    }

    fn side(&mut self, a: bool) -> &mut Side {
        if a {
            &mut self.a
        } else {
            &mut self.b
        }
    }

    fn send(&mut self, from_a: bool, channel: ChannelId, kind: u8, bytes: Vec<u8>, ack: AckMode) -> SendId {
        let side = self.side(from_a);
        side.next_handle += 1;
        let handle = side.next_handle;
        let len = bytes.len() as u32;
        side.store.insert(handle, bytes);
        let send = handle;
        let now = self.now;
        self.side(from_a)
            .data
            .send(now, PC, channel, send, handle, kind, len, ack);
        self.flush();
        send
    }

    /// Carries out every side's outputs until nothing is left.
    fn flush(&mut self) {
        loop {
            let mut any = false;
            for from_a in [true, false] {
                while let Some(out) = self.side(from_a).data.poll() {
                    any = true;
                    self.perform(from_a, out);
                }
            }
            if !any {
                break;
            }
        }
    }

    fn perform(&mut self, from_a: bool, out: DataOut) {
        match out {
            DataOut::Send {
                channel,
                header,
                handle,
                offset,
                len,
                ..
            } => {
                let side = self.side(from_a);
                let bytes = side.store.get(&handle).expect("a live handle");
                let mut frame = header.to_vec();
                frame.extend_from_slice(&bytes[offset as usize..(offset + len) as usize]);
                let n = frame.len() as u64;
                let wire = self.wires.entry((from_a, channel)).or_default();
                wire.frames.push_back(frame);
                wire.buffered += n;
                self.max_buffered_seen = self.max_buffered_seen.max(wire.buffered);
            }
            DataOut::Control { channel, bytes, .. } => {
                self.wires
                    .entry((from_a, channel))
                    .or_default()
                    .frames
                    .push_back(bytes);
            }
            DataOut::Release(handles) => {
                let side = self.side(from_a);
                for h in handles {
                    assert!(side.store.remove(&h).is_some(), "released twice or unknown: {h}");
                }
            }
            DataOut::Deliver {
                channel,
                seq,
                kind,
                parts,
                ack,
                ..
            } => {
                let side = self.side(from_a);
                let mut bytes = Vec::new();
                for p in &parts {
                    bytes.extend(side.store.remove(p).expect("a delivered part"));
                }
                side.received.push((channel, kind, bytes));
                if ack && side.acks {
                    side.data.delivered(PC, channel, seq);
                }
            }
            DataOut::Settled { send, result } => {
                let other = self.side(!from_a).received.len();
                let side = self.side(from_a);
                assert!(
                    side.settled.insert(send, result.map_err(|e| e.code)).is_none(),
                    "settled twice"
                );
                side.settle_order.push((send, other));
            }
            DataOut::Poll { channel, .. } => {
                let side = self.side(from_a);
                side.polls += 1;
                side.pending_polls.push(channel);
            }
            DataOut::Refused { why, .. } => self.side(from_a).refused.push(why),
            DataOut::File { part, .. } => {
                // Not this engine's: the room hands it to the files engine (tests/files.rs).
                if let Some(h) = part {
                    self.side(from_a).store.remove(&h);
                }
            }
        }
    }

    /// Delivers up to `budget` bytes per wire, the way SCTP drains a buffer; the unreliable
    /// wire misbehaves as configured. Reports the new buffered amount (bufferedamountlow).
    fn drain(&mut self, budget: u64) {
        let keys: Vec<(bool, ChannelId)> = self.wires.keys().copied().collect();
        for (from_a, channel) in keys {
            let mut moved = 0u64;
            let mut batch = Vec::new();
            while moved < budget {
                let Some(frame) = self
                    .wires
                    .get_mut(&(from_a, channel))
                    .and_then(|w| w.frames.pop_front())
                else {
                    break;
                };
                moved += frame.len() as u64;
                batch.push(frame);
            }
            // `bufferedamountlow`: when the amount falls to the threshold or below.
            let mut low = false;
            if let Some(w) = self.wires.get_mut(&(from_a, channel)) {
                let before = w.buffered;
                w.buffered = w.buffered.saturating_sub(moved);
                low = before > LOW_WATER && w.buffered <= LOW_WATER;
            }
            if channel == UNRELIABLE {
                let mut out = Vec::new();
                for f in batch {
                    if self.rand(100) < self.loss {
                        continue;
                    }
                    if self.rand(100) < self.dup {
                        out.push(f.clone());
                    }
                    out.push(f);
                }
                for i in 0..out.len() {
                    if self.rand(100) < self.reorder {
                        let j = self.rand(out.len() as u32) as usize;
                        out.swap(i, j);
                    }
                }
                batch = out;
            }
            for frame in batch {
                self.receive(!from_a, channel, &frame);
            }
            if low {
                let b = self.wires.get(&(from_a, channel)).map_or(0, |w| w.buffered);
                let now = self.now;
                self.side(from_a).data.buffered(now, PC, channel, b as f64);
            }
            self.flush();
        }
    }

    fn receive(&mut self, at_a: bool, channel: ChannelId, frame: &[u8]) {
        let side = self.side(at_a);
        let head = &frame[..frame.len().min(HEADER)];
        let part = if frame.len() > HEADER || (frame.first() == Some(&1) && frame.len() == HEADER) {
            side.next_handle += 1;
            side.store
                .insert(side.next_handle, frame[HEADER.min(frame.len())..].to_vec());
            Some(side.next_handle)
        } else {
            None
        };
        let len = frame.len().saturating_sub(HEADER) as u32;
        side.data.frame(PC, channel, head, part, len);
        self.flush();
    }

    /// Answers the polls asked so far with each wire's buffered amount now.
    fn answer_polls(&mut self) {
        for from_a in [true, false] {
            let asked = std::mem::take(&mut self.side(from_a).pending_polls);
            for channel in asked {
                let b = self.wires.get(&(from_a, channel)).map_or(0, |w| w.buffered);
                let now = self.now;
                self.side(from_a).data.buffered(now, PC, channel, b as f64);
                // As the executor does: everything that input caused is carried out before
                // the next input is read.
                self.flush();
            }
        }
    }

    fn run(&mut self, budget: u64, until_quiet: usize) {
        for _ in 0..until_quiet {
            self.now += 10.0;
            let now = self.now;
            self.a.data.tick(now);
            self.b.data.tick(now);
            self.flush();
            self.drain(budget);
            self.answer_polls();
            if self.wires.values().all(|w| w.frames.is_empty()) && self.a.data.next_wake().is_infinite() {
                break;
            }
        }
    }
}

fn payload(n: usize, salt: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt))
        .collect()
}

#[test]
fn mixed_sizes_arrive_intact_in_order_and_settle_only_after_the_app_had_them() {
    let mut net = Net::new(Some(1000.0));
    let chunk = 1000 - HEADER;
    let sizes = [0, 1, chunk - 1, chunk, chunk + 1, 5 * chunk + 3, 70_000, 2];
    let mut sends = Vec::new();
    for (i, &n) in sizes.iter().enumerate() {
        sends.push(net.send(true, RELIABLE, i as u8, payload(n, i as u8), AckMode::Delivered));
    }
    assert!(
        net.a.settled.is_empty(),
        "nothing settles before the other app has it"
    );
    net.run(4096, 10_000);
    let got: Vec<(u8, Vec<u8>)> = net.b.received.iter().map(|(_, k, b)| (*k, b.clone())).collect();
    let want: Vec<(u8, Vec<u8>)> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| (i as u8, payload(n, i as u8)))
        .collect();
    assert_eq!(got, want);
    for (i, (send, had)) in net.a.settle_order.iter().enumerate() {
        assert_eq!(*send, sends[i]);
        assert!(*had > i, "send {i} settled when the other app had {had} messages");
    }
    assert!(net.a.settled.values().all(|r| *r == Ok(true)));
    assert!(
        net.a.store.is_empty() && net.b.store.is_empty(),
        "every handle released"
    );
    assert!(net.a.refused.is_empty() && net.b.refused.is_empty());
}

#[test]
fn ten_thousand_unawaited_sends_are_paced_by_the_buffer_and_all_arrive_in_order() {
    let mut net = Net::new(Some(65536.0));
    for i in 0..10_000u32 {
        net.send(true, RELIABLE, 1, i.to_be_bytes().repeat(64), AckMode::Delivered);
    }
    assert!(
        net.max_buffered_seen <= HIGH_WATER + 65536,
        "buffered {}",
        net.max_buffered_seen
    );
    net.run(64 * 1024, 100_000);
    assert_eq!(net.b.received.len(), 10_000);
    for (i, (_, _, bytes)) in net.b.received.iter().enumerate() {
        assert_eq!(&bytes[..4], &(i as u32).to_be_bytes());
    }
    assert_eq!(net.a.settled.len(), 10_000);
    assert!(net.a.settled.values().all(|r| *r == Ok(true)));
    assert!(
        net.max_buffered_seen <= HIGH_WATER + 65536,
        "buffered {} in run",
        net.max_buffered_seen
    );
}

#[test]
fn without_bufferedamountlow_the_buffer_is_polled() {
    let mut net = Net::new(Some(65536.0));
    for _ in 0..40 {
        net.send(true, RELIABLE, 1, payload(60_000, 1), AckMode::Handed);
    }
    // Drain the wire silently (no report), as a browser without the event would.
    net.answer_polls(); // the probe, answered while the wire is still full
    let w = net.wires.get_mut(&(true, RELIABLE)).unwrap();
    let frames: Vec<Vec<u8>> = w.frames.drain(..).collect();
    w.buffered = 0;
    let waiting = net.a.settled.len();
    assert!(waiting < 40, "the buffer holds the rest back");
    // When sends stopped, the engine asked once at once (the real amount was still high).
    let probes = net.a.polls;
    assert_eq!(probes, 1, "one immediate probe, not a loop");
    net.now += POLL_MS - 1.0;
    let now = net.now;
    net.a.data.tick(now);
    net.flush();
    assert_eq!(net.a.polls, probes, "no poll before POLL_MS");
    net.now += 1.0;
    let now = net.now;
    net.a.data.tick(now);
    net.flush();
    assert!(net.a.polls > probes);
    net.answer_polls();
    assert!(net.a.settled.len() > waiting, "the poll's answer let more out");
    for f in frames {
        net.receive(false, RELIABLE, &f);
    }
}

#[test]
fn a_buffer_that_drains_faster_than_the_estimate_is_read_at_once() {
    // The browser sends as fast as it is given data: the buffered amount never rises to the
    // low-water mark, so `bufferedamountlow` never fires. The probe keeps sends flowing with
    // no timer.
    let mut net = Net::new(Some(65536.0));
    for _ in 0..64 {
        net.send(true, RELIABLE, 1, payload(60_000, 2), AckMode::Handed);
    }
    for _ in 0..200 {
        let w = net.wires.get_mut(&(true, RELIABLE)).unwrap();
        let frames: Vec<Vec<u8>> = w.frames.drain(..).collect();
        w.buffered = 0;
        for f in frames {
            net.receive(false, RELIABLE, &f);
        }
        if net.a.settled.len() == 64 {
            break;
        }
        // Only the probe's answer (0 now): no tick, no `bufferedamountlow`.
        net.answer_polls();
    }
    assert_eq!(net.a.settled.len(), 64);
    assert_eq!(net.b.received.len(), 64);
}

#[test]
fn unreliable_no_duplicates_no_stale_messages_and_acks_time_out() {
    let mut net = Net::new(Some(2000.0));
    net.loss = 20;
    net.dup = 30;
    net.reorder = 40;
    for i in 0..300u32 {
        let mut bytes = i.to_be_bytes().to_vec();
        bytes.extend(payload((i as usize * 37) % 5000, i as u8));
        net.send(true, UNRELIABLE, 2, bytes, AckMode::Handed);
        net.drain(3000);
    }
    net.run(3000, 1000);
    let seqs: Vec<u32> = net
        .b
        .received
        .iter()
        .map(|(_, _, b)| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert!(!seqs.is_empty());
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "strictly increasing: {seqs:?}"
    );
    for (_, _, b) in &net.b.received {
        let i = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        assert_eq!(
            &b[4..],
            &payload((i as usize * 37) % 5000, i as u8)[..],
            "message {i} intact"
        );
    }
    assert!(
        net.a.settled.values().all(|r| *r == Ok(true)),
        "handed over: settled true"
    );
    assert!(net.b.store.is_empty(), "stale partial messages released");

    // { ack: true, timeoutMs }: a frozen receiver never acks, the send settles false.
    let mut net = Net::new(None);
    net.b.acks = false;
    let send = net.send(true, UNRELIABLE, 0, b"ping".to_vec(), AckMode::Within(500.0));
    net.run(10_000, 5);
    assert_eq!(net.b.received.len(), 1);
    assert_eq!(net.a.settled.get(&send), None, "not yet");
    net.now += 500.0;
    let now = net.now;
    net.a.data.tick(now);
    net.flush();
    assert_eq!(net.a.settled.get(&send), Some(&Ok(false)));
    // …and a live one does.
    net.b.acks = true;
    let send = net.send(true, UNRELIABLE, 0, b"ping".to_vec(), AckMode::Within(500.0));
    net.run(10_000, 5);
    assert_eq!(net.a.settled.get(&send), Some(&Ok(true)));
}

#[test]
fn a_closed_channel_and_a_gone_peer_settle_everything_with_typed_errors() {
    let mut net = Net::new(Some(1000.0));
    let acked = net.send(true, RELIABLE, 0, payload(10, 0), AckMode::Delivered);
    net.run(100_000, 20);
    net.b.acks = false;
    let queued: Vec<SendId> = (0..5)
        .map(|_| net.send(true, RELIABLE, 0, payload(100_000, 0), AckMode::Delivered))
        .collect();
    net.a.data.closed(PC, RELIABLE);
    net.flush();
    assert_eq!(net.a.settled[&acked], Ok(true));
    for s in &queued {
        assert_eq!(net.a.settled[s], Err("channel-closed"));
    }
    assert!(net.a.store.is_empty(), "queued payloads released");
    let later = net.send(true, UNRELIABLE, 0, payload(10, 0), AckMode::Within(1000.0));
    net.a
        .data
        .remove_pc(PC, &rtcroom::error::SdkError::new("peer-left", "gone", false));
    net.flush();
    assert_eq!(
        net.a.settled[&later],
        Err("peer-left"),
        "an ack still awaited fails with the peer"
    );
    let after = net.send(true, RELIABLE, 0, payload(10, 0), AckMode::Delivered);
    assert_eq!(
        net.a.settled[&after],
        Err("channel-closed"),
        "no channel any more"
    );
}

#[test]
fn hostile_frames_are_refused_and_change_nothing() {
    let mut net = Net::new(Some(1000.0));
    let mut bad: Vec<Vec<u8>> = vec![
        vec![],
        vec![9, 9, 9],
        vec![1, 0, 0],
        b"hello, not ours".to_vec(),
        vec![2, 0, 0],
    ];
    // Over the size limit; a chunk past its message's end; a chunk disagreeing with its message.
    let header = |seq: u32, total: u32, offset: u32, kind: u8| {
        let mut h = vec![1, kind, 1];
        h.extend(seq.to_be_bytes());
        h.extend(total.to_be_bytes());
        h.extend(offset.to_be_bytes());
        h
    };
    bad.push([header(1, MAX_MESSAGE + 1, 0, 0), vec![0; 10]].concat());
    bad.push([header(1, 10, 5, 0), vec![0; 10]].concat());
    bad.push([header(1, 100, 0, 0), vec![0; 10]].concat());
    bad.push([header(1, 100, 10, 3), vec![0; 10]].concat());
    bad.push([header(1, 100, 90, 0), vec![]].concat());
    for f in &bad {
        net.receive(false, RELIABLE, f);
    }
    assert!(net.b.refused.len() >= 7, "{:?}", net.b.refused);
    assert!(net.b.received.is_empty());
    // The channel still works, and the half message a hostile sender started never blocks
    // another: it is only ever completed by chunks that fit it.
    net.b
        .data
        .remove_pc(PC, &rtcroom::error::SdkError::new("peer-left", "x", false));
    net.flush();
    assert!(net.b.store.is_empty(), "everything held for it released");
    let mut net = Net::new(Some(1000.0));
    net.send(true, RELIABLE, 4, payload(3000, 4), AckMode::Delivered);
    net.run(100_000, 50);
    assert_eq!(net.b.received, vec![(RELIABLE, 4, payload(3000, 4))]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// Any remote message size, any message sizes, any drain rate: intact and in order.
    #[test]
    fn any_chunking_reassembles(max in 32u32..70_000, sizes in prop::collection::vec(0usize..200_000, 1..12), budget in 100u64..300_000) {
        let mut net = Net::new(Some(f64::from(max)));
        for (i, n) in sizes.iter().enumerate() {
            net.send(i % 2 == 0, RELIABLE, i as u8, payload(*n, i as u8), AckMode::Delivered);
        }
        net.run(budget, 1_000_000);
        let want_b: Vec<Vec<u8>> = sizes.iter().enumerate().filter(|(i, _)| i % 2 == 0).map(|(i, n)| payload(*n, i as u8)).collect();
        let want_a: Vec<Vec<u8>> = sizes.iter().enumerate().filter(|(i, _)| i % 2 == 1).map(|(i, n)| payload(*n, i as u8)).collect();
        prop_assert_eq!(net.b.received.iter().map(|r| r.2.clone()).collect::<Vec<_>>(), want_b);
        prop_assert_eq!(net.a.received.iter().map(|r| r.2.clone()).collect::<Vec<_>>(), want_a);
        prop_assert!(net.a.store.is_empty() && net.b.store.is_empty());
    }

    /// Loss, duplication and reordering on the unreliable path: what arrives is intact, never
    /// twice, never older than what came before; nothing is held forever.
    #[test]
    fn unreliable_under_any_misbehaviour(seed in 1u64..u64::MAX, loss in 0u32..50, dup in 0u32..50, reorder in 0u32..80, max in 64u32..5000) {
        let mut net = Net::new(Some(f64::from(max)));
        net.rng = seed;
        net.loss = loss;
        net.dup = dup;
        net.reorder = reorder;
        for i in 0..60u32 {
            let mut bytes = i.to_be_bytes().to_vec();
            bytes.extend(payload((i as usize * 131) % 9000, i as u8));
            net.send(true, UNRELIABLE, 0, bytes, AckMode::Handed);
            if i % 3 == 0 { net.drain(u64::from(max) * 2); }
        }
        net.run(u64::from(max) * 4, 10_000);
        let mut last = None;
        for (_, _, b) in &net.b.received {
            let i = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
            prop_assert!(last.is_none_or(|l: u32| l < i));
            last = Some(i);
            prop_assert_eq!(&b[4..], &payload((i as usize * 131) % 9000, i as u8)[..]);
        }
        // Partial messages are bounded (32 per channel) and released when stale.
        prop_assert!(net.b.store.len() < 32 * 9000);
    }
}

#[test]
fn a_hostile_sender_cannot_make_a_receiver_hold_unbounded_partial_messages() {
    let mut net = Net::new(Some(1000.0));
    let frame = |seq: u32, total: u32, offset: u32, len: usize| {
        let mut f = vec![1, 0, 1];
        f.extend(seq.to_be_bytes());
        f.extend(total.to_be_bytes());
        f.extend(offset.to_be_bytes());
        f.extend(vec![7u8; len]);
        f
    };
    // Thousands of messages started and never finished, on the reliable channel.
    for seq in 1..=2000 {
        net.receive(false, RELIABLE, &frame(seq, 1 << 20, 0, 100));
    }
    assert!(
        net.b.store.len() <= 32,
        "held {} partial chunks",
        net.b.store.len()
    );
    assert!(net.b.refused.iter().any(|w| w.contains("too many")));
    // Messages each claiming the maximum, fed together past what incomplete messages may hold.
    let mut net = Net::new(Some(1000.0));
    let chunk = 1 << 20;
    for i in 0..200u32 {
        for seq in [1, 2] {
            net.receive(false, RELIABLE, &frame(seq, MAX_MESSAGE, i * chunk as u32, chunk));
        }
    }
    let held: usize = net.b.store.values().map(Vec::len).sum();
    assert!(held <= MAX_MESSAGE as usize, "held {held} B");
    assert!(net.b.refused.iter().any(|w| w.contains("256 MiB")));
    // Only the hostile direction is clogged: the receiver's own messages still go out.
    net.send(false, RELIABLE, 1, b"still fine".to_vec(), AckMode::Delivered);
    net.run(100_000, 50);
    assert_eq!(
        net.a.received.last().map(|r| r.2.clone()),
        Some(b"still fine".to_vec())
    );
}
