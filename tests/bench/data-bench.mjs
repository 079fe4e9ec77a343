#!/usr/bin/env node
// Data benchmark: rtcroom's peer.send() against raw JS on the same peer connection, side by
// side in the same two pages. Not a test: prints a table.
//
//   ./run bench data      (builds the package and the server, then runs this), or:
//   node tests/bench/data-bench.mjs [--browsers chromium,chromium] [--mib 32] [--rounds 3] [--pings 300]
//
// Two pages (one browser each, or both in one) join a room through the real server. The raw
// baseline is a pre-negotiated channel (id 900, reliable, ordered, the same kind as the SDK's
// 'reliable') on the SAME RTCPeerConnection (peer.peerConnection), so both run over the same
// SCTP association:
//  - throughput: --mib MiB of bytes. Ours: one peer.send(Uint8Array), timed until it resolves
//    (the receiving app has it: the ack). Raw: the same bytes in chunks of the SDK's chunk size
//    (the remote maxMessageSize - 15 B header, at most 256 KiB), paced by bufferedamountlow with
//    the SDK's marks (1 MiB high, 256 KiB low), timed until the receiver's 1-byte "done" arrives.
//    Rounds alternate which goes first.
//  - file: a Blob of --mib MiB. Ours: peer.sendFile() until `done` (the receiver verified its
//    SHA-256; it accepts every offer). Raw: the same Blob read slice by slice
//    (blob.slice().arrayBuffer()) and sent in the files engine's frame size with the same marks,
//    until the receiver's "done".
//  - round trip of 1 KiB: ours: peer.send() until it resolves (send → app ack); raw: send 1 KiB,
//    the receiver echoes 1 byte. Interleaved, --pings of each.
import { launch, startServer } from '../e2e/harness.mjs';
import { installPageHelpers, roomName } from '../e2e/page.mjs';

const args = Object.fromEntries(process.argv.slice(2).join(' ').split('--').filter(Boolean).map((a) => a.trim().split(/[ =]/)));
const browsers = (args.browsers ?? 'chromium,chromium').split(',');
const mib = Number(args.mib ?? 32);
const rounds = Number(args.rounds ?? 3);
const pings = Number(args.pings ?? 300);

