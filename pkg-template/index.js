// rtcroom: the package entry. The wasm half (RoomCore) does signaling, negotiation and recovery;
// this file adds the JS-shaped API on top: events with on() → unsubscribe, RemotePeer objects,
// arguments checked at the edge, and lazy loading of the wasm on first join().
import init, { RoomCore } from './rtcroom.js';

// Written in by the build (./run build) from Cargo.toml's version and protocol/src/lib.rs's
// PROTOCOL_VERSION, so feature detection works before (and without) the wasm.
const VERSION = '__VERSION__';
const PROTOCOL_VERSION = Number('__PROTOCOL_VERSION__');

/** The SDK version, e.g. `"0.1.0"`. */
export function version() { return VERSION; }

/** The signaling protocol version this SDK speaks. */
export function protocolVersion() { return PROTOCOL_VERSION; }

/**
 * Whether this page can make calls: `RTCPeerConnection` exists and media devices are reachable
 * (media devices need a secure context: https or localhost).
 */
export function webrtcSupported() {
  const g = globalThis;
  return g.RTCPeerConnection !== undefined && g.navigator?.mediaDevices !== undefined;
}

/** `Error`s with the SDK's `code` and `fatal`; bad arguments are `TypeError`s. */
const sdkError = (message, code, fatal = false, Type = Error) => Object.assign(new Type(message), { code, fatal });
const invalidArgument = (message) => sdkError(message, 'invalid-argument', false, TypeError);
const invalidState = (message) => sdkError(message, 'invalid-state');

let loading = null;
let loaded = false;

const WASM_ADVICE = 'Serve rtcroom_bg.wasm from the rtcroom package at that URL (with a bundler: make it '
  + 'copy .wasm files as assets), or pass its URL to load(url) before join().';

const wasmLoadFailed = (message, cause) => Object.assign(new Error(`cannot load the rtcroom WebAssembly: ${message}`, { cause }), { code: 'wasm-load-failed', fatal: true });

/**
 * `wasm` as init() takes it, checked: a URL (string, URL, Request; default next to this file,
 * where bundlers put it) is fetched here so that a failure says what came back. A Response must
 * be a WebAssembly file (magic bytes 00 61 73 6d).
 */
async function wasmSource(wasm) {
  let response = wasm;
  let url = wasm?.url;
  const isRequest = typeof Request === 'function' && wasm instanceof Request;
  if (wasm === undefined || typeof wasm === 'string' || wasm instanceof URL || isRequest) {
    const target = wasm ?? new URL('rtcroom_bg.wasm', import.meta.url);
    url = isRequest ? wasm.url : String(target);
    try {
      response = await fetch(target);
    } catch (err) {
      throw wasmLoadFailed(`fetching ${url} failed (${err?.message ?? err}). ${WASM_ADVICE}`, err);
    }
  }
  if (typeof Response !== 'function' || !(response instanceof Response)) return { source: wasm, url: null };
  url = response.url || url;
  const type = response.headers.get('content-type') || '(none)';
  // The normal case streams: compiling starts while the bytes arrive.
  if (response.ok && /^application\/wasm\b/i.test(type)) return { source: response, url };
  let bytes;
  try {
    bytes = new Uint8Array(await response.arrayBuffer());
  } catch (err) {
    throw wasmLoadFailed(`reading ${url} failed (${err?.message ?? err}). ${WASM_ADVICE}`, err);
  }
  const magic = [0x00, 0x61, 0x73, 0x6d];
  if (response.ok && magic.every((b, i) => bytes[i] === b)) return { source: bytes, url }; // served with another type
  const head = bytes.subarray(0, 16);
  const hex = [...head.subarray(0, 8)].map((b) => b.toString(16).padStart(2, '0')).join(' ');
  const text = new TextDecoder().decode(head).replace(/[^\x20-\x7e]+/g, ' ').trim();
  throw wasmLoadFailed(`${url} answered HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ''}, `
    + `content-type ${type}, ${bytes.length} bytes starting ${hex || '(empty)'}${text ? ` ("${text}")` : ''}: `
    + `not WebAssembly (which starts 00 61 73 6d). ${WASM_ADVICE}`);
}

async function instantiate(wasm) {
  const { source, url } = await wasmSource(wasm);
  try {
    await init(source === undefined ? undefined : { module_or_path: source });
  } catch (err) {
    throw wasmLoadFailed(`${url ? `${url}: ` : ''}${err?.message ?? err}. ${WASM_ADVICE}`, err);
  }
}

/**
 * Loads and instantiates the SDK's WebAssembly once; later calls return the same Promise.
 * `join()` calls it for you. Pass a URL (or Request / Response / bytes / Module) to serve
 * `rtcroom_bg.wasm` from elsewhere; by default it is fetched next to this file (bundlers resolve
 * that). Rejects with `code: 'wasm-load-failed'` (saying what was fetched and what came back);
 * a failed load may be retried.
 */
export function load(wasm) {
  if (!loading) {
    loading = instantiate(wasm).then(() => { loaded = true; });
    loading.catch(() => { loading = null; });
  }
  return loading;
}


const randomId = () => Math.random().toString(36).slice(2, 12).padEnd(10, '0');

/**
 * Serverless signaling between same-origin tabs (demos, tests, local apps): rtcroom-server's own
 * hub (the rtcroom-hub crate, compiled to WebAssembly) runs in a SharedWorker that every tab
 * connects to, so rooms, presence, limits, resume and timeouts behave exactly as on the server.
 * Pass `transport: 'shared-worker'` (or `'broadcast-channel'`, its former name) or an instance
 * to RoomSession. The transport sends a sign of life every `heartbeatMs`; a tab silent for
 * `timeoutMs` (closed, crashed, frozen) is reported to the others as `peer-left` with reason
 * `timeout`. `url` overrides where the worker script is served (default: `hub/worker.js` next
 * to this file, which bundlers resolve).
 */
export class SharedWorkerTransport {
  onmessage = null;
  onclose = null;
  #port = null;
  #timer = null;

  constructor({ url, name = 'rtcroom-hub', heartbeatMs = 1000, timeoutMs = 5000 } = {}) {
    this.url = url;
    this.name = name;
    this.heartbeatMs = heartbeatMs;
    this.timeoutMs = timeoutMs;
  }

