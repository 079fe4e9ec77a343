//! What goes into a [`Room`](super::Room) and what comes out: the one way in and the one way
//! out of the sans-IO room.
//!
//! Inputs are app calls, transport and browser events, the results of browser operations the
//! room asked for, and ticks of its one timer. Outputs are a wake-up time, transport sends,
//! browser operations (each with an id when its result comes back as an input), stats-trace
//! socket actions, and typed events for the app. Browser objects never cross this line: peer
//! connections, streams and tracks are named by ids the executor maps to its JS objects.

use rtcroom_protocol::{ClientMsg, IceCandidate, LeaveReason, ServerMsg, SessionDescription, SignalPayload};

use crate::{
    data::{AckMode, ChannelId, ChannelSpec, DataOut, Handle, SendId},
    error::SdkError,
    peer::lifecycle::PeerState,
    room::session::SessionState,
    stats::{Action as TraceAction, Counters, Summary, Value},
};

/// A peer connection, unique for the life of the room (a peer that leaves and comes back
/// gets a new one).
pub type PcId = u32;
/// A browser operation whose result comes back as [`Input::Done`].
pub type OpId = u32;
/// An app request answered by a [`RoomEvent`] carrying the same id (e.g. `peer.stats()`).
pub type RequestId = u32;

/// Values carried through the room untouched (metadata, app data, signal payloads), and how a
/// signal payload between two SDKs is read from and written to one. The browser build uses JS
/// values; native tests use JSON values.
pub trait Payload: Clone + std::fmt::Debug {
    fn decode(&self) -> Option<SignalPayload<Self>>;
    fn encode(payload: SignalPayload<Self>) -> Self;
}

/// A local stream the app gave to `addStream`: its tracks go to every peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalStream {
    pub id: String,
    pub role: String,
    /// `(track id, kind)`.
    pub tracks: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub enum Input<J> {
    // ---- the app
    /// `join()`. `client_info` heads the stats trace's dump (what the page knows of itself).
    Join {
        client_info: Value,
    },
    /// `leave()`: final stats, bye, every peer connection closed, then the trace flushed.
    Leave {
        stop_tracks: bool,
    },
    AddStream(LocalStream),
    RemoveStream {
        stream: String,
    },
    UpdateMetadata(J),
    RestartIce {
        peer: String,
    },
    /// `peer.stats()`: answered by [`RoomEvent::StatsReply`].
    PeerStats {
        peer: String,
        request: RequestId,
    },
    /// A record made outside the room (getUserMedia, track events, custom events; with `pc`,
    /// a call or event of an app's own traced peer connection), for the generation that was
    /// current when it happened.
    TraceRecord {
        generation: u32,
        pc: Option<PcId>,
        method: String,
        value: Value,
        extra: Vec<Value>,
    },
    // ---- data
    /// `peer.send()`: `len` bytes the executor holds as `handle`, on the channel `label`;
    /// settled by [`RoomEvent::SendDone`].
    Send {
        peer: String,
        label: String,
        send: SendId,
        handle: Handle,
        kind: u8,
        len: u32,
        ack: AckMode,
    },
    /// `session.createChannel()`: on every peer connection, now and later.
    CreateChannel(ChannelSpec),
    /// Something happened on a data channel of a peer connection.
    Channel {
        pc: PcId,
        channel: ChannelId,
        event: ChannelEvent,
    },
    /// `peer.sendFile()`: `transfer` is the executor's id for it (below `files::INCOMING`).
    SendFile {
        peer: String,
        transfer: u32,
        size: u64,
        name: String,
        mime: String,
    },
    /// Bytes read for [`Output::ReadFile`]: held by the executor as `handle`, and here to hash.
    FileSlice {
        transfer: u32,
        offset: u64,
        handle: Handle,
        bytes: Vec<u8>,
    },
    /// A read for [`Output::ReadFile`] failed (the file changed or went away).
    FileReadFailed {
        transfer: u32,
        why: String,
    },
    /// The app accepted an offered file.
    FileAccept {
        transfer: u32,
    },
    /// The app rejected an offer, or cancelled a transfer.
    FileCancel {
        transfer: u32,
        reason: String,
    },
    /// The app's listeners ran for a message that asked for an ack ([`RoomEvent::Message`]).
    Delivered {
        pc: PcId,
        channel: ChannelId,
        seq: u32,
    },
    // ---- `StatsTrace`: traces of the app's own peer connections, on the same code
    /// Starts a trace generation (a new dump) at the collector `url`, closing the current one;
    /// [`RoomEvent::TraceOpened`] or [`RoomEvent::TraceOpenFailed`] follows.
    TraceConnect {
        client_info: Value,
        url: String,
    },
    /// Ends a generation: final samples, then delivery; [`RoomEvent::TraceEnded`] follows.
    TraceClose {
        generation: u32,
    },
    /// Final samples of a generation's open pcs now; [`RoomEvent::TraceFinalsDone`] follows.
    TraceFinal {
        generation: u32,
    },
    /// Traces an app's pc (`pc`: an id the executor picked outside the room's own) in
    /// `generation`, if that generation accepts records; it is sampled like the room's.
    TraceAttach {
        pc: PcId,
        generation: u32,
        configuration: Value,
    },
    /// An app's traced pc is about to close: its final sample, then [`RoomEvent::PcClosed`].
    TraceClosing {
        pc: PcId,
    },
    // ---- the signaling transport (events of an older transport are ignored)
    TransportOpen {
        transport: u32,
    },
    TransportMessage {
        transport: u32,
        msg: ServerMsg<J>,
    },
    /// A frame that is not a server frame.
    TransportGarbage {
        transport: u32,
    },
    TransportClosed {
        transport: u32,
        code: u16,
        reason: String,
    },
    // ---- the browser
    Pc {
        pc: PcId,
        event: PcEvent,
    },
    Done {
        op: OpId,
        result: Result<OpOutput, String>,
    },
    /// Events of the stats trace's collector sockets.
    TraceSocket(TraceSocketEvent),
    // ---- time
    /// The timer from [`Output::Timeout`] fired (early or late ticks are harmless).
    Tick,
}

