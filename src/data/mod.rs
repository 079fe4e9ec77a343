//! Data between peers, sans-IO: messages on data channels, chunked to what the remote accepts,
//! reassembled, acknowledged once the receiving app has them, deduplicated on unreliable
//! channels, and paced by each channel's buffered amount (never "send queue is full").
//!
//! Payload bytes stay with the executor, named by [`Handle`]s: an outgoing message is one
//! handle, sent as `(handle, offset, len)` slices behind a header the engine writes; each
//! incoming chunk is one handle, and a complete message is the list of its chunks' handles.
//! The engine sees headers, lengths and time, so a 64 MiB message never enters wasm memory.
//!
//! Frames (binary, big-endian):
//! - data: `[1, kind, flags, seq u32, total u32, offset u32]` (15 bytes) + the chunk. `kind` is the app's
//!   (string, bytes, blob, JSON…: the wrapper's table), `flags` bit 0 asks for an ack, bit 1
//!   says the sender's direction is unreliable (drop duplicates and stale reorderings).
//! - ack: `[2, seq u32]`: the receiving app has message `seq` of this channel.

pub mod files;

use std::collections::VecDeque;

use litemap::LiteMap;

use crate::error::{code, SdkError};

/// A data channel, by its negotiated SCTP id (the same on both sides).
pub type ChannelId = u16;
/// Bytes the executor holds for the engine: an outgoing message or an incoming chunk.
pub type Handle = u32;
/// One `send()`, settled by [`DataOut::Settled`].
pub type SendId = u32;
/// A peer connection (the room's [`PcId`](crate::room::io::PcId)).
pub type PcId = u32;

/// The built-in channels every peer connection has, pre-negotiated.
pub const RELIABLE: ChannelId = 0;
pub const UNRELIABLE: ChannelId = 1;
pub const FILES: ChannelId = 2;
/// App channels get ids from their label in `FIRST_APP_ID..=LAST_APP_ID` (see [`app_channel_id`]).
pub const FIRST_APP_ID: ChannelId = 16;
pub const LAST_APP_ID: ChannelId = 1023;

pub const HEADER: usize = 15;
const ACK_LEN: usize = 5;
const DATA: u8 = 1;
const ACK: u8 = 2;
const FLAG_ACK: u8 = 1;
const FLAG_UNRELIABLE: u8 = 2;

/// Chunk payload where the remote's `maxMessageSize` is unknown.
pub const UNKNOWN_CHUNK: u32 = 16 * 1024 - HEADER as u32;
/// Chunks never get larger than this, whatever the remote accepts: sends stay interleavable.
pub const MAX_CHUNK: u32 = 256 * 1024 - HEADER as u32;
/// Sends wait while a channel has this much buffered…
pub const HIGH_WATER: u64 = 1 << 20;
/// …and go on once it is down to this (`bufferedAmountLowThreshold`).
pub const LOW_WATER: u64 = 256 * 1024;
/// Where `bufferedamountlow` does not come, the buffered amount is read again this often.
pub const POLL_MS: f64 = 100.0;
/// The largest message a peer may send (bigger ones are refused and reported).
pub const MAX_MESSAGE: u32 = 256 << 20;
/// Incomplete messages kept per channel: on an unreliable one the oldest go first; on a
/// reliable one (where a sender has one, or a few unordered, in progress) more are refused.
const MAX_PARTIAL: usize = 32;

/// The id an app channel is negotiated with: a hash of its label, so every peer agrees
/// whatever order channels were created in.
pub fn app_channel_id(label: &str) -> ChannelId {
    // FNV-1a, folded into the app range.
    let mut hash: u32 = 0x811c_9dc5;
    for byte in label.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    let span = u32::from(LAST_APP_ID - FIRST_APP_ID) + 1;
    FIRST_APP_ID + (hash % span) as ChannelId
}

/// A channel's options, as `createChannel` takes them. They govern this side's sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSpec {
    pub id: ChannelId,
    pub label: String,
    pub ordered: bool,
    pub max_retransmits: Option<u16>,
    pub max_packet_life_time: Option<u16>,
}

