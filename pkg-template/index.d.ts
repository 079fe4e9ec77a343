/** The SDK version, e.g. `"0.1.0"` (works before `load()`). */
export function version(): string;
/** The signaling protocol version this SDK speaks (works before `load()`). */
export function protocolVersion(): number;
/** Whether this page can make calls: RTCPeerConnection and media devices (a secure context). Works before `load()`. */
export function webrtcSupported(): boolean;

/**
 * Loads and instantiates the SDK's WebAssembly once; later calls return the same Promise.
 * Rejects with `code: 'wasm-load-failed'` (fatal; the message says what URL was fetched and what
 * came back); a failed load may be retried.
 */
export function load(wasm?: string | URL | Request | Response | BufferSource | WebAssembly.Module): Promise<void>;

export type SessionState = 'idle' | 'connecting' | 'joined' | 'reconnecting' | 'left' | 'failed';
export type PeerState = 'new' | 'connecting' | 'connected' | 'reconnecting' | 'failed' | 'closed';
export type LeaveReason = 'left' | 'timeout' | 'kicked';

export type ErrorCode = 'room-full' | 'unauthorized' | 'signaling-unreachable' | 'signaling-closed' | 'invalid-state'
  | 'invalid-argument' | 'protocol-error' | 'server-error' | 'negotiation-failed' | 'media-error'
  | 'bad-peer-signal' | 'stats-unavailable' | 'stats-record-too-large' | 'stats-refused' | 'wasm-load-failed'
  | 'peer-left' | 'channel-closed' | 'cancelled' | 'bad-peer-data' | 'timeout' | 'file-rejected' | 'integrity-error';

/** What `send()` takes, and what `message` gives back: the same kind that was sent. */
export type MessageData = string | ArrayBuffer | ArrayBufferView | Blob | JsonValue;
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

export interface SendOptions {
  /** 'reliable' (default, ordered), 'unreliable' (unordered, no retransmits), or a createChannel label. */
  channel?: string;
  /** Unreliable channels: resolve on the receiving app's ack (`true`) or `false` after `timeoutMs`. */
  ack?: boolean;
  /** With `ack` (default 5000). */
  timeoutMs?: number;
}

export interface ChannelOptions {
  /** Default true. */
  ordered?: boolean;
  /** Unreliable sending: at most this many retransmits (excludes maxPacketLifeTime). */
  maxRetransmits?: number;
  /** Unreliable sending: retransmit for at most this many ms (excludes maxRetransmits). */
  maxPacketLifeTime?: number;
}

export interface BroadcastResult {
  delivered: string[];
  failed: { peerId: string; error: RtcroomError }[];
}

/**
 * Errors are `Error`s with a stable `code` and whether the session is over. Bad arguments are
 * `TypeError`s with `code: 'invalid-argument'` (thrown by a sync method, a rejection from a
 * Promise method; never fatal).
 */
export interface RtcroomError extends Error {
  code: ErrorCode;
  fatal: boolean;
}

export interface RetryOptions {
  initialDelayMs?: number;
  maxDelayMs?: number;
  factor?: number;
  jitter?: number;
  /** Attempts per outage; -1 = forever. Reset after every successful reconnect. */
  maxAttempts?: number;
}

