// The accessibility audit: axe-core (npm, the version in package-lock.json) on every view of the
// playground (with the tour, with every chart's table open, as a recorded trace's read-only
// views, with the open-a-model panels and the embed dialog) and every embedded view, in light
// and in dark, reports no violation; then the charts' other ways in: the data table behind each
// canvas chart, and the grid and heatmap by arrow keys, Enter opening the token's detail.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { serveDist } from './serve.mjs';
import { dist, launch, outDir, root, SLOW } from './harness.mjs';

const axePath = createRequire(import.meta.url).resolve('axe-core/axe.min.js');
const P = encodeURIComponent;
const PROMPT = P('The cat sat on the mat. fn main() {}');
const TABS = ['Overview', 'All layers', 'Heatmap', 'Load & metrics', 'Capacity', 'Experts', 'Domains', 'Router A/B', 'Train'];
const EMBEDS = ['tokens', 'grid', 'heatmap', 'load', 'capacity', 'experts', 'domains', 'compare'];

let server, host, browser;
before(async () => {
  server = await serveDist(dist);
  host = await serveDist(join(root, 'tests/browser/fixtures'), { cors: true });
  browser = await launch({});
});
after(async () => {
  await browser?.close();
  server?.close();
  host?.close();
});

/**
 * axe-core's violations on `page` (and its frames), one line each. The issue asks for no
 * serious or critical one; the page has none of any impact, and the test keeps it so.
 */
async function audit(page) {
  for (const f of page.frames()) await f.addScriptTag({ path: axePath });
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  return result.violations
    .map((v) => `${v.impact} ${v.id}: ${v.help} — ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(' | ')}`);
}

const settled = (page) => page.locator('[data-testid="speed"]', { hasNotText: 'running' }).waitFor({ timeout: SLOW });

for (const scheme of ['light', 'dark']) {
  test(`axe: every view of the playground, ${scheme}`, async () => {
    const page = await browser.newPage();
    await page.emulateMedia({ colorScheme: scheme });
    await page.goto(`${server.url}?v=1&ckpt=topk&token=3&prompt=${PROMPT}`);
    await page.locator('[data-testid="token-detail"]').waitFor({ timeout: SLOW });
    await settled(page);
    const found = [];
    for (const tab of TABS) {
      await page.locator(`[data-testid="tab-${tab}"]`).click();
      await page.waitForTimeout(300);
      await settled(page);
      // With every chart's table open: they are part of the page too.
      for (const button of await page.locator('#views .table-toggle').all()) await button.click();
      for (const v of await audit(page)) found.push(`${tab}: ${v}`);
    }
    // And with the guided tour's card open over the page.
    await page.locator('[data-testid="tour-start"]').click();
    await page.locator('[data-testid="tour"]').waitFor();
    await settled(page);
    for (const v of await audit(page)) found.push(`tour: ${v}`);
    assert.deepEqual(found, [], `${scheme}: axe-core's violations`);
    await page.close();
  });

  test(`axe: a recorded trace's read-only views, the open-a-model panels and the embed dialog, ${scheme}`, async () => {
    const page = await browser.newPage();
    await page.emulateMedia({ colorScheme: scheme });
    await page.goto(`${server.url}?v=1&trace=${P(`${host.url}mixtral.trace.json`)}`);
    await page.locator('[data-testid="token-strip"]').waitFor({ timeout: SLOW });
    await settled(page);
    const found = [];
    for (const tab of TABS.filter((t) => t !== 'Train')) {
      await page.locator(`[data-testid="tab-${tab}"]`).click();
      await page.waitForTimeout(300);
      for (const v of await audit(page)) found.push(`trace, ${tab}: ${v}`);
    }
    await page.goto(`${server.url}?v=1&ckpt=topk&prompt=${PROMPT}`);
    await page.locator('[data-testid="token-strip"]').waitFor({ timeout: SLOW });
    await settled(page);
    for (const d of await page.locator('details').all()) await d.evaluate((e) => { e.open = true; });
    await page.locator('[data-testid="embed-code"]').click();
    await page.locator('[data-testid="embed-dialog"]').waitFor();
    for (const v of await audit(page)) found.push(`panels open: ${v}`);
    assert.deepEqual(found, [], `${scheme}: axe-core's violations`);
    await page.close();
  });

  test(`axe: every embedded view and the embedding example page, ${scheme}`, async () => {
    const page = await browser.newPage();
    await page.emulateMedia({ colorScheme: scheme });
    const found = [];
    for (const view of EMBEDS) {
      await page.goto(`${server.url}?v=1&ckpt=topk&b.router=topk&b.k=1&embed=${view}&show=prompt,router,layers&prompt=${PROMPT}`);
      await page.locator('[data-testid="embedded"]').waitFor({ timeout: SLOW });
      await page.waitForTimeout(500);
      await settled(page);
      for (const v of await audit(page)) found.push(`embed=${view}: ${v}`);
    }
    await page.goto(`${server.url}embed.html`);
    for (const f of ['strip', 'heatmap', 'ab']) {
      await page.frameLocator(`#${f}`).locator('[data-testid="embedded"][aria-busy="false"] canvas, [data-testid="embedded"][aria-busy="false"] .strip').first().waitFor({ timeout: SLOW });
    }
    for (const v of await audit(page)) found.push(`embed.html: ${v}`);
    // The audit reaches into the frames: an unlabelled field planted in one is reported.
    await page.frame({ url: /embed=heatmap/ }).evaluate(() => document.querySelector('main').append(document.createElement('input')));
    assert.ok((await audit(page)).some((v) => v.includes('critical label')), 'a planted unlabelled field is found');
    assert.deepEqual(found, [], `${scheme}: axe-core's violations`);
    await page.close();
  });
}

