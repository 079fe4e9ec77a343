// Data between peers in real browsers through the real server: messages of every kind, in
// order, acknowledged by the receiving app; 10,000 un-awaited sends; the unreliable channel's
// dedupe and its ack timeout against a frozen page; an app channel; and a 4 MiB string across
// Chromium and Firefox both ways.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { BROWSERS, launch, startServer } from './harness.mjs';
import { joinedPages } from './page.mjs';

let server;
before(async () => { server = await startServer(); });
after(async () => { await server.stop(); });

const pairOf = (browsers, prefix) => joinedPages(server.url, browsers, prefix);

for (const name of BROWSERS) {
  test(`${name}: 1,000 messages of every kind arrive intact and in order; send() resolves after the other app had them`, async () => {
    const browser = await launch(name);
    try {
      const { pages: [a, b], ids } = await pairOf([browser, browser], 'data');
      // B's first listener holds message 0 for 300 ms: A's send of it cannot resolve sooner.
      await b.evaluate(() => {
        window.me.s.on('message', ({ data }) => {
          if (data === 'hold') { const end = performance.now() + 300; while (performance.now() < end); }
        });
      });
      const sent = await a.evaluate(async (bId) => {
        const peer = window.me.s.peer(bId);
        const t0 = performance.now();
        const held = await peer.send('hold');
        const heldMs = performance.now() - t0;
        const make = (i) => {
          switch (i % 7) {
            case 0: return `text ${i} ✓ ${'x'.repeat(i)}`;
            case 1: return { i, nested: { list: [i, 'two', null, true] } };
            case 2: return new Uint8Array(Array.from({ length: i % 50 }, (_, k) => (i + k) & 255)).buffer;
            case 3: return new Uint8Array([i & 255, (i >> 8) & 255, 7]);
            case 4: return new Float64Array([i, i / 3, -0.5]);
            case 5: return new Blob([`blob ${i}`]);
            default: return new DataView(new Uint8Array([1, 2, i & 255]).buffer);
          }
        };
        const results = await Promise.all(Array.from({ length: 1000 }, (_, i) => peer.send(make(i))));
        return { held, heldMs, results: results.every((r) => r === true) };
      }, ids[1]);
      assert.equal(sent.held, true);
      assert.ok(sent.heldMs >= 290, `send resolved ${sent.heldMs} ms after, before the listener returned`);
      assert.equal(sent.results, true);
      const got = await b.evaluate(async () => {
        await window.rt.waitFor('1,001 messages', () => window.inbox.length >= 1001);
        const describe = async (d) => {
          if (typeof d === 'string') return ['string', d];
          if (d instanceof Blob) return ['Blob', await d.text()];
          if (d instanceof ArrayBuffer) return ['ArrayBuffer', [...new Uint8Array(d)]];
          if (ArrayBuffer.isView(d)) return [d.constructor.name, d instanceof DataView ? [...new Uint8Array(d.buffer)] : [...d]];
          return ['json', JSON.stringify(d)];
        };
        return Promise.all(window.inbox.map(async (m) => [m.channel, ...(await describe(m.data))]));
      });
      const want = [['reliable', 'string', 'hold']];
      for (let i = 0; i < 1000; i++) {
        switch (i % 7) {
          case 0: want.push(['reliable', 'string', `text ${i} ✓ ${'x'.repeat(i)}`]); break;
          case 1: want.push(['reliable', 'json', JSON.stringify({ i, nested: { list: [i, 'two', null, true] } })]); break;
          case 2: want.push(['reliable', 'ArrayBuffer', Array.from({ length: i % 50 }, (_, k) => (i + k) & 255)]); break;
          case 3: want.push(['reliable', 'Uint8Array', [i & 255, (i >> 8) & 255, 7]]); break;
          case 4: want.push(['reliable', 'Float64Array', [i, i / 3, -0.5]]); break;
          case 5: want.push(['reliable', 'Blob', `blob ${i}`]); break;
          default: want.push(['reliable', 'DataView', [1, 2, i & 255]]);
        }
      }
      assert.deepEqual(got, want);
    } finally {
      await browser.close();
    }
  });

  test(`${name}: 10,000 un-awaited sends, an app channel, broadcast, and the unreliable channel`, async () => {
    const browser = await launch(name);
    try {
      const { pages: [a, b], ids } = await pairOf([browser, browser], 'burst');
      const burst = await a.evaluate(async (bId) => {
        const peer = window.me.s.peer(bId);
        const all = [];
        for (let i = 0; i < 10_000; i++) all.push(peer.send(`#${i}`));
        const results = await Promise.allSettled(all);
        return { ok: results.filter((r) => r.status === 'fulfilled' && r.value === true).length, errors: results.filter((r) => r.status === 'rejected').map((r) => r.reason.code).slice(0, 3) };
      }, ids[1]);
      assert.deepEqual(burst, { ok: 10_000, errors: [] });
      const order = await b.evaluate(async () => {
        await window.rt.waitFor('10,000', () => window.inbox.length >= 10_000);
        return window.inbox.every((m, i) => m.data === `#${i}`) && window.inbox.length === 10_000;
      });
      assert.equal(order, true);

      // An app channel, unreliable one way (A sends with maxRetransmits 0), reliable the other.
      await b.evaluate(() => { window.inbox.length = 0; window.me.s.createChannel('game'); });
      await a.evaluate(() => window.me.s.createChannel('game', { ordered: false, maxRetransmits: 0 }));
      const game = await a.evaluate(async (bId) => {
        const peer = window.me.s.peer(bId);
        await window.rt.waitFor('game open', async () => (await peer.send('probe', { channel: 'game', ack: true, timeoutMs: 500 })) === true);
        return window.me.s.broadcast({ hello: 'all' }, { channel: 'game' });
      }, ids[1]);
      assert.deepEqual(game, { delivered: [ids[1]], failed: [] });
      const back = await b.evaluate(async (aId) => {
        const r = await window.me.s.peer(aId).send('reliable back', { channel: 'game' });
        await window.rt.waitFor('broadcast', () => window.inbox.some((m) => m.data?.hello === 'all'));
        return { r, channels: [...new Set(window.inbox.map((m) => m.channel))] };
      }, ids[0]);
      assert.deepEqual(back, { r: true, channels: ['game'] });
      await a.evaluate(() => window.rt.waitFor('reliable back', () => window.inbox.some((m) => m.data === 'reliable back' && m.channel === 'game')));

      // Unreliable: whatever arrives arrives once and never older than what came before.
      await b.evaluate(() => { window.inbox.length = 0; });
      const handed = await a.evaluate(async (bId) => {
        const peer = window.me.s.peer(bId);
        const r = await Promise.all(Array.from({ length: 300 }, (_, i) => peer.send({ n: i }, { channel: 'unreliable' })));
        return r.every((x) => x === true);
      }, ids[1]);
      assert.equal(handed, true);
      const seen = await b.evaluate(async () => {
        await new Promise((r) => setTimeout(r, 1000));
        return window.inbox.filter((m) => m.channel === 'unreliable').map((m) => m.data.n);
      });
      assert.ok(seen.length > 0, 'some unreliable messages arrive on loopback');
      assert.ok(seen.every((n, i) => i === 0 || n > seen[i - 1]), `no duplicates, no stale: ${seen.slice(0, 20)}`);

      // { ack: true } against a frozen page: false after the timeout; true once it is back.
      b.evaluate(() => { const end = Date.now() + 3000; while (Date.now() < end); }).catch(() => {});
      await new Promise((r) => setTimeout(r, 200));
      const frozen = await a.evaluate(async (bId) => {
        const t0 = performance.now();
        const r = await window.me.s.peer(bId).send('are you there', { channel: 'unreliable', ack: true, timeoutMs: 1000 });
        return { r, ms: Math.round(performance.now() - t0) };
      }, ids[1]);
      assert.equal(frozen.r, false);
      assert.ok(frozen.ms >= 950 && frozen.ms < 2500, `timed out after ${frozen.ms} ms`);
      await new Promise((r) => setTimeout(r, 3000));
      const alive = await a.evaluate((bId) => window.me.s.peer(bId).send('back?', { channel: 'unreliable', ack: true, timeoutMs: 3000 }), ids[1]);
      assert.equal(alive, true);

      // Messages sent while an ICE restart is under way are delivered (SCTP outlives it).
      await b.evaluate(() => { window.inbox.length = 0; });
      const restarted = await a.evaluate(async (bId) => {
        const peer = window.me.s.peer(bId);
        const pc = peer.peerConnection;
        const ufrag = () => /a=ice-ufrag:(\S+)/.exec(pc.localDescription?.sdp ?? '')?.[1];
        const before = ufrag();
        peer.restartIce();
        const sends = Array.from({ length: 50 }, (_, i) => peer.send(`during restart ${i}`));
        const results = await Promise.all(sends);
        await window.rt.waitFor('new ufrag', () => ufrag() !== before && pc.signalingState === 'stable');
        return { all: results.every((r) => r === true), state: peer.state };
      }, ids[1]);
      assert.deepEqual(restarted, { all: true, state: 'connected' });
      const during = await b.evaluate(() => window.inbox.map((m) => m.data));
      assert.deepEqual(during, Array.from({ length: 50 }, (_, i) => `during restart ${i}`));
    } finally {
      await browser.close();
    }
  });
}

