#!/usr/bin/env node
// Stats tracing benchmark: rtcroom's tracer core (`RoomCore.tracer()`, wasm) against the `rtcstats` npm package
// (5.2.0, devDependency), both fed THE SAME getStats reports in the same headless Chromium page,
// both sending to the real rtcroom-server collector (/rtcstats). Not a test: prints tables.
//
//   ./run bench stats      (builds the package and the server, then runs this), or:
//   ./run build && cargo build -p rtcroom-server
//   node tests/bench/stats-bench.mjs [--samples 60] [--interval-ms 1000] [--passes 40] [--warmup 4] [--gap-ms 4]
//   # RTCROOM_SERVER_BIN picks another server build (default target/debug/rtcroom-server)
// Results and method: docs/benchmarks.md, "Stats tracing".
//
// 1. A two-peer audio + video call (fake camera + microphone, 320x240) between two
//    RTCPeerConnections of one page, negotiated in the page. Both tracers trace the whole call
//    (package-level view): rtcroom's `StatsTrace` (intervalMs 1000) and rtcstats' own module
//    function (rtcstats.js, getStats every 1000 ms) with its own `trace-ws.js` trace function.
//    Meanwhile the bench takes --samples getStats reports of each pc every --interval-ms and
//    keeps them as plain objects (Object.fromEntries(report)).
// 2. (a) bytes: each tracer is fed the captured reports of one pc in order, from a fresh state;
//    the messages handed to WebSocket.send are collected (a wrapper on WebSocket.prototype.send)
//    and measured raw and as permessage-deflate (RFC 7692) payloads, computed here in Node.
// 3. (b) main-thread time per sample, from the plain report in hand to the message handed to
//    ws.send: passes over the captured reports (fresh state per pass, alternating the two pcs'
//    report sets), every sample of every pass measured for both tracers, each in its own event
//    loop task, alternating which one runs first. The page is cross-origin isolated (it and pkg/
//    are served with COOP/COEP from a second loopback port) so performance.now() has 5 µs
//    resolution instead of 100 µs.
//      - ours: core.record(g, 'getStats', pcId, report, undefined) on `RoomCore.tracer()`
//        (wasm): converts the JS object, delta-compresses, encodes JSON, sends.
//      - rtcstats: the body of its getStats callback: `base = JSON.parse(JSON.stringify(now))`,
//        `trace('getstats', id, deltaCompression(prev, now))`, `prev = base`, where
//        deltaCompression is the package's own function text and trace is trace-ws.js's own
//        function (JSON.stringify([method, id, value, Date.now()]) + ws.send).
// 4. A CPU profile (CDP, 50 µs sampling) of ours alone, on the same schedule: where the time of
//    RoomCore.record goes (Rust function names with --pkg-dir of a names-kept build).
import { existsSync, readFileSync, readdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { cpus, tmpdir } from 'node:os';
import { extname, join } from 'node:path';
import zlib from 'node:zlib';
import { ROOT, launch, startServer } from '../e2e/harness.mjs';

const USAGE = `node tests/bench/stats-bench.mjs [--samples 60] [--interval-ms 1000] [--passes 40] [--warmup 4] [--gap-ms 4]
    [--profile-passes 20] [--profile-top 8] [--pkg-dir pkg] [--save FILE]
  --pkg-dir: the package the page loads (e.g. a names-kept build, for a readable profile)
  --save: write the captured reports and every message text as JSON`;

function parseArgs(argv) {
  const opts = {
    samples: 60, intervalMs: 1000, passes: 40, warmup: 4, gapMs: 4, profilePasses: 20, profileTop: 8,
    pkgDir: join(ROOT, 'pkg'), save: null,
  };
  const flags = {
    '--samples': 'samples', '--interval-ms': 'intervalMs', '--passes': 'passes', '--warmup': 'warmup',
    '--gap-ms': 'gapMs', '--profile-passes': 'profilePasses', '--profile-top': 'profileTop',
  };
  const strings = { '--pkg-dir': 'pkgDir', '--save': 'save' };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split('=');
    if (flag === '--help' || flag === '-h') {
      console.log(USAGE);
      process.exit(0);
    }
    if (flag in strings) opts[strings[flag]] = inline ?? argv[++i];
    else if (flag in flags) opts[flags[flag]] = Number(inline ?? argv[++i]);
    else throw new Error(`unknown flag ${argv[i]}`);
  }
  if (!(opts.samples >= 2) || !(opts.passes >= 2) || !(opts.intervalMs >= 0) || !(opts.warmup >= 0)) {
    throw new Error('bad --samples / --passes / --interval-ms / --warmup');
  }
  return opts;
}