impl ChannelSpec {
    pub fn reliable() -> ChannelSpec {
        ChannelSpec {
            id: RELIABLE,
            label: "reliable".into(),
            ordered: true,
            max_retransmits: None,
            max_packet_life_time: None,
        }
    }
    pub fn unreliable() -> ChannelSpec {
        ChannelSpec {
            id: UNRELIABLE,
            label: "unreliable".into(),
            ordered: false,
            max_retransmits: Some(0),
            max_packet_life_time: None,
        }
    }
    /// File transfers' own channel (reliable, ordered), so a file never blocks chat.
    pub fn files() -> ChannelSpec {
        ChannelSpec {
            id: FILES,
            label: "files".into(),
            ordered: true,
            max_retransmits: None,
            max_packet_life_time: None,
        }
    }
    /// Sending may lose or reorder messages.
    pub fn is_unreliable(&self) -> bool {
        self.max_retransmits.is_some() || self.max_packet_life_time.is_some()
    }
}

/// When a `send()` settles.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AckMode {
    /// When the receiving app has it (the ack); the reliable channels' default.
    Delivered,
    /// When the message left the SDK's queue for the channel; unreliable channels' default.
    Handed,
    /// On the ack, or `false` after this many ms (unreliable `{ ack: true, timeoutMs }`).
    Within(f64),
}

/// What the engine asks of the executor, or tells the app.
#[derive(Debug, Clone, PartialEq)]
pub enum DataOut {
    /// Send `header` followed by bytes `offset..offset + len` of `handle` on the channel.
    Send {
        pc: PcId,
        channel: ChannelId,
        header: Vec<u8>,
        handle: Handle,
        offset: u32,
        len: u32,
    },
    /// Send these bytes (an ack) on the channel.
    Control {
        pc: PcId,
        channel: ChannelId,
        bytes: Vec<u8>,
    },
    /// The engine is done with these handles.
    Release(Vec<Handle>),
    /// A complete message for the app: its chunks in order. Once the app's listeners ran,
    /// feed [`Data::delivered`] with `seq` when `ack` is set.
    Deliver {
        pc: PcId,
        channel: ChannelId,
        seq: u32,
        kind: u8,
        parts: Vec<Handle>,
        ack: bool,
    },
    /// A `send()` settles: `Ok(true)` delivered (or handed over), `Ok(false)` not acked in time.
    Settled {
        send: SendId,
        result: Result<bool, SdkError>,
    },
    /// Read the channel's `bufferedAmount` and report it with [`Data::buffered`].
    Poll { pc: PcId, channel: ChannelId },
    /// A peer sent something that is not a frame of ours, or a message over [`MAX_MESSAGE`].
    Refused {
        pc: PcId,
        channel: ChannelId,
        why: &'static str,
    },
    /// A file frame (see [`files`]): all its bytes as the executor passed them, and the handle
    /// of what follows a chunk's header.
    File {
        pc: PcId,
        channel: ChannelId,
        frame: Vec<u8>,
        part: Option<Handle>,
    },
}

struct Outgoing {
    /// A frame of another layer (a file chunk): this header, then the whole handle; no seq,
    /// no ack, no settlement.
    raw: Option<Vec<u8>>,
    send: SendId,
    handle: Handle,
    kind: u8,
    len: u32,
    sent: u32,
    seq: u32,
    ack: AckMode,
}

struct Assembly {
    kind: u8,
    total: u32,
    got: u32,
    /// `(offset, handle, len)`, kept sorted by offset.
    parts: Vec<(u32, Handle, u32)>,
    ack: bool,
}

struct Chan {
    unreliable: bool,
    open: bool,
    buffered: u64,
    /// Since when sends wait on the buffered amount (for the poll fallback).
    waiting_since: Option<f64>,
    /// The buffered amount was asked for at once when sends stopped: the estimate counts
    /// every byte handed over, and the browser may have sent most of them already (then no
    /// `bufferedamountlow` comes, as the amount never rose past the threshold).
    probed: bool,
    next_seq: u32,
    queue: VecDeque<Outgoing>,
    /// Sent messages waiting for their ack: seq → (send, deadline).
    acks: LiteMap<u32, (SendId, Option<f64>)>,
    inbox: LiteMap<u32, Assembly>,
    /// Unreliable receiving: the newest message delivered (older ones are stale).
    last_delivered: u32,
    /// Small frames of another layer (file control) waiting for the channel to open.
    held: Vec<Vec<u8>>,
}