/// What an `RTCPeerConnection` reports.
#[derive(Debug, Clone, PartialEq)]
pub enum PcEvent {
    NegotiationNeeded,
    /// A local candidate (`None`: gathering is complete).
    IceCandidate(Option<IceCandidate>),
    /// A remote track arrived in stream `stream`.
    Track {
        stream: String,
        track: String,
        kind: String,
    },
    /// A remote stream lost its last track.
    StreamEmptied {
        stream: String,
    },
    ConnectionState(String),
    SignalingState(String),
    IceConnectionState(String),
    IceGatheringState(String),
}

/// What a data channel reports.
#[derive(Debug, Clone, PartialEq)]
pub enum ChannelEvent {
    /// Open; the remote's `maxMessageSize` (`pc.sctp`), when the browser says.
    Open {
        max_message_size: Option<f64>,
    },
    Closed,
    /// Its `bufferedAmount` now (on `bufferedamountlow`, or asked by [`DataOut::Poll`]).
    Buffered(f64),
    /// A message: its first bytes (up to a data header) and the executor's handle for the
    /// rest (`len` bytes), if any.
    Frame {
        head: Vec<u8>,
        part: Option<Handle>,
        len: u32,
    },
}

/// The result of a browser operation.
#[derive(Debug, Clone, PartialEq)]
pub enum OpOutput {
    Empty,
    /// `setLocalDescription()` applied this description.
    LocalDescription(SessionDescription),
    /// `getStats()`, as a JSON-like value (the report's entries by id).
    Stats(Value),
}

#[derive(Debug, Clone, PartialEq)]
pub enum TraceSocketEvent {
    Open {
        socket: u32,
    },
    Message {
        socket: u32,
        text: String,
    },
    /// The socket closed (or failed to open: code 1006).
    Closed {
        socket: u32,
        code: u16,
        reason: String,
    },
    /// The socket's `bufferedAmount` reached zero.
    Drained {
        socket: u32,
    },
}

