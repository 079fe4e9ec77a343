// The web shell as an executor of the Room core: what used to break while its state was
// borrowed. Callbacks only queue input; the app is called with nothing borrowed; so
// - the serverless transport (the hub in a SharedWorker) and a transport that answers inside
//   send() (an app's in-page hub) work and stay joined;
// - every getter and method works from inside every callback and hook.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { BROWSERS, launch, startServer } from './harness.mjs';
import { installPageHelpers, roomName } from './page.mjs';

let server;
before(async () => { server = await startServer(); });
after(async () => { await server.stop(); });

/** Console lines that mean a panic or a wasm trap reached the page. */
const watchConsole = (page, into) => {
  page.on('console', (m) => {
    const text = m.text();
    if (/panicked|RuntimeError|unreachable|already (mutably )?borrowed/i.test(text)) into.push(text);
  });
  page.on('pageerror', (e) => into.push(String(e)));
};

// One test for every browser at once: the 60 s run in parallel.
test(`${BROWSERS.join(' + ')}: a quiet BroadcastChannelTransport call stays joined for 60 s`, async () => {
  await Promise.all(BROWSERS.map(async (name) => {
    const browser = await launch(name);
    try {
      const consoleProblems = [];
      const pages = [await browser.newPage(), await browser.newPage()];
      for (const page of pages) {
        watchConsole(page, consoleProblems);
        await page.goto(`${server.url}/`);
        await installPageHelpers(page);
      }
      const room = roomName('quiet');
      const ids = [];
      for (const page of pages) {
        ids.push(await page.evaluate(async (room) => {
          const { session } = window.rt;
          // The serverless hub in a SharedWorker. Heartbeats every second, silence tolerated
          // for 3 s.
          window.me = await session(room, {
            transport: 'broadcast-channel',
            url: 'ws://127.0.0.1:9/unused',
            heartbeatIntervalMs: 1000,
            heartbeatTimeoutMs: 3000,
          });
          await window.me.s.join();
          return window.me.s.localPeerId;
        }, room));
      }
      await Promise.all(pages.map((page, i) => page.evaluate((other) => window.rt.waitFor('connected',
        () => window.me.s.peer(other)?.state === 'connected'), ids[1 - i])));
      await new Promise((r) => setTimeout(r, 60_000));
      const seen = await Promise.all(pages.map((page, i) => page.evaluate((other) => ({
        state: window.me.s.state,
        states: window.me.log.states,
        peer: window.me.s.peer(other)?.state,
        left: window.me.log.left.length,
        errors: window.me.log.errors,
      }), ids[1 - i])));
      for (const s of seen) {
        assert.deepEqual(s, { state: 'joined', states: ['connecting', 'joined'], peer: 'connected', left: 0, errors: [] }, name);
      }
      assert.deepEqual(consoleProblems, [], name);
    } finally {
      await browser.close();
    }
  }));
});

