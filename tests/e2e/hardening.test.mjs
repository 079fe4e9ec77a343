// Hardening of the API edge, end to end in both browsers: bad arguments are typed errors, an app
// that closes a peer connection itself cannot kill the session, join() and leave() race well,
// feature detection works before the wasm, a wasm served wrong says so, a signaling server that
// never answers is given up in time, and unknown event names are refused.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BROWSERS, ROOT, WAIT_MS, launch, startServer } from './harness.mjs';
import { installPageHelpers, roomName } from './page.mjs';

let server;
/**
 * An app's own dev server: a blank page at `/` (nothing loads the SDK before the test does), the
 * package under `/pkg/`, `/missing.wasm` a 404. With `app.brokenWasm`, rtcroom_bg.wasm comes back
 * as the app's HTML page, as a misconfigured bundler serves it.
 */
const app = { server: null, origin: null, brokenWasm: false };
const APP_HTML = '<!DOCTYPE html><html><head><title>app</title></head><body></body></html>';
const PKG_TYPES = { 'index.js': 'text/javascript', 'rtcroom.js': 'text/javascript', 'rtcroom_bg.wasm': 'application/wasm' };

before(async () => {
  server = await startServer();
  app.server = createHttpServer((req, res) => {
    const file = /^\/pkg\/([\w.]+)$/.exec(req.url)?.[1];
    if (file && PKG_TYPES[file] && !(file === 'rtcroom_bg.wasm' && app.brokenWasm)) {
      res.writeHead(200, { 'content-type': PKG_TYPES[file] });
      res.end(readFileSync(join(ROOT, 'pkg', file)));
    } else if (req.url === '/missing.wasm') {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found');
    } else {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(APP_HTML);
    }
  });
  app.server.listen(0, '127.0.0.1');
  await once(app.server, 'listening');
  app.origin = `http://127.0.0.1:${app.server.address().port}`;
});
after(async () => {
  app.server.closeAllConnections();
  app.server.close();
  await server.stop();
});

/** A page: the test server's demo (`/`) with the page helpers, or (`blank`) the app's blank page. */
async function withPage(name, fn, { blank = false } = {}) {
  const browser = await launch(name);
  try {
    const page = await browser.newPage();
    page.on('pageerror', (err) => console.error(`[${name} pageerror]`, err));
    await page.goto(blank ? `${app.origin}/` : `${server.url}/`);
    if (!blank) await installPageHelpers(page);
    return await fn(page);
  } finally {
    await browser.close();
  }
}

/** Evaluated in pages: how each call failed (or that it did not). */
const PROBES = `
  window.describeError = (e) => ({
    type: e?.constructor?.name, code: e?.code, fatal: e?.fatal, message: String(e?.message ?? e),
  });
  window.syncCall = (label, f) => {
    try { f(); return { label, threw: false }; } catch (e) { return { label, ...describeError(e) }; }
  };
  window.asyncCall = async (label, f) => {
    let promise;
    try { promise = f(); } catch (e) { return { label, threwSync: true, ...describeError(e) }; }
    if (!(promise instanceof Promise)) return { label, notAPromise: true };
    return Promise.race([
      promise.then(() => ({ label, resolved: true }), (e) => ({ label, ...describeError(e) })),
      new Promise((r) => setTimeout(() => r({ label, pending: true }), 5000)),
    ]);
  };
`;

/** Every entry must be an invalid-argument TypeError, not fatal, with a message. */
function assertInvalidArguments(results) {
  for (const r of results) {
    const { label, message, ...rest } = r;
    assert.deepEqual(rest, { type: 'TypeError', code: 'invalid-argument', fatal: false }, `${label}: ${JSON.stringify(r)}`);
    assert.ok(message.length > 10, `${label}: message ${message}`);
  }
}