/// What the room asks the executor to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output<J> {
    /// Feed [`Input::Tick`] at this time (ms; infinite: no timer). Always the last output of a
    /// [`Room::poll_output`](super::Room::poll_output) round.
    Timeout(f64),
    Transport(TransportOp<J>),
    Browser {
        pc: PcId,
        op: Option<OpId>,
        call: BrowserCall,
    },
    Trace(TraceAction),
    /// Data channel work: send a chunk or an ack, read a buffered amount, free handles.
    /// ([`DataOut::Deliver`], `Settled` and `Refused` come as events instead.)
    Data(DataOut),
    /// Read bytes `offset..offset + len` of the outgoing file `transfer`; answer with
    /// [`Input::FileSlice`] (or [`Input::FileReadFailed`]).
    ReadFile {
        transfer: u32,
        offset: u64,
        len: u32,
    },
    /// Stop the tracks of these local streams (`leave({ stopTracks: true })`).
    StopTracks {
        streams: Vec<String>,
    },
    Event(RoomEvent<J>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum TransportOp<J> {
    /// Open transport `transport` (a new one; any older one is closed first).
    Open {
        transport: u32,
    },
    Send(ClientMsg<J>),
    Close,
}

/// A call on one peer connection. Calls with an op id report back with [`Input::Done`];
/// calls on one pc run in the order they are given (the browser's operations chain).
#[derive(Debug, Clone, PartialEq)]
pub enum BrowserCall {
    /// Make the `RTCPeerConnection` for `peer` (with the pre-negotiated data channel) and
    /// listen to it. Its result says whether that worked.
    Create {
        peer: String,
    },
    Close,
    /// `setLocalDescription()` without arguments; the result is the applied description.
    SetLocalDescription,
    SetRemoteDescription(SessionDescription),
    AddIceCandidate(Option<IceCandidate>),
    AddTrack {
        stream: String,
        track: String,
    },
    /// Remove the sender of `track`.
    RemoveTrack {
        track: String,
    },
    RestartIce,
    GetStats,
    /// A pre-negotiated data channel (`negotiated: true` with the spec's id).
    CreateChannel(ChannelSpec),
}

/// Events for the app, typed.
#[derive(Debug, Clone, PartialEq)]
pub enum RoomEvent<J> {
    StateChange {
        from: SessionState,
        to: SessionState,
        reason: &'static str,
    },
    /// `join()` settles.
    Joined(Result<(), SdkError>),
    /// `leave()` finished: peer connections closed, the trace flushed (or given up on).
    LeaveDone,
    /// The stats trace of this call is open (or gave up waiting): `generation` names it for
    /// [`Input::TraceRecord`].
    TraceStarted {
        generation: u32,
    },
    PeerJoined {
        peer: String,
        metadata: Option<J>,
    },
    PeerLeft {
        peer: String,
        reason: LeaveReason,
    },
    PeerState {
        peer: String,
        from: PeerState,
        to: PeerState,
    },
    StreamAdded {
        peer: String,
        pc: PcId,
        stream: String,
        role: String,
    },
    StreamRemoved {
        peer: String,
        pc: PcId,
        stream: String,
        role: String,
    },
    MetadataUpdated {
        peer: String,
        metadata: J,
    },
    AppSignal {
        peer: String,
        data: J,
    },
    /// A periodic sample (with the `stats` option).
    Stats {
        peer: String,
        summary: Box<Summary>,
    },
    /// A periodic sample of an app's traced pc: its generation and trace id ("PC_0").
    PcStats {
        pc: PcId,
        trace: Option<(u32, String)>,
        summary: Box<Summary>,
    },
    /// An app's pc may close now: its final sample and `close` are recorded.
    PcClosed {
        pc: PcId,
    },
    /// A generation's socket opened (the first time).
    TraceOpened {
        generation: u32,
    },
    /// A generation's socket failed before it ever opened (it retries unless refused).
    TraceOpenFailed {
        generation: u32,
        error: SdkError,
    },
    /// A generation ended: what it recorded, delivered, lost.
    TraceEnded {
        generation: u32,
        counters: Counters,
    },
    TraceFinalsDone {
        generation: u32,
    },
    StatsReply {
        request: RequestId,
        result: Result<Box<Summary>, SdkError>,
    },
    /// A message from `peer` on channel `label`: its chunks' handles in order. With `ack`,
    /// feed [`Input::Delivered`] with it once the app's listeners ran.
    Message {
        peer: String,
        label: String,
        kind: u8,
        parts: Vec<Handle>,
        ack: Option<(PcId, ChannelId, u32)>,
    },
    /// A peer offers a file: `transfer` names it for [`Input::FileAccept`] / `FileCancel`.
    FileOffered {
        peer: String,
        transfer: u32,
        name: String,
        size: u64,
        mime: String,
    },
    FileProgress {
        transfer: u32,
        bytes: u64,
        total: u64,
    },
    /// An incoming chunk, in order: the executor keeps it for the file's Blob.
    FileChunk {
        transfer: u32,
        handle: Handle,
    },
    /// Verified on both sides: the content's SHA-256.
    FileDone {
        transfer: u32,
        sha256: [u8; 32],
    },
    FileFailed {
        transfer: u32,
        error: SdkError,
    },
    /// A `send()` settles: `Ok(true)` delivered (or handed over), `Ok(false)` no ack in time.
    SendDone {
        send: SendId,
        result: Result<bool, SdkError>,
    },
    Error(SdkError),
}
