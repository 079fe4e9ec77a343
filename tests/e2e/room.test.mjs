// RoomSession end to end: real server, real browsers, real RTCPeerConnections, fake media.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { BROWSERS, launch, startServer } from './harness.mjs';
import { installPageHelpers, roomName } from './page.mjs';

let server;
before(async () => { server = await startServer(['--room-capacity', '6']); });
after(async () => { await server.stop(); });

async function withPage(name, fn) {
  const browser = await launch(name);
  try {
    const page = await browser.newPage();
    page.on('pageerror', (err) => console.error(`[${name} pageerror]`, err));
    await page.goto(`${server.url}/`);
    await installPageHelpers(page);
    return await fn(page);
  } finally {
    await browser.close();
  }
}

for (const name of BROWSERS) {
  test(`${name}: two sessions meet, exchange cameras, decode video, and see a leave within 1 s`, async () => {
    const result = await withPage(name, (page) => page.evaluate(async (room) => {
      const { session, waitFor, framesDecoded, connected } = window.rt;
      const a = await session(room, { metadata: { name: 'ann' } });
      const b = await session(room, { metadata: { name: 'bob' } });
      await a.s.join();
      await b.s.join();
      await connected(a, b);
      const out = {
        states: [a.s.state, b.s.state],
        joinedA: a.log.joined, joinedB: b.log.joined,
        ids: [a.s.localPeerId, b.s.localPeerId],
        metaSeenByA: a.s.peer(b.s.localPeerId).metadata,
      };
      for (const [x, y] of [[a, b], [b, a]]) {
        await waitFor('stream-added', () => x.log.added.get(y.s.localPeerId)?.length > 0);
        const { stream, role } = x.log.added.get(y.s.localPeerId)[0];
        out[`tracks${x === a ? 'A' : 'B'}`] = stream.getTracks().map((t) => `${t.kind}:${t.readyState}`).sort();
        out[`role${x === a ? 'A' : 'B'}`] = role;
        const pc = x.s.peer(y.s.localPeerId).peerConnection;
        let first = 0;
        await waitFor('first frames', async () => (first = await framesDecoded(pc)) > 0);
        await waitFor('more frames', async () => (await framesDecoded(pc)) > first);
      }
      const leftAt = performance.now();
      await b.s.leave();
      await waitFor('peer-left', () => a.log.left.length > 0, 5000);
      out.left = { ...a.log.left[0], ms: a.log.left[0].at - leftAt };
      out.peersAfter = a.s.peers().length;
      out.bState = b.s.state;
      out.errors = [...a.log.errors, ...b.log.errors];
      await a.s.leave({ stopTracks: true });
      out.aTracks = a.stream.getTracks().map((t) => t.readyState);
      return out;
    }, roomName('pair')));
    assert.deepEqual(result.states, ['joined', 'joined']);
    assert.deepEqual(result.joinedA, [result.ids[1]]);
    assert.deepEqual(result.joinedB, [result.ids[0]]);
    assert.deepEqual(result.metaSeenByA, { name: 'bob' });
    assert.deepEqual(result.tracksA, ['audio:live', 'video:live']);
    assert.deepEqual(result.tracksB, ['audio:live', 'video:live']);
    assert.equal(result.roleA, 'camera');
    assert.equal(result.roleB, 'camera');
    assert.equal(result.left.id, result.ids[1]);
    assert.equal(result.left.reason, 'left');
    assert.ok(result.left.ms < 1000, `peer-left after ${result.left.ms} ms`);
    assert.equal(result.peersAfter, 0);
    assert.equal(result.bState, 'left');
    assert.deepEqual(result.aTracks, ['ended', 'ended']);
    assert.deepEqual(result.errors, []);
  });
}
