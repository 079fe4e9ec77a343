// Shared end-to-end harness: the real rtcroom-server on an ephemeral port and real headless
// browsers (Debian's Chromium over CDP, Firefox ESR over WebDriver BiDi) driven by
// puppeteer-core, which downloads nothing.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import puppeteer from 'puppeteer-core';

export const ROOT = resolve(import.meta.dirname, '../..');

/** Every wait in the e2e tests is bounded by this. */
export const WAIT_MS = 20_000;

const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
  '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
  '--autoplay-policy=no-user-gesture-required',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-quic', '--no-first-run',
];

const FIREFOX_PREFS = {
  'media.navigator.streams.fake': true,
  'media.navigator.permission.disabled': true,
  'media.autoplay.default': 0,
  'network.captive-portal-service.enabled': false,
  'app.update.enabled': false,
  'datareporting.policy.dataSubmissionEnabled': false,
  'browser.safebrowsing.malware.enabled': false,
  'browser.safebrowsing.phishing.enabled': false,
};

export const BROWSERS = ['chromium', 'firefox'];

/** Launches a headless browser with fake camera + microphone and no permission prompts. */
export async function launch(name) {
  const profile = mkdtempSync(join(tmpdir(), `rtcroom-${name}-`));
  const browser = name === 'firefox'
    ? await puppeteer.launch({
      browser: 'firefox', executablePath: '/usr/bin/firefox-esr', headless: true,
      userDataDir: profile, extraPrefsFirefox: FIREFOX_PREFS,
    })
    : await puppeteer.launch({
      browser: 'chrome', executablePath: '/usr/bin/chromium', headless: true,
      userDataDir: profile, args: CHROMIUM_ARGS,
    });
  const close = browser.close.bind(browser);
  browser.close = async () => {
    await close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  };
  return browser;
}

/**
 * Starts rtcroom-server (RTCROOM_SERVER_BIN, default the debug build) on 127.0.0.1 with an
 * ephemeral port (unless extraArgs has --port), serving www/ and pkg/. Resolves to { url, stop() }.
 */
export async function startServer(extraArgs = []) {
  const bin = process.env.RTCROOM_SERVER_BIN ?? join(ROOT, 'target/debug/rtcroom-server');
  const port = extraArgs.includes('--port') ? [] : ['--port', '0'];
  // Stats dumps go to a temporary directory unless the test names one.
  const dumpsDir = extraArgs.includes('--dumps-dir') ? null : mkdtempSync(join(tmpdir(), 'rtcroom-dumps-'));
  const dumps = dumpsDir ? ['--dumps-dir', dumpsDir] : [];
  const child = spawn(bin, [...port, ...dumps, '--static-dir', join(ROOT, 'www'), '--pkg-dir', join(ROOT, 'pkg'), ...extraArgs], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn' },
  });
  const lines = createInterface({ input: child.stdout });
  const [first] = await Promise.race([
    once(lines, 'line'),
    once(child, 'exit').then(([code]) => { throw new Error(`rtcroom-server exited with ${code}`); }),
  ]);
  const match = /listening on (http:\/\/\S+?)\/?$/.exec(first);
  if (!match) throw new Error(`unexpected first line from rtcroom-server: ${first}`);
  return {
    url: match[1],
    async stop() {
      let code = child.exitCode;
      if (code === null) {
        child.kill('SIGTERM');
        [code] = await once(child, 'exit');
      }
      if (dumpsDir) rmSync(dumpsDir, { recursive: true, force: true });
      return code;
    },
  };
}
