// The playground on a phone (390 × 844 and 360 × 780, touch): one column with the views first,
// nothing wider than the screen in any view, and a person opens a link, taps a token, switches
// a router and an expert off.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { serveDist } from './serve.mjs';
import { dist, launch, outDir, SLOW } from './harness.mjs';

let server;
before(async () => { server = await serveDist(dist); });
after(() => server?.close());

const PROMPT = encodeURIComponent('The cat sat on the mat. fn main() { println!("hi"); }');

/** Elements that stick out of the screen (the page must not scroll sideways). */
const overflow = (page) => page.evaluate(() => ({
  width: document.documentElement.scrollWidth,
  screen: innerWidth,
  out: [...document.querySelectorAll('body *')]
    .filter((e) => { const r = e.getBoundingClientRect(); return r.width > 0 && r.right > innerWidth + 1 && !e.closest('.scroll, .card, .panel'); })
    .slice(0, 5).map((e) => `${e.tagName.toLowerCase()}.${e.className} ${e.dataset.testid ?? ''}`),
}));

for (const [width, height] of [[390, 844], [360, 780]]) {
  test(`at ${width} × ${height} a link opens, a tap shows a token, the router and an expert switch`, async () => {
    const browser = await launch({ viewport: { width, height }, touch: true });
    try {
    const page = await browser.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(`${server.url}?v=1&ckpt=topk&prompt=${PROMPT}`);
    await page.locator('[data-testid="token"]').first().waitFor({ timeout: SLOW });
    await page.locator('[data-testid="speed"]', { hasNotText: 'running' }).waitFor({ timeout: SLOW });
    // The views come first on a phone.
    const [strip, prompt] = await Promise.all(['token-strip', 'prompt'].map((id) => page.locator(`[data-testid="${id}"]`).boundingBox()));
    assert.ok(strip.y < prompt.y, 'the token strip is above the prompt');
    let o = await overflow(page);
    assert.ok(o.width <= o.screen && o.out.length === 0, `nothing wider than the screen: ${JSON.stringify(o)}`);
    await page.locator('[data-testid="token"]').nth(3).tap();
    await page.locator('[data-testid="token-detail"]').waitFor();
    const before = await page.locator('[data-testid="token"]').evaluateAll((els) => els.map((e) => e.dataset.expert));
    await page.locator('[data-testid="router"]').selectOption('thor');
    await page.locator('[data-testid="speed"]', { hasNotText: 'running' }).waitFor({ timeout: SLOW });
    assert.equal(new URL(page.url()).searchParams.get('router'), 'thor');
    await page.locator('[data-testid="router"]').selectOption('topk');
    // Switch off the first token's expert: no token goes there any more.
    const off = before[0];
    await page.locator(`[data-testid="ablate-${off}"]`).tap();
    await page.waitForFunction((e) => new URL(location.href).searchParams.get('ablate') === `0:${e}`, off);
    await page.locator('[data-testid="speed"]', { hasNotText: 'running' }).waitFor({ timeout: SLOW });
    const after = await page.locator('[data-testid="token"]').evaluateAll((els) => els.map((e) => e.dataset.expert));
    assert.ok(!after.includes(off), `expert ${off} is off: ${after}`);
    for (const tab of ['All layers', 'Heatmap', 'Load & metrics', 'Capacity', 'Experts', 'Domains', 'Router A/B']) {
      await page.locator(`[data-testid="tab-${tab}"]`).tap();
      await page.waitForTimeout(300);
      o = await overflow(page);
      assert.ok(o.width <= o.screen && o.out.length === 0, `${tab}: nothing wider than the screen: ${JSON.stringify(o)}`);
    }
    await page.locator('[data-testid="tab-Overview"]').tap();
    await page.evaluate(() => scrollTo(0, 0));
    await page.screenshot({ path: join(outDir, `phone-${width}.png`), fullPage: false });
    assert.deepEqual(errors, []);
    } finally {
      await browser.close();
    }
  });
}
