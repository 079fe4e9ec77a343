// A hostile crowd in the room: 12 members flood one member (the real SDK in a real browser)
// with signals. The victim must stay joined with its peer connection to a real partner intact;
// the flooders are told what was dropped.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { BROWSERS, launch, startServer } from './harness.mjs';
import { installPageHelpers, roomName } from './page.mjs';

let server;
before(async () => { server = await startServer(); });
after(async () => { await server.stop(); });

const FLOODERS = 12;
const FRAMES = 190; // within each flooder's own rate burst (200): no violation is counted

for (const name of BROWSERS) {
  test(`${name}: 12 members flooding one member cannot knock it out of the call`, async () => {
    const browser = await launch(name);
    try {
      const page = await browser.newPage();
      page.on('pageerror', (err) => console.error(`[${name} pageerror]`, err));
      await page.goto(`${server.url}/`);
      await installPageHelpers(page);
      const room = roomName('flood');
      const victimId = await page.evaluate(async (room) => {
        const { pair, waitFor, framesDecoded } = window.rt;
        const { a, b } = await pair(room);
        window.call = { victim: a, partner: b };
        const pc = a.s.peer(b.s.localPeerId).peerConnection;
        await waitFor('frames', async () => (await framesDecoded(pc)) > 0);
        return a.s.localPeerId;
      }, room);

      // The crowd: raw sockets speaking the protocol, in a page of their own.
      const crowd = await browser.newPage();
      await crowd.goto(`${server.url}/`);
      const flood = await crowd.evaluate(async (room, victimId, flooders, frames) => {
        const url = `${location.origin.replace(/^http/, 'ws')}/signal`;
        const errors = {};
        const closes = [];
        const sockets = await Promise.all(Array.from({ length: flooders }, () => new Promise((resolve, reject) => {
          const ws = new WebSocket(url);
          ws.onopen = () => ws.send(JSON.stringify({ type: 'join', room, version: 1 }));
          ws.onmessage = (e) => {
            const f = JSON.parse(e.data);
            if (f.type === 'joined') resolve(ws);
            if (f.type === 'error') errors[f.code] = (errors[f.code] ?? 0) + 1;
          };
          ws.onclose = (e) => closes.push(e.code);
          ws.onerror = () => reject(new Error('flooder socket failed'));
        })));
        const frame = JSON.stringify({ type: 'signal', to: victimId, payload: { kind: 'app', data: 'x'.repeat(30_000) } });
        for (const ws of sockets) for (let i = 0; i < frames; i++) ws.send(frame);
        const start = performance.now();
        while (sockets.some((ws) => ws.bufferedAmount > 0) && performance.now() - start < 20_000) {
          await new Promise((r) => setTimeout(r, 50));
        }
        await new Promise((r) => setTimeout(r, 1000));
        window.crowd = sockets;
        return { errors, closes, sent: flooders * frames };
      }, room, victimId, FLOODERS, FRAMES);

      const after = await page.evaluate(async (flooders) => {
        const { waitFor, framesDecoded } = window.rt;
        const { victim, partner } = window.call;
        // The victim hears every flooder join, and keeps its call.
        const diagnose = () => JSON.stringify({ states: victim.log.states, left: victim.log.left, errors: victim.log.errors.slice(0, 5), peers: victim.s.peers().length, partnerStates: partner.log.states, partnerLeft: partner.log.left });
        await waitFor('crowd seen', () => victim.s.peers().length === flooders + 1).catch((e) => { throw new Error(`${e.message}: ${diagnose()}`); });
        await new Promise((r) => setTimeout(r, 2000));
        const remote = victim.s.peer(partner.s.localPeerId);
        if (!remote) throw new Error(`the victim lost its partner: ${diagnose()}`);
        const pc = remote.peerConnection;
        const before = await framesDecoded(pc);
        await waitFor('frames keep decoding', async () => (await framesDecoded(pc)) > before, 10_000);
        return {
          state: victim.s.state,
          states: victim.log.states,
          partnerState: victim.s.peer(partner.s.localPeerId)?.state,
          partnerSeesVictim: partner.s.peer(victim.s.localPeerId)?.state,
          left: victim.log.left.length,
          fatal: victim.log.errors.filter((e) => /^(unauthorized|signaling)/.test(e)),
        };
      }, FLOODERS);
      await crowd.evaluate(() => { for (const ws of window.crowd) ws.close(); });
      assert.equal(after.state, 'joined');
      assert.deepEqual(after.states, ['connecting', 'joined'], 'never reconnecting, never failed');
      assert.equal(after.partnerState, 'connected');
      assert.equal(after.partnerSeesVictim, 'connected');
      assert.equal(after.left, 0);
      assert.deepEqual(after.fatal, []);
      assert.deepEqual(flood.closes, [], 'no flooder was closed for flooding within its rate');
      // What did not fit in the victim's queue was refused to its sender, never a kick.
      for (const code of Object.keys(flood.errors)) assert.equal(code, 'queue-full');
    } finally {
      await browser.close();
    }
  });
}