  connect() {
    this.close(); // a reconnect: the hub lets the old connection go at once
    const options = { type: 'module', name: this.name };
    // Written out so that bundlers see the worker and emit it with its wasm.
    const worker = this.url
      ? new SharedWorker(this.url, options)
      : new SharedWorker(new URL('./hub/worker.js', import.meta.url), options);
    const port = (this.#port = worker.port);
    const closed = (code, reason) => {
      if (this.#port !== port) return;
      this.#end();
      this.onclose?.({ code, reason });
    };
    port.onmessage = ({ data }) => {
      if (this.#port !== port) return;
      if (typeof data === 'string') this.onmessage?.(data);
      else if (data?.ping) port.postMessage({ pong: 1 });
      else if (data?.close) closed(data.close, data.reason ?? '');
    };
    worker.onerror = (e) => closed(1006, `the rtcroom hub worker failed: ${e?.message || 'it did not start'}`);
    port.postMessage({ hello: { timeoutMs: this.timeoutMs } });
    this.#timer = setInterval(() => port.postMessage({ alive: 1 }), this.heartbeatMs);
  }

  send(text) { this.#port?.postMessage(String(text)); }

  close() {
    this.#port?.postMessage({ bye: 1 });
    this.#end();
  }

  #end() {
    clearInterval(this.#timer);
    this.#port?.close();
    this.#port = null;
  }
}

/** The former name of {@link SharedWorkerTransport}. */
export const BroadcastChannelTransport = SharedWorkerTransport;

// Each emitter's event names, one list per class. on()/once() refuse any other name, and
// index.d.ts types the same names (SessionEvents, PeerEvents, StatsTraceEvents).
const SESSION_EVENTS = ['state-change', 'peer-joined', 'peer-left', 'error', 'message'];
const PEER_EVENTS = ['stream-added', 'stream-removed', 'state-change', 'metadata-updated', 'peer-left', 'app-signal', 'stats', 'message', 'file'];
const STATS_TRACE_EVENTS = ['stats', 'error'];
const TRANSFER_EVENTS = ['progress'];

/** The event names of `emitter`'s class (looked up when first needed: the classes come later). */
function eventNames(emitter) {
  if (emitter instanceof RoomSession) return ['RoomSession', SESSION_EVENTS];
  if (emitter instanceof RemotePeer) return ['RemotePeer', PEER_EVENTS];
  if (emitter instanceof StatsTrace) return ['StatsTrace', STATS_TRACE_EVENTS];
  if (emitter instanceof FileTransfer) return ['FileTransfer', TRANSFER_EVENTS];
  return ['this emitter', []];
}

const describeValue = (v) => (typeof v === 'string' ? JSON.stringify(v) : v === null ? 'null' : typeof v);

/** Minimal typed-event base: on(name, cb) returns an unsubscribe function. */
class Emitter {
  #listeners = new Map();

  on(name, listener) {
    this.#check(name, listener, 'on');
    let set = this.#listeners.get(name);
    if (!set) this.#listeners.set(name, (set = new Set()));
    const entry = { listener }; // the same function may be added twice and removed once each
    set.add(entry);
    return () => { set.delete(entry); };
  }

  /** Like on(), but removes itself after the first event. */
  once(name, listener) {
    this.#check(name, listener, 'once');
    const off = this.on(name, (detail) => { off(); listener(detail); });
    return off;
  }

  #check(name, listener, method) {
    const [owner, names] = eventNames(this);
    if (!names.includes(name)) {
      throw invalidArgument(`${method}(name, listener): unknown event ${describeValue(name)}; ${owner} events are ${names.join(', ')}`);
    }
    if (typeof listener !== 'function') throw invalidArgument(`${method}(name, listener): listener must be a function, not ${describeValue(listener)}`);
  }

  /** Whether anything listens to `name`. */
  _has(name) { return (this.#listeners.get(name)?.size ?? 0) > 0; }

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

// ---- Stats tracing -------------------------------------------------------------------------

const json = (v) => (v && typeof v.toJSON === 'function' ? v.toJSON() : v);
const trackInfo = (t) => (t ? `${t.kind}:${t.id}` : 'null');
const streamsInfo = (streams) => (streams || []).map((s) => `stream:${s.id}`).join(';') || '-';

/** Methods traced with `<name>`, then `<name>OnSuccess` / `<name>OnFailure`. */
const PROMISE_METHODS = ['createOffer', 'createAnswer', 'setLocalDescription', 'setRemoteDescription', 'addIceCandidate'];
/** Synchronous methods: the value each one is traced with. */
const SYNC_METHODS = {
  addTrack: (track, ...streams) => `${trackInfo(track)} ${streamsInfo(streams)}`,
  removeTrack: (sender) => trackInfo(sender && sender.track),
  addTransceiver: (trackOrKind, init) => ({
    trackOrKind: typeof trackOrKind === 'string' ? trackOrKind : trackInfo(trackOrKind),
    init: init ? { ...init, streams: init.streams && streamsInfo(init.streams) } : null,
  }),
  createDataChannel: (label, init) => [label, init ?? null],
  restartIce: () => null,
  setConfiguration: (configuration) => configuration,
};
/** Events, traced as `on<type>` with these values. */
const EVENTS = {
  icecandidate: (e) => json(e.candidate) ?? null,
  icecandidateerror: (e) => ({ url: e.url, errorCode: e.errorCode, errorText: e.errorText, address: e.address, port: e.port }),
  track: (e) => `${trackInfo(e.track)} ${streamsInfo(e.streams)}`,
  signalingstatechange: (e, pc) => pc.signalingState,
  iceconnectionstatechange: (e, pc) => pc.iceConnectionState,
  icegatheringstatechange: (e, pc) => pc.iceGatheringState,
  connectionstatechange: (e, pc) => pc.connectionState,
  negotiationneeded: () => null,
  datachannel: (e) => [e.channel.id, e.channel.label],
};

/** What the `create` header of every dump says about this client. */
function clientInfo(traceId) {
  const g = globalThis;
  const nav = g.navigator || {};
  const ua = nav.userAgentData;
  return {
    sdk: `rtcroom/${version()}`,
    traceId,
    hardwareConcurrency: nav.hardwareConcurrency ?? null,
    deviceMemory: nav.deviceMemory ?? null,
    userAgent: nav.userAgent ?? null,
    userAgentData: ua ? { brands: ua.brands, mobile: ua.mobile, platform: ua.platform } : null,
    screen: g.screen ? { width: g.screen.width, height: g.screen.height, devicePixelRatio: g.devicePixelRatio } : null,
    window: { innerWidth: g.innerWidth ?? null, innerHeight: g.innerHeight ?? null },
  };
}

/**
 * Traces one peer connection into `generation`: wraps its methods on the instance (the
 * prototype is untouched, so other connections are not affected) and listens to its events.
 * Returns a function that removes all of it; `close()` does that by itself.
 */
function instrument(core, generation, pc, configuration, deferClose) {
  const id = core.traceAttach(generation, pc, json(configuration ?? pc.getConfiguration()) ?? null);
  const rec = (method, value) => core.record(generation, method, id, value === undefined ? null : value, undefined);
  const wrapped = [];
  const wrap = (target, name, make) => {
    const original = target[name];
    if (typeof original !== 'function') return;
    target[name] = make(original);
    wrapped.push([target, name]);
  };
  for (const name of PROMISE_METHODS) {
    wrap(pc, name, (original) => function (...args) {
      rec(name, json(args[0]));
      const promise = original.apply(this, args);
      promise.then(
        (result) => rec(`${name}OnSuccess`, name === 'setLocalDescription' ? json(pc.localDescription) : json(result)),
        (err) => rec(`${name}OnFailure`, String(err)),
      );
      return promise;
    });
  }
  const wrapSender = (sender) => {
    if (!sender || wrapped.some(([t]) => t === sender)) return;
    wrap(sender, 'replaceTrack', (original) => function (track) {
      rec('replaceTrack', { sender: trackInfo(sender.track), track: trackInfo(track) });
      return original.apply(this, arguments);
    });
    wrap(sender, 'setParameters', (original) => function (parameters) {
      rec('setParameters', { sender: trackInfo(sender.track), parameters });
      return original.apply(this, arguments);
    });
  };
  for (const [name, value] of Object.entries(SYNC_METHODS)) {
    wrap(pc, name, (original) => function (...args) {
      rec(name, value(...args));
      const result = original.apply(this, args);
      if (name === 'addTrack') wrapSender(result);
      if (name === 'addTransceiver') wrapSender(result && result.sender);
      return result;
    });
  }
  const listeners = Object.entries(EVENTS).map(([type, value]) => {
    const listener = (event) => rec(`on${type}`, value(event, pc));
    pc.addEventListener(type, listener);
    return [type, listener];
  });
  let done = false;
  const untrace = () => {
    if (done) return;
    done = true;
    for (const [target, name] of wrapped) delete target[name];
    for (const [type, listener] of listeners) pc.removeEventListener(type, listener);
  };
  wrap(pc, 'close', (original) => function () {
    if (done) return original.apply(this, arguments);
    const recorded = core.traceWait('pc', id); // the final getStats starts first
    untrace();
    if (!deferClose) return original.apply(this, arguments);
    // The owner does not need the close at once: close after the final sample (<= ~1 s).
    recorded.then(() => pc.close(), () => pc.close());
    return undefined;
  });
  return untrace;
}

/** The property descriptor `obj` inherits for `name` (e.g. a canvas track's `enabled`). */
function inherited(obj, name) {
  for (let p = Object.getPrototypeOf(obj); p; p = Object.getPrototypeOf(p)) {
    const d = Object.getOwnPropertyDescriptor(p, name);
    if (d) return d;
  }
  return undefined;
}

/** What rtcstats records of a media stream: its id and its tracks' state. */
const dumpStream = (stream) => ({
  id: stream.id,
  tracks: stream.getTracks().map(({ id, kind, label, enabled, muted, readyState }) => ({ id, kind, label, enabled, muted, readyState })),
});

/**
 * Traces a local stream's tracks into `core`'s current generation (a `StatsTrace`'s core, or a
 * `RoomSession`'s trace): `MediaStreamTrack.stop`, `onended`, `onmute`, `onunmute` (pc null,
 * value `"kind:trackId"`), `applyConstraints` (value the constraints) and `enabled = x` (value
 * x; both with extra `["kind:trackId"]`). Returns a function that stops tracing them.
 */
function traceTracks(core, stream) {
  const g = core.generation;
  if (g == null) return () => {};
  const undo = [];
  const rec = (method, track) => core.record(g, method, undefined, trackInfo(track), undefined);
  for (const track of stream.getTracks()) {
    const listeners = ['ended', 'mute', 'unmute'].map((type) => {
      const listener = () => rec(`MediaStreamTrack.on${type}`, track);
      track.addEventListener(type, listener);
      return [type, listener];
    });
    const stop = track.stop;
    track.stop = function () { rec('MediaStreamTrack.stop', track); return stop.apply(this, arguments); };
    // Calls with a value of their own name the track in `extra`.
    const recValue = (method, value) => core.record(g, method, undefined, value, [trackInfo(track)]);
    const applyConstraints = track.applyConstraints;
    track.applyConstraints = function (constraints) {
      recValue('MediaStreamTrack.applyConstraints', json(constraints) ?? null);
      return applyConstraints.apply(this, arguments);
    };
    // Muting by `track.enabled = false` is the UI's mute button: worth a line in the dump.
    const enabled = inherited(track, 'enabled');
    if (enabled?.get && enabled.set) {
      Object.defineProperty(track, 'enabled', {
        configurable: true,
        enumerable: true,
        get() { return enabled.get.call(this); },
        set(value) {
          recValue('MediaStreamTrack.enabled', Boolean(value));
          enabled.set.call(this, value);
        },
      });
    }
    undo.push(() => {
      for (const [type, listener] of listeners) track.removeEventListener(type, listener);
      delete track.stop;
      delete track.applyConstraints;
      delete track.enabled;
    });
  }
  return () => { for (const f of undo.splice(0)) f(); };
}

/** A recorder for `hookMediaDevices` bound to `core`'s current generation, or null. */
const mediaSink = (core) => () => {
  const g = core?.generation;
  if (g == null) return null;
  return (method, value, id) => core.record(g, method, undefined, value, id == null ? undefined : [id]);
};

/** MediaDevices → { sinks, undo }: one set of wrappers per object, however many traces listen. */
const mediaHooks = new WeakMap();
let mediaCalls = 0;

/**
 * Wraps getUserMedia, getDisplayMedia and enumerateDevices on `md` (the instance: its prototype
 * is untouched) and listens to `devicechange`, once for every sink. A sink returns a recorder
 * bound to its current generation, or null: the result of a call goes to the generation that
 * was current when it was made, never to a later one. The last sink to leave restores `md`.
 */
function hookMediaDevices(md, sink) {
  let hook = mediaHooks.get(md);
  if (!hook) {
    const sinks = new Set();
    const saved = [];
    for (const name of ['getUserMedia', 'getDisplayMedia', 'enumerateDevices']) {
      const original = md[name];
      if (typeof original !== 'function') continue;
      saved.push([name, Object.getOwnPropertyDescriptor(md, name)]);
      const method = `navigator.mediaDevices.${name}`;
      const enumerate = name === 'enumerateDevices';
      md[name] = function (...args) {
        const recs = [...sinks].map((s) => s()).filter(Boolean);
        const id = `${name}-${mediaCalls++}`;
        const rec = (m, value) => { for (const r of recs) r(m, value, id); };
        if (!enumerate) rec(method, json(args[0]) ?? null);
        const promise = original.apply(this, args);
        Promise.resolve(promise).then(
          (result) => (enumerate ? rec(method, [...result].map(json)) : rec(`${method}OnSuccess`, dumpStream(result))),
          (err) => enumerate || rec(`${method}OnFailure`, err?.name ?? String(err)),
        );
        return promise;
      };
    }
    const changed = () => { for (const s of sinks) s()?.('navigator.mediaDevices.ondevicechange', null); };
    md.addEventListener?.('devicechange', changed);
    hook = {
      sinks,
      undo() {
        md.removeEventListener?.('devicechange', changed);
        for (const [name, own] of saved) {
          if (own) Object.defineProperty(md, name, own);
          else delete md[name];
        }
      },
    };
    mediaHooks.set(md, hook);
  }
  hook.sinks.add(sink);
  return () => {
    if (hook.sinks.delete(sink) && hook.sinks.size === 0) {
      hook.undo();
      mediaHooks.delete(md);
    }
  };
}

/**
 * Traces calls to an rtcstats collector (`rtcroom-server`'s `/rtcstats`, or rtcstats-server)
 * in the rtcstats dump format, fileFormat 3. One `connect()` per call: each starts a new
 * generation (a new dump), and nothing of an older generation ever reaches a newer one.
 * Events: `stats` `{ generation, pcId, peerConnection, summary }` after every getStats sample;
 * `error`, never fatal: `unauthorized` (the collector refused the token; that generation
 * ends), `stats-record-too-large` (a record over `maxRecordBytes`, default 512 KiB, was
 * replaced by a `:traceTooLarge` marker; the trace goes on), `stats-refused` (the collector
 * refused messages or ended a dump at a limit; the trace goes on).
 */
export class StatsTrace extends Emitter {
  #options;
  #core = null;
  #loading = null;
  #queue = [];
  #pcs = new WeakMap(); // pc → { generation, untrace }
  #media = new WeakMap(); // MediaDevices → untrace
  /** Stable across this object's generations and reconnects: ties its dumps together. */
  #id = randomId();

  constructor(options = {}) {
    super();
    this.#options = { ...options };
  }

  /** The generation currently accepting records (null before connect() or after close()). */
  get generation() { return this.#core?.generation ?? null; }

  /**
   * Starts a new generation (closing the previous one) and resolves with its number once its
   * socket is open. Rejects with `stats-unavailable` (not fatal; the rejection carries
   * `generation`) when the collector cannot be reached: the trace keeps buffering (up to
   * `maxBuffered` messages) and reconnecting with backoff anyway.
   */
  connect(url, { token } = {}) {
    let target = String(url);
    if (token) target += `${target.includes('?') ? '&' : '?'}rtcstats-token=${encodeURIComponent(token)}`;
    if (wsUrl(target) === null) return Promise.reject(invalidArgument(`connect(url): url must be a ws(s):// or http(s):// URL, or a path on this page's server, not ${describeValue(url)}`));
    target = wsUrl(target);
    return new Promise((resolve, reject) => {
      this.#run((core) => core.traceConnect(target, clientInfo(this.#id)).then(resolve, reject), reject);
    });
  }

  /**
   * Ends a generation (default: the current one): final getStats of its open peer connections,
   * then everything it holds is delivered (within `closeGraceMs`). Resolves with
   * `{ recorded, dropped, delivered, lostAtClose, tooLarge, refused }`. Closing an older generation never touches
   * a newer one; pass the number `connect()` resolved with to be explicit.
   */
  close(generation = this.generation) {
    return new Promise((resolve, reject) => {
      this.#run((core) => {
        const g = generation ?? core.generation;
        if (g == null) return resolve(null);
        core.traceWait('close', g).then(resolve, reject);
      }, reject);
    });
  }

  /** Final getStats of every open traced peer connection of a generation, now. */
  finalStats(generation = this.generation) {
    return new Promise((resolve) => {
      this.#run((core) => {
        const g = generation ?? core.generation;
        if (g == null) return resolve();
        core.traceWait('final', g).then(resolve, resolve);
      }, resolve);
    });
  }

  /**
   * Traces a peer connection the app made itself (RoomSession traces its own): every API call
   * and event, and getStats every `intervalMs` once connected. Returns a function that stops
   * tracing it.
   */
  trace(pc, configuration, { deferClose = false } = {}) {
    let untrace = null;
    let cancelled = false;
    this.#run((core) => {
      const g = core.generation;
      if (cancelled || g == null) return;
      // Once per pc and generation: tracing again would wrap the wrappers (every event twice).
      const earlier = this.#pcs.get(pc);
      if (earlier?.generation === g) {
        untrace = earlier.untrace;
        return;
      }
      earlier?.untrace();
      untrace = instrument(core, g, pc, configuration, deferClose);
      this.#pcs.set(pc, { generation: g, untrace });
    });
    return () => { cancelled = true; untrace?.(); };
  }

  /**
   * Traces a local stream's tracks: `MediaStreamTrack.stop`, `onended`, `onmute`, `onunmute`
   * (pc null, value `"kind:trackId"`), `applyConstraints` (value the constraints) and
   * `enabled = x` (value x; both with extra `["kind:trackId"]`). Returns a function that stops
   * tracing them.
   */
  traceStream(stream) {
    let untrace = null;
    let cancelled = false;
    this.#run((core) => {
      if (!cancelled) untrace = traceTracks(core, stream);
    });
    return () => { cancelled = true; untrace?.(); };
  }

  /**
   * Traces `getUserMedia`, `getDisplayMedia` (call, then OnSuccess with the stream's tracks or
   * OnFailure with the error name) and `enumerateDevices` (the device list) of `mediaDevices`
   * (default `navigator.mediaDevices`), and its `devicechange` events, into the generation
   * current at each call: nothing before `connect()`. Returns a function that stops; the
   * object's own methods come back when the last trace stops.
   */
  traceMediaDevices(mediaDevices = globalThis.navigator?.mediaDevices) {
    if (!mediaDevices) return () => {};
    const earlier = this.#media.get(mediaDevices);
    if (earlier) return earlier;
    const unhook = hookMediaDevices(mediaDevices, () => mediaSink(this.#core)());
    const untrace = () => {
      if (this.#media.get(mediaDevices) === untrace) this.#media.delete(mediaDevices);
      unhook();
    };
    this.#media.set(mediaDevices, untrace);
    return untrace;
  }

  /** A custom event in the current dump (`:name`, never compressed). */
  event(name, data) {
    const method = String(name).startsWith(':') ? String(name) : `:${name}`;
    this.#run((core) => {
      const g = core.generation;
      if (g != null) core.record(g, method, undefined, data ?? null, undefined);
    });
  }

  /** Runs `f` with the wasm core, in call order (the first call loads the SDK's wasm). */
  #run(f, fail = () => {}) {
    const make = () => RoomCore.tracer(this.#options, (_, name, detail) => this._emit(name, detail));
    if (!this.#core && loaded) this.#core = make();
    if (this.#core) return f(this.#core);
    this.#queue.push([f, fail]);
    this.#loading ??= load().then(() => {
      this.#core = make();
      for (const [g] of this.#queue.splice(0)) g(this.#core);
    }, (err) => {
      this.#loading = null;
      for (const [, g] of this.#queue.splice(0)) g(err);
    });
  }
}

// ---- Checking arguments ----------------------------------------------------------------------

const isObject = (v) => typeof v === 'object' && v !== null && !Array.isArray(v);
const isJsonObject = (v) => {
  if (!isObject(v)) return false;
  try {
    return typeof JSON.stringify(v) === 'string';
  } catch {
    return false; // cycles, BigInts, a throwing toJSON
  }
};
const isMediaStream = (v) => typeof MediaStream === 'function' && v instanceof MediaStream;
const number = (min, max = Number.MAX_VALUE) => (v) => typeof v === 'number' && v >= min && v <= max;
const positive = (v) => number(0)(v) && v > 0;
const whole = (min, max = Number.MAX_SAFE_INTEGER) => (v) => Number.isInteger(v) && v >= min && v <= max;
const string = (v) => typeof v === 'string';
const ROOM_NAME = /^(?!\.+$)[A-Za-z0-9_.-]{1,64}$/;
const ICE_SERVER = (s) => isObject(s) && (string(s.urls) || (Array.isArray(s.urls) && s.urls.length > 0 && s.urls.every(string)))
  && [s.username, s.credential].every((v) => v === undefined || string(v));
/**
 * A WebSocket URL from what an app may write: ws(s)://…, http(s)://… (the same server), or a
 * path relative to the page ('/signal'). Null when it is none of these.
 */
function wsUrl(v) {
  if (!string(v)) return null;
  try {
    const url = new URL(v, globalThis.location?.href);
    if (url.protocol === 'http:' || url.protocol === 'https:') url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    return /^wss?:$/.test(url.protocol) ? url.href : null;
  } catch {
    return null;
  }
}
const WS_URL = (v) => wsUrl(v) !== null;

/** `[field, test, what it must be]` of RoomSession's config; undefined (or null) is the default. */
const CONFIG_FIELDS = [
  ['url', WS_URL, 'a ws(s):// or http(s):// URL, or a path on this page\'s server'],
  ['token', string, 'a string'],
  ['iceServers', (v) => Array.isArray(v) && v.every(ICE_SERVER), 'an array of { urls, username?, credential? } (strings)'],
  ['metadata', isJsonObject, 'a JSON object'],
  ['capacity', whole(1, 2 ** 32 - 1), 'a whole number >= 1'],
  ['heartbeatIntervalMs', positive, 'a number > 0'],
  ['heartbeatTimeoutMs', positive, 'a number > 0'],
  ['connectTimeoutMs', positive, 'a number > 0'],
  ['joinAttempts', whole(1, 2 ** 32 - 1), 'a whole number >= 1'],
  ['transport', (v) => v === 'shared-worker' || v === 'broadcast-channel' || (isObject(v) && typeof v.send === 'function'), "'shared-worker' or an object with send(text)"],
  ['onPeerConnection', (v) => typeof v === 'function', 'a function'],
  ['retry', isObject, 'an object', [
    ['initialDelayMs', number(0), 'a number >= 0'],
    ['maxDelayMs', number(0), 'a number >= 0'],
    ['factor', number(1), 'a number >= 1'],
    ['jitter', number(0, 1), 'a number from 0 to 1'],
    ['maxAttempts', whole(-1, 2 ** 31 - 1), 'a whole number >= -1 (-1: no limit)'],
  ]],
  ['ice', isObject, 'an object', [
    ['maxRestarts', whole(0, 2 ** 32 - 1), 'a whole number >= 0'],
    ['disconnectedGraceMs', number(0), 'a number >= 0'],
    ['restartTimeoutMs', number(0), 'a number >= 0'],
  ]],
  ['stats', isObject, 'an object', [
    ['url', WS_URL, 'a ws(s):// or http(s):// URL, or a path on this page\'s server'],
    ['token', string, 'a string'],
    ['intervalMs', number(0), 'a number >= 0'],
    ['maxBuffered', whole(0), 'a whole number >= 0'],
    ['backoffInitialMs', number(0), 'a number >= 0'],
    ['backoffMaxMs', number(0), 'a number >= 0'],
    ['closeGraceMs', number(0), 'a number >= 0'],
    ['connectTimeoutMs', number(0), 'a number >= 0'],
    ['leaveFlushMs', number(0), 'a number >= 0'],
    ['ackMode', (v) => ['auto', 'required', 'never'].includes(v), "'auto', 'required' or 'never'"],
    ['mediaDevices', (v) => typeof v === 'boolean', 'a boolean'],
    ['maxRecordBytes', whole(1024), 'a whole number >= 1024'],
  ]],
];

/** Throws `invalid-argument` for the first field of `obj` (at `path`) that `fields` refuse. */
function checkFields(obj, fields, path) {
  for (const [key, test, what, nested] of fields) {
    const v = obj[key];
    // null is "not set" for values; the wasm refuses a null section (retry, ice).
    if (v === undefined || (v === null && (!nested || key === 'stats'))) continue;
    if (!test(v)) throw invalidArgument(`new RoomSession(config): ${path}${key} must be ${what}, not ${describeValue(v)}`);
    if (nested) checkFields(v, nested, `${path}${key}.`);
  }
}

function checkConfig(config) {
  if (!isObject(config)) throw invalidArgument(`new RoomSession(config): config must be an object, not ${describeValue(config)}`);
  if (!string(config.room) || !ROOM_NAME.test(config.room)) {
    throw invalidArgument(`new RoomSession(config): config.room must be 1-64 characters of [A-Za-z0-9_.-], not only dots, not ${describeValue(config.room)}`);
  }
  checkFields(config, CONFIG_FIELDS, 'config.');
}

function checkStream(stream, method) {
  if (!isMediaStream(stream)) throw invalidArgument(`${method}(stream): stream must be a MediaStream, not ${describeValue(stream)}`);
}

/** An options argument: undefined, or an object. */
function options(value, call) {
  if (value === undefined) return {};
  if (!isObject(value)) throw invalidArgument(`${call}: options must be an object, not ${describeValue(value)}`);
  return value;
}

// ---- Sessions ------------------------------------------------------------------------------

/** A participant of the room: `stream-added`, `stream-removed`, `state-change`, `metadata-updated`, `peer-left`, `app-signal`, `stats`. */
// ---- data: what a message is, on the wire and back.
// A message's `kind` byte says how the other side rebuilds it: 0 string, 1 ArrayBuffer, 2 Blob,
// 3 JSON value, then the typed arrays and DataView (each arrives as its own type).
const VIEWS = ['Int8Array', 'Uint8Array', 'Uint8ClampedArray', 'Int16Array', 'Uint16Array', 'Int32Array',
  'Uint32Array', 'Float32Array', 'Float64Array', 'BigInt64Array', 'BigUint64Array', 'DataView'];
const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();
const isBlob = (v) => typeof Blob === 'function' && v instanceof Blob;

/** `[kind, Uint8Array | Promise<Uint8Array>]`; throws `invalid-argument` for what JSON cannot carry. */
function encodeData(data, where) {
  if (typeof data === 'string') return [0, utf8.encode(data)];
  if (data instanceof ArrayBuffer) return [1, new Uint8Array(data.slice(0))];
  if (isBlob(data)) return [2, data.arrayBuffer().then((b) => new Uint8Array(b))];
  if (ArrayBuffer.isView(data)) {
    const kind = VIEWS.indexOf(data.constructor.name);
    if (kind >= 0) return [4 + kind, new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength))];
  }
  let text;
  try { text = JSON.stringify(data); } catch (err) { text = undefined; }
  if (typeof text !== 'string') throw invalidArgument(`${where}: data must be a string, an ArrayBuffer or typed array, a Blob, or a JSON value, not ${describeValue(data)}`);
  return [3, utf8.encode(text)];
}

