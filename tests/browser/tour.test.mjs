// The guided tour: eleven cards, each setting up its view (tab, token, router) and outlining it,
// with the live run's numbers; Next/Back by button and keyboard; the step in the link; a step's
// card in an embedded view.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { serveDist } from './serve.mjs';
import { dist, launch, openPage, outDir, SLOW } from './harness.mjs';

let server, browser;
before(async () => {
  server = await serveDist(dist);
  browser = await launch({});
});
after(async () => {
  await browser?.close();
  server?.close();
});

const PROMPT = encodeURIComponent('The cat sat on the mat. fn main() { println!("hi"); }');
/** The tab each step opens. */
const TABS = ['Overview', 'Overview', 'Overview', 'Overview', 'All layers', 'Load & metrics', 'Capacity', 'Experts', 'Overview', 'Router A/B', 'Overview'];

const open = (url) => openPage(browser, url);

/** Waits for step `n`'s card with the run's numbers, and checks what it set up. */
async function onStep(page, n) {
  const card = page.locator(`[data-testid="tour"][data-step="${n}"]`);
  await card.waitFor({ timeout: SLOW });
  await page.locator('[data-testid="speed"]', { hasNotText: 'running' }).waitFor({ timeout: SLOW });
  await page.locator('[data-testid="tour-text"]', { hasNotText: 'numbers appear' }).waitFor({ timeout: SLOW });
  const text = await page.locator('[data-testid="tour-text"]').textContent();
  assert.ok(!/NaN|undefined/.test(text), `step ${n}: ${text}`);
  assert.match(text, /\d/, `step ${n} quotes the live run: ${text}`);
  assert.equal(new URL(page.url()).searchParams.get('tour'), String(n));
  assert.equal(await page.locator(`[data-testid="tab-${TABS[n - 1]}"]`).getAttribute('aria-selected'), 'true', `step ${n}'s tab`);
  const target = await card.getAttribute('data-target');
  const el = page.locator(`[data-testid="${target}"]`).first();
  await el.waitFor({ timeout: SLOW });
  assert.equal(await el.evaluate((e) => getComputedStyle(e).outlineStyle), 'solid', `step ${n} outlines ${target}`);
  return { text, title: await card.locator('h2').textContent() };
}

test('the tour steps through all eleven cards, each setting up and outlining its view, by button and keyboard', async () => {
  const { page, errors } = await open(`${server.url}?v=1&ckpt=topk&prompt=${PROMPT}`);
  await page.locator('[data-testid="tour-start"]').click();
  const titles = [];
  for (let n = 1; n <= 11; n++) {
    const { title, text } = await onStep(page, n);
    titles.push(title);
    console.log(`step ${n}: ${title} — ${text.slice(0, 90)}…`);
    if (n === 3) await page.screenshot({ path: join(outDir, 'tour-step-3.png'), fullPage: false });
    if (n === 3) assert.match(text, /expert \d \(0\.\d\d\) and expert \d \(0\.\d\d\)/);
    if (n === 9) assert.equal(new URL(page.url()).searchParams.get('router'), 'thor');
    if (n === 11) {
      // Compute per token: dynamic top-p, the strip shaded by compute, and the card's counts
      // are the distribution the page shows (tokens per number of experts).
      const link = new URL(page.url()).searchParams;
      assert.deepEqual([link.get('router'), link.get('shade')], ['top_p', 'compute']);
      const rows = await page.locator('[data-testid="compute-distribution"] .dist-row').evaluateAll((rs) => rs.map((r) => `${r.dataset.tokens} take ${r.dataset.experts}`));
      assert.ok(rows.length >= 2, `top-p gives tokens different compute: ${rows}`);
      assert.ok(text.includes(rows.join(', ')), `the card quotes the distribution ${rows.join(', ')}: ${text}`);
      break;
    }
    if (n % 2) await page.locator('[data-testid="tour-next"]').click();
    else {
      await page.locator('body').click({ position: { x: 5, y: 5 } });
      await page.keyboard.press('ArrowRight');
    }
  }
  assert.equal(new Set(titles).size, 11);
  await page.keyboard.press('ArrowLeft');
  await onStep(page, 10);
  assert.equal(new URL(page.url()).searchParams.get('shade'), null, 'the step before puts the expert colours back');
  // Back in history goes back a step too (each step is a history entry).
  await page.goBack();
  await onStep(page, 11);
  await page.keyboard.press('Escape');
  await page.locator('[data-testid="tour"]').waitFor({ state: 'detached' });
  assert.equal(new URL(page.url()).searchParams.get('tour'), null);
  assert.deepEqual(errors, []);
  await page.close();
});

test('a link names a step; an embedded view shows that step\'s card', async () => {
  const { page, errors } = await open(`${server.url}?v=1&ckpt=topk&prompt=${PROMPT}&tour=5`);
  await onStep(page, 5);
  await page.close();
  const embedded = await open(`${server.url}?v=1&ckpt=topk&prompt=${PROMPT}&embed=tokens&tour=2`);
  await embedded.page.locator('[data-testid="embedded"] [data-testid="tour"][data-step="2"]').waitFor({ timeout: SLOW });
  await embedded.page.locator('[data-testid="tour-text"]', { hasNotText: 'numbers appear' }).waitFor({ timeout: SLOW });
  assert.match(await embedded.page.locator('[data-testid="tour-text"]').textContent(), /p = 0\.\d\d/);
  assert.deepEqual([...errors, ...embedded.errors], []);
  await embedded.page.close();
});

test('keyboard only: Tab reaches the token strip, arrows move along it, Enter opens a token', async () => {
  const { page, errors } = await open(`${server.url}?v=1&ckpt=topk&prompt=${PROMPT}`);
  await page.locator('[data-testid="speed"]', { hasNotText: 'running' }).waitFor({ timeout: SLOW });
  // The first Tab offers the skip link, which lands in front of the strip.
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement?.dataset.testid), 'skip');
  await page.keyboard.press('Enter');
  let presses = 0;
  for (; presses < 120; presses++) {
    await page.keyboard.press('Tab');
    if (await page.evaluate(() => document.activeElement?.dataset.testid === 'token')) break;
  }
  assert.ok(presses < 120, 'Tab reaches the first token');
  const focused = () => page.evaluate(() => [document.activeElement.dataset.index, getComputedStyle(document.activeElement).outlineStyle]);
  assert.deepEqual(await focused(), ['0', 'solid'], 'the first token has the focus, visibly');
  for (let i = 0; i < 3; i++) await page.keyboard.press('ArrowRight');
  await page.keyboard.press('ArrowLeft');
  await page.keyboard.press('ArrowRight');
  assert.equal((await focused())[0], '3');
  await page.keyboard.press('Enter');
  await page.locator('[data-testid="token-detail"]', { hasText: 'Token 3' }).waitFor();
  assert.equal(new URL(page.url()).searchParams.get('token'), '3');
  console.log(`keyboard: the skip link, then ${presses + 1} Tab presses to the strip`);
  assert.deepEqual(errors, []);
  await page.close();
});
