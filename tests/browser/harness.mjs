// What the browser tests, the benchmark and the profiler share: where the built site and the
// screenshots are, which Chromium runs and with which flags, and the page-clock timing of when
// parts of the page first appear. Not a test file (node --test skips it).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

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
 * The engine path the playground and hostile-input tests drive: `cpu` (the default, and what
 * CI runs) or `webgpu` (`SWITCHYARD_BROWSER_PATH=webgpu`: Chromium gets an adapter, SwiftShader
 * here, and every page of the site opens with `backend=webgpu` unless its link names a backend).
 * Tests that are about choosing the path (engines, backends) launch with their own flags.
 */
export const PATH = process.env.SWITCHYARD_BROWSER_PATH ?? 'cpu';
if (!['cpu', 'webgpu'].includes(PATH)) throw new Error(`SWITCHYARD_BROWSER_PATH=${PATH}: expected cpu or webgpu`);
/** The header's badge for the path under test. */
export const PATH_BADGE = PATH === 'webgpu' ? 'WEBGPU' : 'CPU';

/**
 * A fresh Chromium profile for the path under test (`touch`: a phone's touch screen). On the WebGPU path each document request
 * of the site (a top-level page or an iframe) without `backend=` is answered with a redirect to
 * the same link plus `backend=webgpu`, so the test's own links stay as they are written.
 */
export async function launch({ flags = [], viewport = { width: 1360, height: 900 }, path = PATH, touch = false } = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'switchyard-chromium-'));
  const webgpu = path === 'webgpu' ? ['--enable-unsafe-webgpu'] : [];
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM, headless: true, args: [...BASE_FLAGS, ...webgpu, ...flags], viewport,
    ...(touch ? { hasTouch: true, isMobile: true } : {}),
  });
  if (path === 'webgpu') await context.route(isPlaygroundDocument, forceWebgpu);
  // The profile (about 180 MB once a page has run) goes with the browser: 600 runs of the
  // tests had left 100 GB of them in the temporary folder.
  const close = context.close.bind(context);
  context.close = async (...args) => {
    await close(...args);
    await rm(dir, { recursive: true, force: true });
  };
  return context;
}

/** The query a link's query `q` (no leading `?`) has once opened on the path under test. */
export function openedQuery(q) {
  if (PATH !== 'webgpu' || new URLSearchParams(q).has('backend')) return q;
  return `${q}${q === '' || q.endsWith('&') ? '' : '&'}backend=webgpu`;
}

/** A request for the playground's page (index or its sub-path), not an asset or a test page. */
function isPlaygroundDocument(url) {
  return (url.hostname === '127.0.0.1' || url.hostname === 'localhost')
    && (url.pathname.endsWith('/') || url.pathname.endsWith('/index.html'))
    && !url.searchParams.has('backend');
}

async function forceWebgpu(route) {
  const request = route.request();
  if (!request.isNavigationRequest()) return route.continue();
  // Appended as text, not through URLSearchParams: a hostile link's own bytes stay untouched.
  // (A request carries no fragment; the browser keeps the link's own across the redirect.)
  const href = request.url();
  const query = href.includes('?') ? href.slice(href.indexOf('?') + 1) : null;
  const link = query === null ? `${href}?backend=webgpu` : `${href.slice(0, href.length - query.length)}${openedQuery(query)}`;
  return route.fulfill({ status: 302, headers: { location: link } });
}

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

/**
 * A new page of `context` at `url` with its uncaught errors collected; waits for `ready` (a
 * selector, by default the token strip; `null` waits for nothing).
 */
export async function openPage(context, url, ready = '[data-testid="token-strip"]') {
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(url);
  if (ready) await page.locator(ready).waitFor({ timeout: SLOW });
  return { page, errors };
}