// ---- rtcstats' own source -----------------------------------------------------------------

const require = createRequire(import.meta.url);
const RTCSTATS_DIR = join(require.resolve('rtcstats/package.json'), '..');
const RTCSTATS_VERSION = JSON.parse(readFileSync(join(RTCSTATS_DIR, 'package.json'), 'utf8')).version;
const RTCSTATS_SRC = readFileSync(join(RTCSTATS_DIR, 'rtcstats.js'), 'utf8');
const TRACE_WS_SRC = readFileSync(join(RTCSTATS_DIR, 'trace-ws.js'), 'utf8');

/** The exact text of a top-level `function NAME(...) {...}` in `src` (braces matched). */
function functionText(src, name) {
  const start = src.indexOf(`function ${name}(`);
  if (start < 0) throw new Error(`rtcstats.js has no function ${name}`);
  let depth = 0;
  for (let i = src.indexOf('{', start); i < src.length; i++) {
    if (src[i] === '{') depth++;
    else if (src[i] === '}' && --depth === 0) return src.slice(start, i + 1);
  }
  throw new Error(`unbalanced braces in ${name}`);
}
const DELTA_COMPRESSION_SRC = functionText(RTCSTATS_SRC, 'deltaCompression');

// ---- statistics -----------------------------------------------------------------------------

const sorted = (xs) => [...xs].sort((a, b) => a - b);
const median = (xs) => {
  const s = sorted(xs);
  if (!s.length) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const pct = (xs, p) => {
  const s = sorted(xs);
  return s.length ? s[Math.max(0, Math.ceil(p * s.length) - 1)] : NaN;
};
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
const ms = (x) => (Number.isFinite(x) ? x.toFixed(3) : '—');
const int = (x) => Math.round(x).toLocaleString('en-US');
const ratio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}x` : '—');

// ---- permessage-deflate (RFC 7692) payload sizes -------------------------------------------

// zlib defaults as Chromium's WebSocketDeflater uses them: level Z_DEFAULT_COMPRESSION, 15-bit
// window, memLevel 8. Each message: deflate, Z_SYNC_FLUSH, drop the trailing 00 00 ff ff.
const TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);

function stripTail(out) {
  if (out.length < 4 || !out.subarray(out.length - 4).equals(TAIL)) throw new Error('deflate output lacks the sync-flush tail');
  return out.length - 4;
}

/** Sum of payload bytes with context takeover (one deflate stream for the whole socket). */
async function deflateTakeover(texts) {
  const d = zlib.createDeflateRaw();
  const chunks = [];
  d.on('data', (c) => chunks.push(c));
  const inflater = zlib.createInflateRaw();
  const back = [];
  inflater.on('data', (c) => back.push(c));
  let total = 0;
  for (const text of texts) {
    await new Promise((resolve) => { d.write(Buffer.from(text)); d.flush(zlib.constants.Z_SYNC_FLUSH, resolve); });
    const out = Buffer.concat(chunks.splice(0));
    total += stripTail(out);
    // Round trip through one inflate stream, as the receiver would (checks the sizes are real).
    await new Promise((resolve) => { inflater.write(out); inflater.flush(zlib.constants.Z_SYNC_FLUSH, resolve); });
    const text2 = Buffer.concat(back.splice(0)).toString();
    if (text2 !== text) throw new Error('permessage-deflate round trip mismatch');
  }
  d.close();
  inflater.close();
  return total;
}

/** Sum of payload bytes without context takeover (a fresh deflate per message). */
function deflateNoTakeover(texts) {
  let total = 0;
  for (const text of texts) total += stripTail(zlib.deflateRawSync(Buffer.from(text), { finishFlush: zlib.constants.Z_SYNC_FLUSH }));
  return total;
}

/** WebSocket frame header bytes of a masked client frame carrying `n` payload bytes. */
const frameHeader = (n) => 2 + 4 + (n > 65535 ? 8 : n > 125 ? 2 : 0);

async function sizes(texts) {
  const raw = texts.reduce((a, t) => a + Buffer.byteLength(t), 0);
  return {
    count: texts.length,
    raw,
    takeover: await deflateTakeover(texts),
    noTakeover: deflateNoTakeover(texts),
    frames: texts.reduce((a, t) => a + frameHeader(Buffer.byteLength(t)), 0),
  };
}

// ---- machine load ---------------------------------------------------------------------------

function cpuTimes() {
  const v = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return { busy: v.reduce((a, b) => a + b, 0) - v[3] - v[4], total: v.reduce((a, b) => a + b, 0) };
}

// ---- the page -------------------------------------------------------------------------------

/**
 * A blank page plus pkg/ (the same files rtcroom-server serves at /pkg/), on another loopback
 * port, with COOP/COEP so the page is cross-origin isolated and performance.now() has 5 µs
 * resolution instead of 100 µs. rtcroom-server sends no such headers, and headers added by the
 * driver (CDP Fetch) do not make a page isolated. The collector is still rtcroom-server's.
 */
async function startPageServer(pkgDir) {
  const types = { '.js': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json' };
  const isolation = {
    'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp', 'Cache-Control': 'no-store',
  };
  const srv = createServer((req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    if (path === '/') {
      res.writeHead(200, { ...isolation, 'Content-Type': 'text/html' });
      res.end('<!doctype html><meta charset="utf-8"><title>stats bench</title>');
      return;
    }
    if (path === '/favicon.ico') {
      res.writeHead(204, isolation);
      res.end();
      return;
    }
    const name = path.match(/^\/pkg\/([\w.-]+)$/)?.[1];
    const file = name && join(pkgDir, name);
    if (!file || !existsSync(file)) {
      res.writeHead(404, isolation);
      res.end();
      return;
    }
    res.writeHead(200, { ...isolation, 'Content-Type': types[extname(file)] ?? 'application/octet-stream' });
    res.end(readFileSync(file));
  });
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${srv.address().port}`, close: () => new Promise((resolve) => { srv.close(resolve); srv.closeAllConnections(); }) };
}

