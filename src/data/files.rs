//! File transfer, sans-IO: offer, accept or reject, streamed chunks under a window, progress,
//! cancel from either side, and SHA-256 over the content checked on arrival.
//!
//! The sender reads its file slice by slice (the executor reads `blob.slice()` when asked);
//! at most [`WINDOW`] bytes are read ahead of what the receiver confirmed, so memory stays
//! bounded whatever the file's size. The receiver hands each chunk to the executor (which keeps
//! it in a Blob) and only hashes it here. Everything runs on the `files` channel (reliable,
//! ordered), so a file never blocks chat.
//!
//! Frames (binary, big-endian; `id` is the sender's transfer id):
//! - control `[3, op, id u32, …]`: 1 offer `size u64, name_len u16, name, mime_len u16, mime`;
//!   2 accept; 3 reject `reason`; 4 cancel `reason`; 5 done `sha256[32]`; 6 progress
//!   `bytes u64` (receiver → sender); 7 verified (receiver → sender: the hash matched).
//! - chunk `[4, id u32, offset u64]` + bytes.

use std::collections::VecDeque;

use litemap::LiteMap;
use sha2::{Digest, Sha256};

use super::{Handle, PcId};
use crate::error::{code, SdkError};

/// A transfer as the app's objects name it: the sender's own id, or an incoming one's local
/// key (with [`INCOMING`] set).
pub type TransferId = u32;
pub const INCOMING: TransferId = 1 << 31;

/// Bytes read ahead of the receiver's confirmation.
pub const WINDOW: u64 = 8 << 20;
/// Size of each slice the sender reads (a chunk frame, with its header, fits 256 KiB).
pub const SLICE: u32 = 256 * 1024 - 32;
/// The receiver confirms progress every this many bytes.
pub const PROGRESS_EVERY: u64 = 1 << 20;
/// Offers from one peer that its app has not answered yet; more are rejected at once.
pub const MAX_PENDING_OFFERS: usize = 16;
/// Largest control frame read (an offer's name and type included).
pub const MAX_CONTROL: usize = 4096;
pub const CONTROL: u8 = 3;
pub const CHUNK: u8 = 4;
const CHUNK_HEADER: usize = 13;

const OFFER: u8 = 1;
const ACCEPT: u8 = 2;
const REJECT: u8 = 3;
const CANCEL: u8 = 4;
const DONE: u8 = 5;
const PROGRESS: u8 = 6;
const VERIFIED: u8 = 7;