/** The value a message's chunks make: the same kind it was sent as. */
function decodeData(kind, parts) {
  if (kind === 2) return new Blob(parts);
  let bytes = parts.length === 1 ? parts[0] : null;
  if (!bytes) {
    bytes = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
    let at = 0;
    for (const p of parts) { bytes.set(p, at); at += p.byteLength; }
  }
  if (kind === 0) return fromUtf8.decode(bytes);
  if (kind === 3) return JSON.parse(fromUtf8.decode(bytes));
  // A concatenation owns its whole buffer; a single chunk is a view into its frame (copied).
  const whole = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength;
  const buffer = whole ? bytes.buffer : bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  if (kind === 1) return buffer;
  const View = globalThis[VIEWS[kind - 4]];
  return View ? new View(buffer) : buffer;
}

const CHANNEL_OPTIONS = ['channel', 'ack', 'timeoutMs'];

function sendOptions(opts, where) {
  const o = options(opts, where);
  const { channel = 'reliable', ack = false, timeoutMs = 5000 } = o;
  for (const key of Object.keys(o)) {
    if (!CHANNEL_OPTIONS.includes(key)) throw invalidArgument(`${where}: unknown option ${key}; options are ${CHANNEL_OPTIONS.join(', ')}`);
  }
  if (!string(channel) || channel === '') throw invalidArgument(`${where}: channel must be a channel's label, not ${describeValue(channel)}`);
  if (typeof ack !== 'boolean') throw invalidArgument(`${where}: ack must be a boolean, not ${describeValue(ack)}`);
  if (!(typeof timeoutMs === 'number' && timeoutMs >= 0 && timeoutMs <= 2 ** 31)) throw invalidArgument(`${where}: timeoutMs must be a number of ms >= 0, not ${describeValue(timeoutMs)}`);
  return { channel, ack: ack ? timeoutMs : undefined };
}

