// File transfer in real browsers through the real server: 64 MiB across Chromium and Firefox
// both ways with the same SHA-256 and monotone progress on both sides; every way a transfer
// ends early (no listener, rejected, cancelled by either side or by an AbortSignal, the
// receiver leaving); chat is not blocked by a file.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { BROWSERS, launch, startServer } from './harness.mjs';
import { joinedPages } from './page.mjs';

let server;
before(async () => { server = await startServer(); });
after(async () => { await server.stop(); });

/** In each page: `hex(buffer)` (SHA-256) and `makeFile(mib, seed)`, a File of seeded bytes. */
function fileHelpers() {
  window.hex = async (buffer) => [...new Uint8Array(await crypto.subtle.digest('SHA-256', buffer))]
    .map((b) => b.toString(16).padStart(2, '0')).join('');
  window.makeFile = (mib, seed) => {
    const parts = [];
    for (let m = 0; m < mib; m++) {
      const chunk = new Uint32Array(256 * 1024);
      let x = (seed * 2654435761 + m) >>> 0 || 1;
      for (let i = 0; i < chunk.length; i++) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; chunk[i] = x >>> 0; }
      parts.push(chunk);
    }
    return new File(parts, `test-${seed}.bin`, { type: 'application/octet-stream' });
  };
}

const pairOf = (browsers, prefix) => joinedPages(server.url, browsers, prefix, fileHelpers);

test('chromium ⇄ firefox: a 64 MiB file each way, verified, progress monotone to 100 % on both sides', async () => {
  const [chromium, firefox] = [await launch('chromium'), await launch('firefox')];
  try {
    const { pages, ids } = await pairOf([chromium, firefox], 'file');
    for (const [from, to, fromId, toId, seed] of [[pages[0], pages[1], ids[0], ids[1], 1], [pages[1], pages[0], ids[1], ids[0], 2]]) {
      await to.evaluate((fromId) => {
        window.got = null;
        window.inProgress = [];
        window.me.s.peer(fromId).once('file', (incoming) => {
          const t = incoming.accept();
          t.on('progress', ({ bytes, total }) => window.inProgress.push([bytes, total]));
          t.done.then(async ({ blob, sha256 }) => {
            window.got = { name: incoming.name, size: blob.size, type: blob.type, sha256, actual: await window.hex(await blob.arrayBuffer()) };
          }, (e) => { window.got = { error: e.code }; });
        });
      }, fromId);
      const sent = await from.evaluate(async (toId, seed) => {
        const file = window.makeFile(64, seed);
        const want = await window.hex(await file.arrayBuffer());
        const progress = [];
        const t0 = performance.now();
        const t = window.me.s.peer(toId).sendFile(file);
        t.on('progress', ({ bytes, total }) => progress.push([bytes, total]));
        const { sha256 } = await t.done;
        const ms = performance.now() - t0;
        return { want, sha256, ms, progress, size: file.size };
      }, toId, seed);
      const got = await to.evaluate(async () => {
        await window.rt.waitFor('file done', () => window.got !== null, 20000);
        return { ...window.got, progress: window.inProgress };
      });
      const size = 64 * 1024 * 1024;
      assert.equal(sent.sha256, sent.want, 'the sender hashed what it read');
      assert.deepEqual({ ...got, progress: undefined }, { name: `test-${seed}.bin`, size, type: 'application/octet-stream', sha256: sent.want, actual: sent.want, progress: undefined });
      for (const progress of [sent.progress, got.progress]) {
        assert.ok(progress.length > 5, `progress events: ${progress.length}`);
        assert.ok(progress.every(([b, t], i) => t === size && (i === 0 || b >= progress[i - 1][0])), 'monotone');
        assert.deepEqual(progress.at(-1), [size, size]);
      }
      console.log(`# 64 MiB ${seed === 1 ? 'chromium → firefox' : 'firefox → chromium'}: ${Math.round(sent.ms)} ms (${(size / 1e6 / (sent.ms / 1000)).toFixed(1)} MB/s)`);
    }
  } finally {
    await Promise.all([chromium.close(), firefox.close()]);
  }
});