/// What the files engine asks for, or tells the app.
#[derive(Debug, Clone, PartialEq)]
pub enum FileOut {
    /// Send on `pc`'s files channel: `header` and then, with a handle, its bytes.
    Frame {
        pc: PcId,
        header: Vec<u8>,
        handle: Option<Handle>,
        len: u32,
    },
    /// Read bytes `offset..offset + len` of the outgoing file and give them to
    /// [`Files::slice`].
    Read {
        transfer: TransferId,
        offset: u64,
        len: u32,
    },
    /// A peer offers a file: the app accepts or rejects it.
    Offered {
        pc: PcId,
        transfer: TransferId,
        name: String,
        size: u64,
        mime: String,
    },
    /// Bytes done (sent and confirmed, or received), of `total`.
    Progress {
        transfer: TransferId,
        bytes: u64,
        total: u64,
    },
    /// An incoming chunk for the executor to keep, in order.
    Chunk {
        transfer: TransferId,
        handle: Handle,
    },
    /// Verified on both sides.
    Done {
        transfer: TransferId,
        sha256: [u8; 32],
    },
    Failed {
        transfer: TransferId,
        error: SdkError,
    },
    /// The engine is done with these handles.
    Release(Vec<Handle>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum SendPhase {
    Offered,
    Sending,
    /// Everything sent with `done`; waiting for `verified`.
    Sent,
}

struct Outgoing {
    pc: PcId,
    size: u64,
    phase: SendPhase,
    /// Next offset to read, and whether a read is in flight.
    read: u64,
    reading: bool,
    /// Confirmed by the receiver.
    acked: u64,
    hash: Sha256,
    sha256: [u8; 32],
}

struct Incoming {
    pc: PcId,
    /// The sender's id for it.
    id: u32,
    size: u64,
    accepted: bool,
    received: u64,
    confirmed: u64,
    hash: Sha256,
    /// The sender's hash, once its `done` came.
    claimed: Option<[u8; 32]>,
}

#[derive(Default)]
pub struct Files {
    out: VecDeque<FileOut>,
    outgoing: LiteMap<TransferId, Outgoing>,
    incoming: LiteMap<TransferId, Incoming>,
    next_in: TransferId,
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn be64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Queues a control frame for `pc`.
fn say(out: &mut VecDeque<FileOut>, pc: PcId, frame: Vec<u8>) {
    out.push_back(FileOut::Frame {
        pc,
        header: frame,
        handle: None,
        len: 0,
    });
}

fn control(op: u8, id: u32, rest: &[u8]) -> Vec<u8> {
    let mut f = vec![CONTROL, op];
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(rest);
    f
}

/// `s` cut at a character boundary to at most `max` bytes.
fn cut(s: &str, max: usize) -> &[u8] {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.as_bytes().get(..end).unwrap_or_default()
}

/// UTF-8 with a u16 length, at most `max` bytes.
fn put_str(f: &mut Vec<u8>, s: &str, max: usize) {
    let bytes = cut(s, max);
    f.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    f.extend_from_slice(bytes);
}

fn get_str(b: &[u8], at: usize) -> Option<(String, usize)> {
    let len = usize::from(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?));
    let bytes = b.get(at + 2..at + 2 + len)?;
    Some((String::from_utf8_lossy(bytes).into_owned(), at + 2 + len))
}

fn text(b: &[u8], at: usize) -> String {
    String::from_utf8_lossy(b.get(at..).unwrap_or_default()).into_owned()
}

fn fail(code: &'static str, message: String) -> SdkError {
    SdkError::new(code, message, false)
}

impl Files {
    pub fn new() -> Files {
        Files {
            next_in: INCOMING,
            ..Files::default()
        }
    }

    pub fn poll(&mut self) -> Option<FileOut> {
        self.out.pop_front()
    }

    /// Offers a file to the peer on `pc`; `transfer` is the caller's unique id (< INCOMING).
    pub fn offer(&mut self, pc: PcId, transfer: TransferId, size: u64, name: &str, mime: &str) {
        let mut rest = size.to_be_bytes().to_vec();
        put_str(&mut rest, name, 1024);
        put_str(&mut rest, mime, 256);
        say(&mut self.out, pc, control(OFFER, transfer, &rest));
        self.outgoing.insert(
            transfer,
            Outgoing {
                pc,
                size,
                phase: SendPhase::Offered,
                read: 0,
                reading: false,
                acked: 0,
                hash: Sha256::new(),
                sha256: [0; 32],
            },
        );
    }

    /// The app accepts an offer: chunks start coming.
    pub fn accept(&mut self, transfer: TransferId) {
        if let Some(t) = self.incoming.get_mut(&transfer).filter(|t| !t.accepted) {
            t.accepted = true;
            let frame = control(ACCEPT, t.id, &[]);
            say(&mut self.out, t.pc, frame);
            if t.size == 0 {
                self.out.push_back(FileOut::Progress {
                    transfer,
                    bytes: 0,
                    total: 0,
                });
            }
        }
    }

    /// The app rejects an offer, or cancels a transfer (either side).
    pub fn cancel(&mut self, transfer: TransferId, reason: &str) {
        let (pc, frame) = if let Some(t) = self.incoming.remove(&transfer) {
            let op = if t.accepted { CANCEL } else { REJECT };
            (t.pc, control(op, t.id, cut(reason, 256)))
        } else if let Some(t) = self.outgoing.remove(&transfer) {
            (t.pc, control(CANCEL, transfer, cut(reason, 256)))
        } else {
            return;
        };
        say(&mut self.out, pc, frame);
        let error = fail(code::CANCELLED, crate::text::cat(&["cancelled: ", reason]));
        self.out.push_back(FileOut::Failed { transfer, error });
    }

    /// Bytes the executor read for `transfer` at `offset`: hashed, then sent as a chunk.
    pub fn slice(&mut self, transfer: TransferId, offset: u64, handle: Handle, bytes: &[u8]) {
        let Some(t) = self.outgoing.get_mut(&transfer) else {
            self.out.push_back(FileOut::Release(vec![handle]));
            return;
        };
        if offset != t.read || t.phase != SendPhase::Sending {
            self.out.push_back(FileOut::Release(vec![handle]));
            return;
        }
        t.reading = false;
        t.hash.update(bytes);
        t.read += bytes.len() as u64;
        let mut header = vec![CHUNK];
        header.extend_from_slice(&transfer.to_be_bytes());
        header.extend_from_slice(&offset.to_be_bytes());
        let len = bytes.len() as u32;
        self.out.push_back(FileOut::Frame {
            pc: t.pc,
            header,
            handle: Some(handle),
            len,
        });
        self.next_read(transfer);
    }

    /// The executor could not read the file (it changed or went away).
    pub fn read_failed(&mut self, transfer: TransferId, why: &str) {
        if self.outgoing.contains_key(&transfer) {
            self.cancel(transfer, why);
        }
    }

    fn next_read(&mut self, transfer: TransferId) {
        let Some(t) = self.outgoing.get_mut(&transfer) else {
            return;
        };
        if t.phase != SendPhase::Sending || t.reading {
            return;
        }
        if t.read >= t.size {
            t.phase = SendPhase::Sent;
            t.sha256 = std::mem::take(&mut t.hash).finalize().into();
            let frame = control(DONE, transfer, &t.sha256);
            say(&mut self.out, t.pc, frame);
            return;
        }
        if t.read - t.acked >= WINDOW {
            return;
        }
        t.reading = true;
        let len = (t.size - t.read).min(u64::from(SLICE)) as u32;
        self.out.push_back(FileOut::Read {
            transfer,
            offset: t.read,
            len,
        });
    }

    /// A frame on `pc`'s files channel: all of its bytes (`frame`), and for a chunk the
    /// executor's handle of the bytes after the chunk header. Returns why it was refused.
    pub fn frame(&mut self, pc: PcId, frame: &[u8], part: Option<Handle>) -> Result<(), &'static str> {
        let result = self.read_frame(pc, frame, part);
        if result.is_err() {
            if let Some(h) = part {
                self.out.push_back(FileOut::Release(vec![h]));
            }
        }
        result
    }

    fn read_frame(&mut self, pc: PcId, frame: &[u8], part: Option<Handle>) -> Result<(), &'static str> {
        match frame.first() {
            Some(&CHUNK) => {
                let (Some(id), Some(offset), Some(h)) = (be32(frame, 1), be64(frame, 5), part) else {
                    return Err("a short file chunk");
                };
                let bytes = frame.get(CHUNK_HEADER..).unwrap_or_default();
                let Some((&key, t)) = self.incoming.iter_mut().find(|(_, t)| t.pc == pc && t.id == id) else {
                    // A chunk of a transfer cancelled meanwhile: harmless.
                    self.out.push_back(FileOut::Release(vec![h]));
                    return Ok(());
                };
                if !t.accepted || offset != t.received || offset + bytes.len() as u64 > t.size {
                    return Err("a file chunk out of place");
                }
                t.hash.update(bytes);
                t.received += bytes.len() as u64;
                self.out.push_back(FileOut::Chunk {
                    transfer: key,
                    handle: h,
                });
                self.out.push_back(FileOut::Progress {
                    transfer: key,
                    bytes: t.received,
                    total: t.size,
                });
                if t.received - t.confirmed >= PROGRESS_EVERY || t.received == t.size {
                    t.confirmed = t.received;
                    let frame = control(PROGRESS, id, &t.received.to_be_bytes());
                    say(&mut self.out, pc, frame);
                }
                self.verify(key);
                Ok(())
            }
            Some(&CONTROL) => {
                if let Some(h) = part {
                    self.out.push_back(FileOut::Release(vec![h]));
                }
                let (Some(&op), Some(id)) = (frame.get(1), be32(frame, 2)) else {
                    return Err("a short file control frame");
                };
                match op {
                    OFFER => {
                        let size = be64(frame, 6).ok_or("a short file offer")?;
                        let (name, at) = get_str(frame, 14).ok_or("a short file offer")?;
                        let (mime, _) = get_str(frame, at).ok_or("a short file offer")?;
                        if self.incoming.iter().any(|(_, t)| t.pc == pc && t.id == id) {
                            return Err("a file offered twice");
                        }
                        let pending = self
                            .incoming
                            .iter()
                            .filter(|(_, t)| t.pc == pc && !t.accepted)
                            .count();
                        if pending >= MAX_PENDING_OFFERS {
                            let frame = control(REJECT, id, b"too many offers waiting for an answer");
                            say(&mut self.out, pc, frame);
                            return Err("a flood of file offers");
                        }
                        let transfer = self.next_in;
                        self.next_in = (self.next_in + 1) | INCOMING;
                        self.incoming.insert(
                            transfer,
                            Incoming {
                                pc,
                                id,
                                size,
                                accepted: false,
                                received: 0,
                                confirmed: 0,
                                hash: Sha256::new(),
                                claimed: None,
                            },
                        );
                        self.out.push_back(FileOut::Offered {
                            pc,
                            transfer,
                            name,
                            size,
                            mime,
                        });
                    }
                    DONE => {
                        let sha: [u8; 32] = frame
                            .get(6..38)
                            .and_then(|s| s.try_into().ok())
                            .ok_or("a short file done")?;
                        let key = self
                            .incoming
                            .iter()
                            .find(|(_, t)| t.pc == pc && t.id == id)
                            .map(|(k, _)| *k);
                        if let Some(key) = key {
                            if let Some(t) = self.incoming.get_mut(&key) {
                                t.claimed = Some(sha);
                            }
                            self.verify(key);
                        }
                    }
                    // From the receiver, about our transfer `id`.
                    ACCEPT | REJECT | CANCEL | PROGRESS | VERIFIED => self.peer_said(pc, op, id, frame),
                    _ => return Err("an unknown file control frame"),
                }
                Ok(())
            }
            _ => Err("a frame that is not a file frame"),
        }
    }