/** The bench page, cross-origin isolated, with the SDK loaded and the send wrapper installed. */
async function openPage(browser, pages, server) {
  const page = await browser.newPage();
  page.on('pageerror', (err) => console.error('[pageerror]', err));
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warn') console.error(`[page ${m.type()}]`, m.text()); });
  await page.goto(`${pages.url}/`);
  const info = await page.evaluate(async (wsUrl) => {
    const sdk = await import('/pkg/index.js');
    await sdk.load();
    const wasm = await import('/pkg/rtcroom.js'); // the same, already initialized module
    // Every message handed to a WebSocket goes through here: `B.sink(ws, text, ms)` while set,
    // with the time the browser's own send took.
    const send = WebSocket.prototype.send;
    WebSocket.prototype.send = function (data) {
      if (!B.sink) return send.call(this, data);
      const t = performance.now();
      const result = send.call(this, data);
      B.sink(this, data, performance.now() - t);
      return result;
    };
    /** trace-ws.js (rtcstats' own) evaluated with a WebSocket that goes to our collector. */
    const traceWs = (src) => {
      let socket;
      function WS() {
        socket = new WebSocket(wsUrl, 'rtcstats#5.0'); // trace-ws asks for protocol '2.0' at its own URL
        return socket;
      }
      Object.assign(WS, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
      const module = { exports: {} };
      new Function('module', 'exports', 'WebSocket', src)(module, module.exports, WS);
      const trace = module.exports(wsUrl);
      const opened = new Promise((resolve, reject) => {
        socket.addEventListener('open', resolve);
        socket.addEventListener('error', () => reject(new Error('rtcstats socket failed')));
      });
      return { trace, socket, opened };
    };
    const sleep = (t) => new Promise((r) => setTimeout(r, t));
    window.B = { sdk, wasm, sink: null, traceWs, sleep, wsUrl };
    return {
      userAgent: navigator.userAgent,
      crossOriginIsolated: self.crossOriginIsolated,
    };
  }, `${server.url.replace(/^http/, 'ws')}/rtcstats`);
  return { page, info };
}

/**
 * Phase 1: the call, traced by both; captures `samples` reports of each pc.
 * Returns { reports: [pc1[], pc2[]], fromEntriesMs, whole: { ours: texts[], rtcstats: texts[] }, ... }.
 */
async function captureCall(page, opts, sources) {
  return page.evaluate(async ({ samples, intervalMs, rtcstatsSrc, traceWsSrc }) => {
    const { sdk, sleep } = B;
    const whole = { ours: [], rtcstats: [] };
    let rtcSocket = null;
    B.sink = (ws, text) => {
      (ws === rtcSocket ? whole.rtcstats : whole.ours).push(text); // the page has just these two sockets
    };
    // What rtcstats' Chrome path would do: the legacy callback getStats.
    const probe = new RTCPeerConnection();
    let legacy;
    try {
      const r = probe.getStats(() => {});
      legacy = await Promise.race([r.then(() => 'resolved (promise API, callback ignored)', (e) => `rejected: ${e.name}: ${e.message}`), sleep(2000).then(() => 'no answer')]);
    } catch (e) {
      legacy = `throws: ${e.name}: ${e.message}`;
    }
    probe.close();
    const webkitGUM = typeof navigator.webkitGetUserMedia;

    // ours: the package's StatsTrace, as an app uses it.
    const ours = new sdk.StatsTrace({ intervalMs: 1000 });
    await ours.connect(B.wsUrl);
    // rtcstats: its module function with its trace-ws trace. The shim navigator has no
    // webkitGetUserMedia (so rtcstats takes its promise-getStats path, as in Safari; its Chrome
    // path calls the legacy callback getStats) and no mediaDevices (rtcroom does not trace
    // getUserMedia either).
    const tw = B.traceWs(traceWsSrc);
    rtcSocket = tw.socket;
    await tw.opened;
    const shimWindow = {
      RTCPeerConnection: window.RTCPeerConnection,
      navigator: {},
      setInterval: (...a) => window.setInterval(...a),
      clearInterval: (...a) => window.clearInterval(...a),
    };
    const module = { exports: {} };
    new Function('module', 'exports', 'window', 'navigator', rtcstatsSrc)(module, module.exports, shimWindow, shimWindow.navigator);
    module.exports(tw.trace, 1000, ['']);

    const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 320, height: 240 } });
    const pcs = [0, 1].map(() => new shimWindow.RTCPeerConnection({})); // rtcstats' wrapper: traced by it
    for (const pc of pcs) ours.trace(pc); // and by ours
    const [a, b] = pcs;
    a.addEventListener('icecandidate', (e) => e.candidate && b.addIceCandidate(e.candidate));
    b.addEventListener('icecandidate', (e) => e.candidate && a.addIceCandidate(e.candidate));
    for (const track of stream.getTracks()) a.addTrack(track, stream);
    const clone = stream.clone();
    for (const track of clone.getTracks()) b.addTrack(track, clone);
    const offer = await a.createOffer();
    await a.setLocalDescription(offer);
    await b.setRemoteDescription(offer);
    const answer = await b.createAnswer();
    await b.setLocalDescription(answer);
    await a.setRemoteDescription(answer);
    const t0 = performance.now();
    const framesDecoded = async (pc) => {
      let n = 0;
      (await pc.getStats()).forEach((r) => { if (r.type === 'inbound-rtp' && r.kind === 'video') n = Math.max(n, r.framesDecoded ?? 0); });
      return n;
    };
    while (!(pcs.every((pc) => pc.connectionState === 'connected') && (await framesDecoded(a)) > 0 && (await framesDecoded(b)) > 0)) {
      if (performance.now() - t0 > 20000) throw new Error(`call not up: ${pcs.map((pc) => pc.connectionState)}`);
      await sleep(20);
    }
    const connectMs = performance.now() - t0;

    const reports = [[], []];
    const fromEntriesMs = [];
    const start = performance.now();
    for (let i = 0; i < samples; i++) {
      const due = start + i * intervalMs;
      if (due > performance.now()) await sleep(due - performance.now());
      for (const [k, pc] of pcs.entries()) {
        const report = await pc.getStats();
        const t = performance.now();
        const plain = Object.fromEntries(report);
        fromEntriesMs.push(performance.now() - t);
        reports[k].push(plain);
      }
    }
    const captureMs = performance.now() - start;
    for (const pc of pcs) pc.close(); // ours: final getStats + close; rtcstats: close
    for (const t of [...stream.getTracks(), ...clone.getTracks()]) t.stop();
    const counters = await ours.close();
    tw.trace.close();
    await sleep(500);
    B.sink = null;
    const types = {};
    for (const r of Object.values(reports[0][samples - 1])) types[r.type] = (types[r.type] ?? 0) + 1;
    return { reports, fromEntriesMs, whole, legacy, webkitGUM, counters, connectMs, captureMs, types };
  }, { samples: opts.samples, intervalMs: opts.intervalMs, rtcstatsSrc: sources.rtcstats, traceWsSrc: sources.traceWs });
}

