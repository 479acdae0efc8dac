// What the browser tests, the benchmark and the profiler share: where the built site and the
// screenshots are, which Chromium runs and with which flags, and the page-clock timing of when
// parts of the page first appear. Not a test file (node --test skips it).
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const root = join(here, '..', '..');
export const dist = join(root, 'dist');
export const outDir = join(here, 'out');
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const BASE_FLAGS = ['--headless=new', '--no-sandbox', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-quic'];
/** How long a step may take before a test fails (WebGPU on SwiftShader is slow). */
export const SLOW = 240_000;

/**
 * Records, on the page's own clock (`performance.now()` from navigation start), when each
 * `[name, selector]` first matches, for every later navigation of `page`: a MutationObserver
 * installed before the page's scripts run. Polling from the test driver would add its own
 * round trips (about 0.5 s on this machine). Read the times with `firstSeen(page)`.
 */
export async function watchFirstSeen(page, marks) {
  await page.addInitScript((marks) => {
    const seen = {};
    window.__firstSeen = seen;
    new MutationObserver(() => {
      for (const [name, sel] of marks) {
        if (!seen[name] && document.querySelector(sel)) seen[name] = performance.now();
      }
    }).observe(document, { childList: true, subtree: true });
  }, marks);
}

/** The times `watchFirstSeen` recorded since the last navigation. */
export const firstSeen = (page) => page.evaluate(() => window.__firstSeen);