export interface RoomSessionConfig {
  room: string;
  /** Signaling WebSocket URL; default `ws(s)://<page host>/signal`. */
  url?: string;
  iceServers?: RTCIceServer[];
  metadata?: Record<string, unknown>;
  /** JWT for servers that require one. */
  token?: string;
  /** Requested room capacity when this join creates the room. */
  capacity?: number;
  retry?: RetryOptions;
  ice?: { maxRestarts?: number; disconnectedGraceMs?: number; restartTimeoutMs?: number };
  heartbeatIntervalMs?: number;
  heartbeatTimeoutMs?: number;
  /** How long one signaling connection attempt may take to open (ms, default 10000). */
  connectTimeoutMs?: number;
  /** Connection attempts before join() rejects with `signaling-unreachable`. */
  joinAttempts?: number;
  /**
   * Signaling other than a WebSocket to `url`: 'shared-worker' (serverless, same-origin tabs:
   * the server's hub in a SharedWorker; 'broadcast-channel' is its former name) or an object
   * speaking docs/protocol.md frames.
   */
  transport?: 'shared-worker' | 'broadcast-channel' | SignalingTransport;
  /**
   * Stats: with `url`, every peer connection of the call is traced to that rtcstats collector
   * (the trace opens before any RTCPeerConnection exists; `leave()` takes the final getStats,
   * closes the connections, then flushes and closes the trace). With or without `url`, every
   * RemotePeer emits `stats` every `intervalMs` (default 1000).
   */
  stats?: StatsTraceOptions & {
    url?: string;
    /** JWT sent as `?rtcstats-token=` (collectors with a secret). */
    token?: string;
    /** How long join() waits for the collector before going on without it (default 5000). */
    connectTimeoutMs?: number;
    /** How long leave() waits for the trace to be flushed (default 1000); it keeps flushing after. */
    leaveFlushMs?: number;
    /** Trace `navigator.mediaDevices` calls made during the call (default true; see StatsTrace.traceMediaDevices). */
    mediaDevices?: boolean;
  };
  /** Called with every RTCPeerConnection the session makes, before it is used. */
  onPeerConnection?: (pc: RTCPeerConnection, configuration: RTCConfiguration, peerId: string) => void;
}

export interface StatsTraceOptions {
  /** getStats period once a connection is connected (ms, default 1000; 0 = first and final only). */
  intervalMs?: number;
  /** Messages held while the collector is unreachable (default 2000); overflow is counted and reported as a `:traceOverflow` event. */
  maxBuffered?: number;
  /** Reconnect backoff (default 500 ms doubling to 30 s). */
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  /** How long close() keeps delivering what is held (default 5000). */
  closeGraceMs?: number;
  /** When a message counts as delivered: collector acks, a drained socket, or whichever comes (default 'auto'). */
  ackMode?: 'auto' | 'required' | 'never';
  /**
   * Largest record in bytes of JSON (default 524288 = 512 KiB, at least 1024; getStats counted
   * by its raw report). A larger one (a huge `event()` or SDP) is replaced by a `:traceTooLarge`
   * marker and reported as a `stats-record-too-large` error; the trace goes on. Keep it below
   * the collector's largest message (rtcroom-server: `--rtcstats-max-frame-bytes`, 1 MiB).
   */
  maxRecordBytes?: number;
}

export interface TraceCounters {
  recorded: number;
  /** Dropped on a full buffer (reported as `:traceOverflow`). */
  dropped: number;
  /** Acknowledged by the collector (written, or refused for good: see `refused`). */
  delivered: number;
  lostAtClose: number;
  /** Records over `maxRecordBytes`, replaced by a `:traceTooLarge` marker. */
  tooLarge: number;
  /** Messages the collector refused (rate limit, size, malformed). */
  refused: number;
}

export interface StatsTraceEvents {
  'stats': { generation: number; pcId: string; peerConnection: RTCPeerConnection; summary: PeerStats };
  /**
   * Never fatal. `unauthorized`: the collector refused the token (close 1008); that generation
   * ends. `stats-record-too-large`: a record over `maxRecordBytes` was replaced by a marker.
   * `stats-refused`: the collector refused messages (`["refused", reason, count]`) or ended a
   * dump at its size cap or quota (close 1013); the trace reconnects and goes on.
   */
  'error': RtcroomError;
}

/**
 * rtcstats tracing (dump fileFormat 3). One connect() per call: each starts a new generation,
 * and nothing of an older generation ever reaches a newer one.
 */