/** Phase 2 and 3 in a fresh page: bytes (first pass of each report set), then timing. */
async function feed(page, reports, opts) {
  return page.evaluate(async ({ reports, passes, warmup, gapMs, dcSrc, traceWsSrc }) => {
    const { sleep } = B;
    const deltaCompression = new Function(`${dcSrc}\nreturn deltaCompression;`)();
    if (deltaCompression.toString() !== dcSrc) throw new Error('deltaCompression text changed on evaluation');

    // ours: the exported wasm class, one generation, one traced pc per pass (fresh compressor).
    const core = B.wasm.RoomCore.tracer({ intervalMs: 0 }, () => {});
    const g = await core.traceConnect(B.wsUrl, {});
    const dummy = new RTCPeerConnection();
    // rtcstats: trace-ws.js's trace on its own socket.
    const tw = B.traceWs(traceWsSrc);
    await tw.opened;
    const trace = tw.trace;

    let sent = null; // texts sent during the current measured call
    let sendMs = 0; // time spent in the browser's ws.send during it
    B.sink = (ws, text, t) => { if (sent) { sent.push(text); sendMs += t; } };

    const runOurs = (st, report) => {
      sent = [];
      sendMs = 0;
      const t0 = performance.now();
      const ok = core.record(g, 'getStats', st.id, report, undefined);
      const t1 = performance.now();
      const out = sent;
      sent = null;
      if (ok === false) st.refused++;
      return { ms: t1 - t0, sendMs, out };
    };
    // The body of rtcstats' getStats callback (promise path), `now` being the plain report.
    const runRtc = (st, now) => {
      sent = [];
      sendMs = 0;
      const t0 = performance.now();
      const base = JSON.parse(JSON.stringify(now)); // our new prev
      const t1 = performance.now();
      const delta = deltaCompression(st.prev, now);
      const t2 = performance.now();
      trace('getstats', st.id, delta);
      const t3 = performance.now();
      st.prev = base;
      const out = sent;
      sent = null;
      return { ms: t3 - t0, copy: t1 - t0, delta: t2 - t1, send: t3 - t2, sendMs, out };
    };

    const texts = { ours: [[], []], rtcstats: [[], []] };
    const res = { ours: [], rtcstats: [], rtcParts: [] }; // per measured sample: { pass, set, i, ms }
    let badSends = 0;
    let refused = 0;
    for (let pass = 0; pass < passes + warmup; pass++) {
      const set = pass % 2;
      const list = reports[set];
      const oursSt = { id: core.traceAttach(g, dummy, {}), refused: 0 };
      const rtcSt = { id: `PC_${pass}`, prev: {} };
      await sleep(gapMs);
      for (let i = 0; i < list.length; i++) {
        const order = (pass + i) % 2 === 0 ? ['ours', 'rtcstats'] : ['rtcstats', 'ours'];
        for (const kind of order) {
          const r = kind === 'ours' ? runOurs(oursSt, list[i]) : runRtc(rtcSt, list[i]);
          if (r.out.length !== 1) badSends++;
          if (pass < 2) texts[kind][set].push(...r.out);
          if (pass >= warmup) {
            res[kind].push({ pass, set, i, ms: r.ms, sendMs: r.sendMs });
            if (kind === 'rtcstats') res.rtcParts.push({ copy: r.copy, delta: r.delta, send: r.send });
          }
          await sleep(gapMs); // every measurement starts a fresh event loop task
        }
      }
      refused += oursSt.refused;
      await sleep(300); // collector acks arrive; the core forgets what was delivered
    }
    B.sink = null;
    B.feed = { core, g, dummy, reports };
    return { texts, res, badSends, refused };
  }, { reports, passes: opts.passes, warmup: opts.warmup, gapMs: opts.gapMs, dcSrc: DELTA_COMPRESSION_SRC, traceWsSrc: TRACE_WS_SRC });
}

