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
        const { session, connected, waitFor, framesDecoded } = window.rt;
        const a = await session(room);
        const b = await session(room);
        await a.s.join();
        await b.s.join();
        await connected(a, b);
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
