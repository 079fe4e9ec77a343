// The demo page (www/) end to end: it loads the built package (pkg/) from the real server, and
// two tabs on `/?room=NAME` make a real video call, in both browsers. This is also what catches a
// broken build step (wasm-bindgen, wasm-opt) that unit tests cannot see.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BROWSERS, ROOT, WAIT_MS, launch, startServer } from './harness.mjs';
import { roomName } from './page.mjs';

const pkg = JSON.parse(readFileSync(join(ROOT, 'pkg/package.json'), 'utf8'));
let server;
let smallServer; // rooms of one: the second joiner gets room-full

before(async () => {
  [server, smallServer] = await Promise.all([startServer(), startServer(['--room-capacity', '1'])]);
});
after(async () => {
  assert.equal(await server.stop(), 0, 'server exits cleanly on SIGTERM');
  await smallServer.stop();
});

/** Opens a tab that records page errors; `name` is stored as the demo's remembered display name. */
async function openTab(browser, url, { name = null, errors = [] } = {}) {
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 800 });
  page.on('pageerror', (err) => errors.push(String(err)));
  if (name !== null) {
    await page.goto(new URL('/', url).href);
    await page.evaluate((n) => localStorage.setItem('rtcroom-demo-name', n), name);
  }
  await page.goto(url);
  await page.waitForSelector('body[data-ready="true"]', { timeout: WAIT_MS });
  return page;
}

/** What a tab shows, read from the DOM only. */
function snapshot(page) {
  return page.evaluate(() => ({
    session: document.getElementById('session-state').dataset.state,
    search: location.search,
    lobby: !document.getElementById('lobby').hidden,
    call: !document.getElementById('call').hidden,
    error: document.getElementById('error').hidden ? null : document.getElementById('error').dataset.code,
    tiles: [...document.querySelectorAll('#grid .tile.remote')].map((t) => ({
      id: t.dataset.peerId,
      state: t.dataset.state,
      badge: t.querySelector('.state').textContent,
      name: t.querySelector('.name').textContent,
      videos: t.querySelectorAll('video').length,
      attrs: [...t.querySelectorAll('video')].map((v) => [v.hasAttribute('playsinline'), v.autoplay]),
    })),
  }));
}

/** Clicks in `page`'s tab. Only the front tab renders, and puppeteer's click waits on rendering. */
async function click(page, selector) {
  await page.bringToFront();
  await page.click(selector);
}

/** Resolves once `selector`'s <video> has decoded frames and its clock advances. */
async function videoPlays(page, selector) {
  await page.waitForFunction((sel) => {
    const v = document.querySelector(sel);
    return v && v.srcObject && v.videoWidth > 0 && v.readyState >= 2 && !v.paused;
  }, { timeout: WAIT_MS, polling: 100 }, selector);
  const t0 = await page.$eval(selector, (v) => v.currentTime);
  await page.waitForFunction((sel, t) => document.querySelector(sel).currentTime > t + 0.5,
    { timeout: WAIT_MS, polling: 100 }, selector, t0);
  return page.$eval(selector, (v) => ({ width: v.videoWidth, height: v.videoHeight }));
}