/** A profile frame as `name [file]`, Rust hashes and crate disambiguators removed. */
function frameName({ functionName, url }) {
  const name = (functionName || '(anonymous)').replace(/::h[0-9a-f]{16}$/, '').replace(/\[[0-9a-f]{16}\]/g, '');
  return `${name} [${url ? url.split('/').pop() : 'native'}]`;
}

/** Phase 4: CPU profile of ours alone (same page, after the timing), self time by category. */
async function profileOurs(page, opts) {
  const cdp = await page.createCDPSession();
  await cdp.send('Profiler.enable');
  await cdp.send('Profiler.setSamplingInterval', { interval: 50 });
  await cdp.send('Profiler.start');
  // Same schedule as the timing: every sample in its own task, --gap-ms apart.
  const wallMs = await page.evaluate(async ({ passes, gapMs }) => {
    const { core, g, dummy, reports } = B.feed;
    let busy = 0;
    for (let pass = 0; pass < passes; pass++) {
      const id = core.traceAttach(g, dummy, {});
      for (const report of reports[pass % 2]) {
        await B.sleep(gapMs);
        const t = performance.now();
        core.record(g, 'getStats', id, report, undefined);
        busy += performance.now() - t;
      }
      await B.sleep(300);
    }
    return busy;
  }, { passes: opts.profilePasses, gapMs: opts.gapMs });
  const { profile } = await cdp.send('Profiler.stop');
  await cdp.send('Profiler.disable');
  await cdp.detach();

  const self = new Map(profile.nodes.map((n) => [n.id, 0]));
  profile.samples.forEach((id, k) => self.set(id, self.get(id) + (profile.timeDeltas[k + 1] ?? 0)));
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  // Only what runs inside RoomCore.record (the bench's loop and timers are left out).
  const isRecord = (n) => n.callFrame.functionName === 'record' && n.callFrame.url.endsWith('/rtcroom.js');
  const inside = new Set();
  const mark = (id, under) => {
    const n = byId.get(id);
    const now = under || isRecord(n);
    if (now) inside.add(id);
    for (const child of n.children ?? []) mark(child, now);
  };
  mark(profile.nodes[0].id, false);
  const cats = {};
  const fns = new Map();
  let total = 0;
  for (const n of profile.nodes) {
    const t = self.get(n.id) / 1000;
    if (!t || !inside.has(n.id)) continue;
    const { functionName: name, url } = n.callFrame;
    const cat = /\.wasm$|^wasm:/.test(url) || /^\$|wasm-function/.test(name) ? 'wasm code'
      : url.endsWith('/rtcroom.js') ? 'wasm-bindgen JS glue'
        : name === 'send' && url === '' ? 'the browser\'s ws.send'
          : 'other browser built-ins (Object.entries, TextEncoder, …)';
    cats[cat] = (cats[cat] ?? 0) + t;
    const fkey = frameName(n.callFrame);
    fns.set(fkey, (fns.get(fkey) ?? 0) + t);
    total += t;
  }
  const top = [...fns].sort((x, y) => y[1] - x[1]).slice(0, opts.profileTop);
  // Inclusive time per function (once per stack, so recursion is not counted twice).
  const incl = new Map();
  const walk = (id, onStack) => {
    const n = byId.get(id);
    const key = frameName(n.callFrame);
    let t = inside.has(id) ? (self.get(id) ?? 0) / 1000 : 0;
    const inner = onStack.has(key) ? onStack : new Set([...onStack, key]);
    for (const child of n.children ?? []) t += walk(child, inner);
    if (!onStack.has(key) && inside.has(id)) incl.set(key, (incl.get(key) ?? 0) + t);
    return t;
  };
  walk(profile.nodes[0].id, new Set());
  // Leave out the frames every sample passes through (the exported method and its shims).
  const boring = /^record \[rtcroom\.js\]|^js-to-wasm|externref shim|^wasm-to-js|^handleError|^\(anonymous\) \[rtcroom\.js\]|pptr:/;
  const inclusive = [...incl].filter(([k]) => !boring.test(k)).sort((x, y) => y[1] - x[1]).slice(0, opts.profileTop);
  return { total, wallMs, cats, top, inclusive };
}

