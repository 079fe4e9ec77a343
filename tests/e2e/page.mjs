// Helpers evaluated inside test pages (serialized by puppeteer, so self-contained functions).

/** Installs `window.rt`: session factory and bounded waits, using the built package. */
export async function installPageHelpers(page) {
  await page.evaluate(async () => {
    const sdk = await import('/pkg/index.js');
    await sdk.load();
    const within = (ms, what, promise) => Promise.race([
      promise,
      new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms)),
    ]);
    const waitFor = async (what, predicate, ms = 20000) => {
      const start = performance.now();
      while (!(await predicate())) {
        if (performance.now() - start > ms) throw new Error(`timed out after ${ms} ms: ${what}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    const framesDecoded = async (pc) => {
      if (!pc) return 0;
      let frames = 0;
      (await pc.getStats()).forEach((r) => {
        if (r.type === 'inbound-rtp' && r.kind === 'video') frames = Math.max(frames, r.framesDecoded ?? 0);
      });
      return frames;
    };
    /** A session with a fake camera+mic, recording what it sees. */
    const session = async (room, options = {}) => {
      const s = new sdk.RoomSession({ room, ...options });
      const log = { joined: [], left: [], added: new Map(), removed: [], states: [], errors: [] };
      s.on('peer-joined', ({ peer }) => {
        log.joined.push(peer.id);
        peer.on('stream-added', ({ stream, role }) => {
          const list = log.added.get(peer.id) ?? [];
          list.push({ stream, role });
          log.added.set(peer.id, list);
        });
        peer.on('stream-removed', ({ role }) => log.removed.push({ peer: peer.id, role }));
      });
      s.on('peer-left', ({ peer, reason }) => log.left.push({ id: peer.id, reason, at: performance.now() }));
      s.on('state-change', ({ to }) => log.states.push(to));
      s.on('error', (e) => log.errors.push(`${e.code}: ${e.message}`));
      let stream = null;
      if (options.media !== false) {
        stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 320, height: 240 } });
        s.addStream(stream, { role: 'camera' });
      }
      return { s, log, stream };
    };
    /** Resolves once `a` and `b` both see each other connected with decoding video. */
    const connected = async (a, b, ms = 20000) => {
      for (const [x, y] of [[a, b], [b, a]]) {
        await waitFor(`${x.s.localPeerId} sees ${y.s.localPeerId} connected`,
          () => x.s.peer(y.s.localPeerId)?.state === 'connected', ms);
      }
    };
    /** Two sessions in `room` (per-session options), joined one after the other, connected. */
    const pair = async (room, optionsA = {}, optionsB = optionsA) => {
      const a = await session(room, optionsA);
      const b = await session(room, optionsB);
      await a.s.join();
      await b.s.join();
      await connected(a, b);
      return { a, b };
    };
    window.rt = { sdk, within, waitFor, framesDecoded, session, connected, pair };
  });
}

export function roomName(prefix) {
  return `${prefix}-${Math.random().toString(36).slice(2, 10)}`;
}

/**
 * One page per browser given, at `serverUrl`, each with a joined data-only session in one new
 * room, connected to every other. `setup` (a page function) runs in each page first. Messages
 * land in `window.inbox` as `{ from, data, channel }`. Resolves `{ pages, ids }`.
 */
export async function joinedPages(serverUrl, browsers, prefix, setup = () => {}) {
  const pages = [];
  for (const b of browsers) {
    const page = await b.newPage();
    await page.goto(`${serverUrl}/`);
    await installPageHelpers(page);
    await page.evaluate(setup);
    pages.push(page);
  }
  const room = roomName(prefix);
  const ids = [];
  for (const page of pages) {
    ids.push(await page.evaluate(async (room) => {
      window.me = await window.rt.session(room, { media: false, url: '/signal' });
      window.inbox = [];
      window.me.s.on('message', ({ peer, data, channel }) => window.inbox.push({ from: peer.id, data, channel }));
      await window.me.s.join();
      return window.me.s.localPeerId;
    }, room));
  }
  await Promise.all(pages.map((page, i) => page.evaluate((others) => Promise.all(others.map((other) => window.rt.waitFor(
    'connected', () => window.me.s.peer(other)?.state === 'connected'))), ids.filter((_, j) => j !== i))));
  return { pages, ids };
}
