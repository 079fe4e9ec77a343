// The built npm package (pkg/) loads in a real page served by the real server, in both browsers.
// This is what catches a broken build step (wasm-bindgen, wasm-opt) that unit tests cannot see.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BROWSERS, ROOT, WAIT_MS, launch, startServer } from './harness.mjs';

const pkg = JSON.parse(readFileSync(join(ROOT, 'pkg/package.json'), 'utf8'));
let server;

before(async () => { server = await startServer(); });
after(async () => { assert.equal(await server.stop(), 0, 'server exits cleanly on SIGTERM'); });

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
      }));
      assert.deepEqual(shown, { version: pkg.version, webrtc: 'available', status: 'SDK loaded.' });
      assert.deepEqual(errors, []);
    } finally {
      await browser.close();
    }
  });
}