for (const name of BROWSERS) {
  test(`${name}: a file ends early every way, and chat is not blocked by it`, async () => {
    const browser = await launch(name);
    try {
      const { pages: [a, b], ids: [aId, bId] } = await pairOf([browser, browser], 'fileend');
      // No `file` listener: rejected.
      const unheard = await a.evaluate((bId) => window.me.s.peer(bId).sendFile(new Blob(['x'])).done.then(() => 'done', (e) => e.code), bId);
      assert.equal(unheard, 'file-rejected');
      // B answers offers as the test says: reject, accept and cancel mid-file, accept.
      await b.evaluate((aId) => {
        window.plan = [];
        window.results = [];
        window.me.s.peer(aId).on('file', (incoming) => {
          const what = window.plan.shift();
          if (what === 'reject') return incoming.reject('not now');
          const t = incoming.accept();
          t.done.then(() => window.results.push('done'), (e) => window.results.push(e.code));
          if (what === 'cancel') t.on('progress', ({ bytes }) => { if (bytes > 2 << 20) t.cancel('enough'); });
        });
      }, aId);
      const run = async (what, act) => {
        await b.evaluate((what) => { window.plan.push(what); }, what);
        return a.evaluate(async (bId, what, act) => {
          const peer = window.me.s.peer(bId);
          const controller = new AbortController();
          const t = peer.sendFile(window.makeFile(32, 7), act === 'signal' ? { signal: controller.signal } : undefined);
          let progressed = false;
          t.on('progress', ({ bytes }) => {
            if (bytes > 1 << 20 && !progressed) {
              progressed = true;
              if (act === 'cancel') t.cancel('changed my mind');
              if (act === 'signal') controller.abort();
            }
          });
          return t.done.then(() => 'done', (e) => e.code);
        }, bId, what, act);
      };
      assert.equal(await run('reject'), 'file-rejected');
      assert.equal(await run('accept', 'cancel'), 'cancelled');
      assert.equal(await run('accept', 'signal'), 'cancelled');
      assert.equal(await run('cancel'), 'cancelled');
      const bResults = await b.evaluate(async () => {
        await window.rt.waitFor('three endings', () => window.results.length >= 3);
        return window.results;
      });
      assert.deepEqual(bResults, ['cancelled', 'cancelled', 'cancelled']);

      // Chat during a file: the message arrives while the file is still on its way.
      await b.evaluate(() => { window.plan.push('accept'); window.inbox.length = 0; });
      const chat = await a.evaluate(async (bId) => {
        const peer = window.me.s.peer(bId);
        const t = peer.sendFile(window.makeFile(48, 9));
        let fileDone = false;
        t.done.then(() => { fileDone = true; });
        await new Promise((resolve) => t.once('progress', resolve));
        const ok = await peer.send('while the file goes');
        const before = !fileDone;
        await t.done;
        return { ok, before };
      }, bId);
      assert.deepEqual(chat, { ok: true, before: true });
      assert.deepEqual(await b.evaluate(() => window.inbox.map((m) => m.data)), ['while the file goes']);

      // The receiver leaves mid-file: the sender's transfer fails with peer-left.
      await b.evaluate(() => { window.plan.push('accept'); });
      const leaving = a.evaluate(async (bId) => {
        const t = window.me.s.peer(bId).sendFile(window.makeFile(48, 11));
        window.firstProgress = new Promise((resolve) => t.once('progress', resolve));
        return t.done.then(() => 'done', (e) => e.code);
      }, bId);
      await a.evaluate(() => window.rt.waitFor('progress', () => window.firstProgress !== undefined).then(() => window.firstProgress));
      const bLeft = await b.evaluate(async () => {
        await window.me.s.leave();
        await window.rt.waitFor('receiver side ended', () => window.results.length >= 5);
        return window.results.at(-1);
      });
      assert.equal(bLeft, 'cancelled');
      assert.equal(await leaving, 'peer-left');
      assert.equal(await a.evaluate(() => window.me.s.state), 'joined');
    } finally {
      await browser.close();
    }
  });
}
