#!/usr/bin/env node
// join → connected benchmark: the rtcroom SDK (RoomSession) vs a hand-written raw-JS textbook
// perfect-negotiation mesh (www/bench/raw-mesh.js), side by side in the SAME page of the same
// browser against the same rtcroom-server on loopback. Not a test file: prints a table.
//
//   ./run build && cargo build -p rtcroom-server
//   node tests/e2e/join-bench.mjs [--rounds 10] [--sizes 2,4] [--browsers chromium,firefox] [--timeout-ms 20000]
//
// Per round (fresh room each), N clients call join() at the same time; the figure is the ms from
// the join() calls to the moment all N·(N−1) directed pairs report connectionState 'connected'.
// The kinds alternate order round by round so that they share the noise. A round that is not
// connected within --timeout-ms counts as a failure (no figure).
import { readdirSync, readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { launch, startServer } from './harness.mjs';

function parseArgs(argv) {
  const opts = { rounds: 10, sizes: [2, 4], browsers: ['chromium', 'firefox'], timeoutMs: 20000 };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split('=');
    const value = () => inline ?? argv[++i];
    switch (flag) {
      case '--rounds': opts.rounds = Number(value()); break;
      case '--sizes': opts.sizes = value().split(',').map(Number); break;
      case '--browsers': opts.browsers = value().split(','); break;
      case '--timeout-ms': opts.timeoutMs = Number(value()); break;
      case '--help': case '-h':
        console.log('node tests/e2e/join-bench.mjs [--rounds 10] [--sizes 2,4] [--browsers chromium,firefox] [--timeout-ms 20000]');
        process.exit(0);
        break;
      default: throw new Error(`unknown flag ${argv[i]}`);
    }
  }
  if (!(opts.rounds > 0) || opts.sizes.some((n) => !(n >= 2))) throw new Error('bad --rounds / --sizes');
  return opts;
}

/** Busy and total jiffies of the whole machine (/proc/stat), to report the load during the run. */
function cpuTimes() {
  const [, ...f] = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/);
  const v = f.map(Number);
  const idle = v[3] + v[4];
  const total = v.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

/** CPU seconds (utime + stime, plus reaped children) of `root` and all its live descendants. */
function treeCpuSeconds(root) {
  const procs = new Map();
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // after "pid (comm) ": state ppid ... utime(12) stime(13) cutime(14) cstime(15), 0-based from state
      procs.set(Number(pid), { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]) });
    } catch { /* exited meanwhile */ }
  }
  let total = 0;
  const todo = [root];
  const seen = new Set();
  while (todo.length) {
    const pid = todo.pop();
    if (seen.has(pid)) continue;
    seen.add(pid);
    total += procs.get(pid)?.ticks ?? 0;
    for (const [child, p] of procs) if (p.ppid === pid) todo.push(child);
  }
  return total / CLK_TCK;
}
const CLK_TCK = 100;

/** Pids of this process's children named `comm`. */
function childPids(comm) {
  const out = [];
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === process.pid && name === comm) out.push(Number(pid));
    } catch { /* exited meanwhile */ }
  }
  return out;
}

const KINDS = ['rtcroom', 'raw'];

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.max(0, Math.ceil(p * s.length) - 1)] : NaN;
};
const fmt = (ms) => (Number.isFinite(ms) ? `${Math.round(ms)}` : '—');
const ratio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}x` : '—');

async function benchBrowser(name, server, opts) {
  const browser = await launch(name);
  try {
    const page = await browser.newPage();
    page.on('pageerror', (err) => console.error(`[${name} pageerror]`, err));
    await page.goto(`${server.url}/bench/`);
    const info = await page.evaluate(async () => {
      window.bench = await import('/bench/bench.js');
      return window.bench.setup();
    });
    console.error(`# ${name}: ${info.userAgent}`);
    const results = {}; // `${n}/${kind}` → [{ ok, ms, ... }]
    for (let r = 0; r < opts.rounds; r++) {
      for (const n of opts.sizes) {
        const order = r % 2 === 0 ? KINDS : [...KINDS].reverse();
        for (const kind of order) {
          const room = `jb-${name}-${n}-${kind}-${r}-${Math.random().toString(36).slice(2, 8)}`;
          let res;
          try {
            res = await Promise.race([
              page.evaluate((a) => window.bench.runRound(a), { kind, n, room, timeoutMs: opts.timeoutMs }),
              new Promise((_, rej) => setTimeout(() => rej(new Error('driver timeout')), opts.timeoutMs + 15000)),
            ]);
          } catch (err) {
            res = { ok: false, reason: String(err.message ?? err) };
          }
          (results[`${n}/${kind}`] ??= []).push(res);
          const line = res.ok
            ? `${Math.round(res.ms)} ms`
            : `FAIL ${res.reason}${res.stuckIceNew ? ' (stable + ICE new)' : ''} ${JSON.stringify(res.states ?? [])}`;
          const errs = res.errors?.length ? ` errors: ${JSON.stringify(res.errors.slice(0, 3))}` : '';
          console.error(`# ${name} round ${r + 1}/${opts.rounds} N=${n} ${kind}: ${line}${errs}`);
        }
      }
    }
    benchCpu += treeCpuSeconds(browser.process().pid);
    return results;
  } finally {
    await browser.close();
  }
}

