// Stats tracing end to end: real browsers trace real calls to the real collector; the dumps are
// read back by `rtcroom-dump` (the SDK's Rust dump reader: decompresses every getStats and
// checks the invariants: one absolute time, non-decreasing times, pcs created before use).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { connect, createServer } from 'node:net';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { BROWSERS, ROOT, launch, startServer } from './harness.mjs';
import { installPageHelpers, roomName } from './page.mjs';

const DUMP_BIN = join(dirname(process.env.RTCROOM_SERVER_BIN ?? join(ROOT, 'target/debug/rtcroom-server')), 'rtcroom-dump');

/** Reads every dump in `dir` with rtcroom-dump; each entry is its JSON report. */
async function readDumps(dir) {
  const files = readdirSync(dir).map((f) => join(dir, f));
  if (files.length === 0) return [];
  const { stdout } = await promisify(execFile)(DUMP_BIN, ['--events', ...files], { maxBuffer: 64 << 20 })
    .catch((err) => ({ stdout: err.stdout })); // exit 1 = some dump invalid: the reports say which
  return stdout.trim().split('\n').map((line) => JSON.parse(line));
}

let dumpsDir;
let server;
before(async () => {
  dumpsDir = mkdtempSync(join(tmpdir(), 'rtcroom-dumps-'));
  server = await startServer(['--dumps-dir', dumpsDir]);
});
after(async () => {
  await server.stop();
  rmSync(dumpsDir, { recursive: true, force: true });
});

async function withPage(name, fn, url = server.url) {
  const browser = await launch(name);
  try {
    const page = await browser.newPage();
    page.on('pageerror', (err) => console.error(`[${name} pageerror]`, err));
    await page.goto(`${url}/`);
    await installPageHelpers(page);
    return await fn(page);
  } finally {
    await browser.close();
  }
}

function clearDumps() {
  for (const f of readdirSync(dumpsDir)) rmSync(join(dumpsDir, f));
}

/** A TCP proxy to `target` (http URL) that holds every connection `ms` before passing it on:
 * a collector that is slow to answer. Resolves to { port, close() }. */
