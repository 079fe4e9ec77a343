#![cfg(not(target_arch = "wasm32"))]
//! File transfers natively: two files engines joined frame for frame, the executor's part
//! (reading slices, keeping chunks) played here. Every way a transfer ends, and hostile frames.

use std::collections::{HashMap, VecDeque};

use rtcroom::data::{
    files::{FileOut, Files, TransferId, INCOMING, SLICE, WINDOW},
    Handle,
};
use sha2::{Digest, Sha256};

const PC: u32 = 3;

#[derive(Default)]
struct End {
    files: Files,
    store: HashMap<Handle, Vec<u8>>,
    next: Handle,
    /// The outgoing file's bytes, by transfer.
    sources: HashMap<TransferId, Vec<u8>>,
    /// Chunks kept for an incoming transfer.
    kept: HashMap<TransferId, Vec<u8>>,
    offers: Vec<(TransferId, String, u64, String)>,
    progress: HashMap<TransferId, Vec<u64>>,
    done: HashMap<TransferId, [u8; 32]>,
    failed: HashMap<TransferId, &'static str>,
    reads: Vec<(TransferId, u64, u32)>,
    /// Read-ahead beyond the receiver's confirmation, at its largest.
    max_ahead: u64,
}

struct Pair {
    a: End,
    b: End,
    /// Frames in flight: (from a?, header, bytes)
    wire: VecDeque<(bool, Vec<u8>, Option<Vec<u8>>)>,
    /// Auto-serve reads.
    serve: bool,
    tamper: bool,
}

impl Pair {
    fn new() -> Pair {
        let mut a = End::default();
        let mut b = End::default();
        a.files = Files::new();
        b.files = Files::new();
        Pair {
            a,
            b,
            wire: VecDeque::new(),
            serve: true,
            tamper: false,
        }
    }

    fn end(&mut self, a: bool) -> &mut End {
        if a {
            &mut self.a
        } else {
            &mut self.b
        }
    }

    fn pump(&mut self) {
        loop {
            let mut any = false;
            for side in [true, false] {
                while let Some(out) = self.end(side).files.poll() {
                    any = true;
                    self.perform(side, out);
                }
            }
            if let Some((from_a, header, bytes)) = self.wire.pop_front() {
                any = true;
                let at_a = !from_a;
                let mut frame = header;
                let part = bytes.map(|mut b| {
                    if self.tamper && !b.is_empty() {
                        b[0] ^= 1;
                        self.tamper = false;
                    }
                    frame.extend_from_slice(&b);
                    let e = self.end(at_a);
                    e.next += 1;
                    e.store.insert(e.next, b);
                    e.next
                });
                let _ = self.end(at_a).files.frame(PC, &frame, part);
            }
            if !any {
                break;
            }
        }
    }

    fn perform(&mut self, side: bool, out: FileOut) {
        match out {
            FileOut::Frame { header, handle, .. } => {
                let bytes = handle.map(|h| self.end(side).store.remove(&h).expect("a live handle"));
                self.wire.push_back((side, header, bytes));
            }
            FileOut::Read {
                transfer,
                offset,
                len,
            } => {
                let e = self.end(side);
                e.reads.push((transfer, offset, len));
                if self.serve {
                    self.serve_read(side, transfer, offset, len);
                }
            }
            FileOut::Offered {
                transfer,
                name,
                size,
                mime,
                ..
            } => self.end(side).offers.push((transfer, name, size, mime)),
            FileOut::Progress { transfer, bytes, .. } => {
                self.end(side).progress.entry(transfer).or_default().push(bytes)
            }
            FileOut::Chunk { transfer, handle } => {
                let e = self.end(side);
                let bytes = e.store.remove(&handle).expect("a kept chunk");
                e.kept.entry(transfer).or_default().extend(bytes);
            }
            FileOut::Done { transfer, sha256 } => {
                assert!(self.end(side).done.insert(transfer, sha256).is_none());
            }
            FileOut::Failed { transfer, error } => {
                assert!(self.end(side).failed.insert(transfer, error.code).is_none());
            }
            FileOut::Release(handles) => {
                for h in handles {
                    self.end(side).store.remove(&h);
                }
            }
        }
    }

    fn serve_read(&mut self, side: bool, transfer: TransferId, offset: u64, len: u32) {
        let e = self.end(side);
        let source = e.sources.get(&transfer).expect("a source");
        let bytes = source[offset as usize..(offset + u64::from(len)) as usize].to_vec();
        let progress = e
            .progress
            .get(&transfer)
            .and_then(|p| p.last().copied())
            .unwrap_or(0);
        e.max_ahead = e.max_ahead.max(offset + u64::from(len) - progress);
        e.next += 1;
        let h = e.next;
        e.store.insert(h, bytes.clone());
        e.files.slice(transfer, offset, h, &bytes);
    }