// ---- main -----------------------------------------------------------------------------------

const opts = parseArgs(process.argv.slice(2));
const dumpsDir = mkdtempSync(join(tmpdir(), 'rtcroom-stats-bench-'));
const server = await startServer(['--dumps-dir', dumpsDir]);
const pages = await startPageServer(opts.pkgDir);
const cpu0 = cpuTimes();
const load0 = readFileSync('/proc/loadavg', 'utf8').trim();
const t0 = Date.now();
let browser;
let call;
let fed;
let prof;
let info;
let version;
try {
  browser = await launch('chromium');
  version = await browser.version();
  console.error(`# ${version}; rtcstats ${RTCSTATS_VERSION}; capturing ${opts.samples} reports per pc every ${opts.intervalMs} ms …`);
  {
    const { page, info: i } = await openPage(browser, pages, server);
    info = i;
    call = await captureCall(page, opts, { rtcstats: RTCSTATS_SRC, traceWs: TRACE_WS_SRC });
    await page.close();
  }
  console.error(`# captured; feeding ${opts.passes} passes (+${opts.warmup} warmup) …`);
  const { page } = await openPage(browser, pages, server);
  fed = await feed(page, call.reports, opts);
  console.error(`# profiling ours (${opts.profilePasses} passes) …`);
  prof = await profileOurs(page, opts);
  await page.close();
} finally {
  await browser?.close();
  await server.stop();
  await pages.close();
}
const dumps = readdirSync(dumpsDir);
rmSync(dumpsDir, { recursive: true, force: true });
const cpu1 = cpuTimes();
const wallS = (Date.now() - t0) / 1000;
const busyCores = ((cpu1.busy - cpu0.busy) / (cpu1.total - cpu0.total)) * cpus().length;

if (!info.crossOriginIsolated) console.error('# WARNING: the page is not cross-origin isolated: performance.now() is coarse (100 µs)');
if (fed.badSends) console.error(`# WARNING: ${fed.badSends} measured calls did not hand exactly one message to the socket`);
if (fed.refused) console.error(`# WARNING: the core refused ${fed.refused} records`);

