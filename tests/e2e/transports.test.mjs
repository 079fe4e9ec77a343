// The two non-WebSocket signaling paths: the serverless hub between same-origin contexts (a
// SharedWorker; no server involved in signaling) and an app-supplied transport object.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { BROWSERS, launch, startServer } from './harness.mjs';
import { installPageHelpers, roomName } from './page.mjs';

let server;
before(async () => { server = await startServer(); });
after(async () => { await server.stop(); });

for (const name of BROWSERS) {
  test(`${name}: BroadcastChannel transport: serverless call between two pages of one origin`, async () => {
    const browser = await launch(name);
    try {
      const pages = [await browser.newPage(), await browser.newPage()];
      for (const page of pages) {
        await page.goto(`${server.url}/`);
        await installPageHelpers(page);
      }
      const room = roomName('bc');
      const start = (page) => page.evaluate(async (room) => {
        const { session } = window.rt;
        window.me = await session(room, { transport: 'broadcast-channel', url: 'ws://127.0.0.1:9/unused' });
        await window.me.s.join();
        return window.me.s.localPeerId;
      }, room);
      const ids = [await start(pages[0]), await start(pages[1])];
      const seen = await Promise.all(pages.map((page, i) => page.evaluate(async (other) => {
        const { waitFor, framesDecoded } = window.rt;
        const { s, log } = window.me;
        await waitFor('connected', () => s.peer(other)?.state === 'connected');
        await waitFor('stream', () => (log.added.get(other) ?? []).length > 0);
        const pc = s.peer(other).peerConnection;
        let first = 0;
        await waitFor('frames', async () => (first = await framesDecoded(pc)) > 0);
        await waitFor('more frames', async () => (await framesDecoded(pc)) > first);
        return { peers: s.peers().map((p) => p.id), role: log.added.get(other)[0].role, errors: log.errors };
      }, ids[1 - i])));
      assert.deepEqual(seen[0], { peers: [ids[1]], role: 'camera', errors: [] });
      assert.deepEqual(seen[1], { peers: [ids[0]], role: 'camera', errors: [] });
      const t0 = Date.now();
      await pages[1].evaluate(() => window.me.s.leave());
      const left = await pages[0].evaluate(async () => {
        await window.rt.waitFor('peer-left', () => window.me.log.left.length > 0, 5000);
        return window.me.log.left[0];
      });
      assert.equal(left.reason, 'left');
      assert.ok(Date.now() - t0 < 1500, `peer-left after ${Date.now() - t0} ms`);
    } finally {
      await browser.close();
    }
  });

  test(`${name}: an app-supplied transport object carries the signaling`, async () => {
    const browser = await launch(name);
    try {
      const page = await browser.newPage();
      await page.goto(`${server.url}/`);
      await installPageHelpers(page);
      const result = await page.evaluate(async (room) => {
        const { session, connected } = window.rt;
        const sent = [];
        // The app owns the socket (its own URL, auth, framing…); the SDK only sees send/onmessage.
        const appTransport = () => {
          const t = {
            onmessage: null, onclose: null, ws: null,
            connect() {
              return new Promise((resolve, reject) => {
                t.ws = new WebSocket(`${location.origin.replace('http', 'ws')}/signal`);
                t.ws.onopen = resolve;
                t.ws.onerror = () => reject(new Error('socket error'));
                t.ws.onmessage = (e) => t.onmessage?.(e.data);
                t.ws.onclose = (e) => t.onclose?.({ code: e.code, reason: e.reason });
              });
            },
            send(text) { sent.push(JSON.parse(text).type); t.ws.send(text); },
            close() { t.ws?.close(); },
          };
          return t;
        };
        const a = await session(room, { transport: appTransport() });
        const b = await session(room, { transport: appTransport() });
        await a.s.join();
        await b.s.join();
        await connected(a, b);
        await a.s.leave();
        return { kinds: [...new Set(sent)].sort(), errors: [...a.log.errors, ...b.log.errors] };
      }, roomName('custom'));
      assert.deepEqual(result.errors, []);
      for (const kind of ['join', 'leave', 'signal']) assert.ok(result.kinds.includes(kind), `${kind} in ${result.kinds}`);
    } finally {
      await browser.close();
    }
  });
}