async function slowProxy(target, ms) {
  const { hostname, port } = new URL(target);
  const sockets = new Set();
  const proxy = createServer((client) => {
    sockets.add(client);
    client.pause();
    setTimeout(() => {
      const upstream = connect(Number(port), hostname, () => { client.pipe(upstream); upstream.pipe(client); client.resume(); });
      sockets.add(upstream);
      const end = () => { client.destroy(); upstream.destroy(); };
      client.on('error', end).on('close', end);
      upstream.on('error', end).on('close', end);
    }, ms);
  });
  await new Promise((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  return {
    port: proxy.address().port,
    close: () => { for (const s of sockets) s.destroy(); return new Promise((resolve) => proxy.close(resolve)); },
  };
}

/** Count of `method` events of one pc in a dump report. */
const count = (dump, pc, method) => dump.pcs?.[pc]?.[method] ?? 0;

for (const name of BROWSERS) {
  test(`${name}: a two-peer call with stats on leaves two valid dumps with the whole call`, async () => {
    clearDumps();
    // The collector answers 600 ms late: join() must still wait for it before making any pc.
    const proxy = await slowProxy(server.url, 600);
    const result = await withPage(name, (page) => page.evaluate(async (room, withTurn, proxyPort) => {
      const { pair, waitFor } = window.rt;
      const stats = { url: `ws://127.0.0.1:${proxyPort}/rtcstats` };
      // A TURN server nobody answers: its credentials must never reach a dump. (Chromium only:
      // Firefox holds ICE back while it waits for that TURN server.)
      const iceServers = withTurn ? [{ urls: 'turn:127.0.0.1:9?transport=udp', username: 'turn-user', credential: 'turn-secret' }] : [];
      // When each RTCPeerConnection is made and when each trace socket opens.
      const order = [];
      const Native = window.RTCPeerConnection;
      window.RTCPeerConnection = class extends Native {
        constructor(...args) { super(...args); order.push('pc'); }
      };
      const NativeSocket = window.WebSocket;
      window.WebSocket = class extends NativeSocket {
        constructor(...args) {
          super(...args);
          if (String(args[0]).includes('/rtcstats')) this.addEventListener('open', () => order.push('trace-open'));
        }
      };
      const { a, b } = await pair(room, { stats, iceServers }, { stats, iceServers });
      // A camera switch during the call: both sessions trace navigator.mediaDevices.
      const switched = await navigator.mediaDevices.getUserMedia({ video: true });
      switched.getTracks().forEach((t) => t.stop());
      const samples = [];
      a.s.peer(b.s.localPeerId).on('stats', (s) => samples.push(s));
      await waitFor('two stats events', () => samples.length >= 2, 10000);
      await a.s.leave({ stopTracks: true });
      await b.s.leave();
      window.RTCPeerConnection = Native;
      window.WebSocket = NativeSocket;
      const restored = !Object.hasOwn(navigator.mediaDevices, 'getUserMedia');
      return { samples: structuredClone(samples), errors: [...a.log.errors, ...b.log.errors], order, restored };
    }, roomName('stats'), name === 'chromium', proxy.port)).finally(() => proxy.close());
    // Both traces are open before the first RTCPeerConnection exists (a's pc is made when b
    // joins, b's after its own trace opened).
    assert.deepEqual(result.order, ['trace-open', 'trace-open', 'pc', 'pc']);
    assert.deepEqual(result.errors, []);
    assert.ok(result.restored, 'leave() restores navigator.mediaDevices');
    const last = result.samples.at(-1);
    assert.equal(last.localCandidateType, 'host');
    assert.ok(last.rttMs >= 0, `rtt ${last.rttMs}`);
    assert.ok(last.video.inboundFps > 0, `fps ${JSON.stringify(last.video)}`);

    const dumps = await readDumps(dumpsDir);
    assert.equal(dumps.length, 2, JSON.stringify(dumps.map((d) => d.reason ?? d.events)));
    // A left with stopTracks: its two tracks' stop calls are in its dump; B stopped nothing.
    const stops = dumps.map((d) => d.methods?.['MediaStreamTrack.stop'] ?? 0).sort();
    assert.deepEqual(stops, [0, 2]);
    for (const dump of dumps) {
      assert.equal(dump.ok, true, `${dump.file}: line ${dump.line}: ${dump.reason}`);
      // The final getStats (reason "close") comes right before the close, also for b, whose pc
      // closed because a left (Firefox settles it only because the SDK defers that close).
      const pcLines = readFileSync(dump.file, 'utf8').split('\n').filter((l) => l.startsWith('[') && l.includes('"PC_0"'));
      assert.match(pcLines.at(-1), /^\[36,"PC_0",null,[\d.]+\]$/);
      assert.match(pcLines.at(-2), /^\["g","PC_0",.*,"close",[\d.]+\]$/, 'the final getStats');
      if (name === 'chromium') {
        const text = readFileSync(dump.file, 'utf8');
        assert.ok(text.includes('turn:127.0.0.1:9'), 'the configuration is traced');
        assert.ok(!text.includes('turn-secret') && !text.includes('turn-user'), 'credentials are not');
      }
      // The camera switch (the call's first getUserMedia happened before join: not in the dump).
      const gum = dump.media.filter(([m]) => m.startsWith('navigator.mediaDevices.getUserMedia'));
      assert.deepEqual(gum.map(([m]) => m), ['navigator.mediaDevices.getUserMedia', 'navigator.mediaDevices.getUserMediaOnSuccess']);
      assert.deepEqual(gum[1][1].tracks.map((t) => t.kind), ['video']);
      assert.equal(dump.socket, 0);
      assert.equal(dump.firstSeq, 0);
      assert.equal(dump.closeCode, 1000, 'the SDK closes its trace normally');
      const methods = dump.list.map(([, method, pc]) => `${pc}:${method}`);
      const first = (m) => methods.indexOf(`PC_0:${m}`);
      assert.equal(first('create'), 0, 'the pc is created first');
      assert.ok(first('addTrack') > 0, 'tracks are added');
      // The offerer sees setLocalDescriptionOnSuccess with an offer, the answerer
      // setRemoteDescription with one; both exchange candidates and reach connected.
      const descriptions = dump.list.filter(([, m]) => m === 'setLocalDescriptionOnSuccess' || m === 'setRemoteDescription');
      assert.ok(descriptions.length >= 2, `descriptions: ${descriptions.length}`);
      assert.ok(count(dump, 'PC_0', 'onicecandidate') > 0, 'local candidates');
      assert.ok(count(dump, 'PC_0', 'addIceCandidate') > 0, 'remote candidates');
      assert.ok(count(dump, 'PC_0', 'onconnectionstatechange') >= 2, 'connecting, connected');
      assert.ok(count(dump, 'PC_0', 'getStats') >= 2, `getStats: ${count(dump, 'PC_0', 'getStats')}`);
      // The final getStats, then the close, end the pc.
      const pcMethods = methods.filter((m) => m.startsWith('PC_0:'));
      assert.deepEqual(pcMethods.slice(-2), ['PC_0:getStats', 'PC_0:close']);
      assert.ok(first('getStats') > first('onconnectionstatechange'), 'getStats is never the first event');
    }
  });
}

for (const name of BROWSERS) {
  test(`${name}: traceMediaDevices: getUserMedia, its failures and enumerateDevices land in the generation of the call`, async () => {
    clearDumps();
    const result = await withPage(name, (page) => page.evaluate(async () => {
      const { sdk } = window.rt;
      const url = `${location.origin.replace('http', 'ws')}/rtcstats`;
      const md = navigator.mediaDevices;
      const a = new sdk.StatsTrace();
      const b = new sdk.StatsTrace();
      const untraceA = a.traceMediaDevices();
      const again = a.traceMediaDevices(); // idempotent: the same untrace, no second record
      const untraceB = b.traceMediaDevices();
      // Before connect(): no generation, nothing recorded (no event older than its dump).
      (await md.getUserMedia({ audio: true })).getTracks().forEach((t) => t.stop());
      const g = await a.connect(url);
      await b.connect(url);
      a.event('start');
      const stream = await md.getUserMedia({ video: { width: 320, height: 240 }, audio: true });
      let failure = null;
      try {
        await md.getUserMedia({ video: { width: { exact: 99999 } } });
      } catch (err) {
        failure = err.name;
      }
      const devices = await md.enumerateDevices();
      // The stream's tracks: mute, a constraint change, a stop.
      const untraceStream = a.traceStream(stream);
      const [video] = stream.getVideoTracks();
      video.enabled = false;
      await video.applyConstraints({ frameRate: 10 }).catch(() => {});
      video.stop();
      untraceStream();
      const trackRestored = !Object.hasOwn(video, 'enabled') && !Object.hasOwn(video, 'stop');
      stream.getTracks().forEach((t) => t.stop()); // not traced any more
      // A call made in generation g whose answer comes after the next connect(): never in g2.
      const pending = md.getUserMedia({ audio: true });
      const g2 = await a.connect(url);
      (await pending).getTracks().forEach((t) => t.stop());
      // Headless Chromium answers with a fake screen, headless Firefox with NotFoundError.
      const display = await md.getDisplayMedia({ video: true }).then((s) => {
        s.getTracks().forEach((t) => t.stop());
        return 'OnSuccess';
      }, (err) => err.name);
      // A canvas track inherits `enabled` from further up the prototype chain.
      const canvas = document.createElement('canvas').captureStream();
      const untraceCanvas = a.traceStream(canvas);
      canvas.getVideoTracks()[0].enabled = false;
      untraceCanvas();
      canvas.getVideoTracks()[0].stop();
      a.event('second');
      untraceA();
      const hookedForB = Object.hasOwn(md, 'getUserMedia');
      (await md.getUserMedia({ video: true })).getTracks().forEach((t) => t.stop()); // b only
      untraceB();
      const restored = !Object.hasOwn(md, 'getUserMedia') && md.getUserMedia === MediaDevices.prototype.getUserMedia;
      await a.close(g2);
      await b.close();
      return { g, g2, same: again === untraceA, failure, devices: devices.length, hookedForB, restored, trackRestored, videoId: video.id, display };
    }));
    assert.equal(result.same, true);
    assert.equal(result.failure, 'OverconstrainedError');
    assert.ok(result.devices >= 2, `devices: ${result.devices}`);
    assert.equal(result.hookedForB, true, 'b still traces after a stopped');
    assert.equal(result.restored, true, 'the last untrace restores the prototype method');
    const dumps = await readDumps(dumpsDir);
    assert.equal(dumps.length, 3, JSON.stringify(dumps.map((d) => d.reason ?? d.events)));
    for (const dump of dumps) assert.equal(dump.ok, true, `${dump.file}: line ${dump.line}: ${dump.reason}`);
    const ofA = (g) => dumps.find((d) => d.custom.length > 0 && d.generation === g);
    const first = ofA(result.g);
    const second = ofA(result.g2);
    const third = dumps.find((d) => d !== first && d !== second);
    const methods = (dump) => dump.media.map(([m]) => m.replace('navigator.mediaDevices.', ''));
    // a's first call: the successful getUserMedia, the failed one, the devices, then the
    // call pending at the next connect(), which may or may not have been answered before it.
    assert.deepEqual(methods(first).slice(0, 5), ['getUserMedia', 'getUserMediaOnSuccess', 'getUserMedia', 'getUserMediaOnFailure', 'enumerateDevices']);
    assert.deepEqual(first.media[0][1], { video: { width: 320, height: 240 }, audio: true }, 'the constraints');
    assert.deepEqual(first.media[1][1].tracks.map((t) => [t.kind, t.readyState]).sort(), [['audio', 'live'], ['video', 'live']]);
    assert.equal(first.media[3][1], 'OverconstrainedError');
    assert.equal(first.media[0][2][0], first.media[1][2][0], 'a call and its answer share an id');
    assert.equal(first.media[4][1].length, result.devices);
    assert.ok(first.media[4][1].every((d) => typeof d.kind === 'string' && 'deviceId' in d));
    assert.deepEqual(methods(first).slice(5, 8), ['MediaStreamTrack.enabled', 'MediaStreamTrack.applyConstraints', 'MediaStreamTrack.stop']);
    const video = `video:${result.videoId}`;
    assert.deepEqual(first.media.slice(5, 8).map(([, value, extra]) => [value, extra]), [[false, [video]], [{ frameRate: 10 }, [video]], [video, []]]);
    assert.equal(result.trackRestored, true, 'untrace restores the track');
    assert.equal(methods(first)[8], 'getUserMedia');
    assert.ok(methods(first).length <= 10);
    assert.ok(!methods(second).some((m) => m.startsWith('getUserMedia')), 'the pending answer never reaches the next generation');
    const outcome = result.display === 'OnSuccess' ? 'OnSuccess' : 'OnFailure';
    assert.deepEqual(methods(second), ['getDisplayMedia', `getDisplayMedia${outcome}`, 'MediaStreamTrack.enabled']);
    if (outcome === 'OnSuccess') assert.deepEqual(second.media[1][1].tracks.map((t) => t.kind), ['video']);
    else assert.equal(second.media[1][1], result.display);
    assert.deepEqual(second.custom.map(([m]) => m), [':second']);
    // b saw every call a saw while connected, and the last one after a stopped.
    assert.deepEqual(methods(third).filter((m) => m === 'getUserMedia').length, 4);
  });
}

for (const name of BROWSERS) {
  test(`${name}: a 3 MiB event() is dropped with a non-fatal error and the records after it reach the dump`, async () => {
    clearDumps();
    const result = await withPage(name, (page) => page.evaluate(async () => {
      const { sdk } = window.rt;
      const url = `${location.origin.replace('http', 'ws')}/rtcstats`;
      // Before the fix the collector closed with 1009 and the trace replayed the record first
      // on every reconnect: nothing after it was delivered until the close grace ran out.
      const trace = new sdk.StatsTrace({ closeGraceMs: 3000 });
      const errors = [];
      trace.on('error', (e) => errors.push({ code: e.code, fatal: e.fatal, message: e.message }));
      await trace.connect(url);
      trace.event('before', { n: 1 });
      trace.event('big', 'x'.repeat(3 * 1024 * 1024));
      trace.event('after', { n: 2 });
      const counters = await trace.close();
      return { errors, counters };
    }));
    assert.deepEqual(result.errors.map((e) => [e.code, e.fatal]), [['stats-record-too-large', false]], JSON.stringify(result.errors));
    assert.match(result.errors[0].message, /:big/);
    assert.equal(result.counters.tooLarge, 1, JSON.stringify(result.counters));
    assert.equal(result.counters.lostAtClose, 0, JSON.stringify(result.counters));
    const dumps = await readDumps(dumpsDir);
    assert.equal(dumps.length, 1, JSON.stringify(dumps.map((d) => [d.closeCode, d.events])));
    const [dump] = dumps;
    assert.equal(dump.ok, true, `${dump.file}: line ${dump.line}: ${dump.reason}`);
    assert.equal(dump.closeCode, 1000);
    assert.deepEqual(dump.custom.map(([m]) => m), [':before', ':traceTooLarge', ':after']);
    assert.deepEqual(dump.custom[2][1], { n: 2 });
    const marker = dump.custom[1][1];
    assert.equal(marker.method, ':big');
    assert.ok(marker.bytes > 3 * 1024 * 1024 && marker.limit === 512 * 1024, JSON.stringify(marker));
    assert.ok(readFileSync(dump.file, 'utf8').length < 64 * 1024, 'the record itself is not in the dump');
  });
}

test('chromium: a dump at the collector\'s size cap ends with a close line saying so; the trace reports it and goes on in a new dump', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rtcroom-dumps-'));
  const capped = await startServer(['--dumps-dir', dir, '--rtcstats-max-dump-bytes', '20000']);
  try {
    const result = await withPage('chromium', (page) => page.evaluate(async () => {
      const { sdk } = window.rt;
      const url = `${location.origin.replace('http', 'ws')}/rtcstats`;
      const trace = new sdk.StatsTrace({ backoffInitialMs: 100 });
      const errors = [];
      trace.on('error', (e) => errors.push({ code: e.code, fatal: e.fatal, message: e.message }));
      await trace.connect(url);
      for (let i = 0; i < 60; i += 1) trace.event('note', { i, pad: 'p'.repeat(400) });
      const counters = await trace.close();
      return { errors, counters };
    }), capped.url);
    assert.ok(result.errors.length >= 1, JSON.stringify(result));
    for (const e of result.errors) {
      assert.deepEqual([e.code, e.fatal], ['stats-refused', false]);
      assert.match(e.message, /dump size limit/);
    }
    assert.equal(result.counters.lostAtClose, 0, JSON.stringify(result.counters));
    const dumps = (await readDumps(dir)).sort((x, y) => x.socket - y.socket);
    assert.ok(dumps.length >= 2, JSON.stringify(dumps));
    for (const dump of dumps) assert.equal(dump.ok, true, `${dump.file}: line ${dump.line}: ${dump.reason}`);
    for (const dump of dumps.slice(0, -1)) {
      assert.equal(dump.closeCode, 1013);
      assert.equal(dump.close.reason, 'dump-size-limit');
      assert.ok(readFileSync(dump.file).length <= 20000);
    }
    assert.equal(dumps.at(-1).closeCode, 1000);
    // Every event exactly once across the dumps, in order.
    const seen = dumps.flatMap((d) => d.custom.map(([, value]) => value.i));
    assert.deepEqual(seen, [...Array(60).keys()]);
  } finally {
    await capped.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('chromium: stats without a collector: RemotePeer stats events every intervalMs, and no dump', async () => {
  clearDumps();
  const result = await withPage('chromium', (page) => page.evaluate(async (room) => {
    const { pair, waitFor } = window.rt;
    const { a, b } = await pair(room, { stats: { intervalMs: 300 } });
    const samples = [];
    a.s.peer(b.s.localPeerId).on('stats', (s) => samples.push({ at: performance.now(), s }));
    await waitFor('four stats events', () => samples.length >= 4, 10000);
    await a.s.leave();
    const count = samples.length;
    await new Promise((r) => setTimeout(r, 700));
    await b.s.leave();
    const gaps = samples.slice(1, 4).map((x, i) => x.at - samples[i].at);
    return { gaps, after: samples.length - count, last: structuredClone(samples.at(-1).s) };
  }, roomName('local-stats')));
  for (const gap of result.gaps) assert.ok(gap > 150 && gap < 1000, `gap ${gap}`);
  assert.equal(result.after, 0, 'no stats events after leave()');
  assert.ok(result.last.video.inboundFps > 0, JSON.stringify(result.last));
  assert.deepEqual(readdirSync(dumpsDir), []);
});

/** An HS256 JWT, as an app server would issue for the collector. */
function jwt(claims, secret) {
  const part = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const body = `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}`;
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}

test('chromium: the collector checks the stats token: identity lands in the dump; a bad token is a non-fatal error and the call goes on', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rtcroom-dumps-'));
  const secret = 'collector-secret';
  const guarded = await startServer(['--dumps-dir', dir, '--rtcstats-secret', secret]);
  try {
    const exp = Math.floor(Date.now() / 1000) + 600;
    const good = jwt({ exp, rtcStats: { user: 'ann', session: 's-1', conference: 'standup' } }, secret);
    const bad = jwt({ exp, rtcStats: { user: 'eve' } }, 'wrong-secret');
    const result = await withPage('chromium', (page) => page.evaluate(async (room, good, bad) => {
      const url = `${location.origin.replace('http', 'ws')}/rtcstats`;
      const { a, b } = await window.rt.pair(room, { stats: { url, token: good } }, { stats: { url, token: bad } });
      await a.s.leave();
      await b.s.leave();
      return { errorsA: a.log.errors, errorsB: b.log.errors, stateB: b.s.state };
    }, roomName('token'), good, bad), guarded.url);
    assert.deepEqual(result.errorsA, []);
    assert.equal(result.errorsB.length, 1, JSON.stringify(result.errorsB));
    assert.match(result.errorsB[0], /^unauthorized: the stats collector refused the trace/);
    assert.equal(result.stateB, 'left', 'the refused trace did not stop the call');
    const files = readdirSync(dir);
    assert.equal(files.length, 1, 'only the accepted trace left a dump');
    const metadata = JSON.parse(readFileSync(join(dir, files[0]), 'utf8').split('\n')[1]);
    assert.deepEqual([metadata.user, metadata.session, metadata.conference], ['ann', 's-1', 'standup']);
    assert.match(metadata.url, /rtcstats-token=obfuscated/);
    assert.ok(!JSON.stringify(metadata).includes(good.split('.')[2]), 'the token is not stored');
  } finally {
    await guarded.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('chromium: 200 rapid connect/close cycles with random awaits: every dump valid and only its own call in it', async () => {
  clearDumps();
  const cycles = 200;
  const result = await withPage('chromium', (page) => page.evaluate(async (cycles) => {
    const { sdk } = window.rt;
    const url = `${location.origin.replace('http', 'ws')}/rtcstats`;
    const trace = new sdk.StatsTrace({ closeGraceMs: 3000 });
    const pause = () => new Promise((r) => setTimeout(r, Math.random() * 8));
    const closes = [];
    const generations = [];
    for (let i = 0; i < cycles; i += 1) {
      const opened = trace.connect(url);
      // Sometimes trace before the socket is open, sometimes after.
      if (Math.random() < 0.5) await opened.catch(() => {});
      const generation = trace.generation;
      generations.push(generation);
      trace.event('cycle', { i, generation });
      const pc = new RTCPeerConnection();
      trace.trace(pc);
      trace.trace(pc); // twice on purpose: still one create and one event per call
      pc.createDataChannel(`c${i}`);
      if (Math.random() < 0.5) await pause();
      trace.event('cycle-end', { i, generation });
      pc.close();
      // A stale close of an older generation must not touch this one.
      if (i > 0 && Math.random() < 0.3) closes.push(trace.close(generations[i - 1]));
      const closing = trace.close(generation);
      if (Math.random() < 0.5) await closing; else closes.push(closing);
    }
    const counters = await Promise.all(closes);
    return { generations, lost: counters.filter((c) => c && c.lostAtClose > 0).length };
  }, cycles));
  assert.equal(new Set(result.generations).size, cycles, 'a generation per connect');
  assert.equal(result.lost, 0);
  const dumps = await readDumps(dumpsDir);
  assert.equal(dumps.length, cycles);
  for (const dump of dumps) {
    assert.equal(dump.ok, true, `${dump.file}: line ${dump.line}: ${dump.reason}`);
    // Every event of the dump is of its own generation, in order, nothing else.
    const custom = dump.custom.map(([method, value]) => [method, value.generation]);
    assert.deepEqual(custom, [[':cycle', dump.generation], [':cycle-end', dump.generation]], dump.file);
    assert.equal(count(dump, 'PC_0', 'create'), 1);
    assert.equal(count(dump, 'PC_0', 'createDataChannel'), 1);
    assert.equal(count(dump, 'PC_0', 'close'), 1);
    assert.equal(Object.keys(dump.pcs).length, 1, 'one pc per call');
  }
});

test('chromium: the collector restarts mid-call: the trace reconnects, nothing is missing or duplicated across the dumps', async () => {
  clearDumps();
  const port = Number(new URL(server.url).port);
  const restart = async () => {
    await server.stop();
    server = await startServer(['--dumps-dir', dumpsDir, '--port', String(port)]);
  };
  const browser = await launch('chromium');
  try {
    const page = await browser.newPage();
    await page.goto(`${server.url}/`);
    await installPageHelpers(page);
    await page.evaluate(async (room) => {
      const stats = { url: `${location.origin.replace('http', 'ws')}/rtcstats`, backoffInitialMs: 200 };
      const { a, b } = await window.rt.pair(room, { stats }, { stats });
      window.call = { a, b };
      await new Promise((r) => setTimeout(r, 1500));
    }, roomName('cut'));
    await restart();
    const result = await page.evaluate(async () => {
      const { a, b } = window.call;
      // The call goes on (media is peer to peer); the trace reconnects and keeps recording.
      await new Promise((r) => setTimeout(r, 2500));
      await a.s.leave();
      await b.s.leave();
      return { errors: [...a.log.errors, ...b.log.errors] };
    });
    assert.deepEqual(result.errors.filter((e) => !e.startsWith('signaling')), []);
  } finally {
    await browser.close();
  }
  const dumps = await readDumps(dumpsDir);
  for (const dump of dumps) assert.equal(dump.ok, true, `${dump.file}: line ${dump.line}: ${dump.reason}`);
  // Two clients, each with a dump before and one after the restart.
  const byClient = new Map();
  for (const d of dumps) byClient.set(d.traceId, [...(byClient.get(d.traceId) ?? []), d]);
  assert.equal(dumps.length, 4, JSON.stringify(dumps.map((d) => [d.traceId, d.socket, d.firstSeq, d.events])));
  assert.equal(byClient.size, 2);
  for (const parts of byClient.values()) {
    parts.sort((x, y) => x.socket - y.socket);
    assert.deepEqual(parts.map((d) => d.socket), [0, 1]);
    assert.equal(parts[0].closeCode, 1001, 'the first dump ends with the server going away');
    const seqs = parts.flatMap((d) => d.list.filter(([seq]) => seq !== null).map(([seq]) => seq));
    assert.equal(new Set(seqs).size, seqs.length, 'no event twice');
    assert.deepEqual(seqs, [...Array(seqs.length).keys()], 'no event missing');
    assert.ok(parts[1].pcs.PC_0.getStats > 0, 'stats go on after the reconnect');
    assert.equal(parts[1].pcs.PC_0.close, 1);
  }
});