/**
 * A file on its way, out (`peer.sendFile()`) or in (`incoming.accept()`): `progress` events
 * `{ bytes, total }` (monotone, to 100 % on both sides), `cancel(reason?)`, and `done`, which
 * resolves `{ sha256 }` (sender) or `{ blob, sha256 }` (receiver) once the receiver verified
 * the SHA-256, and rejects with a typed error: `file-rejected`, `cancelled`, `peer-left`,
 * `integrity-error`.
 */
export class FileTransfer extends Emitter {
  #cancel;
  #settle = null;

  constructor(id, name, size, mimeType, cancel) {
    super();
    this.id = id;
    this.name = name;
    this.size = size;
    this.mimeType = mimeType;
    this.#cancel = cancel;
    this.done = new Promise((resolve, reject) => { this.#settle = { resolve, reject }; });
    this.done.catch(() => {}); // an app that never awaits it sees no unhandled rejection
  }

  /** Stops the transfer on both sides; `done` rejects with `cancelled`. */
  cancel(reason = 'cancelled') {
    if (this.#settle) this.#cancel(String(reason));
  }

  _finish(ok, value) {
    const settle = this.#settle;
    this.#settle = null;
    if (settle) (ok ? settle.resolve : settle.reject)(value);
  }
}

export class RemotePeer extends Emitter {
  #core;
  #files;

  constructor(id, core, files) {
    super();
    this.id = id;
    this.#core = core;
    this.#files = files;
  }

  /**
   * Offers a File or Blob to this peer, streamed on its own channel (chat is never blocked);
   * memory stays bounded on both sides. `signal` (an AbortSignal) cancels it.
   */
  sendFile(file, opts) {
    if (!isBlob(file)) throw invalidArgument(`sendFile(file): file must be a File or Blob, not ${describeValue(file)}`);
    const { name = file.name ?? 'file', mimeType = file.type ?? '', signal } = options(opts, 'sendFile(file, options)');
    if (!string(name)) throw invalidArgument(`sendFile(file, { name }): name must be a string, not ${describeValue(name)}`);
    if (!string(mimeType)) throw invalidArgument(`sendFile(file, { mimeType }): mimeType must be a string, not ${describeValue(mimeType)}`);
    if (signal !== undefined && !(typeof AbortSignal === 'function' && signal instanceof AbortSignal)) {
      throw invalidArgument(`sendFile(file, { signal }): signal must be an AbortSignal, not ${describeValue(signal)}`);
    }
    const core = this.#core;
    if (!core) {
      const gone = new FileTransfer(0, name, file.size, mimeType, () => {});
      gone._finish(false, Object.assign(new Error('this peer has left'), { code: 'peer-left', fatal: false }));
      return gone;
    }
    const id = core.sendFile(this.id, file, name, mimeType);
    const transfer = new FileTransfer(id, name, file.size, mimeType, (reason) => core.fileCancel(id, reason));
    this.#files.set(id, transfer);
    if (signal?.aborted) transfer.cancel('aborted');
    else signal?.addEventListener('abort', () => transfer.cancel('aborted'), { once: true });
    return transfer;
  }

  /** 'new' | 'connecting' | 'connected' | 'reconnecting' | 'failed' | 'closed' */
  get state() { return this.#core?.peer(this.id)?.state ?? 'closed'; }

  get metadata() { return this.#core?.peer(this.id)?.metadata ?? null; }

  /** The escape hatch: the native RTCPeerConnection (null once the peer left). */
  get peerConnection() { return this.#core?.peer(this.id)?.peerConnection ?? null; }

  /** Streams received from this peer: [{ stream, role }]. */
  streams() { return this.#core?.peer(this.id)?.streams ?? []; }

  /**
   * What a UI shows about this connection: { localCandidateType, remoteCandidateType, rttMs,
   * audio, video }, each medium with inbound/outbound bitrate (bps), packet loss (0..1),
   * jitterMs and fps. Rates compare with the previous call, so call it periodically.
   */
  stats() {
    return this.#core ? this.#core.peerStats(this.id) : Promise.reject(invalidState('this peer has left'));
  }

  /** Restarts ICE now (recovery does it by itself). */
  restartIce() { this.#core?.restartIce(this.id); }

  /**
   * Sends `data` (string, ArrayBuffer / typed array, Blob, JSON value; any size) on a channel
   * ('reliable' by default, 'unreliable', or one from createChannel). On a reliable channel it
   * resolves `true` once this peer's app had the `message` event; rejects with `peer-left`,
   * `channel-closed` or `cancelled`. On an unreliable one it resolves once the data left the
   * queue, or with `{ ack: true, timeoutMs }`, `true` on the ack and `false` after timeoutMs.
   * Un-awaited sends go out in order.
   */
  send(data, opts) {
    try {
      const { channel, ack } = sendOptions(opts, 'send(data, options)');
      const [kind, bytes] = encodeData(data, 'send(data)');
      const core = this.#core;
      if (!core) return Promise.reject(Object.assign(new Error('this peer has left'), { code: 'peer-left', fatal: false }));
      // A Blob is read first; what is sent after it waits for it, so order holds.
      if (bytes instanceof Promise || this.#queue) {
        const go = () => Promise.resolve(bytes).then((b) => core.send(this.id, channel, kind, b, ack));
        const sent = (this.#queue ?? Promise.resolve()).then(go);
        const tail = sent.catch(() => {});
        this.#queue = tail;
        tail.then(() => { if (this.#queue === tail) this.#queue = null; });
        return sent;
      }
      return core.send(this.id, channel, kind, bytes, ack);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  #queue = null;

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
  #traceId = randomId();
  #trace = null;        // { generation, record }: the call's trace, for tracks and media devices
  #traced = new Map();  // stream → untrace, for the tracks of streams given to addStream
  #pendingTrace = new Set(); // streams added before the trace started
  #untraceMedia = null; // navigator.mediaDevices tracing (config.stats.mediaDevices)
  #preparing = null;
  #joining = null;      // the pending join(): a second call returns it

  constructor(config) {
    super();
    checkConfig(config);
    this.#config = { ...config };
    if (config.url != null) this.#config.url = wsUrl(config.url);
    const stats = config.stats;
    if (stats?.url != null) {
      // The wasm opens the collector socket with the token in its query, as StatsTrace does.
      let url = wsUrl(stats.url);
      if (stats.token) url += `${url.includes('?') ? '&' : '?'}rtcstats-token=${encodeURIComponent(stats.token)}`;
      this.#config.stats = { ...stats, url };
    }
    if (this.#config.transport === 'shared-worker' || this.#config.transport === 'broadcast-channel') {
      this.#config.transport = new SharedWorkerTransport();
    }
  }

  get state() { return this.#core ? this.#core.state : this.#state; }

  get localPeerId() { return this.#core?.localPeerId ?? null; }

  get room() { return this.#config.room; }

  /** RemotePeer objects currently in the room. */
  peers() { return [...this.#peers.values()]; }

  peer(id) {
    if (!string(id)) throw invalidArgument(`peer(id): id must be a string, not ${describeValue(id)}`);
    return this.#peers.get(id) ?? null;
  }

  /** Sends `stream` to everyone, before or after join(); `role` labels it remotely (default 'camera'). */
  addStream(stream, opts) {
    checkStream(stream, 'addStream');
    const { role = 'camera' } = options(opts, 'addStream(stream, options)');
    if (!string(role) || role === '') throw invalidArgument(`addStream(stream, { role }): role must be a non-empty string, not ${describeValue(role)}`);
    if (this.#core) {
      this.#core.addStream(stream, role);
      this.#traceStream(stream);
    } else {
      this.#streams.set(stream, role);
    }
  }

  removeStream(stream) {
    checkStream(stream, 'removeStream');
    this.#traced.get(stream)?.();
    this.#traced.delete(stream);
    if (this.#core) this.#core.removeStream(stream);
    else this.#streams.delete(stream);
  }

  /**
   * Sends `data` to every peer in the room (see RemotePeer.send). Resolves
   * `{ delivered: peerId[], failed: { peerId, error }[] }` once every peer answered.
   */
  async broadcast(data, opts) {
    sendOptions(opts, 'broadcast(data, options)');
    encodeData(isBlob(data) ? '' : data, 'broadcast(data)');
    const peers = this.peers();
    const results = await Promise.allSettled(peers.map((p) => p.send(data, opts)));
    const delivered = [];
    const failed = [];
    results.forEach((r, i) => {
      if (r.status === 'fulfilled' && r.value !== false) delivered.push(peers[i].id);
      else failed.push({ peerId: peers[i].id, error: r.status === 'rejected' ? r.reason : Object.assign(new Error('no ack in time'), { code: 'timeout', fatal: false }) });
    });
    return { delivered, failed };
  }

  /**
   * A data channel on every peer connection, now and later (negotiated with the same id from
   * its label, so both sides must create it). `ordered` (default true), and `maxRetransmits` or
   * `maxPacketLifeTime` (unreliable) govern this side's sending: each direction can differ.
   */
  createChannel(label, opts) {
    const { ordered = true, maxRetransmits, maxPacketLifeTime } = options(opts, 'createChannel(label, options)');
    const bytes = string(label) ? utf8.encode(label).length : 0;
    if (bytes < 1 || bytes > 64 || ['reliable', 'unreliable', 'files'].includes(label)) {
      throw invalidArgument(`createChannel(label): label must be a string of 1-64 bytes other than the built-in 'reliable', 'unreliable' and 'files', not ${describeValue(label)}`);
    }
    if (maxRetransmits !== undefined && maxPacketLifeTime !== undefined) {
      throw invalidArgument('createChannel(label, options): maxRetransmits and maxPacketLifeTime exclude each other');
    }
    if (typeof ordered !== 'boolean') throw invalidArgument(`createChannel(label, { ordered }): ordered must be a boolean, not ${describeValue(ordered)}`);
    for (const [name, v] of [['maxRetransmits', maxRetransmits], ['maxPacketLifeTime', maxPacketLifeTime]]) {
      if (v !== undefined && !(Number.isInteger(v) && v >= 0 && v <= 65535)) throw invalidArgument(`createChannel(label, { ${name} }): ${name} must be a whole number 0-65535, not ${describeValue(v)}`);
    }
    const spec = [label, ordered, maxRetransmits, maxPacketLifeTime];
    if (this.#core) return this.#core.createChannel(...spec);
    const same = this.#channels.find(([l]) => l === label);
    if (same && same.some((v, i) => v !== spec[i])) throw invalidArgument(`createChannel(${JSON.stringify(label)}): a channel with this label exists with other options`);
    if (!same) this.#channels.push(spec);
  }

  #channels = []; // created before the core exists
  #files = new Map(); // transfer id → FileTransfer, both ways

  updateMetadata(metadata) {
    if (!isJsonObject(metadata)) throw invalidArgument(`updateMetadata(metadata): metadata must be a JSON object, not ${describeValue(metadata)}`);
    this.#core?.updateMetadata(metadata);
    this.#config.metadata = metadata;
  }

  /**
   * Resolves when joined; rejects with an Error carrying `code` and `fatal`. While a join is
   * pending, every call returns the same Promise; once joined it resolves at once; after
   * `left` or `failed` it rejects with `invalid-state`.
   */
  join(...args) {
    // An event from `onclick = session.join.bind(session)` is not an argument; a room name is a
    // mistake worth saying (the room is the config's).
    const isEvent = (a) => typeof Event === 'function' && a instanceof Event;
    if (args.some((a) => a !== undefined && !isEvent(a))) {
      return Promise.reject(invalidArgument('join() takes no arguments: the room is given to new RoomSession({ room })'));
    }
    if (this.#joining) return this.#joining;
    const state = this.state;
    if (state === 'joined' || state === 'reconnecting') return Promise.resolve();
    if (state === 'left' || state === 'failed') return Promise.reject(invalidState(`join() in state ${state}`));
    const joining = this.#join();
    const settled = () => { if (this.#joining === joining) this.#joining = null; };
    joining.then(settled, settled);
    this.#joining = joining;
    return joining;
  }

  async #join() {
    if (!this.#core) {
      this.#preparing ??= this.#prepare();
      try {
        await this.#preparing;
      } catch (err) {
        this.#preparing = null; // a failed wasm load may be retried
        throw err;
      }
    }
    // With a collector, the wasm opens the call's trace first and signaling after it.
    return this.#core.join(clientInfo(this.#traceId));
  }

  /** Loads the wasm and makes the core. */
  async #prepare() {
    await load();
    if (this.#state !== 'idle') throw invalidState('this session already left');
    this.#core = new RoomCore(this.#config, (peerId, name, detail) => this.#dispatch(peerId, name, detail));
    for (const spec of this.#channels.splice(0)) {
      // Checked when it was called; only a label whose id another label has is left to find.
      try { this.#core.createChannel(...spec); } catch (err) { queueMicrotask(() => this._emit('error', err)); }
    }
    for (const [stream, role] of this.#streams) {
      this.#core.addStream(stream, role);
      this.#traceStream(stream);
    }
    this.#streams.clear();
  }

  /**
   * Leaves the room: the final getStats, bye, every peer connection closed, then the trace
   * flushed (at most `stats.leaveFlushMs`). `{ stopTracks: true }` also stops the tracks given
   * to addStream.
   */
  async leave(opts) {
    const { stopTracks = false } = options(opts, 'leave(options)');
    if (typeof stopTracks !== 'boolean') throw invalidArgument(`leave({ stopTracks }): stopTracks must be a boolean, not ${describeValue(stopTracks)}`);
    if (!this.#core) {
      this.#state = 'left';
      return;
    }
    await this.#core.leave(stopTracks);
    this.#untrace();
  }

  /** The call's trace is open (config.stats.url): local tracks and media devices go into it. */
  #traceStarted() {
    this.#trace = this.#core;
    for (const stream of this.#pendingTrace) this.#traceStream(stream);
    this.#pendingTrace.clear();
    if (this.#config.stats?.mediaDevices !== false) {
      const md = globalThis.navigator?.mediaDevices;
      if (md) this.#untraceMedia = hookMediaDevices(md, mediaSink(this.#trace));
    }
  }

  #traceStream(stream) {
    if (!this.#trace) {
      this.#pendingTrace.add(stream);
      return;
    }
    if (!this.#traced.has(stream)) this.#traced.set(stream, traceTracks(this.#trace, stream));
  }

  #untrace() {
    for (const untrace of this.#traced.values()) untrace();
    this.#traced.clear();
    this.#pendingTrace.clear();
    this.#untraceMedia?.();
    this.#untraceMedia = null;
    this.#trace = null;
  }

  #dispatch(peerId, name, detail) {
    if (peerId === null) {
      if (name === 'peer-joined') {
        const peer = new RemotePeer(detail.peerId, this.#core, this.#files);
        this.#peers.set(peer.id, peer);
        this._emit('peer-joined', { peer });
      } else if (name === 'peer-left') {
        const peer = this.#peers.get(detail.peerId);
        if (!peer) return;
        this.#peers.delete(peer.id);
        peer._detach();
        this._emit('peer-left', { peer, reason: detail.reason });
      } else if (name === 'file-progress' || name === 'file-done' || name === 'file-failed') {
        const transfer = this.#files.get(detail.transfer);
        if (!transfer) return;
        if (name === 'file-progress') return transfer._emit('progress', { bytes: detail.bytes, total: detail.total });
        this.#files.delete(detail.transfer);
        if (name === 'file-failed') return transfer._finish(false, detail.error);
        const done = { sha256: detail.sha256 };
        if (detail.parts) done.blob = new Blob(detail.parts, { type: transfer.mimeType });
        transfer._finish(true, done);
      } else if (name === '_trace') {
        this.#traceStarted();
      } else {
        if (name === 'state-change' && detail.to === 'failed') this.#untrace();
        this._emit(name, detail);
      }
      return;
    }
    const peer = this.#peers.get(peerId);
    if (!peer) return;
    if (name === 'file-offer') {
      const core = this.#core;
      const id = detail.transfer;
      let answered = false;
      const incoming = {
        id, name: detail.name, size: detail.size, mimeType: detail.mimeType,
        accept: () => {
          if (answered) throw invalidState('accept(): this offer was answered already');
          answered = true;
          const transfer = new FileTransfer(id, detail.name, detail.size, detail.mimeType, (reason) => core.fileCancel(id, reason));
          this.#files.set(id, transfer);
          core.fileAccept(id);
          return transfer;
        },
        reject: (reason = 'rejected') => {
          if (answered) return;
          answered = true;
          core.fileCancel(id, String(reason));
        },
      };
      // With nobody listening, offers are rejected.
      if (!peer._has('file')) incoming.reject('no file listener');
      else peer._emit('file', incoming);
      return;
    }
    if (name === 'message') {
      let data;
      try { data = decodeData(detail.kind, detail.parts); } catch (err) {
        this._emit('error', Object.assign(new Error(`a message from ${peerId} could not be read: ${err?.message ?? err}`), { code: 'bad-peer-data', fatal: false }));
        return;
      }
      peer._emit('message', { data, channel: detail.channel });
      this._emit('message', { peer, data, channel: detail.channel });
      return;
    }
    peer._emit(name, detail);
  }
}