impl Chan {
    fn new(spec: &ChannelSpec) -> Chan {
        Chan {
            unreliable: spec.is_unreliable(),
            open: false,
            buffered: 0,
            waiting_since: None,
            probed: false,
            next_seq: 1,
            queue: VecDeque::new(),
            acks: LiteMap::new(),
            inbox: LiteMap::new(),
            last_delivered: 0,
            held: Vec::new(),
        }
    }
}

struct PcData {
    chunk: u32,
    channels: LiteMap<ChannelId, Chan>,
}

/// Every peer connection's channels, queues and reassembly.
#[derive(Default)]
pub struct Data {
    pcs: LiteMap<PcId, PcData>,
    out: VecDeque<DataOut>,
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn error(code: &'static str, message: &str) -> SdkError {
    SdkError::new(code, message, false)
}

impl Data {
    pub fn new() -> Data {
        Data::default()
    }

    /// A new peer connection with these channels (closed until [`Data::open`]).
    pub fn add_pc(&mut self, pc: PcId, specs: &[ChannelSpec]) {
        let channels = specs.iter().map(|s| (s.id, Chan::new(s))).collect();
        self.pcs.insert(
            pc,
            PcData {
                chunk: UNKNOWN_CHUNK,
                channels,
            },
        );
    }

    /// An app channel made after the pc: add it (it opens later).
    pub fn add_channel(&mut self, pc: PcId, spec: &ChannelSpec) {
        if let Some(p) = self.pcs.get_mut(&pc) {
            p.channels.entry(spec.id).or_insert_with(|| Chan::new(spec));
        }
    }

    pub fn has_pc(&self, pc: PcId) -> bool {
        self.pcs.contains_key(&pc)
    }

    /// Queues a message. `len` bytes of `handle`, sent once the channel is open and has room.
    #[allow(clippy::too_many_arguments)]
    pub fn send(
        &mut self,
        now: f64,
        pc: PcId,
        channel: ChannelId,
        send: SendId,
        handle: Handle,
        kind: u8,
        len: u32,
        ack: AckMode,
    ) {
        let Some(chan) = self.pcs.get_mut(&pc).and_then(|p| p.channels.get_mut(&channel)) else {
            self.out.push_back(DataOut::Release(vec![handle]));
            self.out.push_back(DataOut::Settled {
                send,
                result: Err(error(code::CHANNEL_CLOSED, "no such channel on this peer")),
            });
            return;
        };
        let seq = chan.next_seq;
        chan.next_seq = chan.next_seq.wrapping_add(1).max(1);
        chan.queue.push_back(Outgoing {
            raw: None,
            send,
            handle,
            kind,
            len,
            sent: 0,
            seq,
            ack,
        });
        self.pump(now, pc, channel);
    }

    /// Sends a small frame of another layer now, or once the channel opens.
    pub fn control(&mut self, pc: PcId, channel: ChannelId, bytes: Vec<u8>) {
        let Some(chan) = self.pcs.get_mut(&pc).and_then(|p| p.channels.get_mut(&channel)) else {
            return;
        };
        if chan.open {
            self.out.push_back(DataOut::Control { pc, channel, bytes });
        } else {
            chan.held.push(bytes);
        }
    }

    /// Queues a frame of another layer behind the channel's messages, paced like them: `header`,
    /// then the `len` bytes of `handle` (released once sent). `len` must fit a chunk.
    pub fn send_raw(
        &mut self,
        now: f64,
        pc: PcId,
        channel: ChannelId,
        header: Vec<u8>,
        handle: Handle,
        len: u32,
    ) {
        let Some(chan) = self.pcs.get_mut(&pc).and_then(|p| p.channels.get_mut(&channel)) else {
            self.out.push_back(DataOut::Release(vec![handle]));
            return;
        };
        chan.queue.push_back(Outgoing {
            raw: Some(header),
            send: 0,
            handle,
            kind: 0,
            len,
            sent: 0,
            seq: 0,
            ack: AckMode::Handed,
        });
        self.pump(now, pc, channel);
    }

    /// The channel opened; `max_message_size` is the remote's (`pc.sctp.maxMessageSize`).
    pub fn open(&mut self, now: f64, pc: PcId, channel: ChannelId, max_message_size: Option<f64>) {
        let Some(p) = self.pcs.get_mut(&pc) else { return };
        p.chunk = match max_message_size {
            // 0 (or no figure at all from the browser): no limit.
            Some(m) if m == 0.0 || m == f64::INFINITY => MAX_CHUNK,
            Some(m) if m.is_finite() && m > (2 * HEADER) as f64 => {
                ((m as u64) - HEADER as u64).min(u64::from(MAX_CHUNK)) as u32
            }
            _ => p.chunk,
        };
        if let Some(chan) = p.channels.get_mut(&channel) {
            chan.open = true;
            for bytes in std::mem::take(&mut chan.held) {
                self.out.push_back(DataOut::Control { pc, channel, bytes });
            }
        }
        self.pump(now, pc, channel);
    }

