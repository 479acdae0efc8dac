// Light and dark: the page follows prefers-color-scheme, the header's choice overrides it and is
// remembered, and in both every text on screen has a contrast of at least 4.5:1 with what is
// behind it (WCAG AA), expert chips and the tour's card included.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { serveDist } from './serve.mjs';
import { dist, launch, outDir, SLOW } from './harness.mjs';

let server, browser;
before(async () => {
  server = await serveDist(dist);
  browser = await launch({});
});
after(async () => {
  await browser?.close();
  server?.close();
});

/** Every visible text's contrast with its background; the ones under `min`. */
const lowContrast = (page, min) => page.evaluate((min) => {
  const rgb = (c) => (c.match(/[\d.]+/g) ?? []).map(Number);
  const lum = ([r, g, b]) => [r, g, b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
    .reduce((a, v, i) => a + v * [0.2126, 0.7152, 0.0722][i], 0);
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || c[3] > 0.5) return c.slice(0, 3);
      if (getComputedStyle(e).backgroundImage !== 'none') return null; // a pattern: not judged here
    }
    return rgb(getComputedStyle(document.documentElement).backgroundColor).slice(0, 3);
  };
  const bad = [];
  for (const el of document.querySelectorAll('body *')) {
    const text = [...el.childNodes].filter((n) => n.nodeType === 3).map((n) => n.textContent.trim()).join('');
    const r = el.getBoundingClientRect();
    if (!text || r.width === 0 || getComputedStyle(el).visibility === 'hidden' || el.closest('[disabled], .skip')) continue;
    const bg = background(el);
    if (!bg) continue;
    const [a, b] = [lum(rgb(getComputedStyle(el).color)), lum(bg)];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < min) bad.push(`${el.tagName.toLowerCase()}.${el.className} "${text.slice(0, 30)}" ${ratio.toFixed(2)}`);
  }
  return bad;
}, min);

const cardBackground = (page) => page.locator('.card').first().evaluate((e) => getComputedStyle(e).backgroundColor);

test('dark follows the system, the header overrides and remembers it, and text contrast holds in both', async () => {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.goto(`${server.url}?v=1&ckpt=topk&token=3&prompt=${encodeURIComponent('The cat sat on the mat. fn main() {}')}`);
  await page.locator('[data-testid="token-detail"]').waitFor({ timeout: SLOW });
  await page.locator('[data-testid="speed"]', { hasNotText: 'running' }).waitFor({ timeout: SLOW });
  assert.equal(await cardBackground(page), 'rgb(27, 32, 41)', 'the system says dark');
  for (const tab of ['Overview', 'Load & metrics', 'Experts', 'Capacity']) {
    await page.locator(`[data-testid="tab-${tab}"]`).click();
    await page.waitForTimeout(200);
    assert.deepEqual(await lowContrast(page, 4.5), [], `dark, ${tab}: text under 4.5:1`);
  }
  await page.locator('[data-testid="tab-Overview"]').click();
  await page.screenshot({ path: join(outDir, 'dark.png') });
  // The header's choice wins over the system's and survives a reload.
  await page.locator('[data-testid="theme"]').selectOption('light');
  assert.equal(await cardBackground(page), 'rgb(255, 255, 255)');
  await page.reload();
  await page.locator('[data-testid="token-strip"]').waitFor({ timeout: SLOW });
  assert.equal(await page.locator('[data-testid="theme"]').inputValue(), 'light');
  assert.equal(await cardBackground(page), 'rgb(255, 255, 255)');
  await page.locator('[data-testid="speed"]', { hasNotText: 'running' }).waitFor({ timeout: SLOW });
  for (const tab of ['Overview', 'Load & metrics', 'Experts', 'Capacity']) {
    await page.locator(`[data-testid="tab-${tab}"]`).click();
    await page.waitForTimeout(200);
    assert.deepEqual(await lowContrast(page, 4.5), [], `light, ${tab}: text under 4.5:1`);
  }
  await page.locator('[data-testid="theme"]').selectOption('dark');
  await page.emulateMedia({ colorScheme: 'light' });
  assert.equal(await cardBackground(page), 'rgb(27, 32, 41)', 'dark chosen on a light system');
  await page.locator('[data-testid="theme"]').selectOption('auto');
  assert.equal(await cardBackground(page), 'rgb(255, 255, 255)');
  assert.deepEqual(errors, []);
  await page.close();
});

/** The colour of a canvas chart's pixel (x, y) in CSS pixels, as `rgb(r, g, b)`. */
const pixel = (page, testid, x, y) => page.locator(`[data-testid="${testid}"]`).evaluate((c, [x, y]) => {
  const r = c.width / c.getBoundingClientRect().width;
  const [red, g, b] = c.getContext('2d').getImageData(Math.round(x * r), Math.round(y * r), 1, 1).data;
  return `rgb(${red}, ${g}, ${b})`;
}, [x, y]);

test('the charts draw in the theme in force and again when it changes: the system under "auto", or the header', async () => {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.emulateMedia({ colorScheme: 'light' });
  await page.goto(`${server.url}?v=1&ckpt=topk&panel=train&prompt=${encodeURIComponent('The cat sat.')}`);
  await page.locator('[data-testid="train-loss"]').waitFor({ timeout: SLOW });
  const background = () => pixel(page, 'train-loss', 4, 4);
  assert.equal(await background(), 'rgb(255, 255, 255)', 'light: the plotters chart on white');
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.waitForTimeout(300);
  assert.equal(await background(), 'rgb(27, 32, 41)', 'the system turned dark: the chart on the dark card');
  await page.locator('[data-testid="theme"]').selectOption('light');
  await page.waitForTimeout(300);
  assert.equal(await background(), 'rgb(255, 255, 255)', 'the header chose light');
  await page.locator('[data-testid="theme"]').selectOption('auto');
  await page.waitForTimeout(300);
  assert.equal(await background(), 'rgb(27, 32, 41)', 'back to the dark system');
  assert.deepEqual(errors, []);
  await page.close();
});
