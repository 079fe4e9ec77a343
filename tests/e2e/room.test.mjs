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
      const { pair, waitFor, framesDecoded } = window.rt;
      const { a, b } = await pair(room, { metadata: { name: 'ann' } }, { metadata: { name: 'bob' } });
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
      // The in-page summary: rates need two samples.
      const remote = a.s.peer(b.s.localPeerId);
      await remote.stats();
      await new Promise((r) => setTimeout(r, 1000));
      out.summary = await remote.stats();
      // Metadata updates reach the other side as a per-peer event and in peer.metadata.
      const updated = new Promise((resolve) => b.s.peer(a.s.localPeerId).once('metadata-updated', resolve));
      a.s.updateMetadata({ name: 'ann', muted: true });
      // Copies: both are the same object, and puppeteer's BiDi (Firefox) deserializer drops a
      // repeated reference in a returned value.
      out.metadataEvent = structuredClone((await updated).metadata);
      out.metadataNow = structuredClone(b.s.peer(a.s.localPeerId).metadata);
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
    const { summary } = result;
    assert.ok(['host', 'prflx'].includes(summary.localCandidateType), `local candidate ${summary.localCandidateType}`);
    assert.ok(summary.video.inboundBitrateBps > 0, `video in ${summary.video.inboundBitrateBps} bps`);
    assert.ok(summary.video.outboundBitrateBps > 0, `video out ${summary.video.outboundBitrateBps} bps`);
    assert.ok(summary.video.inboundFps > 0, `video fps ${summary.video.inboundFps}`);
    assert.ok(summary.audio.inboundBitrateBps > 0, `audio in ${summary.audio.inboundBitrateBps} bps`);
    assert.ok(summary.rttMs === null || summary.rttMs >= 0, `rtt ${summary.rttMs}`);
    assert.deepEqual(result.metadataEvent, { name: 'ann', muted: true });
    assert.deepEqual(result.metadataNow, { name: 'ann', muted: true });
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

