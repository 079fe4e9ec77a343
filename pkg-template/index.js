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