test('chromium ⇄ firefox: a 4 MiB string both ways, the same SHA-256 on arrival', async () => {
  const [chromium, firefox] = [await launch('chromium'), await launch('firefox')];
  try {
    const { pages, ids } = await pairOf([chromium, firefox], 'big');
    for (const [from, to, toId] of [[pages[0], pages[1], ids[1]], [pages[1], pages[0], ids[0]]]) {
      const sent = await from.evaluate(async (toId) => {
        const text = Array.from({ length: 4 * 1024 * 1024 / 16 }, (_, i) => `${String(i).padStart(10, '0')}-abcd\n`).join('');
        const digest = [...new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text)))].map((b) => b.toString(16).padStart(2, '0')).join('');
        const ok = await window.me.s.peer(toId).send(text);
        return { ok, digest, length: text.length };
      }, toId);
      assert.equal(sent.ok, true);
      assert.equal(sent.length, 4 * 1024 * 1024);
      const got = await to.evaluate(async () => {
        await window.rt.waitFor('the big one', () => window.inbox.some((m) => typeof m.data === 'string' && m.data.length > 1e6));
        const { data } = window.inbox.find((m) => typeof m.data === 'string' && m.data.length > 1e6);
        window.inbox.length = 0;
        const digest = [...new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(data)))].map((b) => b.toString(16).padStart(2, '0')).join('');
        return { digest, length: data.length };
      });
      assert.deepEqual(got, { digest: sent.digest, length: sent.length });
    }
  } finally {
    await Promise.all([chromium.close(), firefox.close()]);
  }
});