for (const name of BROWSERS) {
  test(`${name}: a transport that answers inside send() (an in-page hub) joins, calls, renews and leaves`, async () => {
    const browser = await launch(name);
    try {
      const consoleProblems = [];
      const page = await browser.newPage();
      watchConsole(page, consoleProblems);
      await page.goto(`${server.url}/`);
      await installPageHelpers(page);
      const result = await page.evaluate(async (room) => {
        const { session, connected, waitFor, framesDecoded } = window.rt;
        // A hub in the page that answers every frame synchronously, inside the sender's send().
        const members = new Map();
        const kinds = {};
        let next = 0;
        const syncTransport = () => {
          const t = {
            onmessage: null,
            onclose: null,
            id: null,
            send(text) {
              const f = JSON.parse(text);
              kinds[f.type] = (kinds[f.type] ?? 0) + 1;
              const to = (id, frame) => members.get(id)?.onmessage?.(JSON.stringify(frame));
              if (f.type === 'join') {
                t.id = `p${next++}`;
                const peers = [...members.keys()].map((id) => ({ id }));
                members.set(t.id, t);
                t.onmessage(JSON.stringify({ type: 'joined', version: 1, room: f.room, peerId: t.id, resumeToken: `tok-${t.id}`, peers, capacity: 8, resumed: false }));
                for (const { id } of peers) to(id, { type: 'peer-joined', peer: { id: t.id } });
              } else if (f.type === 'signal') {
                to(f.to, { type: 'signal', from: t.id, payload: f.payload });
              } else if (f.type === 'ping') {
                t.onmessage(JSON.stringify({ type: 'pong', ts: f.ts, resumeToken: `tok-${t.id}` }));
              } else if (f.type === 'metadata') {
                for (const id of members.keys()) if (id !== t.id) to(id, { type: 'metadata-updated', peerId: t.id, metadata: f.metadata });
              } else if (f.type === 'leave') {
                members.delete(t.id);
                for (const id of members.keys()) to(id, { type: 'peer-left', peerId: t.id, reason: 'left' });
              }
            },
            close() {},
          };
          return t;
        };
        // Fast heartbeats: before the executor, each synchronous pong was dropped and the
        // session fell to `reconnecting` after every timeout.
        const opts = { transport: syncTransport(), heartbeatIntervalMs: 200, heartbeatTimeoutMs: 700 };
        const a = await session(room, opts);
        const b = await session(room, { ...opts, transport: syncTransport() });
        await a.s.join();
        await b.s.join();
        const diagnose = () => JSON.stringify({
          a: { states: a.log.states, errors: a.log.errors, peers: a.s.peers().map((p) => [p.id, p.state]) },
          b: { states: b.log.states, errors: b.log.errors, peers: b.s.peers().map((p) => [p.id, p.state]) },
          frames: kinds,
        });
        await connected(a, b).catch((e) => { throw new Error(`${e.message}: ${diagnose()}`); });
        const pc = a.s.peer(b.s.localPeerId).peerConnection;
        await waitFor('frames', async () => (await framesDecoded(pc)) > 0);
        b.s.updateMetadata({ name: 'b' });
        await waitFor('metadata', () => a.s.peer(b.s.localPeerId)?.metadata?.name === 'b');
        // Many heartbeats later, still joined.
        await new Promise((r) => setTimeout(r, 3000));
        const states = [a.log.states.slice(), b.log.states.slice()];
        await b.s.leave();
        await waitFor('peer-left', () => a.log.left.length === 1, 3000);
        await a.s.leave();
        return { states, left: a.log.left[0].reason, errors: [...a.log.errors, ...b.log.errors], finals: [a.s.state, b.s.state] };
      }, roomName('sync'));
      assert.deepEqual(result, {
        states: [['connecting', 'joined'], ['connecting', 'joined']],
        left: 'left',
        errors: [],
        finals: ['left', 'left'],
      });
      assert.deepEqual(consoleProblems, []);
    } finally {
      await browser.close();
    }
  });

  test(`${name}: every getter and method works from inside every callback and hook`, async () => {
    const browser = await launch(name);
    try {
      const consoleProblems = [];
      const page = await browser.newPage();
      watchConsole(page, consoleProblems);
      await page.goto(`${server.url}/`);
      await installPageHelpers(page);
      const room = roomName('reentry');
      const result = await page.evaluate(async (room) => {
        const { session, connected, waitFor } = window.rt;
        const problems = [];
        const fired = new Set();
        let probes = 0;
        const updated = new Set();
        window.addEventListener('error', (e) => problems.push(`window error: ${e.message}`));
        window.addEventListener('unhandledrejection', (e) => {
          if (!e.reason?.code) problems.push(`unhandled rejection: ${e.reason}`);
        });
        // Reads everything and calls what an app might call back from a listener. Typed SDK
        // errors (`code`) are answers; anything else is a defect.
        const probe = (where, s) => {
          probes++;
          try {
            for (const v of [s.state, s.localPeerId, s.room]) void v;
            for (const p of s.peers()) {
              for (const v of [p.id, p.state, p.metadata, p.peerConnection]) void v;
              p.streams();
              p.stats().catch((e) => { if (!e?.code) problems.push(`${where}: stats() rejected untyped: ${e}`); });
            }
            s.peer('nobody-here');
            // Once per kind of callback: a metadata frame per stats event would be rate-limited.
            if (s.state === 'joined' && !updated.has(where)) {
              updated.add(where);
              s.updateMetadata({ probes });
              // Mid-call, from inside a stats event: an ICE restart the call must survive.
              if (where === 'peer stats') for (const p of s.peers()) p.restartIce();
            }
            s.join().catch((e) => { if (!e?.code) problems.push(`${where}: join() rejected untyped: ${e}`); });
          } catch (e) {
            if (!e?.code) problems.push(`${where}: ${e?.stack ?? e}`);
          }
        };
        const holder = {};
        const a = await session(room, {
          stats: { intervalMs: 300 },
          onPeerConnection: () => { fired.add('hook:onPeerConnection'); probe('onPeerConnection', holder.s); },
        });
        holder.s = a.s;
        for (const name of ['state-change', 'peer-joined', 'peer-left', 'error']) {
          a.s.on(name, () => { fired.add(`session:${name}`); probe(`session ${name}`, a.s); });
        }
        // A stream added from inside a callback goes to the peer like any other.
        const screen = await navigator.mediaDevices.getUserMedia({ video: { width: 160, height: 120 } });
        a.s.on('peer-joined', () => a.s.addStream(screen, { role: 'screen' }));
        a.s.on('peer-joined', ({ peer }) => {
          for (const name of ['stream-added', 'stream-removed', 'state-change', 'metadata-updated', 'peer-left', 'app-signal', 'stats']) {
            peer.on(name, () => { fired.add(`peer:${name}`); probe(`peer ${name}`, a.s); });
          }
        });
        const b = await session(room);
        await a.s.join();
        await b.s.join();
        await connected(a, b);
        const bId = b.s.localPeerId;
        await waitFor('stats events', () => fired.has('peer:stats'));
        b.s.updateMetadata({ from: 'b' });
        await waitFor('metadata-updated', () => fired.has('peer:metadata-updated'));
        // A raw member sends an app payload and an unreadable one: `app-signal` on its peer,
        // a non-fatal `error` on the session.
        const url = `${location.origin.replace(/^http/, 'ws')}/signal`;
        const raw = await new Promise((resolve, reject) => {
          const ws = new WebSocket(url);
          ws.onopen = () => ws.send(JSON.stringify({ type: 'join', room, version: 1 }));
          ws.onmessage = (e) => { if (JSON.parse(e.data).type === 'joined') resolve(ws); };
          ws.onerror = () => reject(new Error('raw member socket failed'));
        });
        const to = a.s.localPeerId;
        raw.send(JSON.stringify({ type: 'signal', to, payload: { kind: 'app', data: { hello: 1 } } }));
        raw.send(JSON.stringify({ type: 'signal', to, payload: { kind: 'no-such-kind' } }));
        await waitFor('app-signal and error', () => fired.has('peer:app-signal') && fired.has('session:error'));
        raw.send(JSON.stringify({ type: 'leave' }));
        raw.close();
        b.s.removeStream(b.stream);
        await waitFor('stream-removed', () => fired.has('peer:stream-removed'));
        await waitFor('b gets the screen', () => (b.log.added.get(a.s.localPeerId) ?? []).some((x) => x.role === 'screen'));
        // A leaves from inside its own peer-left listener.
        let leaving = null;
        a.s.on('peer-left', ({ peer }) => { if (peer.id === bId) leaving = a.s.leave(); });
        await b.s.leave();
        await waitFor('leave() called from peer-left', () => leaving !== null);
        await leaving;
        // Let the Promises started inside the last callbacks settle.
        await new Promise((r) => setTimeout(r, 500));
        return { problems, fired: [...fired].sort(), probes, state: a.s.state, states: a.log.states };
      }, room);
      assert.deepEqual(result.problems, []);
      assert.deepEqual(consoleProblems, []);
      const everything = [
        'hook:onPeerConnection',
        ...['error', 'peer-joined', 'peer-left', 'state-change'].map((n) => `session:${n}`),
        ...['app-signal', 'metadata-updated', 'peer-left', 'state-change', 'stats', 'stream-added', 'stream-removed'].map((n) => `peer:${n}`),
      ].sort();
      assert.deepEqual(result.fired, everything);
      assert.ok(result.probes > 20, `${result.probes} probes`);
      assert.equal(result.state, 'left');
      assert.deepEqual(result.states, ['connecting', 'joined', 'left']);
    } finally {
      await browser.close();
    }
  });
}