    /// The channel's `bufferedAmount` now (after a send, on `bufferedamountlow`, on a poll).
    pub fn buffered(&mut self, now: f64, pc: PcId, channel: ChannelId, amount: f64) {
        if let Some(chan) = self.pcs.get_mut(&pc).and_then(|p| p.channels.get_mut(&channel)) {
            chan.buffered = if amount.is_finite() && amount > 0.0 {
                amount as u64
            } else {
                0
            };
            self.pump(now, pc, channel);
        }
    }

    /// Hands queued chunks to the channel while it has room.
    fn pump(&mut self, now: f64, pc: PcId, channel: ChannelId) {
        let Some(p) = self.pcs.get_mut(&pc) else { return };
        let chunk = p.chunk;
        let Some(chan) = p.channels.get_mut(&channel) else {
            return;
        };
        if !chan.open {
            return;
        }
        let mut progressed = false;
        while chan.buffered < HIGH_WATER {
            let Some(next) = chan.queue.front_mut() else { break };
            if let Some(header) = next.raw.take() {
                chan.buffered += u64::from(next.len) + header.len() as u64;
                progressed = true;
                let (handle, len) = (next.handle, next.len);
                self.out.push_back(DataOut::Send {
                    pc,
                    channel,
                    header,
                    handle,
                    offset: 0,
                    len,
                });
                self.out.push_back(DataOut::Release(vec![handle]));
                chan.queue.pop_front();
                continue;
            }
            let len = (next.len - next.sent).min(chunk);
            let mut flags = 0;
            if !matches!(next.ack, AckMode::Handed) {
                flags |= FLAG_ACK;
            }
            if chan.unreliable {
                flags |= FLAG_UNRELIABLE;
            }
            let ([s0, s1, s2, s3], [t0, t1, t2, t3], [o0, o1, o2, o3]) = (
                next.seq.to_be_bytes(),
                next.len.to_be_bytes(),
                next.sent.to_be_bytes(),
            );
            let header = vec![
                DATA, next.kind, flags, s0, s1, s2, s3, t0, t1, t2, t3, o0, o1, o2, o3,
            ];
            self.out.push_back(DataOut::Send {
                pc,
                channel,
                header,
                handle: next.handle,
                offset: next.sent,
                len,
            });
            chan.buffered += u64::from(len) + HEADER as u64;
            next.sent += len;
            progressed = true;
            if next.sent < next.len {
                continue;
            }
            let Some(done) = chan.queue.pop_front() else { break };
            self.out.push_back(DataOut::Release(vec![done.handle]));
            match done.ack {
                AckMode::Handed => self.out.push_back(DataOut::Settled {
                    send: done.send,
                    result: Ok(true),
                }),
                AckMode::Delivered => {
                    chan.acks.insert(done.seq, (done.send, None));
                }
                AckMode::Within(ms) => {
                    chan.acks.insert(done.seq, (done.send, Some(now + ms)));
                }
            }
        }
        chan.waiting_since = match (chan.queue.is_empty(), chan.waiting_since) {
            (true, _) => None,
            (false, Some(since)) => Some(since),
            (false, None) => Some(now),
        };
        if chan.queue.is_empty() || progressed {
            chan.probed = false;
        }
        if !chan.queue.is_empty() && !chan.probed {
            chan.probed = true;
            self.out.push_back(DataOut::Poll { pc, channel });
        }
    }

