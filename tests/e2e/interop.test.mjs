// Chromium ↔ Firefox interop: one RoomSession in headless Chromium (CDP), one in headless Firefox
// ESR (WebDriver BiDi), same room on the same real rtcroom-server, fake camera + microphone.
// Run both ways: Chromium joins first, then Firefox joins first.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { WAIT_MS, launch, startServer } from './harness.mjs';
import { installPageHelpers, roomName } from './page.mjs';

let server;
before(async () => { server = await startServer(); });
after(async () => { await server.stop(); });

/** Opens a page on the server in browser `name`, with `window.rt` (page.mjs) installed. */
async function openPage(name) {
  const browser = await launch(name);
  try {
    const page = await browser.newPage();
    page.on('pageerror', (err) => console.error(`[${name} pageerror]`, err));
    // /bench/ is a blank page on the same origin (the demo at / may do things by itself).
    await page.goto(`${server.url}/bench/`);
    await installPageHelpers(page);
    return { name, browser, page };
  } catch (err) {
    await browser.close();
    throw err;
  }
}

/** Creates `window.me`: a session with fake camera + mic, plus wall-clock peer-left times. */
function createSession(side, room) {
  return side.page.evaluate(async (room) => {
    window.me = await window.rt.session(room);
    window.me.leftWall = [];
    window.me.s.on('peer-left', ({ peer, reason }) => window.me.leftWall.push({ id: peer.id, reason, wall: Date.now() }));
  }, room);
}

const join = (side) => side.page.evaluate(async () => {
  await window.me.s.join();
  return window.me.s.localPeerId;
});

/** Everything side `side` must see of the remote `remoteId`, bounded by `ms`. */
const inspectRemote = (side, remoteId, ms) => side.page.evaluate(async (remoteId, ms) => {
  const { waitFor, framesDecoded } = window.rt;
  const { s, log } = window.me;
  await waitFor(`peer-joined ${remoteId}`, () => log.joined.includes(remoteId), ms);
  await waitFor(`${remoteId} connected`, () => s.peer(remoteId)?.state === 'connected', ms);
  await waitFor(`stream-added from ${remoteId}`, () => log.added.get(remoteId)?.length > 0, ms);
  const { stream, role } = log.added.get(remoteId)[0];
  const pc = s.peer(remoteId).peerConnection;
  let first = 0;
  await waitFor('first frames decoded', async () => (first = await framesDecoded(pc)) > 0, ms);
  await waitFor('more frames decoded', async () => (await framesDecoded(pc)) > first, ms);
  return {
    state: s.state,
    joined: [...log.joined],
    peerState: s.peer(remoteId).state,
    connectionState: pc.connectionState,
    role,
    tracks: stream.getTracks().map((t) => `${t.kind}:${t.readyState}`).sort(),
    frames: await framesDecoded(pc),
    errors: [...log.errors],
  };
}, remoteId, ms);

async function interop(firstName, secondName) {
  const [first, second] = await Promise.all([openPage(firstName), openPage(secondName)]);
  try {
    const room = roomName(`interop-${firstName}-first`);
    await Promise.all([createSession(first, room), createSession(second, room)]);
    const firstId = await join(first);
    const secondId = await join(second);
    assert.ok(firstId && secondId && firstId !== secondId, `peer ids ${firstId} ${secondId}`);

    const [seenByFirst, seenBySecond] = await Promise.all([
      inspectRemote(first, secondId, WAIT_MS),
      inspectRemote(second, firstId, WAIT_MS),
    ]);
    for (const [label, seen, remoteId] of [[first.name, seenByFirst, secondId], [second.name, seenBySecond, firstId]]) {
      assert.equal(seen.state, 'joined', label);
      assert.deepEqual(seen.joined, [remoteId], label);
      assert.equal(seen.peerState, 'connected', label);
      assert.equal(seen.connectionState, 'connected', label);
      assert.equal(seen.role, 'camera', label);
      assert.deepEqual(seen.tracks, ['audio:live', 'video:live'], label);
      assert.ok(seen.frames > 0, `${label} decoded ${seen.frames} frames`);
      assert.deepEqual(seen.errors, [], label);
    }

    // Graceful leave on the second joiner's side; the first must see peer-left (left) within 1 s.
    // Both browsers run on this machine, so Date.now() is one clock; the figure includes the
    // driver round trip of the leave call, so it is an upper bound.
    const leaveStart = Date.now();
    await second.page.evaluate(() => window.me.s.leave({ stopTracks: true }));
    const left = await first.page.evaluate(async () => {
      await window.rt.waitFor('peer-left', () => window.me.leftWall.length > 0, 5000);
      return { ...window.me.leftWall[0], peersAfter: window.me.s.peers().length, errors: [...window.me.log.errors] };
    });
    const secondAfter = await second.page.evaluate(() => ({ state: window.me.s.state, errors: [...window.me.log.errors] }));
    assert.equal(left.id, secondId);
    assert.equal(left.reason, 'left');
    const ms = left.wall - leaveStart;
    assert.ok(ms < 1000, `peer-left after ${ms} ms`);
    assert.equal(left.peersAfter, 0);
    assert.deepEqual(left.errors, []);
    assert.equal(secondAfter.state, 'left');
    assert.deepEqual(secondAfter.errors, []);
    await first.page.evaluate(() => window.me.s.leave({ stopTracks: true }));
    return { leftMs: ms, frames: [seenByFirst.frames, seenBySecond.frames] };
  } finally {
    await Promise.all([first.browser.close(), second.browser.close()]);
  }
}

test('interop: Chromium joins first, Firefox second; cameras, connected, frames, leave within 1 s', async (t) => {
  const r = await interop('chromium', 'firefox');
  t.diagnostic(`peer-left after ${r.leftMs} ms; frames decoded by chromium/firefox at check: ${r.frames.join('/')}`);
});

test('interop: Firefox joins first, Chromium second; cameras, connected, frames, leave within 1 s', async (t) => {
  const r = await interop('firefox', 'chromium');
  t.diagnostic(`peer-left after ${r.leftMs} ms; frames decoded by firefox/chromium at check: ${r.frames.join('/')}`);
});