export class StatsTrace {
  constructor(options?: StatsTraceOptions);
  /** The generation accepting records, or null. */
  readonly generation: number | null;
  /** Starts a new generation; resolves with it once the socket is open. Rejects with `stats-unavailable` (with `generation`) while the trace keeps retrying. */
  connect(url: string, options?: { token?: string }): Promise<number>;
  /** Ends a generation (default the current one) once everything it holds is delivered. */
  close(generation?: number): Promise<TraceCounters | null>;
  /** Final getStats of every open traced connection of a generation, now. */
  finalStats(generation?: number): Promise<void>;
  /**
   * Traces a peer connection the app made; returns a function that stops tracing it. With
   * `deferClose`, `pc.close()` takes effect after the final getStats (at most ~1 s later):
   * Firefox never settles a getStats started just before a close.
   */
  trace(pc: RTCPeerConnection, configuration?: RTCConfiguration, options?: { deferClose?: boolean }): () => void;
  /** Traces a local stream's tracks (stop, ended, mute, unmute); returns a function that stops. */
  traceStream(stream: MediaStream): () => void;
  /**
   * Traces getUserMedia / getDisplayMedia (call, OnSuccess with the stream's tracks, OnFailure
   * with the error name), enumerateDevices (the device list) and `devicechange` of
   * `mediaDevices` (default `navigator.mediaDevices`) into the generation current at each call.
   * Returns a function that stops; the methods are restored when the last trace stops.
   */
  traceMediaDevices(mediaDevices?: MediaDevices): () => void;
  /** A custom event (`:name`) in the current dump. */
  event(name: string, data?: unknown): void;
  on<K extends keyof StatsTraceEvents>(name: K, listener: (detail: StatsTraceEvents[K]) => void): Unsubscribe;
  once<K extends keyof StatsTraceEvents>(name: K, listener: (detail: StatsTraceEvents[K]) => void): Unsubscribe;
}

/** A custom signaling transport: the SDK sets `onmessage`/`onclose` and calls the methods. */
export interface SignalingTransport {
  send(text: string): void;
  onmessage: ((text: string) => void) | null;
  onclose?: ((info?: { code?: number; reason?: string }) => void) | null;
  connect?(): void | Promise<void>;
  close?(): void;
}

/**
 * Serverless signaling between same-origin tabs: rtcroom-server's hub (compiled to wasm) in a
 * SharedWorker. Needs `SharedWorker` (desktop Chromium, Firefox, Safari 16+).
 */
export class SharedWorkerTransport implements SignalingTransport {
  constructor(options?: {
    /** Where `hub/worker.js` is served (default: next to this module; bundlers resolve it). */
    url?: string | URL;
    /** The SharedWorker's name: tabs with the same name share a hub (default 'rtcroom-hub'). */
    name?: string;
    /** How often this tab tells the hub it is alive (ms, default 1000). */
    heartbeatMs?: number;
    /** Silence after which the hub drops this tab with `peer-left` reason `timeout` (ms, default 5000). */
    timeoutMs?: number;
  });
  readonly url: string | URL | undefined;
  readonly name: string;
  readonly heartbeatMs: number;
  readonly timeoutMs: number;
  send(text: string): void;
  onmessage: ((text: string) => void) | null;
  onclose: ((info?: { code?: number; reason?: string }) => void) | null;
  connect(): void;
  close(): void;
}

/** The former name of SharedWorkerTransport. */
export const BroadcastChannelTransport: typeof SharedWorkerTransport;
export type BroadcastChannelTransport = SharedWorkerTransport;

type Unsubscribe = () => void;

/** The event names each emitter accepts (index.js declares the same lists). */
export type SessionEventName = keyof SessionEvents;
export type PeerEventName = keyof PeerEvents;
export type StatsTraceEventName = keyof StatsTraceEvents;

export interface SessionEvents {
  'state-change': { from: SessionState; to: SessionState; reason: string };
  'peer-joined': { peer: RemotePeer };
  'peer-left': { peer: RemotePeer; reason: LeaveReason };
  'error': RtcroomError;
  /** A message from any peer (also emitted on the peer). */
  'message': { peer: RemotePeer; data: MessageData; channel: string };
}

export interface PeerEvents {
  'stream-added': { stream: MediaStream; role: string };
  'stream-removed': { stream: MediaStream; role: string };
  'state-change': { from: PeerState; to: PeerState };
  'metadata-updated': { metadata: Record<string, unknown> };
  'peer-left': { reason: LeaveReason };
  'app-signal': { data: unknown };
  /** Every `stats.intervalMs` while connected (needs `config.stats`). */
  'stats': PeerStats;
  'message': { data: MessageData; channel: string };
  /** A file offered by this peer: accept() or reject() it (with no listener, offers are rejected). */
  'file': IncomingFile;
}