let benchCpu = 0; // CPU seconds of the browsers under test (whole process trees)

const opts = parseArgs(process.argv.slice(2));
const server = await startServer();
const cpu0 = cpuTimes();
const load0 = readFileSync('/proc/loadavg', 'utf8').trim();
const t0 = Date.now();
const all = {};
try {
  for (const name of opts.browsers) all[name] = await benchBrowser(name, server, opts);
} finally {
  for (const pid of childPids('rtcroom-server')) benchCpu += treeCpuSeconds(pid);
  const self = process.cpuUsage();
  benchCpu += (self.user + self.system) / 1e6;
  await server.stop();
}
const cpu1 = cpuTimes();
const wallS = (Date.now() - t0) / 1000;
const busyCores = ((cpu1.busy - cpu0.busy) / (cpu1.total - cpu0.total)) * cpus().length;
const benchCores = benchCpu / wallS;

console.log(`\njoin → connected (ms), ${opts.rounds} rounds per cell, fresh room per round, timeout ${opts.timeoutMs} ms`);
console.log(`machine: ${cpus().length} × ${cpus()[0]?.model ?? '?'}; run ${wallS.toFixed(0)} s; ` +
  `machine busy ${busyCores.toFixed(2)} of ${cpus().length} cores on average: this bench (browsers, server, node) ${benchCores.toFixed(2)}, ` +
  `other load ${Math.max(0, busyCores - benchCores).toFixed(2)}; loadavg before: ${load0}, after: ${readFileSync('/proc/loadavg', 'utf8').trim()}`);
console.log('');
console.log('| browser | N | client | ok / rounds | median | p90 | max | failures (stuck: stable + ICE new) | rounds with errors |');
console.log('|---|---|---|---|---|---|---|---|---|');
const ratios = [];
for (const [name, results] of Object.entries(all)) {
  for (const n of opts.sizes) {
    const cell = {};
    for (const kind of KINDS) {
      const rs = results[`${n}/${kind}`] ?? [];
      const ms = rs.filter((x) => x.ok).map((x) => x.ms);
      const fails = rs.filter((x) => !x.ok);
      cell[kind] = { med: median(ms), p90: pct(ms, 0.9), max: ms.length ? Math.max(...ms) : NaN };
      console.log(`| ${name} | ${n} | ${kind === 'raw' ? 'raw JS (textbook)' : 'rtcroom SDK'} | ${ms.length} / ${rs.length} | ` +
        `${fmt(cell[kind].med)} | ${fmt(cell[kind].p90)} | ${fmt(cell[kind].max)} | ` +
        `${fails.length} (${fails.filter((x) => x.stuckIceNew).length}) | ${rs.filter((x) => x.errors?.length).length} |`);
    }
    ratios.push(`| ${name} | ${n} | ${ratio(cell.rtcroom.med, cell.raw.med)} | ${ratio(cell.rtcroom.p90, cell.raw.p90)} | ${ratio(cell.rtcroom.max, cell.raw.max)} |`);
  }
}
console.log('');
console.log('| browser | N | median rtcroom/raw | p90 rtcroom/raw | max rtcroom/raw |');
console.log('|---|---|---|---|---|');
for (const line of ratios) console.log(line);