    fn offer(&mut self, transfer: TransferId, content: Vec<u8>) {
        self.a.sources.insert(transfer, content.clone());
        self.a.files.offer(
            PC,
            transfer,
            content.len() as u64,
            "report.pdf",
            "application/pdf",
        );
        self.pump();
    }
}

fn content(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i.wrapping_mul(2654435761) >> 7) as u8).collect()
}

#[test]
fn a_file_streams_under_the_window_and_both_sides_agree_on_its_sha256() {
    let mut p = Pair::new();
    let data = content(12 * 1024 * 1024 + 12345);
    p.offer(1, data.clone());
    assert_eq!(p.b.offers.len(), 1);
    let (incoming, name, size, mime) = p.b.offers[0].clone();
    assert!(incoming & INCOMING != 0);
    assert_eq!(
        (name.as_str(), size, mime.as_str()),
        ("report.pdf", data.len() as u64, "application/pdf")
    );
    assert!(
        p.a.reads.is_empty(),
        "nothing is read before the receiver accepts"
    );
    p.b.files.accept(incoming);
    p.pump();
    let want: [u8; 32] = Sha256::digest(&data).into();
    assert_eq!(p.a.done.get(&1), Some(&want));
    assert_eq!(p.b.done.get(&incoming), Some(&want));
    assert_eq!(p.b.kept[&incoming], data);
    for progress in [&p.a.progress[&1], &p.b.progress[&incoming]] {
        assert!(progress.windows(2).all(|w| w[0] <= w[1]), "monotone");
        assert_eq!(progress.last(), Some(&(data.len() as u64)));
    }
    assert!(
        p.a.max_ahead <= WINDOW + u64::from(SLICE),
        "read ahead {}",
        p.a.max_ahead
    );
    assert!(p.a.store.is_empty() && p.b.store.is_empty());
    assert_eq!(p.a.files.active() + p.b.files.active(), 0);
}

#[test]
fn the_read_ahead_stops_at_the_window_until_the_receiver_confirms() {
    let mut p = Pair::new();
    p.offer(1, content(3 * WINDOW as usize));
    let incoming = p.b.offers[0].0;
    p.b.files.accept(incoming);
    // Deliver nothing to b: a's reads stop at the window.
    p.serve = true;
    let a_only = |p: &mut Pair| {
        while let Some(out) = p.a.files.poll() {
            p.perform(true, out);
        }
    };
    // Bring the accept to a, then keep b's side silent.
    while let Some(out) = p.b.files.poll() {
        p.perform(false, out);
    }
    if let Some((_, header, bytes)) = p.wire.pop_front() {
        let mut frame = header;
        frame.extend(bytes.unwrap_or_default());
        p.a.files.frame(PC, &frame, None).unwrap();
    }
    a_only(&mut p);
    let read: u64 = p.a.reads.iter().map(|r| u64::from(r.2)).sum();
    assert!(
        read >= WINDOW && read <= WINDOW + u64::from(SLICE),
        "read {read} without confirmation"
    );
    // Now let everything flow.
    p.pump();
    assert_eq!(p.b.done.len(), 1);
    assert_eq!(p.a.done.len(), 1);
}

/// A 5 MiB transfer `id`, accepted, with its first slice sent; reads are served by hand.
fn mid_file(id: TransferId) -> (Pair, TransferId) {
    let mut p = Pair::new();
    p.serve = false;
    p.offer(id, content(5 << 20));
    let incoming = p.b.offers[0].0;
    p.b.files.accept(incoming);
    p.pump();
    let (t, offset, len) = p.a.reads[0];
    p.serve_read(true, t, offset, len);
    p.pump();
    (p, incoming)
}