for (const name of BROWSERS) {
  test(`${name}: bad arguments to every public method are invalid-argument TypeErrors, and the session lives on`, async () => {
    const result = await withPage(name, (page) => page.evaluate(async (room, probes) => {
      eval(probes);
      const { sdk, pair, waitFor } = window.rt;
      const { a, b } = await pair(room);
      const remote = a.s.peer(b.s.localPeerId);
      const cyclic = {};
      cyclic.self = cyclic;
      const fn = () => {};
      const out = { sync: [], async: [] };
      // addStream with what is not a stream, once a peer exists: the wasm used to call
      // getTracks() on it with its state borrowed, and the session died.
      for (const [label, bad] of [['string', 'x'], ['object', {}], ['null', null], ['undefined', undefined], ['track', a.stream.getTracks()[0]]]) {
        out.sync.push(syncCall(`addStream(${label})`, () => a.s.addStream(bad)));
      }
      const config = (extra) => () => new sdk.RoomSession({ room: 'r', ...extra });
      const calls = [
        ['new RoomSession()', () => new sdk.RoomSession()],
        ['new RoomSession(string)', () => new sdk.RoomSession('room')],
        ['room missing', () => new sdk.RoomSession({})],
        ['room with a space', config({ room: 'a b' })],
        ['room ..', config({ room: '..' })],
        ['room too long', config({ room: 'x'.repeat(65) })],
        ['url number', config({ url: 5 })],
        ['url ftp', config({ url: 'ftp://example.com/signal' })],
        ['token number', config({ token: 1 })],
        ['iceServers object', config({ iceServers: { urls: 'stun:x' } })],
        ['iceServers without urls', config({ iceServers: [{}] })],
        ['iceServers credential number', config({ iceServers: [{ urls: 'turn:t', username: 'u', credential: 5 }] })],
        ['heartbeatTimeoutMs 0', config({ heartbeatTimeoutMs: 0 })],
        ['connectTimeoutMs Infinity', config({ connectTimeoutMs: Infinity })],
        ['metadata array', config({ metadata: [1] })],
        ['metadata cyclic', config({ metadata: cyclic })],
        ['capacity fraction', config({ capacity: 1.5 })],
        ['heartbeatTimeoutMs NaN', config({ heartbeatTimeoutMs: NaN })],
        ['heartbeatIntervalMs string', config({ heartbeatIntervalMs: '5' })],
        ['connectTimeoutMs negative', config({ connectTimeoutMs: -1 })],
        ['joinAttempts 0', config({ joinAttempts: 0 })],
        ['transport unknown', config({ transport: 'pigeon' })],
        ['transport without send', config({ transport: {} })],
        ['onPeerConnection not a function', config({ onPeerConnection: 1 })],
        ['retry null', config({ retry: null })],
        ['retry.factor string', config({ retry: { factor: '2' } })],
        ['retry.maxAttempts fraction', config({ retry: { maxAttempts: 0.5 } })],
        ['ice.maxRestarts negative', config({ ice: { maxRestarts: -1 } })],
        ['stats string', config({ stats: 'on' })],
        ['stats.ackMode unknown', config({ stats: { ackMode: 'sometimes' } })],
        ['addStream(stream, null)', () => a.s.addStream(a.stream, null)],
        ['addStream(stream, string)', () => a.s.addStream(a.stream, 'screen')],
        ['addStream role number', () => a.s.addStream(a.stream, { role: 5 })],
        ['addStream role empty', () => a.s.addStream(a.stream, { role: '' })],
        ['removeStream(string)', () => a.s.removeStream('x')],
        ['removeStream()', () => a.s.removeStream()],
        ['updateMetadata(null)', () => a.s.updateMetadata(null)],
        ['updateMetadata(array)', () => a.s.updateMetadata([1])],
        ['updateMetadata(string)', () => a.s.updateMetadata('x')],
        ['updateMetadata(cyclic)', () => a.s.updateMetadata(cyclic)],
        ['on(name, string)', () => a.s.on('error', 'handler')],
        ['once(name) without listener', () => a.s.once('error')],
        ['on(undefined, fn)', () => a.s.on(undefined, fn)],
        ['peer(number)', () => a.s.peer(5)],
        ['peer()', () => a.s.peer()],
        ['RemotePeer.on(name, null)', () => remote.on('stream-added', null)],
        ['RemotePeer.once(unknown, fn)', () => remote.once('stream-add', fn)],
      ];
      for (const [label, f] of calls) out.sync.push(syncCall(label, f));
      out.expected = 5 + calls.length;
      // Promise methods reject rather than throw.
      for (const [label, f] of [
        ['join(room)', () => a.s.join(room)],
        ['leave(true)', () => a.s.leave(true)],
        ['leave(null)', () => a.s.leave(null)],
        ['leave({ stopTracks: "yes" })', () => a.s.leave({ stopTracks: 'yes' })],
      ]) out.async.push(await asyncCall(label, f));
      // The wasm checks what it receives too (the JS wrapper is not the only caller).
      const wasm = await import('/pkg/rtcroom.js');
      const core = new wasm.RoomCore({ room, url: 'ws://127.0.0.1:9/signal' }, () => {});
      out.core = [
        syncCall('RoomCore.addStream(string)', () => core.addStream('x', 'camera')),
        syncCall('RoomCore.addStream(object)', () => core.addStream({}, 'camera')),
        syncCall('RoomCore.addStream role', () => core.addStream(a.stream, 5)),
        syncCall('RoomCore.removeStream(null)', () => core.removeStream(null)),
        syncCall('RoomCore.updateMetadata(array)', () => core.updateMetadata([])),
        syncCall('new RoomCore transport', () => new wasm.RoomCore({ room, transport: 5 }, () => {})),
        syncCall('new RoomCore onPeerConnection', () => new wasm.RoomCore({ room, url: 'ws://h/', onPeerConnection: 2 }, () => {})),
        syncCall('new RoomCore iceServers', () => new wasm.RoomCore({ room, url: 'ws://h/', iceServers: 'stun:x' }, () => {})),
      ];
      out.coreState = core.state;
      // Everything valid is still accepted, by the wrapper and by the wasm.
      const full = {
        room: 'team-42_a.b', url: 'wss://signal.example/signal', token: 'jwt', metadata: { name: 'Ann' },
        iceServers: [{ urls: 'stun:s.example' }, { urls: ['turn:t.example'], username: 'u', credential: 'p' }],
        capacity: 4, heartbeatIntervalMs: 1000, heartbeatTimeoutMs: 3000.5, connectTimeoutMs: 2000, joinAttempts: 2,
        retry: { initialDelayMs: 0, maxDelayMs: 5000, factor: 1.5, jitter: 1, maxAttempts: -1 },
        ice: { maxRestarts: 0, disconnectedGraceMs: 1500, restartTimeoutMs: 8000 },
        onPeerConnection: fn, transport: 'broadcast-channel',
        stats: {
          url: 'ws://127.0.0.1:9/rtcstats', token: 't', intervalMs: 0, maxBuffered: 10, backoffInitialMs: 100, backoffMaxMs: 1000,
          closeGraceMs: 100, connectTimeoutMs: 100, leaveFlushMs: 100, ackMode: 'never', mediaDevices: false,
          maxRecordBytes: 4096,
        },
      };
      const nulls = { room: 'r', url: null, token: null, metadata: null, iceServers: null, capacity: null, stats: null, transport: null, onPeerConnection: null };
      const { stats, transport, ...forCore } = full;
      out.valid = [
        syncCall('full config', () => new sdk.RoomSession(full)),
        syncCall('null fields', () => new sdk.RoomSession(nulls)),
        syncCall('RoomCore full config', () => new wasm.RoomCore({ ...forCore, transport: { send() {} } }, () => {})),
        syncCall('RoomCore null fields', () => new wasm.RoomCore({ ...nulls, stats: undefined, url: 'ws://h/' }, () => {})),
        // URLs as apps write them: a path on this page's server, or http(s) of the same.
        syncCall('relative url', () => new sdk.RoomSession({ room: 'r', url: '/signal', stats: { url: '/rtcstats' } })),
        syncCall('http url', () => new sdk.RoomSession({ room: 'r', url: `${location.origin}/signal` })),
      ];
      // A click handler bound to join() passes its event: not an argument.
      const clicked = await sdk.RoomSession.prototype.join.call(new sdk.RoomSession({ room: `${room}-click`, url: '/signal' }), new Event('click'))
        .then(() => 'joined', (e) => e.message);
      out.clicked = clicked;
      // Nothing above touched the session: it still answers, talks to the others, and leaves.
      out.state = a.s.state;
      out.peers = a.s.peers().map((p) => p.id);
      const updated = new Promise((resolve) => b.s.peer(a.s.localPeerId).once('metadata-updated', resolve));
      a.s.updateMetadata({ still: 'alive' });
      out.metadata = structuredClone((await window.rt.within(5000, 'metadata-updated', updated)).metadata);
      await a.s.leave();
      await waitFor('peer-left', () => b.log.left.length > 0, 5000);
      out.left = { reason: b.log.left[0].reason, state: a.s.state };
      out.errors = [...a.log.errors, ...b.log.errors];
      return out;
    }, roomName('args'), PROBES));
    assert.equal(result.sync.length, result.expected);
    assertInvalidArguments(result.sync);
    assert.match(result.sync.find((r) => r.label === 'RemotePeer.once(unknown, fn)').message, /stream-added/);
    assert.equal(result.async.length, 4);
    assertInvalidArguments(result.async);
    assertInvalidArguments(result.core);
    assert.equal(result.coreState, 'idle');
    assert.deepEqual(result.valid.map((r) => r.threw === false || r), [true, true, true, true, true, true]);
    assert.equal(result.clicked, 'joined');
    assert.equal(result.state, 'joined');
    assert.equal(result.peers.length, 1);
    assert.deepEqual(result.metadata, { still: 'alive' });
    assert.deepEqual(result.left, { reason: 'left', state: 'left' });
    assert.deepEqual(result.errors, []);
  });

  test(`${name}: an app that closes peer.peerConnection itself gets typed errors, and the session still works and leaves`, async () => {
    const result = await withPage(name, (page) => page.evaluate(async (room) => {
      const { pair, waitFor, within } = window.rt;
      const { a, b } = await pair(room);
      const errors = [];
      a.s.on('error', (e) => errors.push({ code: e.code, fatal: e.fatal, isError: e instanceof Error, message: e.message }));
      const remote = a.s.peer(b.s.localPeerId);
      remote.peerConnection.close(); // the escape hatch: the app closes the pc behind the SDK
      const out = { thrown: [] };
      const attempt = (label, f) => {
        try { f(); } catch (e) { out.thrown.push(`${label}: ${e?.message ?? e}`); }
      };
      const extra = a.stream.clone();
      attempt('addStream', () => a.s.addStream(extra, { role: 'screen' }));
      await waitFor('addTrack error', () => errors.length >= 1, 5000);
      out.afterAdd = a.s.state;
      attempt('removeStream', () => a.s.removeStream(a.stream));
      await waitFor('removeTrack error', () => errors.length >= 2, 5000);
      attempt('restartIce', () => remote.restartIce());
      out.afterRestart = [a.s.state, remote.state, a.s.peers().length];
      const updated = new Promise((resolve) => b.s.peer(a.s.localPeerId).once('metadata-updated', resolve));
      attempt('updateMetadata', () => a.s.updateMetadata({ after: 'close' }));
      out.metadata = structuredClone((await within(5000, 'metadata-updated', updated)).metadata);
      out.errors = errors;
      out.state = a.s.state;
      await a.s.leave({ stopTracks: true });
      await waitFor('b sees a leave', () => b.log.left.length > 0, 5000);
      out.left = b.log.left[0].reason;
      out.after = { state: a.s.state, peers: a.s.peers().length, tracks: extra.getTracks().map((t) => t.readyState) };
      return out;
    }, roomName('closed-pc')));
    assert.deepEqual(result.thrown, []);
    assert.equal(result.afterAdd, 'joined');
    assert.deepEqual(result.afterRestart.slice(0, 1), ['joined']);
    assert.equal(result.afterRestart[2], 1);
    // restartIce() on a closed pc does not throw in today's browsers; if it does, it is typed too.
    // Candidates the other side still sends to the closed pc fail as typed errors as well (how
    // many depends on timing).
    assert.ok(result.errors.length >= 2 && result.errors.length <= 8, JSON.stringify(result.errors));
    for (const e of result.errors.slice(2)) {
      assert.ok(['negotiation-failed', 'media-error'].includes(e.code), JSON.stringify(e));
    }
    for (const e of result.errors) {
      assert.equal(e.isError, true);
      assert.equal(e.fatal, false);
    }
    assert.deepEqual(result.errors.slice(0, 2).map((e) => e.code), ['media-error', 'media-error']);
    assert.match(result.errors[0].message, /^addTrack for peer \S+: ./);
    assert.match(result.errors[1].message, /^removeTrack for peer \S+: ./);
    if (result.errors[2]) assert.equal(result.errors[2].code, 'negotiation-failed');
    assert.deepEqual(result.metadata, { after: 'close' });
    assert.equal(result.state, 'joined');
    assert.equal(result.left, 'left');
    assert.deepEqual(result.after, { state: 'left', peers: 0, tracks: ['ended', 'ended'] });
  });

  test(`${name}: an onPeerConnection hook that calls back into the session reads it and queues its calls, and the call goes on`, async () => {
    const result = await withPage(name, (page) => page.evaluate(async (room) => {
      const { session, connected } = window.rt;
      const seen = [];
      let me = null;
      const extra = new MediaStream();
      // Runs inside the session's own work (before the pc is used): reads and calls re-enter it.
      const onPeerConnection = () => {
        for (const [label, f] of [
          ['state', () => me.s.state],
          ['localPeerId', () => me.s.localPeerId],
          ['addStream', () => me.s.addStream(extra, { role: 'screen' })],
          ['updateMetadata', () => me.s.updateMetadata({ from: 'hook' })],
        ]) {
          try {
            seen.push({ label, returned: f() ?? null });
          } catch (e) {
            seen.push({ label, type: e?.constructor?.name, code: e?.code, fatal: e?.fatal });
          }
        }
      };
      me = await session(room, { onPeerConnection });
      const other = await session(room);
      await me.s.join();
      await other.s.join();
      await connected(me, other);
      // The update made from inside the hook reached the other side.
      await window.rt.waitFor('metadata', () => other.s.peer(me.s.localPeerId)?.metadata?.from === 'hook', 5000);
      const out = { seen, id: me.s.localPeerId, state: me.s.state, errors: [...me.log.errors, ...other.log.errors] };
      await me.s.leave();
      await other.s.leave();
      return out;
    }, roomName('hook')));
    // Inside the hook the session answers as anywhere else; its calls are queued and run next.
    assert.deepEqual(result.seen, [
      { label: 'state', returned: 'joined' },
      { label: 'localPeerId', returned: result.id },
      { label: 'addStream', returned: null },
      { label: 'updateMetadata', returned: null },
    ]);
    assert.equal(result.state, 'joined');
    assert.deepEqual(result.errors, []);
  });

  test(`${name}: join() twice shares one Promise; joined resolves at once; left and failed reject`, async () => {
    const result = await withPage(name, (page) => page.evaluate(async (room, probes, WAIT_MS) => {
      eval(probes);
      const { sdk, within } = window.rt;
      const s = new sdk.RoomSession({ room });
      const states = [];
      s.on('state-change', ({ to }) => states.push(to));
      const first = s.join();
      const second = s.join();
      const out = { same: first === second };
      out.settled = await within(WAIT_MS, 'joins', Promise.allSettled([first, second]).then((all) => all.map((r) => r.status)));
      out.state = s.state;
      // Once connecting (the core exists), a third call joins the pending one too.
      const t = new sdk.RoomSession({ room });
      t.once('state-change', ({ to }) => { out.sameWhileConnecting = [to, t.join() === p1]; });
      const p1 = t.join();
      await within(WAIT_MS, 'third join', p1);
      await window.rt.waitFor('both see each other', () => s.peers().length === 1 && t.peers().length === 1, 5000);
      out.peers = [s.peers().length, t.peers().length];
      out.joined = await asyncCall('join() when joined', () => s.join());
      await s.leave();
      out.afterLeave = await asyncCall('join() after leave', () => s.join());
      // A session that failed (nothing listens on port 9) rejects later joins the same way.
      const f = new sdk.RoomSession({ room, url: 'ws://127.0.0.1:9/signal', joinAttempts: 1 });
      out.failedJoin = await asyncCall('join() failing', () => f.join());
      out.afterFail = await asyncCall('join() after failed', () => f.join());
      out.states = states;
      await t.leave();
      return out;
    }, roomName('join-twice'), PROBES, WAIT_MS));
    assert.equal(result.same, true);
    assert.deepEqual(result.settled, ['fulfilled', 'fulfilled']);
    assert.equal(result.state, 'joined');
    assert.deepEqual(result.sameWhileConnecting, ['connecting', true]);
    assert.deepEqual(result.peers, [1, 1]);
    assert.deepEqual(result.joined, { label: 'join() when joined', resolved: true });
    const rejected = (label, state) => ({
      label, type: 'Error', code: 'invalid-state', fatal: false, message: `join() in state ${state}`,
    });
    assert.deepEqual(result.afterLeave, rejected('join() after leave', 'left'));
    assert.equal(result.failedJoin.code, 'signaling-unreachable');
    assert.deepEqual(result.afterFail, rejected('join() after failed', 'failed'));
    assert.deepEqual(result.states, ['connecting', 'joined', 'left'], 'one connection, one join');
  });

  test(`${name}: leave() while join() is pending rejects the join and leaves nothing in the room`, async () => {
    const room = roomName('leave-joining');
    const result = await withPage(name, (page) => page.evaluate(async (room, probes) => {
      eval(probes);
      const { sdk, session } = window.rt;
      const observer = await session(room, { media: false });
      await observer.s.join();
      const out = {};
      // 1. leave() right after join(): the core does not exist yet.
      const early = new sdk.RoomSession({ room });
      const earlyJoin = asyncCall('early', () => early.join());
      await early.leave();
      // 2. leave() from the first state-change (connecting): the socket is opening.
      const opening = new sdk.RoomSession({ room });
      opening.once('state-change', () => { opening.leave(); });
      const openingJoin = asyncCall('opening', () => opening.join());
      // 3. leave() once the join frame went out, before the answer: a real socket to the server
      // whose incoming frames are held back.
      let joinSent;
      const joinFrame = new Promise((resolve) => { joinSent = resolve; });
      const holding = {
        onmessage: null, onclose: null, ws: null,
        connect() {
          return new Promise((resolve, reject) => {
            holding.ws = new WebSocket(`${location.origin.replace('http', 'ws')}/signal`);
            holding.ws.onopen = resolve;
            holding.ws.onerror = () => reject(new Error('socket error'));
          });
        },
        send(text) {
          holding.ws.send(text);
          if (JSON.parse(text).type === 'join') joinSent();
        },
        close() { holding.ws?.close(); },
      };
      const sent = new sdk.RoomSession({ room, transport: holding });
      const sentJoin = asyncCall('sent', () => sent.join());
      await window.rt.within(5000, 'join frame', joinFrame);
      await sent.leave();
      out.joins = await Promise.all([earlyJoin, openingJoin, sentJoin]);
      out.states = [early.state, opening.state, sent.state];
      await new Promise((r) => setTimeout(r, 1000)); // anything that did reach the server has left again
      out.presence = await (await fetch(`/rooms/${room}`)).json();
      out.observer = { joined: observer.log.joined.length, peers: observer.s.peers().length, errors: observer.log.errors };
      await observer.s.leave();
      return out;
    }, room, PROBES));
    for (const join of result.joins) {
      assert.deepEqual({ code: join.code, fatal: join.fatal }, { code: 'invalid-state', fatal: false }, JSON.stringify(join));
    }
    assert.deepEqual(result.states, ['left', 'left', 'left']);
    assert.equal(result.presence.count, 1, JSON.stringify(result.presence));
    assert.equal(result.observer.peers, 0);
    assert.deepEqual(result.observer.errors, []);
  });

  test(`${name}: version(), protocolVersion() and webrtcSupported() work before load() and agree with the wasm`, async () => {
    const result = await withPage(name, (page) => page.evaluate(async () => {
      const sdk = await import('/pkg/index.js');
      const call = (f) => { try { return f(); } catch (e) { return `threw ${e?.name}: ${e?.message}`; } };
      const before = { version: call(sdk.version), protocol: call(sdk.protocolVersion), webrtc: call(sdk.webrtcSupported) };
      await sdk.load();
      const wasm = await import('/pkg/rtcroom.js');
      const hidden = window.RTCPeerConnection;
      delete window.RTCPeerConnection;
      const withoutPc = sdk.webrtcSupported();
      window.RTCPeerConnection = hidden;
      return { before, wasm: { version: wasm.version(), protocol: wasm.protocolVersion() }, withoutPc };
    }), { blank: true });
    const cargo = /^version = "(.+)"/m.exec(readFileSync(join(ROOT, 'Cargo.toml'), 'utf8'))[1];
    const protocol = Number(/PROTOCOL_VERSION: u32 = (\d+);/.exec(readFileSync(join(ROOT, 'protocol/src/lib.rs'), 'utf8'))[1]);
    const pkg = JSON.parse(readFileSync(join(ROOT, 'pkg/package.json'), 'utf8'));
    assert.deepEqual(result.before, { version: cargo, protocol, webrtc: true });
    assert.deepEqual(result.wasm, { version: result.before.version, protocol: result.before.protocol });
    assert.equal(pkg.version, cargo);
    assert.equal(result.withoutPc, false);
  });

  test(`${name}: a wasm URL that serves HTML or 404 rejects load() and join() with wasm-load-failed, and a retry works`, async () => {
    const signal = `${server.url.replace('http', 'ws')}/signal`;
    app.brokenWasm = true;
    try {
      const result = await withPage(name, async (page) => {
        const first = await page.evaluate(async (room, signal, probes) => {
          eval(probes);
          const sdk = await import('/pkg/index.js');
          const s = new sdk.RoomSession({ room, url: signal });
          return {
            join: await asyncCall('join', () => s.join()),
            state: s.state,
            html: await asyncCall('load(/)', () => sdk.load('/')),
            missing: await asyncCall('load(404)', () => sdk.load(new URL('/missing.wasm', location.href))),
          };
        }, roomName('wasm'), signal, PROBES);
        app.brokenWasm = false; // the app fixed its bundler config
        const retry = await page.evaluate(async (room, signal, probes) => {
          eval(probes);
          const sdk = await import('/pkg/index.js');
          const s = new sdk.RoomSession({ room, url: signal });
          const out = { join: await asyncCall('join again', () => s.join()), state: s.state };
          await s.leave();
          return out;
        }, roomName('wasm'), signal, PROBES);
        return { ...first, retry };
      }, { blank: true });
      const failed = (r) => {
        assert.equal(r.type, 'Error', JSON.stringify(r));
        assert.equal(r.code, 'wasm-load-failed', JSON.stringify(r));
        assert.equal(r.fatal, true);
        assert.match(r.message, /load\(url\)/, 'says what to do');
        assert.match(r.message, /bundler/);
      };
      failed(result.join);
      assert.ok(result.join.message.includes(`${app.origin}/pkg/rtcroom_bg.wasm`), result.join.message);
      assert.match(result.join.message, /HTTP 200/);
      assert.match(result.join.message, /content-type text\/html/);
      assert.match(result.join.message, /3c 21 44 4f 43 54 59 50/, 'the first bytes: "<!DOCTYP"');
      assert.match(result.join.message, /<!DOCTYPE html>/);
      assert.equal(result.state, 'idle');
      failed(result.html);
      assert.ok(result.html.message.includes(`${app.origin}/ `), result.html.message);
      failed(result.missing);
      assert.ok(result.missing.message.includes(`${app.origin}/missing.wasm`), result.missing.message);
      assert.match(result.missing.message, /HTTP 404/);
      assert.match(result.missing.message, /content-type text\/plain/);
      assert.deepEqual(result.retry, { join: { label: 'join again', resolved: true }, state: 'joined' });
    } finally {
      app.brokenWasm = false;
    }
  });

  test(`${name}: a signaling server that never answers fails join() after attempts x connectTimeoutMs, naming the URL`, async () => {
    // Accepts TCP connections and never says a word: the WebSocket stays CONNECTING.
    const sockets = [];
    const silent = createTcpServer((socket) => { sockets.push(socket); socket.on('error', () => {}); });
    silent.listen(0, '127.0.0.1');
    await once(silent, 'listening');
    const url = `ws://127.0.0.1:${silent.address().port}/signal`;
    try {
      const result = await withPage(name, (page) => page.evaluate(async (room, url, probes) => {
        eval(probes);
        const { sdk } = window.rt;
        const s = new sdk.RoomSession({
          room, url: `${url}?key=secret`, token: 'jwt-secret', connectTimeoutMs: 1000, joinAttempts: 2,
          retry: { initialDelayMs: 200, jitter: 0 },
        });
        const t0 = performance.now();
        const join = await Promise.race([
          s.join().then(() => ({ resolved: true }), (e) => describeError(e)),
          new Promise((r) => setTimeout(() => r({ pending: true }), 8000)),
        ]);
        return { join, ms: performance.now() - t0, state: s.state };
      }, roomName('silent'), url, PROBES));
      assert.equal(result.join.code, 'signaling-unreachable', JSON.stringify(result));
      assert.equal(result.join.fatal, true);
      assert.ok(result.join.message.includes(`${url} `), result.join.message);
      assert.ok(!result.join.message.includes('secret'), `no credentials: ${result.join.message}`);
      assert.match(result.join.message, /after 2 attempts \(last: not open within 1000 ms\)/);
      // 2 x 1000 ms + 200 ms of backoff, plus scheduling slack.
      assert.ok(result.ms >= 2100 && result.ms < 4000, `rejected after ${Math.round(result.ms)} ms`);
      assert.equal(result.state, 'failed');
      assert.equal(sockets.length, 2, 'one connection per attempt');
    } finally {
      for (const socket of sockets) socket.destroy();
      silent.close();
    }
  });

  test(`${name}: unknown event names are TypeErrors listing each emitter's names, as index.d.ts types them`, async () => {
    // The names index.d.ts gives each emitter (SessionEvents, PeerEvents, StatsTraceEvents).
    const dts = readFileSync(join(ROOT, 'pkg/index.d.ts'), 'utf8');
    const typed = (iface) => {
      const body = new RegExp(`interface ${iface} \\{([\\s\\S]*?)\\n\\}`).exec(dts)[1];
      return [...body.matchAll(/^ {2}'([a-z-]+)':/gm)].map((m) => m[1]);
    };
    const names = { RoomSession: typed('SessionEvents'), RemotePeer: typed('PeerEvents'), StatsTrace: typed('StatsTraceEvents') };
    assert.deepEqual(names.StatsTrace, ['stats', 'error']);
    const result = await withPage(name, (page) => page.evaluate(async (room, names, probes) => {
      eval(probes);
      const { sdk, pair } = window.rt;
      const { a, b } = await pair(room, { media: false });
      const emitters = { RoomSession: a.s, RemotePeer: a.s.peer(b.s.localPeerId), StatsTrace: new sdk.StatsTrace() };
      const out = {};
      for (const [cls, emitter] of Object.entries(emitters)) {
        out[cls] = {
          unknown: syncCall('on', () => emitter.on('no-such-event', () => {})),
          unknownOnce: syncCall('once', () => emitter.once('no-such-event', () => {})),
          // Every typed name is accepted (and unsubscribes).
          accepted: names[cls].map((n) => { try { emitter.on(n, () => {})(); return true; } catch { return n; } }),
        };
      }
      await a.s.leave();
      await b.s.leave();
      return out;
    }, roomName('events'), names, PROBES));
    for (const cls of ['RoomSession', 'RemotePeer', 'StatsTrace']) {
      const { unknown, unknownOnce, accepted } = result[cls];
      assert.deepEqual(accepted, names[cls].map(() => true), cls);
      for (const r of [unknown, unknownOnce]) {
        assertInvalidArguments([r]);
        // The message lists exactly the typed names: the JS lists and the typings agree.
        const listed = /events are (.*)$/.exec(r.message)?.[1].split(', ');
        assert.deepEqual(listed, names[cls], `${cls}: ${r.message}`);
        assert.ok(r.message.includes('"no-such-event"'), r.message);
      }
    }
  });
}
