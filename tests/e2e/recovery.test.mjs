// Recovery end to end: the signaling server dies mid-call and comes back on the same port.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BROWSERS, launch, startServer } from './harness.mjs';
import { installPageHelpers, roomName } from './page.mjs';

const SECRET = ['--resume-secret', 'e2e-resume-secret'];

for (const name of BROWSERS) {
  test(`${name}: server killed mid-call and restarted: media flows, same ids, nobody sees peer-left`, async () => {
    let server = await startServer(SECRET);
    const port = new URL(server.url).port;
    const browser = await launch(name);
    try {
      const page = await browser.newPage();
      await page.goto(`${server.url}/`);
      await installPageHelpers(page);
      const before = await page.evaluate(async (room) => {
        const { pair, waitFor, framesDecoded } = window.rt;
        const { a, b } = await pair(room);
        window.call = { a, b };
        const pc = b.s.peer(a.s.localPeerId).peerConnection;
        await waitFor('frames', async () => (await framesDecoded(pc)) > 0);
        return { ids: [a.s.localPeerId, b.s.localPeerId], frames: await framesDecoded(pc) };
      }, roomName('phoenix'));

      assert.equal(await server.stop(), 0);
      const during = await page.evaluate(async () => {
        const { waitFor, framesDecoded } = window.rt;
        const { a, b } = window.call;
        await waitFor('both reconnecting', () => a.s.state === 'reconnecting' && b.s.state === 'reconnecting', 10000);
        await new Promise((r) => setTimeout(r, 1500)); // the server stays down a while
        return { frames: await framesDecoded(b.s.peer(a.s.localPeerId).peerConnection), states: [a.s.state, b.s.state] };
      });

      server = await startServer([...SECRET, '--port', port]);
      const after = await page.evaluate(async () => {
        const { waitFor, framesDecoded, connected } = window.rt;
        const { a, b } = window.call;
        await waitFor('both joined again', () => a.s.state === 'joined' && b.s.state === 'joined', 20000);
        await new Promise((r) => setTimeout(r, 500)); // let any late peer events arrive
        await connected(a, b);
        return {
          ids: [a.s.localPeerId, b.s.localPeerId],
          frames: await framesDecoded(b.s.peer(a.s.localPeerId).peerConnection),
          states: [a.log.states, b.log.states],
          left: [...a.log.left, ...b.log.left],
          joined: [a.log.joined.length, b.log.joined.length],
          errors: [...a.log.errors, ...b.log.errors],
        };
      });
      assert.deepEqual(during.states, ['reconnecting', 'reconnecting']);
      assert.ok(during.frames > before.frames, `frames kept decoding while signaling was down: ${before.frames} -> ${during.frames}`);
      assert.deepEqual(after.ids, before.ids, 'same peer ids after the restart');
      assert.ok(after.frames > during.frames);
      for (const states of after.states) assert.deepEqual(states, ['connecting', 'joined', 'reconnecting', 'joined']);
      assert.deepEqual(after.left, [], 'nobody saw peer-left');
      assert.deepEqual(after.joined, [1, 1], 'nobody saw a second peer-joined');
      assert.deepEqual(after.errors, []);
    } finally {
      await browser.close();
      await server.stop();
    }
  });
}

for (const name of BROWSERS) {
  test(`${name}: a tab navigating away leaves at once; a crashed browser times out`, async () => {
    const server = await startServer(['--resume-grace-ms', '2000']);
    const browsers = [await launch(name), await launch(name), await launch(name)];
    try {
      const pages = [];
      for (const browser of browsers) {
        const page = await browser.newPage();
        await page.goto(`${server.url}/`);
        await installPageHelpers(page);
        pages.push(page);
      }
      const room = roomName('gone');
      const ids = [];
      for (const page of pages) {
        ids.push(await page.evaluate(async (room) => {
          window.me = await window.rt.session(room, { media: false });
          await window.me.s.join();
          return window.me.s.localPeerId;
        }, room));
      }
      await pages[0].evaluate(async (n) => {
        await window.rt.waitFor('all connected', () => window.me.s.peers().filter((p) => p.state === 'connected').length === n);
      }, 2);

      // Navigating away fires pagehide: the SDK leaves in-band and through the server.
      const t0 = Date.now();
      await pages[1].goto('about:blank');
      const graceful = await pages[0].evaluate(async (id) => {
        await window.rt.waitFor('peer-left', () => window.me.log.left.some((l) => l.id === id), 5000);
        return window.me.log.left.find((l) => l.id === id).reason;
      }, ids[1]);
      assert.equal(graceful, 'left');
      assert.ok(Date.now() - t0 < 2000, `left after ${Date.now() - t0} ms`);

      // A crash sends nothing: the server notices the dead socket, and after its resume grace the others hear "timeout".
      const t1 = Date.now();
      browsers[2].process().kill('SIGKILL');
      const crashed = await pages[0].evaluate(async (id) => {
        await window.rt.waitFor('peer-left', () => window.me.log.left.some((l) => l.id === id), 15000);
        return { reason: window.me.log.left.find((l) => l.id === id).reason, peers: window.me.s.peers().length };
      }, ids[2]);
      assert.deepEqual(crashed, { reason: 'timeout', peers: 0 });
      assert.ok(Date.now() - t1 < 8000, `timed out after ${Date.now() - t1} ms`);
    } finally {
      for (const browser of browsers) await browser.close();
      await server.stop();
    }
  });
}