    /// A frame arrived: its first bytes (`head`, up to [`HEADER`]), and the executor's handle
    /// for the bytes after the header (`len` of them; `None` for a frame too short to have any).
    pub fn frame(&mut self, pc: PcId, channel: ChannelId, head: &[u8], part: Option<Handle>, len: u32) {
        let refuse = |out: &mut VecDeque<DataOut>, why| {
            if let Some(h) = part {
                out.push_back(DataOut::Release(vec![h]));
            }
            out.push_back(DataOut::Refused { pc, channel, why });
        };
        let Some(chan) = self.pcs.get_mut(&pc).and_then(|p| p.channels.get_mut(&channel)) else {
            if let Some(h) = part {
                self.out.push_back(DataOut::Release(vec![h]));
            }
            return;
        };
        match head.first() {
            Some(&files::CONTROL | &files::CHUNK) => {
                self.out.push_back(DataOut::File {
                    pc,
                    channel,
                    frame: head.to_vec(),
                    part,
                });
            }
            Some(&ACK) if head.len() >= ACK_LEN => {
                if let Some(h) = part {
                    self.out.push_back(DataOut::Release(vec![h]));
                }
                let Some(seq) = be32(head, 1) else { return };
                if let Some((send, _)) = chan.acks.remove(&seq) {
                    self.out.push_back(DataOut::Settled {
                        send,
                        result: Ok(true),
                    });
                }
            }
            Some(&DATA) if head.len() >= HEADER => {
                let (Some(&kind), Some(&flags)) = (head.get(1), head.get(2)) else {
                    return;
                };
                let (Some(seq), Some(total), Some(offset)) = (be32(head, 3), be32(head, 7), be32(head, 11))
                else {
                    return refuse(&mut self.out, "a data frame too short");
                };
                if total > MAX_MESSAGE {
                    return refuse(&mut self.out, "a message larger than 256 MiB");
                }
                if u64::from(offset) + u64::from(len) > u64::from(total) || (len == 0 && total != 0) {
                    return refuse(&mut self.out, "a chunk outside its message");
                }
                let unreliable = flags & FLAG_UNRELIABLE != 0;
                if unreliable && (seq <= chan.last_delivered && chan.last_delivered - seq < u32::MAX / 2) {
                    // A duplicate or a stale reordering.
                    if let Some(h) = part {
                        self.out.push_back(DataOut::Release(vec![h]));
                    }
                    return;
                }
                if !unreliable && !chan.inbox.contains_key(&seq) && chan.inbox.len() >= MAX_PARTIAL {
                    return refuse(&mut self.out, "too many messages in progress at once");
                }
                // What incomplete messages hold, whatever sizes they claim, stays under one
                // message's limit.
                let held: u64 = chan.inbox.iter().map(|(_, a)| u64::from(a.got)).sum();
                if held + u64::from(len) > u64::from(MAX_MESSAGE) {
                    if let Some(old) = chan.inbox.remove(&seq) {
                        self.out
                            .push_back(DataOut::Release(old.parts.iter().map(|p| p.1).collect()));
                    }
                    return refuse(&mut self.out, "more than 256 MiB in incomplete messages");
                }
                let assembly = chan.inbox.entry(seq).or_insert(Assembly {
                    kind,
                    total,
                    got: 0,
                    parts: Vec::new(),
                    ack: flags & FLAG_ACK != 0,
                });
                if assembly.kind != kind || assembly.total != total {
                    return refuse(&mut self.out, "chunks of one message disagree");
                }
                let at = assembly.parts.partition_point(|(o, _, _)| *o < offset);
                let duplicate = assembly.parts.get(at).is_some_and(|(o, _, _)| *o == offset);
                let before = at.checked_sub(1).and_then(|i| assembly.parts.get(i));
                let overlaps = before.is_some_and(|(o, _, l)| o + l > offset)
                    || assembly.parts.get(at).is_some_and(|(o, _, _)| offset + len > *o);
                if duplicate || overlaps {
                    if let Some(h) = part {
                        self.out.push_back(DataOut::Release(vec![h]));
                    }
                    return;
                }
                if let Some(h) = part {
                    assembly.parts.insert(at, (offset, h, len));
                }
                assembly.got += len;
                if assembly.got < total {
                    if unreliable && chan.inbox.len() > MAX_PARTIAL {
                        let oldest = chan.inbox.first().map(|(s, _)| *s);
                        if let Some(old) = oldest.and_then(|s| chan.inbox.remove(&s)) {
                            self.out
                                .push_back(DataOut::Release(old.parts.iter().map(|p| p.1).collect()));
                        }
                    }
                    return;
                }
                let Some(done) = chan.inbox.remove(&seq) else {
                    return;
                };
                if unreliable {
                    chan.last_delivered = seq;
                    // Older partial messages can only be stale now.
                    let stale: Vec<u32> = chan.inbox.keys().take_while(|s| **s < seq).copied().collect();
                    for s in stale {
                        if let Some(old) = chan.inbox.remove(&s) {
                            self.out
                                .push_back(DataOut::Release(old.parts.iter().map(|p| p.1).collect()));
                        }
                    }
                }
                self.out.push_back(DataOut::Deliver {
                    pc,
                    channel,
                    seq,
                    kind: done.kind,
                    parts: done.parts.into_iter().map(|p| p.1).collect(),
                    ack: done.ack,
                });
            }
            _ => refuse(&mut self.out, "a frame that is not rtcroom data"),
        }
    }