/** The cells a canvas chart drew, `[row][col]` (its `data-cells`). */
const drawn = async (canvas) => (await canvas.getAttribute('data-cells')).split(';').map((r) => r.split(','));

test('the grid and the heatmap by arrow keys: a ring shows the cell, a live region says it, Enter opens the token', async () => {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${server.url}?v=1&ckpt=topk&prompt=${PROMPT}`);
  await page.locator('[data-testid="token-strip"]').waitFor({ timeout: SLOW });
  await settled(page);
  const tokens = await page.locator('[data-testid="token-strip"] button[data-index]').allTextContents();

  await page.locator('[data-testid="tab-All layers"]').click();
  const grid = page.locator('[data-testid="grid"]');
  await grid.focus();
  for (const key of ['ArrowRight', 'ArrowRight', 'ArrowRight', 'ArrowDown']) await page.keyboard.press(key);
  const cells = await drawn(grid);
  assert.equal(await page.locator('[data-testid="grid-at"]').textContent(), `L1, ${tokens[3]}: ${cells[1][3]}`);
  // The ring is around row 1, column 3 of the drawing (row labels 34 px, column labels 70 px,
  // cells 20 px; the ring 3 px beyond the cell on each side).
  const ringOf = (canvas) => page.locator(`[data-testid="${canvas}"] + .cell-ring`);
  const [box, ring] = [await grid.boundingBox(), await ringOf('grid').boundingBox()];
  assert.deepEqual([ring.x - box.x + 3, ring.y - box.y + 3, ring.width - 6].map(Math.round), [34 + 3 * 20, 70 + 20, 20], 'the ring is on the cell');
  await page.keyboard.press('Enter');
  await page.locator('[data-testid="token-detail"] h3', { hasText: 'Token 3:' }).waitFor({ timeout: SLOW });
  assert.equal(await page.locator('[data-testid="token-strip"]').getAttribute('data-layer'), '1', 'Enter chose the layer too');
  await page.keyboard.press('End');
  assert.match(await page.locator('[data-testid="grid-at"]').textContent(), new RegExp(`^L1, .*: ${cells[1].at(-1)}$`));
  assert.ok(await ringOf('grid').isVisible(), 'the ring shows while the chart has the focus');
  await page.keyboard.press('Tab');
  assert.ok(!(await ringOf('grid').isVisible()), 'and not once it has gone');

  await page.locator('[data-testid="tab-Heatmap"]').click();
  await page.locator('[data-testid="table-heatmap-canvas"]').click(); // its table open beside it
  const heat = page.locator('[data-testid="heatmap-canvas"]');
  await heat.focus();
  for (const key of ['ArrowDown', 'ArrowRight', 'ArrowRight']) await page.keyboard.press(key);
  await page.locator('#views').screenshot({ path: join(outDir, 'chart-keyboard-table.png') });
  const probs = await drawn(heat);
  assert.match(await page.locator('[data-testid="heatmap-canvas-at"]').textContent(), new RegExp(`^E1, ${tokens[2].replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: ${probs[1][2]}%`));
  await page.keyboard.press('Enter');
  await page.locator('[data-testid="token-detail"] h3', { hasText: 'Token 2:' }).waitFor({ timeout: SLOW });

  // Enter on the affinity chart goes to the next layer, which rebuilds the view: the new
  // chart has the focus back. A chart whose cells open nothing does not say Enter does.
  await page.locator('[data-testid="tab-Experts"]').click();
  assert.doesNotMatch(await page.locator('[data-testid="coactivation"]').getAttribute('aria-label'), /Enter/);
  assert.match(await page.locator('[data-testid="affinity"]').getAttribute('aria-label'), /Enter opens one/);
  const layerNow = Number(await page.locator('[data-testid="token-strip"]').getAttribute('data-layer'));
  await page.locator('[data-testid="affinity"]').focus();
  await page.keyboard.press('Enter');
  await page.locator(`[data-testid="token-strip"][data-layer="${layerNow + 1}"]`).waitFor({ timeout: SLOW });
  await page.waitForFunction(() => document.activeElement?.dataset.testid === 'affinity', null, { timeout: 5000 });
  assert.deepEqual(errors, []);
  await page.close();
});

test('every canvas chart has an accessible name and its numbers as a table', async () => {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${server.url}?v=1&ckpt=topk&b.router=topk&b.k=1&prompt=${PROMPT}`);
  await page.locator('[data-testid="token-strip"]').waitFor({ timeout: SLOW });
  await settled(page);
  const seen = [];
  for (const tab of TABS) {
    await page.locator(`[data-testid="tab-${tab}"]`).click();
    await page.waitForTimeout(300);
    await settled(page);
    for (const canvas of await page.locator('#views canvas').all()) {
      const id = await canvas.getAttribute('data-testid');
      assert.ok((await canvas.getAttribute('aria-label'))?.length > 10, `${tab}: ${id} has a name`);
      const button = page.locator(`[data-testid="table-${id}"]`);
      assert.equal(await button.getAttribute('aria-expanded'), 'false', `${tab}: ${id} has a table button`);
      await button.click();
      const table = page.locator(`[data-testid="${id}-table"] table`);
      await table.waitFor();
      assert.equal(await button.getAttribute('aria-expanded'), 'true');
      assert.ok((await table.locator('caption').textContent()).length > 10, `${tab}: ${id}'s table has a caption`);
      if (await canvas.getAttribute('data-cells')) {
        // A cell chart's table holds exactly the numbers drawn.
        const cells = await drawn(canvas);
        const rows = await table.locator('tbody tr').evaluateAll((trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent)));
        assert.equal(rows.length, cells.length, `${id}: a row per row`);
        rows.forEach((row, r) => row.forEach((text, c) => {
          // The table's cell is the drawn number, its unit and, in words, what its outline meant.
          const want = cells[r][c] === '-' ? '–' : cells[r][c];
          assert.equal(text.replace(/ \([a-z ]+\)$/, '').replace(/%$/, ''), want, `${id} [${r}][${c}]: "${text}"`);
        }));
      }
      await button.click();
      seen.push(id);
    }
  }
  for (const id of ['grid', 'heatmap-canvas', 'drop-by-position', 'coactivation', 'affinity', 'domain-grid', 'compare-grid', 'train-loss', 'train-load', 'train-router']) {
    assert.ok(seen.includes(id), `${id} was checked (saw ${seen.join(', ')})`);
  }
  assert.deepEqual(errors, []);
  await page.close();
});