    fn peer_said(&mut self, pc: PcId, op: u8, id: u32, frame: &[u8]) {
        // A cancel may also come from a sender about an incoming transfer.
        if op == CANCEL {
            let key = self
                .incoming
                .iter()
                .find(|(_, t)| t.pc == pc && t.id == id)
                .map(|(k, _)| *k);
            if let Some(key) = key {
                self.incoming.remove(&key);
                let error = fail(
                    code::CANCELLED,
                    crate::text::cat(&["the sender cancelled: ", &text(frame, 6)]),
                );
                self.out.push_back(FileOut::Failed { transfer: key, error });
                return;
            }
        }
        let Some(t) = self.outgoing.get_mut(&id).filter(|t| t.pc == pc) else {
            return;
        };
        match op {
            ACCEPT if t.phase == SendPhase::Offered => {
                t.phase = SendPhase::Sending;
                if t.size == 0 {
                    self.out.push_back(FileOut::Progress {
                        transfer: id,
                        bytes: 0,
                        total: 0,
                    });
                }
                self.next_read(id);
            }
            PROGRESS => {
                let bytes = be64(frame, 6).unwrap_or(0).min(t.read);
                if bytes > t.acked {
                    t.acked = bytes;
                    self.out.push_back(FileOut::Progress {
                        transfer: id,
                        bytes,
                        total: t.size,
                    });
                    self.next_read(id);
                }
            }
            VERIFIED if t.phase == SendPhase::Sent => {
                let sha256 = t.sha256;
                self.outgoing.remove(&id);
                self.out.push_back(FileOut::Done { transfer: id, sha256 });
            }
            REJECT | CANCEL => {
                self.outgoing.remove(&id);
                let (code, what) = if op == REJECT {
                    (code::FILE_REJECTED, "the peer rejected the file: ")
                } else {
                    (code::CANCELLED, "the peer cancelled: ")
                };
                let error = fail(code, crate::text::cat(&[what, &text(frame, 6)]));
                self.out.push_back(FileOut::Failed { transfer: id, error });
            }
            _ => {}
        }
    }