#[test]
fn rejected_cancelled_either_side_tampered_or_gone_each_ends_with_its_error() {
    // Rejected.
    let mut p = Pair::new();
    p.offer(1, content(1000));
    let incoming = p.b.offers[0].0;
    p.b.files.cancel(incoming, "no thanks");
    p.pump();
    assert_eq!(p.a.failed.get(&1), Some(&"file-rejected"));
    assert!(p.a.reads.is_empty());

    // The sender cancels mid-file.
    let (mut p, incoming) = mid_file(2);
    p.a.files.cancel(2, "changed my mind");
    p.pump();
    assert_eq!(p.a.failed.get(&2), Some(&"cancelled"));
    assert_eq!(p.b.failed.get(&incoming), Some(&"cancelled"));
    assert!(p.b.done.is_empty());

    // The receiver cancels mid-file.
    let (mut p, incoming) = mid_file(3);
    p.b.files.cancel(incoming, "too big");
    p.pump();
    assert_eq!(p.a.failed.get(&3), Some(&"cancelled"));
    assert_eq!(p.b.failed.get(&incoming), Some(&"cancelled"));
    // A slice read after the cancel is released, not sent.
    let (t, offset, len) = p.a.reads[1.min(p.a.reads.len() - 1)];
    p.a.sources.insert(t, content(5 << 20));
    p.serve_read(true, t, offset, len);
    p.pump();
    assert!(p.a.store.is_empty());

    // One flipped bit: the receiver refuses the file, the sender hears why.
    let mut p = Pair::new();
    p.tamper = true;
    p.offer(4, content(700_000));
    let incoming = p.b.offers[0].0;
    p.b.files.accept(incoming);
    p.pump();
    assert_eq!(p.b.failed.get(&incoming), Some(&"integrity-error"));
    assert!(p.b.done.is_empty());
    assert_eq!(p.a.failed.get(&4), Some(&"cancelled"));

    // The peer connection goes mid-file: both sides fail with the given error.
    let mut p = Pair::new();
    p.serve = false;
    p.offer(5, content(1 << 20));
    let incoming = p.b.offers[0].0;
    p.b.files.accept(incoming);
    p.pump();
    let gone = rtcroom::error::SdkError::new("peer-left", "gone", false);
    p.a.files.remove_pc(PC, &gone);
    p.b.files.remove_pc(PC, &gone);
    p.pump();
    assert_eq!(p.a.failed.get(&5), Some(&"peer-left"));
    assert_eq!(p.b.failed.get(&incoming), Some(&"peer-left"));

    // An empty file is a file.
    let mut p = Pair::new();
    p.offer(6, Vec::new());
    let incoming = p.b.offers[0].0;
    p.b.files.accept(incoming);
    p.pump();
    let empty: [u8; 32] = Sha256::digest([]).into();
    assert_eq!(
        (p.a.done.get(&6), p.b.done.get(&incoming)),
        (Some(&empty), Some(&empty))
    );
}

#[test]
fn hostile_file_frames_are_refused() {
    let mut f = Files::new();
    let bad: Vec<Vec<u8>> = vec![
        vec![],
        vec![3],
        vec![3, 1, 0, 0, 0, 1],
        vec![3, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9, 0, 200, b'x'],
        vec![3, 99, 0, 0, 0, 1],
        vec![3, 5, 0, 0, 0, 1, 1, 2],
        vec![4, 0, 0, 0, 1],
        vec![7, 7, 7],
    ];
    for frame in &bad {
        let _ = f.frame(PC, frame, None);
    }
    // A chunk for an offer never accepted is out of place.
    let mut offer = vec![3, 1, 0, 0, 0, 9];
    offer.extend(100u64.to_be_bytes());
    offer.extend([0, 1, b'n', 0, 0]);
    assert_eq!(f.frame(PC, &offer, None), Ok(()));
    assert!(f.frame(PC, &offer, None).is_err(), "offered twice");
    let mut chunk = vec![4, 0, 0, 0, 9];
    chunk.extend(0u64.to_be_bytes());
    chunk.extend([1, 2, 3]);
    assert!(f.frame(PC, &chunk, Some(77)).is_err());
    let mut released = Vec::new();
    let mut offered = 0;
    while let Some(out) = f.poll() {
        match out {
            FileOut::Release(h) => released.extend(h),
            FileOut::Offered { .. } => offered += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(offered, 1);
    assert_eq!(released, vec![77]);
}

#[test]
fn a_flood_of_offers_is_rejected_past_sixteen_unanswered() {
    let mut f = Files::new();
    for id in 1..=40u32 {
        let mut offer = vec![3, 1];
        offer.extend(id.to_be_bytes());
        offer.extend(10u64.to_be_bytes());
        offer.extend([0, 1, b'n', 0, 0]);
        let _ = f.frame(PC, &offer, None);
    }
    let (mut offered, mut rejected) = (0, 0);
    while let Some(out) = f.poll() {
        match out {
            FileOut::Offered { .. } => offered += 1,
            FileOut::Frame { header, .. } if header.get(1) == Some(&3) => rejected += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((offered, rejected), (16, 24));
}