for (const name of BROWSERS) {
  test(`demo page loads the package in ${name}`, async () => {
    const browser = await launch(name);
    try {
      const page = await browser.newPage();
      const errors = [];
      page.on('pageerror', (err) => errors.push(String(err)));
      await page.goto(`${server.url}/`);
      await page.waitForSelector('body[data-ready="true"]', { timeout: WAIT_MS });
      const shown = await page.evaluate(() => ({
        version: document.getElementById('version').textContent,
        webrtc: document.getElementById('webrtc').textContent,
        status: document.getElementById('status').textContent,
        lobby: !document.getElementById('lobby').hidden,
        call: !document.getElementById('call').hidden,
        joinEnabled: !document.getElementById('join-button').disabled,
      }));
      assert.deepEqual(shown, {
        version: pkg.version, webrtc: 'available', status: 'SDK loaded.', lobby: true, call: false, joinEnabled: true,
      });
      assert.deepEqual(errors, []);
    } finally {
      await browser.close();
    }
  });

  test(`${name}: two tabs on /?room=NAME make a video call, Leave removes the tile on the other side`, async () => {
    const browser = await launch(name);
    const errors = [];
    try {
      const room = roomName('demo');
      const url = `${server.url}/?room=${room}`;
      const a = await openTab(browser, url, { name: 'Ann', errors });
      const b = await openTab(browser, url, { name: 'Bob', errors });

      for (const page of [a, b]) {
        await page.waitForSelector('#grid .tile.remote[data-state="connected"]', { timeout: WAIT_MS });
        await page.waitForSelector('#session-state[data-state="joined"]', { timeout: WAIT_MS });
      }
      // Real frames on both sides, in the remote tile and in the local preview.
      const frames = {};
      for (const [label, page] of [['a', a], ['b', b]]) {
        await page.bringToFront();
        frames[label] = await videoPlays(page, '#grid .tile.remote video');
        frames[`${label}Local`] = await videoPlays(page, '#local-video');
      }
      for (const size of Object.values(frames)) assert.ok(size.width > 0 && size.height > 0, JSON.stringify(frames));

      const [sa, sb] = [await snapshot(a), await snapshot(b)];
      for (const [s, other] of [[sa, 'Bob'], [sb, 'Ann']]) {
        assert.equal(s.session, 'joined');
        assert.equal(s.search, `?room=${room}`, 'the URL is the shareable room link');
        assert.deepEqual([s.lobby, s.call, s.error], [false, true, null]);
        assert.equal(s.tiles.length, 1, JSON.stringify(s.tiles));
        assert.deepEqual({ ...s.tiles[0], id: undefined },
          { id: undefined, state: 'connected', badge: 'connected', name: other, videos: 1, attrs: [[true, true]] });
      }
      assert.notEqual(sa.tiles[0].id, sb.tiles[0].id, 'each tab sees the other peer');
      // The tile shows the connection quality from the SDK's per-peer stats events.
      await a.waitForFunction(() => /^direct( · \d+ ms)? · \d+ fps · \d+ kbps$/.test(document.querySelector('#grid .tile.remote .quality')?.textContent ?? ''),
        { timeout: WAIT_MS, polling: 100 });
      const local = await a.evaluate(() => {
        const v = document.getElementById('local-video');
        return { muted: v.muted, playsInline: v.hasAttribute('playsinline'), autoplay: v.autoplay, share: document.getElementById('share-link').value };
      });
      assert.deepEqual(local, { muted: true, playsInline: true, autoplay: true, share: url });

      // Mic and camera toggles flip the local tracks (and the button's pressed state).
      await click(a, '#toggle-mic');
      await click(a, '#toggle-cam');
      const toggled = await a.evaluate(() => {
        const s = document.getElementById('local-video').srcObject;
        return {
          audio: s.getAudioTracks()[0].enabled, video: s.getVideoTracks()[0].enabled,
          mic: document.getElementById('toggle-mic').getAttribute('aria-pressed'),
          cam: document.getElementById('toggle-cam').getAttribute('aria-pressed'),
        };
      });
      assert.deepEqual(toggled, { audio: false, video: false, mic: 'true', cam: 'true' });
      await click(a, '#toggle-mic');
      assert.equal(await a.$eval('#local-video', (v) => v.srcObject.getAudioTracks()[0].enabled), true);

      if (name === 'chromium') {
        await click(a, '#toggle-cam'); // camera back on for the picture
        await videoPlays(a, '#local-video');
        await a.screenshot({ path: '/tmp/demo-call.png' });
      }

      // Chat: A's line reaches B with A's name, and A's line gets its delivery ticks (the acks).
      await a.type('#chat-input', 'hello <b>Bob</b>');
      await a.keyboard.press('Enter');
      await b.waitForFunction(() => document.querySelector('#chat-log li:last-child')?.textContent === 'Annhello <b>Bob</b>',
        { timeout: WAIT_MS, polling: 50 });
      await a.waitForFunction(() => document.querySelector('#chat-log li:last-child .ticks')?.dataset.state === 'delivered',
        { timeout: WAIT_MS, polling: 50 });
      assert.equal(await b.$eval('#chat-log li:last-child .who', (el) => el.textContent), 'Ann');
      assert.equal(await b.$$eval('#chat-log b', (els) => els.length), 0, 'text, not HTML');
      assert.equal(await a.$eval('#chat-log li:last-child .ticks', (el) => el.textContent), '✓✓');

      // A file: A picks one, B accepts the offer, a download link appears; A sees it verified.
      const filePath = `/tmp/rtcroom-demo-${name}.txt`;
      writeFileSync(filePath, 'a file from the demo test\n'.repeat(20_000));
      const input = await a.$('#file-input');
      await input.uploadFile(filePath);
      await b.waitForFunction(() => [...document.querySelectorAll('#chat-log button')].some((el) => el.textContent === 'Accept'),
        { timeout: WAIT_MS, polling: 50 });
      await b.evaluate(() => [...document.querySelectorAll('#chat-log button')].find((el) => el.textContent === 'Accept').click());
      const download = await b.waitForFunction(() => document.querySelector('#chat-log a[download]')?.download,
        { timeout: WAIT_MS, polling: 50 });
      assert.equal(await download.jsonValue(), `rtcroom-demo-${name}.txt`);
      const text = await b.evaluate(async () => (await fetch(document.querySelector('#chat-log a[download]').href)).text());
      assert.equal(text, 'a file from the demo test\n'.repeat(20_000));
      await a.waitForFunction(() => document.getElementById('chat-log').textContent.includes('✓ delivered, SHA-256 verified'),
        { timeout: WAIT_MS, polling: 50 });

      // Leave in B: A's tile goes away (the SDK promises peer-left well within a second).
      await click(b, '#leave');
      await a.waitForFunction(() => document.querySelectorAll('#grid .tile.remote').length === 0,
        { timeout: 5000, polling: 50 });
      // B is back in the lobby once its leave() resolved (it flushes the stats trace first).
      await b.waitForFunction(() => !document.getElementById('lobby').hidden, { timeout: 5000, polling: 50 });
      const [la, lb] = [await snapshot(a), await snapshot(b)];
      assert.equal(la.session, 'joined');
      assert.equal(await a.$eval('#alone', (el) => !el.hidden), true, 'A waits for others again');
      assert.deepEqual([lb.lobby, lb.call, lb.search, lb.tiles.length, lb.session], [true, false, '', 0, 'left']);
      const bMedia = await b.evaluate(() => ({
        preview: document.getElementById('local-video').srcObject,
        room: document.getElementById('room-input').value,
      }));
      assert.deepEqual(bMedia, { preview: null, room });
      assert.deepEqual(errors, []);
    } finally {
      await browser.close();
    }
  });

  test(`${name}: the join form joins with a display name and a full room shows room-full`, async () => {
    const browser = await launch(name);
    const errors = [];
    try {
      const room = roomName('form');
      const a = await openTab(browser, `${smallServer.url}/`, { errors });
      await a.type('#room-input', room);
      await a.type('#name-input', 'Cy');
      await click(a, '#join-button');
      await a.waitForSelector('#session-state[data-state="joined"]', { timeout: WAIT_MS });
      const joined = await a.evaluate(() => ({
        search: location.search,
        local: document.getElementById('local-name').textContent,
        alone: !document.getElementById('alone').hidden,
        remembered: localStorage.getItem('rtcroom-demo-name'),
      }));
      assert.deepEqual(joined, { search: `?room=${room}`, local: 'Cy (you)', alone: true, remembered: 'Cy' });

      // Capacity 1: a second tab on the link is refused, says so, and is back at the form.
      const b = await openTab(browser, `${smallServer.url}/?room=${room}`, { errors });
      await b.waitForSelector('#error[data-code="room-full"]:not([hidden])', { timeout: WAIT_MS });
      await b.waitForSelector('#lobby:not([hidden])', { timeout: WAIT_MS });
      const refused = await snapshot(b);
      assert.deepEqual([refused.call, refused.session, refused.tiles.length], [false, 'failed', 0]);
      assert.match(await b.$eval('#error', (el) => el.textContent), /room is full/i);
      assert.equal((await snapshot(a)).tiles.length, 0, 'the refused joiner never appears');

      await click(a, '#leave');
      await a.waitForSelector('#lobby:not([hidden])', { timeout: WAIT_MS });
      assert.equal(await a.evaluate(() => location.search), '');
      assert.deepEqual(errors, []);
    } finally {
      await browser.close();
    }
  });
}