const server = await startServer();
const launched = new Map();
try {
  const pages = [];
  for (const name of browsers) {
    if (!launched.has(name)) launched.set(name, await launch(name));
    const page = await launched.get(name).newPage();
    await page.goto(`${server.url}/`);
    await installPageHelpers(page);
    pages.push(page);
  }
  const room = roomName('dbench');
  const ids = [];
  for (const page of pages) {
    ids.push(await page.evaluate(async (room) => {
      window.me = await window.rt.session(room, { media: false });
      await window.me.s.join();
      return window.me.s.localPeerId;
    }, room));
  }
  // Both sides: the raw channel on the SDK's pc, and a receiver for each path.
  await Promise.all(pages.map((page, i) => page.evaluate(async (other) => {
    await window.rt.waitFor('connected', () => window.me.s.peer(other)?.state === 'connected');
    const peer = window.me.s.peer(other);
    const pc = peer.peerConnection;
    const raw = pc.createDataChannel('bench-raw', { negotiated: true, id: 900, ordered: true });
    raw.binaryType = 'arraybuffer';
    raw.bufferedAmountLowThreshold = 256 * 1024;
    window.bench = { peer, pc, raw, got: 0, expect: 0, onDone: null, onEcho: null };
    peer.on('file', (incoming) => { incoming.accept(); });
    raw.onmessage = ({ data }) => {
      const b = window.bench;
      if (data.byteLength === 1) { b.onDone?.(); b.onEcho?.(); return; }
      if (data.byteLength === 1024) { raw.send(new Uint8Array(1)); return; }
      b.got += data.byteLength;
      if (b.got >= b.expect && b.expect > 0) { b.got = 0; raw.send(new Uint8Array(1)); }
    };
    await window.rt.waitFor('raw open', () => raw.readyState === 'open');
    // The receiving side's expectation is set by the test before each raw run.
  }, ids[1 - i])));
  const [a, b] = pages;
  const chunk = await a.evaluate(() => {
    const max = window.bench.pc.sctp?.maxMessageSize;
    return Math.min(max && max > 0 && Number.isFinite(max) ? max : 16 * 1024, 256 * 1024) - 15;
  });
  const bytes = mib * 1024 * 1024;
  const ours = [];
  const raws = [];
  for (let r = 0; r < rounds; r++) {
    for (const which of r % 2 ? ['raw', 'ours'] : ['ours', 'raw']) {
      if (which === 'raw') await b.evaluate((n) => { window.bench.expect = n; window.bench.got = 0; }, bytes);
      const ms = await a.evaluate(async (which, bytes, chunk) => {
        const data = new Uint8Array(bytes);
        for (let i = 0; i < bytes; i += 4096) data[i] = i & 255;
        const t0 = performance.now();
        if (which === 'ours') {
          await window.bench.peer.send(data);
        } else {
          const { raw } = window.bench;
          const done = new Promise((resolve) => { window.bench.onDone = resolve; });
          let at = 0;
          while (at < bytes) {
            if (raw.bufferedAmount >= 1024 * 1024) {
              await new Promise((resolve) => { raw.onbufferedamountlow = resolve; });
              continue;
            }
            raw.send(data.subarray(at, Math.min(at + chunk, bytes)));
            at += chunk;
          }
          await done;
          window.bench.onDone = null;
        }
        return performance.now() - t0;
      }, which, bytes, chunk);
      (which === 'ours' ? ours : raws).push(ms);
    }
  }
  const fileOurs = [];
  const fileRaw = [];
  for (let r = 0; r < rounds; r++) {
    for (const which of r % 2 ? ['raw', 'ours'] : ['ours', 'raw']) {
      if (which === 'raw') await b.evaluate((n) => { window.bench.expect = n; window.bench.got = 0; }, bytes);
      const ms = await a.evaluate(async (which, bytes) => {
        const data = new Uint8Array(bytes);
        for (let i = 0; i < bytes; i += 4096) data[i] = i & 255;
        const blob = new Blob([data]);
        const t0 = performance.now();
        if (which === 'ours') {
          await window.bench.peer.sendFile(blob).done;
        } else {
          const { raw } = window.bench;
          const slice = 256 * 1024 - 32;
          const done = new Promise((resolve) => { window.bench.onDone = resolve; });
          for (let at = 0; at < bytes; at += slice) {
            while (raw.bufferedAmount >= 1024 * 1024) await new Promise((resolve) => { raw.onbufferedamountlow = resolve; });
            const part = new Uint8Array(await blob.slice(at, Math.min(at + slice, bytes)).arrayBuffer());
            const frame = new Uint8Array(13 + part.byteLength);
            frame.set(part, 13);
            raw.send(frame);
          }
          await done;
          window.bench.onDone = null;
        }
        return performance.now() - t0;
      }, which, bytes);
      (which === 'ours' ? fileOurs : fileRaw).push(ms);
    }
  }
  const rtt = await a.evaluate(async (pings) => {
    const { peer, raw } = window.bench;
    const kib = new Uint8Array(1024);
    const ours = [];
    const rawMs = [];
    for (let i = 0; i < pings; i++) {
      let t0 = performance.now();
      await peer.send(kib);
      ours.push(performance.now() - t0);
      const echo = new Promise((resolve) => { window.bench.onEcho = resolve; });
      t0 = performance.now();
      raw.send(kib);
      await echo;
      window.bench.onEcho = null;
      rawMs.push(performance.now() - t0);
    }
    const q = (list, p) => { const s = [...list].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };
    return { ours: [q(ours, 0.5), q(ours, 0.99)], raw: [q(rawMs, 0.5), q(rawMs, 0.99)] };
  }, pings);
  const median = (l) => [...l].sort((x, y) => x - y)[Math.floor(l.length / 2)];
  const mbps = (ms) => (bytes / 1e6) / (ms / 1000);
  console.log(`browsers: ${browsers.join(' → ')}, ${mib} MiB, chunk ${chunk} B, ${rounds} rounds, ${pings} pings`);
  console.log('| | rtcroom peer.send | raw JS bufferedamountlow loop | ratio |');
  console.log('|---|---|---|---|');
  console.log(`| throughput (median of ${rounds}) | ${mbps(median(ours)).toFixed(1)} MB/s | ${mbps(median(raws)).toFixed(1)} MB/s | ${(median(raws) / median(ours)).toFixed(2)}x |`);
  console.log(`| file (median of ${rounds}) | ${mbps(median(fileOurs)).toFixed(1)} MB/s | ${mbps(median(fileRaw)).toFixed(1)} MB/s | ${(median(fileRaw) / median(fileOurs)).toFixed(2)}x |`);
  console.log(`| 1 KiB round trip, median | ${rtt.ours[0].toFixed(2)} ms | ${rtt.raw[0].toFixed(2)} ms | ${(rtt.raw[0] / rtt.ours[0]).toFixed(2)}x |`);
  console.log(`| 1 KiB round trip, p99 | ${rtt.ours[1].toFixed(2)} ms | ${rtt.raw[1].toFixed(2)} ms | ${(rtt.raw[1] / rtt.ours[1]).toFixed(2)}x |`);
} finally {
  for (const b of launched.values()) await b.close();
  await server.stop();
}