// (a) bytes
const perMinute = 60000 / Math.max(1, opts.intervalMs);
const scale = perMinute / opts.samples; // to bytes per minute at one sample per interval
const bytes = {};
for (const kind of ['ours', 'rtcstats']) {
  bytes[kind] = [];
  for (const set of [0, 1]) bytes[kind].push(await sizes(fed.texts[kind][set]));
}
const avg = (kind, key) => mean(bytes[kind].map((s) => s[key])) * scale;

console.log(`\nstats tracing: rtcroom RoomCore.tracer() vs rtcstats ${RTCSTATS_VERSION}, two-peer audio+video call, headless ${version}`);
console.log(`machine: ${cpus().length} × ${cpus()[0]?.model ?? '?'}; node ${process.version}; run ${wallS.toFixed(0)} s; ` +
  `machine busy ${busyCores.toFixed(2)} of ${cpus().length} cores on average (this bench included); loadavg before: ${load0}, after: ${readFileSync('/proc/loadavg', 'utf8').trim()}`);
console.log(`reports: ${opts.samples} getStats per pc every ${opts.intervalMs} ms from a live call (connected in ${Math.round(call.connectMs)} ms); ` +
  `last report of pc 1: ${Object.values(call.types).reduce((a, b) => a + b, 0)} stats objects (${Object.entries(call.types).map(([k, v]) => `${k} ${v}`).join(', ')}); ` +
  `mean plain report ${int(mean(call.reports[0].map((r) => JSON.stringify(r).length)))} B as JSON`);
console.log('');
console.log(`(a) getStats trace bytes per minute per peer (${opts.samples} samples, first one a full report; mean of the 2 peers; payload bytes, WebSocket frame headers excluded)`);
console.log('');
console.log('| encoding | rtcroom | rtcstats | rtcroom/rtcstats |');
console.log('|---|---|---|---|');
for (const [key, label] of [['raw', 'raw (sum of message lengths)'], ['takeover', 'permessage-deflate, context takeover'], ['noTakeover', 'permessage-deflate, no context takeover']]) {
  console.log(`| ${label} | ${int(avg('ours', key))} B | ${int(avg('rtcstats', key))} B | **${ratio(avg('ours', key), avg('rtcstats', key))}** |`);
}
const first = (kind) => mean([0, 1].map((s) => Buffer.byteLength(fed.texts[kind][s][0])));
const rest = (kind) => mean([0, 1].map((s) => mean(fed.texts[kind][s].slice(1).map((t) => Buffer.byteLength(t)))));
console.log(`| first message (full report), raw | ${int(first('ours'))} B | ${int(first('rtcstats'))} B | ${ratio(first('ours'), first('rtcstats'))} |`);
console.log(`| later messages (deltas), raw mean | ${int(rest('ours'))} B | ${int(rest('rtcstats'))} B | ${ratio(rest('ours'), rest('rtcstats'))} |`);
console.log(`frame headers add ${int(mean(bytes.ours.map((s) => s.frames)) * scale)} B (rtcroom) / ${int(mean(bytes.rtcstats.map((s) => s.frames)) * scale)} B (rtcstats) per minute; ` +
  `per peer: ${bytes.ours.map((s, k) => `pc ${k + 1} ${int(s.raw * scale)} / ${int(s.takeover * scale)}`).join(', ')} (rtcroom raw / deflate), ` +
  `${bytes.rtcstats.map((s, k) => `pc ${k + 1} ${int(s.raw * scale)} / ${int(s.takeover * scale)}`).join(', ')} (rtcstats)`);

// (b) time
const times = (kind, pred = () => true) => fed.res[kind].filter(pred).map((r) => r.ms);
console.log('');
console.log(`(b) main-thread ms per getStats sample, plain report in hand → message handed to ws.send (${opts.passes} passes × ${opts.samples} samples after ${opts.warmup} warmup passes; ` +
  `order alternated; timer resolution ${info.crossOriginIsolated ? '5 µs (cross-origin isolated)' : '100 µs'})`);
