// Recorded traces in the page (read-only mode): a trace tools/hf/trace.py wrote for the tiny
// random Mixtral, opened from a file and from a link's trace=; every view that needs only the
// record renders it, the controls that need the model say why they are off, capacity is a
// what-if on the recorded probabilities, and Close goes back to the live model.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { serveDist } from './serve.mjs';
import { dist, launch, openPage, outDir, root, SLOW } from './harness.mjs';

const FIXTURES = join(root, 'tests/browser/fixtures');
const TRACE = join(FIXTURES, 'mixtral.trace.json');

let server, host, browser;
before(async () => {
  server = await serveDist(dist);
  host = await serveDist(FIXTURES, { cors: true });
  browser = await launch({});
});
after(async () => {
  await browser?.close();
  server?.close();
  host?.close();
});

const open = (url) => openPage(browser, url, null);

/** The strip once it shows `checkpoint`'s routing. */
async function stripOf(page, checkpoint) {
  await page.locator(`[data-testid="token-strip"][data-checkpoint="${checkpoint}"]`).waitFor({ timeout: SLOW });
  await page.locator('[data-testid="speed"]', { hasNotText: 'running' }).waitFor({ timeout: SLOW });
}

async function exported(page) {
  const [download] = await Promise.all([page.waitForEvent('download'), page.locator('[data-testid="export-json"]').click()]);
  return JSON.parse(await readFile(await download.path(), 'utf8'));
}

const experts = (trace) => trace.layers.map((l) => l.routing.map((r) => r.experts));

test('a trace written by tools/hf/trace.py opens read-only and every view renders it', async () => {
  const file = JSON.parse(await readFile(TRACE, 'utf8'));
  const { page, errors } = await open(`${server.url}?v=1&ckpt=topk&prompt=${encodeURIComponent('Le chat')}`);
  await stripOf(page, 'topk');
  await page.locator('[data-testid="open-trace"] summary').click();
  await page.setInputFiles('[data-testid="trace-file"]', TRACE);
  await stripOf(page, 'tiny-random-mixtral');
  const banner = await page.locator('[data-testid="read-only"]').textContent();
  assert.match(banner, /tiny-random-mixtral \(MixtralForCausalLM\)/);
  assert.match(banner, /the router's own choices/);
  assert.equal(await page.locator('[data-testid="token"]').count(), file.tokens.length);
  // The routing on show is the file's, token by token.
  const shown = await exported(page);
  assert.deepEqual(experts(shown), experts(file));
  // What needs the model is off, and says why.
  assert.ok(await page.locator('[data-testid="prompt"]').isDisabled());
  assert.ok(await page.locator('[data-testid="run"]').isDisabled());
  assert.ok(await page.locator('[data-testid="router"]').isDisabled());
  await page.locator('[data-testid="router-read-only"]').waitFor();
  // Every view that needs only the record.
  const views = {
    'All layers': '[data-testid="grid"]',
    Heatmap: '[data-testid="heatmap-canvas"]',
    'Load & metrics': '[data-testid="load-bars"] .lrow',
    Experts: '[data-testid="experts"]',
    Domains: '[data-testid="domains"]',
    'Router A/B': '[data-testid="compare-read-only"]',
    Capacity: '[data-testid="capacity"]',
  };
  for (const [tab, selector] of Object.entries(views)) {
    await page.locator(`[data-testid="tab-${tab}"]`).click();
    await page.locator(selector).first().waitFor({ timeout: SLOW });
  }
  await page.locator('[data-testid="tab-Domains"]').click();
  await page.locator('[data-testid="domains"]', { hasText: `${file.tokens.length} tokens over 3 domains: prose, code, french` }).waitFor();
  await page.locator('[data-testid="domain-grid"]').waitFor();
  await page.locator('[data-testid="layer-1"]').click();
  await page.locator('[data-testid="token"]').nth(5).click();
  await page.locator('[data-testid="token-detail"]').waitFor();
  await page.screenshot({ path: join(outDir, 'trace-read-only.png'), fullPage: true });
  // Capacity as a what-if on the recorded probabilities: a tight capacity drops slots.
  await page.locator('[data-testid="tab-Capacity"]').click();
  await page.locator('[data-testid="capacity-on"]').click();
  await page.locator('[data-testid="dropped-tokens"]').waitFor({ timeout: SLOW });
  await page.locator('[data-testid="speed"]', { hasNotText: 'running' }).waitFor({ timeout: SLOW });
  const whatIf = await exported(page);
  const drops = whatIf.layers.flatMap((l) => l.routing.flatMap((r) => r.dropped)).filter(Boolean).length;
  console.log(`capacity 1.25 on the recorded probabilities: ${drops} slots dropped of ${2 * 2 * file.tokens.length}`);
  assert.ok(drops > 0, 'a capacity what-if drops slots');
  assert.equal(whatIf.checkpoint, 'tiny-random-mixtral', 'still the trace, not a model run');
  await page.screenshot({ path: join(outDir, 'trace-capacity.png'), fullPage: true });
  // Close: back to the live model and its prompt.
  await page.locator('[data-testid="close-trace"]').click();
  await stripOf(page, 'topk');
  assert.equal(await page.locator('[data-testid="read-only"]').count(), 0);
  assert.ok(!(await page.locator('[data-testid="prompt"]').isDisabled()));
  assert.deepEqual(errors, []);
  await page.close();
});

test('a link with trace= opens it read-only; llama.cpp traces say what they lack', async () => {
  const url = `${host.url}llama-cpp.trace.json`;
  const from = server.requests.length;
  const { page, errors } = await open(`${server.url}?v=1&trace=${encodeURIComponent(url)}`);
  await stripOf(page, 'llama-cpp-sample');
  assert.match(await page.locator('[data-testid="read-only-lacks"]').textContent(), /router probabilities/);
  assert.equal(await page.locator('[data-testid="token"]').count(), 10);
  // No model was downloaded for it.
  assert.ok(!server.requests.slice(from).some((r) => r.path.endsWith('.safetensors')), 'no checkpoint is fetched for a trace link');
  assert.deepEqual(errors, []);
  await page.close();
});

test('a file that is not a trace says why, and the page keeps working', async () => {
  const { page, errors } = await open(`${server.url}?v=1&ckpt=topk&prompt=${encodeURIComponent('Le chat')}`);
  await stripOf(page, 'topk');
  await page.locator('[data-testid="open-trace"] summary').click();
  const bad = JSON.parse(await readFile(TRACE, 'utf8'));
  bad.layers[1].routing[3].experts = [1, 40];
  await page.setInputFiles('[data-testid="trace-file"]', { name: 'bad.json', mimeType: 'application/json', buffer: Buffer.from(JSON.stringify(bad)) });
  await page.locator('[data-testid="run-error"]', { hasText: 'layer 1: token 3: expert 40 of 4' }).waitFor({ timeout: SLOW });
  assert.equal(await page.locator('[data-testid="read-only"]').count(), 0);
  assert.ok(!(await page.locator('[data-testid="prompt"]').isDisabled()));
  assert.deepEqual(errors, []);
  await page.close();
});