for (const name of BROWSERS) {
  test(`${name}: four sessions form a full mesh, in join order and reversed`, async () => {
    const result = await withPage(name, (page) => page.evaluate(async (room) => {
      const { session, connected } = window.rt;
      const out = {};
      for (const order of ['forward', 'reverse']) {
        const all = [];
        for (let i = 0; i < 4; i++) all.push(await session(`${room}-${order}`));
        const joining = order === 'forward' ? all : [...all].reverse();
        for (const x of joining) await x.s.join();
        for (let i = 0; i < 4; i++) for (let j = i + 1; j < 4; j++) await connected(all[i], all[j]);
        out[order] = {
          peers: all.map((x) => x.s.peers().map((p) => p.state)),
          errors: all.flatMap((x) => x.log.errors),
        };
        for (const x of all) await x.s.leave({ stopTracks: true });
      }
      return out;
    }, roomName('mesh')));
    for (const order of ['forward', 'reverse']) {
      assert.deepEqual(result[order].peers, Array(4).fill(['connected', 'connected', 'connected']), order);
      assert.deepEqual(result[order].errors, [], order);
    }
  });

  test(`${name}: simultaneous joins (glare) never get stuck, 20 times`, async () => {
    const result = await withPage(name, (page) => page.evaluate(async (room) => {
      const { session, connected } = window.rt;
      const rounds = [];
      for (let i = 0; i < 20; i++) {
        const a = await session(`${room}-${i}`);
        const b = await session(`${room}-${i}`);
        await Promise.all([a.s.join(), b.s.join()]);
        await connected(a, b, 15000);
        rounds.push([a.s.peers().length, b.s.peers().length, a.log.errors.length + b.log.errors.length]);
        await Promise.all([a.s.leave({ stopTracks: true }), b.s.leave({ stopTracks: true })]);
      }
      return rounds;
    }, roomName('glare')));
    assert.deepEqual(result, Array(20).fill([1, 1, 0]));
  });

  test(`${name}: a second stream added mid-call from the polite and the impolite side, then removed`, async () => {
    const result = await withPage(name, (page) => page.evaluate(async (room) => {
      const { pair, waitFor } = window.rt;
      const { a, b } = await pair(room);
      const polite = a.s.localPeerId < b.s.localPeerId ? a : b;
      const impolite = polite === a ? b : a;
      const screen = () => {
        const canvas = Object.assign(document.createElement('canvas'), { width: 160, height: 120 });
        const ctx = canvas.getContext('2d');
        let n = 0;
        setInterval(() => { ctx.fillStyle = `hsl(${(n += 10) % 360} 80% 50%)`; ctx.fillRect(0, 0, 160, 120); }, 50);
        return canvas.captureStream(15);
      };
      const out = {};
      for (const [label, from, to] of [['polite', polite, impolite], ['impolite', impolite, polite]]) {
        const extra = screen();
        from.s.addStream(extra, { role: 'screen' });
        const fromId = from.s.localPeerId;
        await waitFor(`${label} screen arrives`, () => (to.log.added.get(fromId) ?? []).some((e) => e.role === 'screen'));
        const got = to.log.added.get(fromId).find((e) => e.role === 'screen');
        out[label] = { id: got.stream.id === extra.id, tracks: got.stream.getVideoTracks().length };
        from.s.removeStream(extra);
        await waitFor(`${label} screen removed`, () => to.log.removed.some((e) => e.peer === fromId && e.role === 'screen'));
        out[`${label}Remaining`] = to.s.peer(fromId).streams().map((e) => e.role);
        to.log.removed.length = 0;
      }
      out.states = [a.s.peer(b.s.localPeerId).state, b.s.peer(a.s.localPeerId).state];
      out.errors = [...a.log.errors, ...b.log.errors];
      return out;
    }, roomName('second')));
    assert.deepEqual(result.polite, { id: true, tracks: 1 });
    assert.deepEqual(result.impolite, { id: true, tracks: 1 });
    assert.deepEqual(result.politeRemaining, ['camera']);
    assert.deepEqual(result.impoliteRemaining, ['camera']);
    assert.deepEqual(result.states, ['connected', 'connected']);
    assert.deepEqual(result.errors, []);
  });

  test(`${name}: a full room refuses the next joiner with room-full, others undisturbed`, async () => {
    const result = await withPage(name, (page) => page.evaluate(async (room) => {
      const { pair, session } = window.rt;
      const { a, b } = await pair(room, { capacity: 2, media: false }, { media: false });
      const c = await session(room, { media: false });
      const refused = await c.s.join().then(() => null, (e) => ({ code: e.code, fatal: e.fatal, isError: e instanceof Error }));
      await new Promise((r) => setTimeout(r, 300));
      return { refused, cState: c.s.state, aPeers: a.s.peers().length, aJoined: a.log.joined.length, cStates: c.log.states };
    }, roomName('full')));
    assert.deepEqual(result.refused, { code: 'room-full', fatal: true, isError: true });
    assert.equal(result.cState, 'failed');
    assert.deepEqual(result.cStates, ['connecting', 'failed']);
    assert.equal(result.aPeers, 1);
    assert.equal(result.aJoined, 1);
  });

  test(`${name}: a forced ICE restart recovers to connected and media keeps flowing`, async () => {
    const result = await withPage(name, (page) => page.evaluate(async (room) => {
      const { pair, connected, waitFor, framesDecoded } = window.rt;
      const { a, b } = await pair(room);
      const peer = a.s.peer(b.s.localPeerId);
      const ufrag = (pc) => /a=ice-ufrag:(\S+)/.exec(pc.localDescription.sdp)[1];
      const before = ufrag(peer.peerConnection);
      peer.restartIce();
      await waitFor('new ICE credentials negotiated', () => ufrag(peer.peerConnection) !== before);
      await waitFor('stable again', () => peer.peerConnection.signalingState === 'stable');
      await connected(a, b);
      const pc = b.s.peer(a.s.localPeerId).peerConnection;
      const f0 = await framesDecoded(pc);
      await waitFor('frames after restart', async () => (await framesDecoded(pc)) > f0 + 5);
      return { states: [peer.state, b.s.peer(a.s.localPeerId).state], errors: [...a.log.errors, ...b.log.errors] };
    }, roomName('ice')));
    assert.deepEqual(result, { states: ['connected', 'connected'], errors: [] });
  });
}