    /// All bytes in and the sender's hash known: verified, or a typed error (no blob).
    fn verify(&mut self, key: TransferId) {
        let Some(t) = self.incoming.get(&key) else { return };
        let Some(claimed) = t.claimed.filter(|_| t.received == t.size) else {
            return;
        };
        let Some(t) = self.incoming.remove(&key) else {
            return;
        };
        let sha256: [u8; 32] = t.hash.finalize().into();
        if sha256 == claimed {
            let frame = control(VERIFIED, t.id, &[]);
            say(&mut self.out, t.pc, frame);
            self.out.push_back(FileOut::Done {
                transfer: key,
                sha256,
            });
        } else {
            let frame = control(CANCEL, t.id, b"integrity: SHA-256 mismatch");
            say(&mut self.out, t.pc, frame);
            let error = fail(
                code::INTEGRITY,
                "the file arrived with another SHA-256 than was sent: not delivered".into(),
            );
            self.out.push_back(FileOut::Failed { transfer: key, error });
        }
    }

    /// A peer connection is gone (`peer-left`) or the room left (`cancelled`): its transfers fail.
    pub fn remove_pc(&mut self, pc: PcId, error: &SdkError) {
        let gone: Vec<TransferId> = self
            .outgoing
            .iter()
            .filter(|(_, t)| t.pc == pc)
            .map(|(k, _)| *k)
            .chain(self.incoming.iter().filter(|(_, t)| t.pc == pc).map(|(k, _)| *k))
            .collect();
        for key in gone {
            self.outgoing.remove(&key);
            self.incoming.remove(&key);
            self.out.push_back(FileOut::Failed {
                transfer: key,
                error: error.clone(),
            });
        }
    }

    /// Transfers under way (for tests and leave).
    pub fn active(&self) -> usize {
        self.outgoing.len() + self.incoming.len()
    }
}