console.log('');
console.log('| samples | rtcroom median | rtcstats median | **median ratio** | rtcroom p90 | rtcstats p90 | p90 ratio | rtcroom mean | rtcstats mean |');
console.log('|---|---|---|---|---|---|---|---|---|');
for (const [label, pred] of [['all', () => true], ['first of a pass (full report)', (r) => r.i === 0], ['later (deltas)', (r) => r.i > 0]]) {
  const o = times('ours', pred);
  const r = times('rtcstats', pred);
  console.log(`| ${label} (n=${o.length}) | ${ms(median(o))} | ${ms(median(r))} | **${ratio(median(o), median(r))}** | ${ms(pct(o, 0.9))} | ${ms(pct(r, 0.9))} | ${ratio(pct(o, 0.9), pct(r, 0.9))} | ${ms(mean(o))} | ${ms(mean(r))} |`);
}
const sendO = fed.res.ours.map((r) => r.sendMs);
const sendR = fed.res.rtcstats.map((r) => r.sendMs);
console.log(`of which the browser's ws.send alone: median ${ms(median(sendO))} (rtcroom) / ${ms(median(sendR))} (rtcstats); ` +
  `everything else, median of (sample − its send): ${ms(median(fed.res.ours.map((r) => r.ms - r.sendMs)))} / ${ms(median(fed.res.rtcstats.map((r) => r.ms - r.sendMs)))} ` +
  `= ${ratio(median(fed.res.ours.map((r) => r.ms - r.sendMs)), median(fed.res.rtcstats.map((r) => r.ms - r.sendMs)))}`);
const parts = fed.res.rtcParts;
console.log(`rtcstats median split: prev copy (JSON.parse(JSON.stringify)) ${ms(median(parts.map((p) => p.copy)))}, ` +
  `deltaCompression ${ms(median(parts.map((p) => p.delta)))}, trace (JSON.stringify + ws.send) ${ms(median(parts.map((p) => p.send)))} ms; ` +
  `not timed for either: Object.fromEntries(RTCStatsReport) median ${ms(median(call.fromEntriesMs))} ms`);
const pShare = (v) => `${((100 * v) / prof.total).toFixed(0)} %`;
console.log(`rtcroom CPU profile of RoomCore.record, self time (${opts.profilePasses} passes alone, same schedule, ${ms(prof.wallMs / (opts.profilePasses * opts.samples))} ms per sample under the profiler): ` +
  Object.entries(prof.cats).sort((x, y) => y[1] - x[1]).map(([k, v]) => `${k} ${pShare(v)}`).join(', '));
console.log(`  top self time: ${prof.top.map(([k, v]) => `${k} ${pShare(v)}`).join('; ')}`);
if (prof.inclusive.some(([k]) => k.includes('::'))) {
  console.log(`  top inclusive time: ${prof.inclusive.map(([k, v]) => `${k} ${pShare(v)}`).join('; ')}`);
} else {
  console.log('  (the wasm has no names section: --pkg-dir with a names-kept build shows Rust functions, see docs/benchmarks.md)');
}

// package-level view
const classify = (texts, isStats) => {
  const stats = texts.filter((t) => isStats(JSON.parse(t)[0]));
  return { stats, other: texts.filter((t) => !isStats(JSON.parse(t)[0])) };
};
const w = {
  ours: classify(call.whole.ours, (m) => m === 'g'),
  rtcstats: classify(call.whole.rtcstats, (m) => m === 'getstats'),
};
const ws = {};
for (const kind of ['ours', 'rtcstats']) {
  ws[kind] = { all: await sizes([...call.whole[kind]]), stats: await sizes(w[kind].stats), other: await sizes(w[kind].other) };
}
console.log('');
console.log(`whole call, both tracers live on the same 2 pcs for ${(call.captureMs / 1000).toFixed(0)} s of media + setup + close (one socket each; both pcs on it; getStats every 1000 ms by each tracer)`);
console.log('');
console.log('| messages | rtcroom count | rtcroom raw | rtcroom deflate | rtcstats count | rtcstats raw | rtcstats deflate | raw ratio | deflate ratio |');
console.log('|---|---|---|---|---|---|---|---|---|');
for (const [key, label] of [['stats', 'getStats'], ['other', 'everything else (create, SDP, candidates, states, close)'], ['all', 'all']]) {
  const o = ws.ours[key];
  const r = ws.rtcstats[key];
  console.log(`| ${label} | ${o.count} | ${int(o.raw)} B | ${int(o.takeover)} B | ${r.count} | ${int(r.raw)} B | ${int(r.takeover)} B | ${ratio(o.raw, r.raw)} | ${ratio(o.takeover, r.takeover)} |`);
}
console.log(`(deflate = permessage-deflate with context takeover; rtcroom counters at close: ${JSON.stringify(call.counters)}; collector dump files: ${dumps.length})`);
console.log(`rtcstats ${RTCSTATS_VERSION}'s Chrome path calls the legacy getStats(callback): here it ${call.legacy} (navigator.webkitGetUserMedia is ${call.webkitGUM}); ` +
  'the bench runs it on its promise getStats path (as in Safari/Firefox) through a shim navigator');
if (opts.save) {
  writeFileSync(opts.save, JSON.stringify({ opts, version, reports: call.reports, whole: call.whole, fed: fed.texts }));
  console.error(`# saved the reports and message texts to ${opts.save}`);
}
