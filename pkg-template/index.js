// rtcroom: the package entry. The wasm half (RoomCore) does signaling, negotiation and recovery;
// this file adds the JS-shaped API on top: events with on() → unsubscribe, RemotePeer objects,
// and lazy loading of the wasm on first join().
import init, { RoomCore } from './rtcroom.js';

export { version, protocolVersion, webrtcSupported } from './rtcroom.js';

let loading = null;

/**
 * Loads and instantiates the SDK's WebAssembly once; later calls return the same Promise.
 * `join()` calls it for you. Pass a URL (or Response / bytes) to serve `rtcroom_bg.wasm` from
 * elsewhere; by default it is fetched next to this file (bundlers resolve that).
 */
export function load(wasm) {
  if (!loading) {
    loading = init(wasm === undefined ? undefined : { module_or_path: wasm }).then(() => undefined);
    loading.catch(() => { loading = null; }); // a failed load may be retried
  }
  return loading;
}

const randomId = () => Math.random().toString(36).slice(2, 12).padEnd(10, '0');

/**
 * Serverless signaling between same-origin tabs (demos, tests): speaks the rtcroom-server
 * protocol to the SDK and plays the server's part over a BroadcastChannel per room. Pass
 * `transport: 'broadcast-channel'` (or an instance) to RoomSession. Peers that stop sending
 * heartbeats for `timeoutMs` are reported as `peer-left` with reason `timeout`.
 */
export class BroadcastChannelTransport {
  onmessage = null;
  onclose = null;
  #channel = null;
  #room = null;
  #id = null;
  #metadata = undefined;
  #joined = false;
  #pending = [];          // frames for the SDK before it has its `joined`
  #peers = new Map();     // id → { metadata, seen }
  #timer = null;

  constructor({ prefix = 'rtcroom', heartbeatMs = 1000, timeoutMs = 5000 } = {}) {
    this.prefix = prefix;
    this.heartbeatMs = heartbeatMs;
    this.timeoutMs = timeoutMs;
  }

  connect() {}

  send(text) {
    const msg = JSON.parse(text);
    switch (msg.type) {
      case 'join': return this.#join(msg);
      case 'signal': return this.#post({ t: 'signal', to: msg.to, payload: msg.payload });
      case 'metadata': this.#metadata = msg.metadata; return this.#post({ t: 'metadata', metadata: msg.metadata });
      case 'leave': this.#post({ t: 'leave' }); return this.#stop();
      case 'ping': return this.#deliver({ type: 'pong', ts: msg.ts });
      default: return this.#deliver({ type: 'error', code: 'unknown-type', message: `unknown frame type ${msg.type}`, fatal: false });
    }
  }

