// The serverless transport runs rtcroom-server's own hub (the rtcroom-hub crate, as wasm) in a
// SharedWorker: tabs of one origin meet with the server's rules, not a JS imitation of them.
// Each rule below is one the hub enforces and a hand-written relay would not: capacity,
// frame validation and the kick, heartbeat timeouts, and resume with the same peer id.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { BROWSERS, launch, startServer } from './harness.mjs';
import { installPageHelpers, roomName } from './page.mjs';

let server;
before(async () => { server = await startServer(); });
after(async () => { await server.stop(); });

for (const name of BROWSERS) {
  test(`${name}: the server's hub in a SharedWorker: capacity, hostile frames, timeouts and resume between tabs`, async () => {
    const browser = await launch(name);
    try {
      const pages = [];
      for (let i = 0; i < 3; i++) {
        const page = await browser.newPage();
        await page.goto(`${server.url}/`);
        await installPageHelpers(page);
        pages.push(page);
      }
      const [pa, pb, pc] = pages;
      const room = roomName('sw');
      // A and B: sessions on the worker hub. A's transport is its own instance, so the test
      // can drop it later; B's liveness timeout is short, for the timeout check.
      const ids = [];
      ids.push(await pa.evaluate(async (room) => {
        const { session, sdk } = window.rt;
        window.transport = new sdk.SharedWorkerTransport();
        window.me = await session(room, { transport: window.transport, media: false, capacity: 3 });
        await window.me.s.join();
        return window.me.s.localPeerId;
      }, room));
      ids.push(await pb.evaluate(async (room) => {
        const { session, sdk } = window.rt;
        const transport = new sdk.SharedWorkerTransport({ heartbeatMs: 250, timeoutMs: 1500 });
        window.me = await session(room, { transport, media: false });
        await window.me.s.join();
        return window.me.s.localPeerId;
      }, room));
      await pa.evaluate((b) => window.rt.waitFor('A sees B connected', () => window.me.s.peer(b)?.state === 'connected'), ids[1]);

      // C: a hostile member speaking raw frames to the same hub, in the same room.
      const hostile = await pc.evaluate(async (room) => {
        const { sdk, waitFor } = window.rt;
        const t = new sdk.SharedWorkerTransport();
        const frames = [];
        let closed = null;
        t.onmessage = (text) => frames.push(JSON.parse(text));
        t.onclose = (info) => { closed = info; };
        t.connect();
        t.send(JSON.stringify({ type: 'join', room, version: 1 }));
        await waitFor('hostile joined', () => frames.some((f) => f.type === 'joined'), 5000);
        const id = frames.find((f) => f.type === 'joined').peerId;
        // A fourth member does not fit: the room was made with capacity 3.
        const full = await window.rt.session(room, { transport: 'shared-worker', media: false });
        const refused = await full.s.join().then(() => 'joined', (e) => ({ code: e.code, fatal: e.fatal }));
        // Garbage of every kind: each answered with the server's error code, then the kick.
        t.send('not json');
        t.send(JSON.stringify({ type: 'bogus' }));
        t.send(JSON.stringify({ type: 'signal', to: 'nobody', payload: {} }));
        t.send('x'.repeat(70 * 1024));
        t.send(JSON.stringify({ type: 'metadata', metadata: [1, 2] }));
        for (let i = 0; i < 12; i++) t.send('{');
        await waitFor('kicked', () => closed !== null, 5000);
        const codes = frames.filter((f) => f.type === 'error').map((f) => f.code);
        return { id, refused, codes, closed };
      }, room);
      assert.deepEqual(hostile.refused, { code: 'room-full', fatal: true });
      assert.deepEqual(hostile.codes.slice(0, 5), ['malformed-frame', 'unknown-type', 'unknown-peer', 'frame-too-large', 'invalid-argument']);
      assert.equal(hostile.closed.code, 4004, JSON.stringify(hostile.closed));

      // A and B saw the hostile member come and be kicked, and are still connected.
      for (const [page, other] of [[pa, ids[1]], [pb, ids[0]]]) {
        const seen = await page.evaluate(async (h, other) => {
          const { waitFor } = window.rt;
          await waitFor('hostile kicked', () => window.me.log.left.some((l) => l.id === h));
          return {
            joined: window.me.log.joined.includes(h),
            left: window.me.log.left.filter((l) => l.id === h).map((l) => l.reason),
            state: window.me.s.state,
            peer: window.me.s.peer(other)?.state,
          };
        }, hostile.id, other);
        assert.deepEqual(seen, { joined: true, left: ['kicked'], state: 'joined', peer: 'connected' });
      }

      // A's signaling drops (its transport closes under it): the session resumes on the hub
      // with its peer id; B sees no leave and the call stays up.
      const resumed = await pa.evaluate(async (b) => {
        const { waitFor } = window.rt;
        const t = window.transport;
        const before = window.me.s.localPeerId;
        window.me.log.states.length = 0;
        t.close();
        t.onclose?.({ code: 1006, reason: 'dropped by the test' });
        await waitFor('rejoined', () => window.me.log.states.includes('joined'), 10000);
        return { same: window.me.s.localPeerId === before, states: window.me.log.states, peer: window.me.s.peer(b)?.state };
      }, ids[1]);
      assert.deepEqual(resumed, { same: true, states: ['reconnecting', 'joined'], peer: 'connected' });
      assert.deepEqual(await pb.evaluate(() => window.me.log.left.map((l) => l.reason)), ['kicked']);

      // B's page hangs (its main thread busy, so its transport goes silent): the hub drops it
      // after its 1.5 s timeout and A hears `peer-left` with reason `timeout`.
      const t0 = Date.now();
      pb.evaluate(() => { const end = Date.now() + 4000; while (Date.now() < end); }).catch(() => {});
      const left = await pa.evaluate(async (b) => {
        await window.rt.waitFor('B timed out', () => window.me.log.left.some((l) => l.id === b), 10000);
        return window.me.log.left.find((l) => l.id === b).reason;
      }, ids[1]);
      assert.equal(left, 'timeout');
      const elapsed = Date.now() - t0;
      assert.ok(elapsed >= 1400 && elapsed < 4000, `timeout reported after ${elapsed} ms`);
    } finally {
      await browser.close();
    }
  });
}