/** A file on its way, out (`peer.sendFile()`) or in (`incoming.accept()`). */
export class FileTransfer {
  readonly id: number;
  readonly name: string;
  readonly size: number;
  readonly mimeType: string;
  /**
   * Once the receiver verified the SHA-256 (hex): the sender gets `{ sha256 }`, the receiver
   * `{ blob, sha256 }`. Rejects with `file-rejected`, `cancelled`, `peer-left` or `integrity-error`.
   */
  readonly done: Promise<{ sha256: string; blob?: Blob }>;
  /** Stops it on both sides; `done` rejects with `cancelled`. */
  cancel(reason?: string): void;
  /** `progress`: `{ bytes, total }`, monotone, reaching `total` on both sides. */
  on(name: 'progress', listener: (detail: { bytes: number; total: number }) => void): Unsubscribe;
  once(name: 'progress', listener: (detail: { bytes: number; total: number }) => void): Unsubscribe;
}

export interface IncomingFile {
  readonly id: number;
  readonly name: string;
  readonly size: number;
  readonly mimeType: string;
  /** Starts the transfer; its `done` resolves `{ blob, sha256 }`. */
  accept(): FileTransfer;
  /** The sender's `done` rejects with `file-rejected`. */
  reject(reason?: string): void;
}

export interface MediaStats {
  inboundBitrateBps: number | null;
  outboundBitrateBps: number | null;
  /** 0..1 */
  inboundPacketLoss: number | null;
  /** 0..1, as the remote side reports it */
  outboundPacketLoss: number | null;
  jitterMs: number | null;
  inboundFps: number | null;
  outboundFps: number | null;
}

export interface PeerStats {
  localCandidateType: 'host' | 'srflx' | 'prflx' | 'relay' | null;
  remoteCandidateType: 'host' | 'srflx' | 'prflx' | 'relay' | null;
  rttMs: number | null;
  audio: MediaStats;
  video: MediaStats;
}

export class RemotePeer {
  readonly id: string;
  readonly state: PeerState;
  readonly metadata: Record<string, unknown> | null;
  /** The native RTCPeerConnection (null once the peer left). */
  readonly peerConnection: RTCPeerConnection | null;
  streams(): { stream: MediaStream; role: string }[];
  /** Connection summary; rates compare with the previous call. */
  stats(): Promise<PeerStats>;
  restartIce(): void;
  /**
   * Sends `data` (any size: chunked and reassembled). Reliable channels resolve `true` once this
   * peer's app had the `message` event, and reject with `peer-left`, `channel-closed` or
   * `cancelled`; unreliable ones resolve when the data left the queue, or with `ack`, `true` on
   * the ack and `false` after `timeoutMs`. Un-awaited sends go out in order.
   */
  send(data: MessageData, options?: SendOptions): Promise<boolean>;
  /**
   * Offers a File or Blob (any size; streamed, memory bounded on both sides; SHA-256 checked on
   * arrival). `signal` cancels it.
   */
  sendFile(file: Blob, options?: { name?: string; mimeType?: string; signal?: AbortSignal }): FileTransfer;
  /** Any other event name throws a TypeError (`invalid-argument`). */
  on<K extends PeerEventName>(name: K, listener: (detail: PeerEvents[K]) => void): Unsubscribe;
  once<K extends PeerEventName>(name: K, listener: (detail: PeerEvents[K]) => void): Unsubscribe;
}

export class RoomSession {
  constructor(config: RoomSessionConfig);
  readonly state: SessionState;
  readonly localPeerId: string | null;
  readonly room: string;
  peers(): RemotePeer[];
  peer(id: string): RemotePeer | null;
  addStream(stream: MediaStream, options?: { role?: string }): void;
  removeStream(stream: MediaStream): void;
  updateMetadata(metadata: Record<string, unknown>): void;
  /** `send()` to every peer in the room. */
  broadcast(data: MessageData, options?: SendOptions): Promise<BroadcastResult>;
  /**
   * A data channel on every peer connection, now and later, negotiated with an id from its
   * label (both sides create it). The options govern this side's sending direction.
   */
  createChannel(label: string, options?: ChannelOptions): void;
  /**
   * Resolves once joined (at once if already joined); while a join is pending, returns the same
   * Promise; after `left` / `failed` rejects with `invalid-state`.
   */
  join(): Promise<void>;
  leave(options?: { stopTracks?: boolean }): Promise<void>;
  /** Any other event name throws a TypeError (`invalid-argument`). */
  on<K extends SessionEventName>(name: K, listener: (detail: SessionEvents[K]) => void): Unsubscribe;
  once<K extends SessionEventName>(name: K, listener: (detail: SessionEvents[K]) => void): Unsubscribe;
}