  close() { this.#stop(); }

  #join(msg) {
    const resumed = Boolean(msg.resume) && msg.resume === this.#id;
    this.#room = msg.room;
    this.#id = resumed ? this.#id : randomId();
    this.#metadata = msg.metadata;
    if (!this.#channel) {
      this.#channel = new BroadcastChannel(`${this.prefix}:${this.#room}`);
      this.#channel.onmessage = (e) => this.#receive(e.data);
      this.#timer = setInterval(() => this.#tick(), this.heartbeatMs);
    }
    this.#post({ t: 'hello', metadata: this.#metadata });
    // Give the members a moment to answer, then report the room as the server would.
    setTimeout(() => {
      const peers = [...this.#peers].map(([id, p]) => ({ id, metadata: p.metadata }));
      this.#joined = true;
      this.#emit({ type: 'joined', version: 1, room: this.#room, peerId: this.#id, resumeToken: this.#id, peers, capacity: 50, resumed });
      for (const frame of this.#pending.splice(0)) this.#emit(frame);
    }, 150);
  }

  #receive(m) {
    if (!m || m.from === this.#id || !this.#id) return;
    const known = this.#peers.get(m.from);
    if (known) known.seen = Date.now();
    switch (m.t) {
      case 'hello':
        this.#post({ t: 'here', to: m.from, metadata: this.#metadata });
        if (!known) {
          this.#peers.set(m.from, { metadata: m.metadata, seen: Date.now() });
          this.#deliver({ type: 'peer-joined', peer: { id: m.from, metadata: m.metadata } });
        }
        break;
      case 'here':
      case 'alive':
        if (!known && (m.t === 'here' ? m.to === this.#id : this.#joined)) {
          this.#peers.set(m.from, { metadata: m.metadata, seen: Date.now() });
          if (this.#joined) this.#deliver({ type: 'peer-joined', peer: { id: m.from, metadata: m.metadata } });
        }
        break;
      case 'signal':
        if (m.to === this.#id && known) this.#deliver({ type: 'signal', from: m.from, payload: m.payload });
        break;
      case 'metadata':
        if (known) {
          known.metadata = m.metadata;
          this.#deliver({ type: 'metadata-updated', peerId: m.from, metadata: m.metadata });
        }
        break;
      case 'leave':
        this.#drop(m.from, 'left');
        break;
    }
  }

  #tick() {
    this.#post({ t: 'alive', metadata: this.#metadata });
    const now = Date.now();
    for (const [id, p] of this.#peers) if (now - p.seen > this.timeoutMs) this.#drop(id, 'timeout');
  }

  #drop(id, reason) {
    if (this.#peers.delete(id)) this.#deliver({ type: 'peer-left', peerId: id, reason });
  }

  #post(m) { this.#channel?.postMessage({ ...m, from: this.#id }); }

  #deliver(frame) {
    if (this.#joined) this.#emit(frame);
    else this.#pending.push(frame);
  }

  #emit(frame) { this.onmessage?.(JSON.stringify(frame)); }

  #stop() {
    clearInterval(this.#timer);
    this.#channel?.close();
    this.#channel = null;
    this.#joined = false;
    this.#peers.clear();
  }
}

/** Minimal typed-event base: on(name, cb) returns an unsubscribe function. */
class Emitter {
  #listeners = new Map();

  on(name, listener) {
    if (typeof listener !== 'function') throw new TypeError('listener must be a function');
    let set = this.#listeners.get(name);
    if (!set) this.#listeners.set(name, (set = new Set()));
    const entry = { listener }; // the same function may be added twice and removed once each
    set.add(entry);
    return () => { set.delete(entry); };
  }

  /** Like on(), but removes itself after the first event. */
  once(name, listener) {
    const off = this.on(name, (detail) => { off(); listener(detail); });
    return off;
  }

  _emit(name, detail) {
    const set = this.#listeners.get(name);
    if (!set) return;
    for (const { listener } of [...set]) {
      try {
        listener(detail);
      } catch (err) {
        // A throwing listener must not break the SDK or the other listeners.
        queueMicrotask(() => { throw err; });
      }
    }
  }
}

/** A participant of the room: `stream-added`, `stream-removed`, `state-change`, `metadata-updated`, `peer-left`. */
export class RemotePeer extends Emitter {
  #core;

  constructor(id, core) {
    super();
    this.id = id;
    this.#core = core;
  }

  /** 'new' | 'connecting' | 'connected' | 'reconnecting' | 'failed' | 'closed' */
  get state() { return this.#core?.peerState(this.id) ?? 'closed'; }

  get metadata() { return this.#core?.peerMetadata(this.id) ?? null; }

  /** The escape hatch: the native RTCPeerConnection (null once the peer left). */
  get peerConnection() { return this.#core?.peerConnection(this.id) ?? null; }

  /** Streams received from this peer: [{ stream, role }]. */
  streams() { return this.#core ? this.#core.peerStreams(this.id) : []; }

  /**
   * What a UI shows about this connection: { localCandidateType, remoteCandidateType, rttMs,
   * audio, video }, each medium with inbound/outbound bitrate (bps), packet loss (0..1),
   * jitterMs and fps. Rates compare with the previous call, so call it periodically.
   */
  stats() {
    return this.#core
      ? this.#core.peerStats(this.id)
      : Promise.reject(Object.assign(new Error('this peer has left'), { code: 'invalid-state', fatal: false }));
  }

  /** Restarts ICE now (recovery does it by itself). */
  restartIce() { this.#core?.restartIce(this.id); }

  _detach() { this.#core = null; }
}

/**
 * A room session: `new RoomSession({ room, url?, iceServers?, metadata?, token?, ... })`.
 * Session events: `state-change`, `peer-joined`, `peer-left`, `error`.
 */
export class RoomSession extends Emitter {
  #config;
  #core = null;
  #peers = new Map();
  #streams = new Map(); // registered before the core exists
  #state = 'idle';

  constructor(config) {
    super();
    if (!config || typeof config.room !== 'string') throw new TypeError('RoomSession needs { room: string }');
    this.#config = { ...config };
    if (this.#config.transport === 'broadcast-channel') this.#config.transport = new BroadcastChannelTransport();
  }

  get state() { return this.#core ? this.#core.state : this.#state; }

  get localPeerId() { return this.#core?.localPeerId ?? null; }

  get room() { return this.#config.room; }

  /** RemotePeer objects currently in the room. */
  peers() { return [...this.#peers.values()]; }

  peer(id) { return this.#peers.get(id) ?? null; }

  /** Sends `stream` to everyone, before or after join(); `role` labels it remotely (default 'camera'). */
  addStream(stream, { role = 'camera' } = {}) {
    if (this.#core) this.#core.addStream(stream, String(role));
    else this.#streams.set(stream, String(role));
  }

  removeStream(stream) {
    if (this.#core) this.#core.removeStream(stream);
    else this.#streams.delete(stream);
  }

  updateMetadata(metadata) {
    this.#config.metadata = metadata;
    this.#core?.updateMetadata(metadata);
  }

  /** Resolves when joined; rejects with an Error carrying `code` and `fatal`. */
  async join() {
    if (!this.#core) {
      await load();
      if (this.#core) return this.#core.join();
      if (this.#state !== 'idle') throw Object.assign(new Error('this session already left'), { code: 'invalid-state', fatal: false });
      this.#core = new RoomCore(this.#config, (peerId, name, detail) => this.#dispatch(peerId, name, detail));
      for (const [stream, role] of this.#streams) this.#core.addStream(stream, role);
      this.#streams.clear();
    }
    return this.#core.join();
  }

  /** Leaves the room. `{ stopTracks: true }` also stops the tracks given to addStream. */
  async leave({ stopTracks = false } = {}) {
    if (!this.#core) {
      this.#state = 'left';
      return;
    }
    await this.#core.leave(stopTracks);
  }

  #dispatch(peerId, name, detail) {
    if (peerId === null) {
      if (name === 'peer-joined') {
        const peer = new RemotePeer(detail.peerId, this.#core);
        this.#peers.set(peer.id, peer);
        this._emit('peer-joined', { peer });
      } else if (name === 'peer-left') {
        const peer = this.#peers.get(detail.peerId);
        if (!peer) return;
        this.#peers.delete(peer.id);
        peer._detach();
        this._emit('peer-left', { peer, reason: detail.reason });
      } else {
        this._emit(name, detail);
      }
      return;
    }
    const peer = this.#peers.get(peerId);
    if (peer) peer._emit(name, detail);
  }
}
