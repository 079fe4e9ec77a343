// The data API against a careless app and a hostile room member: wrong types, wrong order,
// calls from inside listeners, leaving with sends in flight, and garbage written straight into
// the SDK's channels through the peerConnection escape hatch. Nothing may throw where a
// Promise is expected, panic the wasm, or knock the session out.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { BROWSERS, launch, startServer } from './harness.mjs';
import { installPageHelpers, roomName } from './page.mjs';

let server;
before(async () => { server = await startServer(); });
after(async () => { await server.stop(); });

for (const name of BROWSERS) {
  test(`${name}: data methods with wrong arguments, in the wrong order, from listeners; hostile frames`, async () => {
    const browser = await launch(name);
    const pageErrors = [];
    try {
      const pages = [];
      for (let i = 0; i < 2; i++) {
        const page = await browser.newPage();
        page.on('pageerror', (e) => pageErrors.push(String(e)));
        await page.goto(`${server.url}/`);
        await installPageHelpers(page);
        pages.push(page);
      }
      const [a, b] = pages;
      const room = roomName('dharden');
      // Before join: createChannel is remembered; bad arguments throw TypeErrors.
      const early = await a.evaluate(async (room) => {
        const { sdk } = window.rt;
        const s = new sdk.RoomSession({ room, url: '/signal' });
        const codeOf = (f) => { try { f(); return 'ok'; } catch (e) { return `${e.name}:${e.code}`; } };
        const out = {
          noLabel: codeOf(() => s.createChannel()),
          emptyLabel: codeOf(() => s.createChannel('')),
          builtin: codeOf(() => s.createChannel('reliable')),
          badOrdered: codeOf(() => s.createChannel('x', { ordered: 'yes' })),
          badRetransmits: codeOf(() => s.createChannel('x', { maxRetransmits: -1 })),
          both: codeOf(() => s.createChannel('x', { maxRetransmits: 1, maxPacketLifeTime: 10 })),
          good: codeOf(() => s.createChannel('early', { ordered: false })),
          broadcastAlone: await s.broadcast('nobody').then((r) => r, (e) => `rejected:${e.code}`),
          badBroadcast: await s.broadcast(() => 1).then(() => 'resolved', (e) => `rejected:${e.code}`),
        };
        window.me = { s, inbox: [], errors: [] };
        s.on('message', ({ data, channel }) => window.me.inbox.push({ data, channel }));
        s.on('error', (e) => window.me.errors.push(e.code));
        await s.join();
        return out;
      }, room);
      assert.deepEqual(early, {
        noLabel: 'TypeError:invalid-argument', emptyLabel: 'TypeError:invalid-argument', builtin: 'TypeError:invalid-argument',
        badOrdered: 'TypeError:invalid-argument', badRetransmits: 'TypeError:invalid-argument', both: 'TypeError:invalid-argument',
        good: 'ok', broadcastAlone: { delivered: [], failed: [] }, badBroadcast: 'rejected:invalid-argument',
      });
      const bId = await b.evaluate(async (room) => {
        const { sdk } = window.rt;
        // A modified client: it keeps the SDK's own channel objects (a hook wraps
        // createDataChannel), to write whatever it likes into them later.
        window.captured = [];
        const onPeerConnection = (pc) => {
          const create = pc.createDataChannel.bind(pc);
          pc.createDataChannel = (label, init) => {
            const ch = create(label, init);
            window.captured.push(ch);
            return ch;
          };
        };
        const s = new sdk.RoomSession({ room, url: '/signal', onPeerConnection });
        s.createChannel('early', { ordered: false });
        window.me = { s, inbox: [], errors: [] };
        // Sends from inside a message listener (an echo), and a throwing listener.
        s.on('message', ({ peer, data, channel }) => {
          window.me.inbox.push({ data, channel });
          if (data === 'echo me') peer.send(`echo: ${data}`, { channel });
          if (data === 'throw') throw new Error('app bug in a listener');
        });
        s.on('error', (e) => window.me.errors.push(e.code));
        await s.join();
        return s.localPeerId;
      }, room);
      const aId = await a.evaluate(() => window.me.s.localPeerId);
      await a.evaluate((bId) => window.rt.waitFor('connected', () => window.me.s.peer(bId)?.state === 'connected'), bId);

      const calls = await a.evaluate(async (bId) => {
        const peer = window.me.s.peer(bId);
        const settle = (p) => p.then((v) => ['ok', v], (e) => [e.name, e.code]);
        return {
          fn: await settle(peer.send(() => 1)),
          symbol: await settle(peer.send(Symbol('x'))),
          cyclic: await settle(peer.send((() => { const o = {}; o.o = o; return o; })())),
          bigint: await settle(peer.send(10n)),
          badOptions: await settle(peer.send('x', 'reliable')),
          unknownOption: await settle(peer.send('x', { chanel: 'reliable' })),
          badChannel: await settle(peer.send('x', { channel: 5 })),
          noSuchChannel: await settle(peer.send('x', { channel: 'nope' })),
          badAck: await settle(peer.send('x', { channel: 'unreliable', ack: 'yes' })),
          badTimeout: await settle(peer.send('x', { channel: 'unreliable', ack: true, timeoutMs: -1 })),
          undefinedData: await settle(peer.send(undefined)),
          early: await settle(peer.send('on the early channel', { channel: 'early' })),
          throwing: await settle(peer.send('throw')),
          echo: await settle(peer.send('echo me')),
          fileNotBlob: (() => { try { peer.sendFile('x'); return 'ok'; } catch (e) { return e.code; } })(),
          fileBadName: (() => { try { peer.sendFile(new Blob(['x']), { name: 5 }); return 'ok'; } catch (e) { return e.code; } })(),
          fileBadSignal: (() => { try { peer.sendFile(new Blob(['x']), { signal: {} }); return 'ok'; } catch (e) { return e.code; } })(),
          sameTwice: (() => { try { window.me.s.createChannel('early', { ordered: false }); return 'ok'; } catch (e) { return e.code; } })(),
          otherOptions: (() => { try { window.me.s.createChannel('early', { ordered: true }); return 'ok'; } catch (e) { return e.code; } })(),
        };
      }, bId);
      assert.deepEqual(calls, {
        fn: ['TypeError', 'invalid-argument'], symbol: ['TypeError', 'invalid-argument'], cyclic: ['TypeError', 'invalid-argument'],
        bigint: ['TypeError', 'invalid-argument'], badOptions: ['TypeError', 'invalid-argument'], unknownOption: ['TypeError', 'invalid-argument'],
        badChannel: ['TypeError', 'invalid-argument'], noSuchChannel: ['TypeError', 'invalid-argument'], badAck: ['TypeError', 'invalid-argument'],
        badTimeout: ['TypeError', 'invalid-argument'], undefinedData: ['TypeError', 'invalid-argument'],
        early: ['ok', true], throwing: ['ok', true], echo: ['ok', true], sameTwice: 'ok', otherOptions: 'invalid-argument',
        fileNotBlob: 'invalid-argument', fileBadName: 'invalid-argument', fileBadSignal: 'invalid-argument',
      });
      await a.evaluate(() => window.rt.waitFor('echo', () => window.me.inbox.some((m) => m.data === 'echo: echo me')));

      // A hostile member writes garbage into the SDK's channels (ids 0 and 1): it is dropped
      // and reported, and real messages still flow.
      const hostile = await b.evaluate(async () => {
        for (const ch of window.captured.filter((c) => c.id <= 2)) {
          // File frames too: a short offer, an unknown op, a chunk of nothing offered.
          ch.send(new Uint8Array([3, 1, 0, 0, 0, 1]));
          ch.send(new Uint8Array([3, 99, 0, 0, 0, 1]));
          ch.send(new Uint8Array([4, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3]));
          ch.send('text, not ours');
          ch.send(new Uint8Array([1, 0, 1, 0, 0, 0, 9, 255, 255, 255, 255, 0, 0, 0, 0, 1, 2]));
          ch.send(new Uint8Array([1, 0, 1, 0, 0, 0, 9, 0, 0, 0, 10, 0, 0, 0, 8, 1, 2, 3]));
          ch.send(new Uint8Array([2, 0, 0, 0, 99]));
          ch.send(new Uint8Array(0));
          for (let i = 0; i < 200; i++) ch.send(new Uint8Array([9, i]));
        }
        return window.captured.length;
      });
      assert.ok(hostile >= 4, `captured ${hostile} channels`);
      const afterHostile = await a.evaluate(async (bId) => {
        await window.rt.waitFor('refusals reported', () => window.me.errors.includes('bad-peer-data'));
        const ok = await window.me.s.peer(bId).send('still here');
        return { ok, errors: [...new Set(window.me.errors)], reports: window.me.errors.length, state: window.me.s.state, peer: window.me.s.peer(bId).state };
      }, bId);
      assert.deepEqual({ ...afterHostile, reports: undefined }, { ok: true, errors: ['bad-peer-data'], reports: undefined, state: 'joined', peer: 'connected' });
      assert.ok(afterHostile.reports <= 20, `refusals reported sparingly: ${afterHostile.reports}`);

      // Leaving with sends in flight: they reject with `cancelled`; sends after leave reject.
      const leaving = await a.evaluate(async (bId) => {
        const peer = window.me.s.peer(bId);
        const big = new Uint8Array(8 * 1024 * 1024);
        const inFlight = peer.send(big).then(() => 'resolved', (e) => e.code);
        const left = window.me.s.leave();
        const after = await peer.send('after leave').then(() => 'resolved', (e) => e.code);
        await left;
        return { inFlight: await inFlight, after, state: window.me.s.state };
      }, bId);
      assert.ok(['cancelled', 'resolved'].includes(leaving.inFlight), JSON.stringify(leaving));
      assert.equal(leaving.after, 'peer-left', 'the leave detached the peer at once');
      assert.equal(leaving.state, 'left');
      // B saw A leave; its own sends to A now reject with peer-left.
      const bAfter = await b.evaluate(async (aId) => {
        await window.rt.waitFor('a left', () => window.me.s.peer(aId) === null);
        return window.me.s.state;
      }, aId);
      assert.equal(bAfter, 'joined');
      assert.deepEqual(pageErrors.filter((e) => !e.includes('app bug in a listener')), []);
    } finally {
      await browser.close();
    }
  });
}
