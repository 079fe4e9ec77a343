#!/usr/bin/env node
// Memory while a large file goes from one browser to another (not a test: prints a table).
//
//   ./run build && cargo build -p rtcroom-server
//   node tests/bench/file-memory.mjs [MiB=1024] [chromium|firefox (receiver)]
//
// The file is written to disk and picked with an <input type=file> (as a user would), so the
// sender's page never holds it. Each side is its own browser, so each side's processes are its
// own: every second the resident memory (RSS) of each browser's whole process tree is sampled,
// and in Chromium also the page's JS heap. Baseline (joined, before the offer), peak during the
// transfer, and the SHA-256 both SDKs computed against the file's, computed here.
import { execSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, openSync, rmSync, writeSync } from 'node:fs';
import { launch, startServer } from '../e2e/harness.mjs';
import { joinedPages } from '../e2e/page.mjs';

const mib = Number(process.argv[2] ?? 1024);
const receiverName = process.argv[3] ?? 'chromium';
const path = `/tmp/rtcroom-bench-${mib}mib.bin`;

// The file: pseudo-random MiBs, hashed as written.
const hash = createHash('sha256');
const fd = openSync(path, 'w');
const block = Buffer.alloc(1 << 20);
let x = 0x9e3779b9;
for (let m = 0; m < mib; m++) {
  for (let i = 0; i < block.length; i += 4) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; block.writeUInt32LE(x >>> 0, i); }
  writeSync(fd, block);
  hash.update(block);
}
closeSync(fd);
const want = hash.digest('hex');

/** RSS (MiB) of a process and all its descendants. */
function treeRss(root) {
  const rows = execSync('ps -eo pid=,ppid=,rss=').toString().trim().split('\n').map((l) => l.trim().split(/\s+/).map(Number));
  const kids = new Map();
  for (const [pid, ppid] of rows) kids.set(ppid, [...(kids.get(ppid) ?? []), pid]);
  const rss = new Map(rows.map(([pid, , r]) => [pid, r]));
  let total = 0;
  const stack = [root];
  while (stack.length) {
    const pid = stack.pop();
    total += rss.get(pid) ?? 0;
    stack.push(...(kids.get(pid) ?? []));
  }
  return total / 1024;
}

const server = await startServer();
const browsers = [await launch('chromium'), await launch(receiverName)];
try {
  const { pages, ids } = await joinedPages(server.url, browsers, 'fmem');
  const [sender, receiver] = pages;
  await receiver.evaluate((id) => {
    window.result = null;
    window.me.s.peer(id).on('file', (incoming) => {
      incoming.accept().done.then(({ blob, sha256 }) => { window.result = { size: blob.size, sha256 }; },
        (e) => { window.result = { error: e.code }; });
    });
  }, ids[0]);
  await sender.evaluate(() => {
    const input = document.createElement('input');
    input.type = 'file';
    input.id = 'bench-file';
    document.body.append(input);
  });
  await (await sender.$('#bench-file')).uploadFile(path);
  const heap = (page) => page.evaluate(() => (performance.memory ? performance.memory.usedJSHeapSize / 2 ** 20 : null));
  const pids = browsers.map((b) => b.process()?.pid);
  const sample = async () => ({
    rss: pids.map((p) => (p ? treeRss(p) : null)),
    heap: await Promise.all(pages.map(heap)),
  });
  const base = await sample();
  const t0 = Date.now();
  const sent = sender.evaluate((id) => {
    const file = document.getElementById('bench-file').files[0];
    return window.me.s.peer(id).sendFile(file).done.then(({ sha256 }) => ({ sha256 }), (e) => ({ error: e.code }));
  }, ids[1]);
  const peak = { rss: [0, 0], heap: [0, 0] };
  let done = null;
  sent.then((r) => { done = r; });
  while (!done) {
    await new Promise((r) => setTimeout(r, 1000));
    const s = await sample();
    for (const k of ['rss', 'heap']) for (const i of [0, 1]) peak[k][i] = Math.max(peak[k][i], s[k][i] ?? 0);
  }
  const seconds = (Date.now() - t0) / 1000;
  const got = await receiver.evaluate(async () => { await window.rt.waitFor('result', () => window.result !== null, 60000); return window.result; });
  const fmt = (v) => (v == null ? '–' : `${Math.round(v)} MiB`);
  console.log(`${mib} MiB chromium → ${receiverName} in ${seconds.toFixed(1)} s (${(mib * 1.048576 / seconds).toFixed(1)} MB/s)`);
  console.log(`sha256: file ${want}, sender ${done.sha256 ?? done.error}, receiver ${got.sha256 ?? got.error}, received ${got.size} B`);
  console.log('| | sender | receiver |');
  console.log('|---|---|---|');
  console.log(`| browser RSS, joined (baseline) | ${fmt(base.rss[0])} | ${fmt(base.rss[1])} |`);
  console.log(`| browser RSS, peak during the transfer | ${fmt(peak.rss[0])} | ${fmt(peak.rss[1])} |`);
  console.log(`| page JS heap, baseline → peak | ${fmt(base.heap[0])} → ${fmt(peak.heap[0])} | ${fmt(base.heap[1])} → ${fmt(peak.heap[1])} |`);
} finally {
  for (const b of browsers) await b.close();
  await server.stop();
  rmSync(path, { force: true });
}