    /// The app's listeners had message `seq`: ack it.
    pub fn delivered(&mut self, pc: PcId, channel: ChannelId, seq: u32) {
        let open = self
            .pcs
            .get(&pc)
            .and_then(|p| p.channels.get(&channel))
            .is_some_and(|c| c.open);
        if open {
            let mut bytes = vec![ACK];
            bytes.extend_from_slice(&seq.to_be_bytes());
            self.out.push_back(DataOut::Control { pc, channel, bytes });
        }
    }

    /// The channel closed: its sends fail with `channel-closed`.
    pub fn closed(&mut self, pc: PcId, channel: ChannelId) {
        let Some(chan) = self.pcs.get_mut(&pc).and_then(|p| p.channels.get_mut(&channel)) else {
            return;
        };
        chan.open = false;
        let err = error(
            code::CHANNEL_CLOSED,
            "the data channel closed before the message was delivered",
        );
        Self::fail(&mut self.out, chan, &err);
    }

    /// The peer connection is gone (`peer-left`) or the room left (`cancelled`).
    pub fn remove_pc(&mut self, pc: PcId, err: &SdkError) {
        if let Some(mut p) = self.pcs.remove(&pc) {
            for (_, chan) in p.channels.iter_mut() {
                Self::fail(&mut self.out, chan, err);
            }
        }
    }

    fn fail(out: &mut VecDeque<DataOut>, chan: &mut Chan, err: &SdkError) {
        let mut release = Vec::new();
        for o in chan.queue.drain(..) {
            release.push(o.handle);
            if o.raw.is_none() {
                out.push_back(DataOut::Settled {
                    send: o.send,
                    result: Err(err.clone()),
                });
            }
        }
        for (_, (send, _)) in std::mem::take(&mut chan.acks).into_tuple_vec() {
            out.push_back(DataOut::Settled {
                send,
                result: Err(err.clone()),
            });
        }
        for (_, a) in std::mem::take(&mut chan.inbox).into_tuple_vec() {
            release.extend(a.parts.iter().map(|p| p.1));
        }
        if !release.is_empty() {
            out.push_back(DataOut::Release(release));
        }
        chan.waiting_since = None;
    }

    /// Timeouts of `{ ack: true, timeoutMs }` and the buffered-amount poll.
    pub fn tick(&mut self, now: f64) {
        for (&pc, p) in self.pcs.iter_mut() {
            for (&channel, chan) in p.channels.iter_mut() {
                let mut expired = Vec::new();
                for (seq, (send, deadline)) in chan.acks.iter() {
                    if deadline.is_some_and(|d| d <= now) {
                        expired.push((*seq, *send));
                    }
                }
                for (seq, send) in expired {
                    chan.acks.remove(&seq);
                    self.out.push_back(DataOut::Settled {
                        send,
                        result: Ok(false),
                    });
                }
                match chan.waiting_since {
                    Some(since) if chan.open && now - since >= POLL_MS => {
                        chan.waiting_since = Some(now);
                        self.out.push_back(DataOut::Poll { pc, channel });
                    }
                    _ => {}
                }
            }
        }
    }

    /// When [`Data::tick`] has something to do (ms; infinite: nothing).
    pub fn next_wake(&self) -> f64 {
        let mut at = f64::INFINITY;
        for p in self.pcs.values() {
            for chan in p.channels.values() {
                for (_, deadline) in chan.acks.values() {
                    if let Some(d) = deadline {
                        at = at.min(*d);
                    }
                }
                if let (Some(since), true) = (chan.waiting_since, chan.open) {
                    at = at.min(since + POLL_MS);
                }
            }
        }
        at
    }

    pub fn poll(&mut self) -> Option<DataOut> {
        self.out.pop_front()
    }
}
