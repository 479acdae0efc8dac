// The Train view: a small MoE trained in the page's own worker and module, with its curves,
// load and domain map live; pause, step, download; and collapse without a balancing loss.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { serveDist } from './serve.mjs';
import { dist, launch, outDir, root, SLOW } from './harness.mjs';

let server;
let browser;

before(async () => {
  server = await serveDist(dist);
  browser = await launch({ path: 'cpu' });
});

after(async () => {
  await browser?.close();
  server?.close();
});

const PROMPT = 'The cat sat on the mat. fn main() {}';
const status = (page) => page.locator('[data-testid="train-status"]').getAttribute('data-status');
const stepOf = async (page) => Number(await page.locator('[data-testid="train-status"]').getAttribute('data-step'));
const num = async (page, id, attr) => Number(await page.locator(`[data-testid="${id}"]`).getAttribute(attr));

async function openTrain(query) {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${server.url}?v=1&ckpt=topk&panel=train&prompt=${encodeURIComponent(PROMPT)}${query}`);
  await page.locator('[data-testid="train"]').waitFor({ timeout: SLOW });
  return { page, errors };
}

async function trainToEnd(page) {
  await page.locator('[data-testid="train-start"]').click();
  await page.waitForFunction(() => document.querySelector('[data-testid="train-status"]')?.dataset.status === 'Finished', null, { timeout: SLOW });
}

test('the Train view trains the default model in its own worker: the loss falls, the load and domain map update, pause stops the steps, the download loads in the CLI', async () => {
  const { page, errors } = await openTrain('&train.steps=120');
  const before = server.requests.filter((r) => r.path.includes('engine-train')).length;
  assert.ok(before >= 1, 'the trainer module is fetched once the Train view opens');
  await trainToEnd(page);
  assert.equal(await stepOf(page), 120);
  const first = await num(page, 'train-loss', 'data-first-ce');
  const recent = await num(page, 'train-loss', 'data-recent-ce');
  assert.ok(recent < first * 0.8, `the training loss falls: ${first} -> ${recent}`);
  assert.ok(Number.isFinite(await num(page, 'train-loss', 'data-held')), 'a held-out loss');
  const share = await num(page, 'train-load', 'data-max-share');
  assert.ok(share > 0 && share <= 1, `the load chart has the last step's shares: ${share}`);
  assert.equal(await page.locator('[data-testid="train-domains"]').getAttribute('data-snapshots'), '2', 'first and latest domain maps');
  await page.screenshot({ path: join(outDir, 'train-finished.png'), fullPage: true });
  // A link is a run: training it again from step 0 gives the same curve, step for step.
  const curve = await page.locator('[data-testid="train-loss"]').getAttribute('data-curve');
  const held = await page.locator('[data-testid="train-loss"]').getAttribute('data-held');
  assert.equal(curve.split(',').length, 40);
  assert.equal(await page.locator('[data-testid="train-domains"]').getAttribute('data-step'), '120', 'measured at the last step');
  await trainToEnd(page);
  assert.equal(await page.locator('[data-testid="train-loss"]').getAttribute('data-curve'), curve, 'the same link, the same curve');
  assert.equal(await page.locator('[data-testid="train-loss"]').getAttribute('data-held'), held, 'and the same held-out loss');
  // Use this model: the playground's views route with the trained weights.
  await page.locator('[data-testid="train-use"]').click();
  await page.waitForFunction(() => document.querySelector('[data-testid="token-strip"]')?.dataset.checkpoint === 'trained-in-page', null, { timeout: SLOW });
  await page.locator('[data-testid="speed"]', { hasNotText: 'running' }).waitFor({ timeout: SLOW });
  assert.match(await page.locator('[data-testid="loaded"]').textContent(), /trained-in-page .*trained in this page.*2 layers × 4 experts/);
  const inPage = await page.locator('[data-testid="token"]').evaluateAll((els) => els.map((e) => e.dataset.expert));
  // Download: the same checkpoint loads in the CLI and routes the prompt the same way.
  const [download] = await Promise.all([page.waitForEvent('download'), page.locator('[data-testid="train-download"]').click()]);
  const file = join(outDir, 'trained-in-page.safetensors');
  await download.saveAs(file);
  const cli = join(process.env.CARGO_TARGET_DIR ?? join(root, 'target'), 'release', 'switchyard');
  const info = execFileSync(cli, ['info', file], { encoding: 'utf8' });
  assert.match(info, /4 experts|experts.*4/, info);
  const trace = JSON.parse(execFileSync(cli, ['trace', '--checkpoint', file, '--prompt', PROMPT, '--k', '2'], { encoding: 'utf8' }));
  const native = trace.layers[0].routing.map((r) => String(r.experts[0]));
  assert.ok(native.length > 20);
  assert.deepEqual(inPage, native, 'the page and the CLI route the trained model alike');
  // Pause stops the steps; Step takes one; Resume goes on.
  await page.locator('[data-testid="train-steps"]').evaluate((el) => { el.value = '2000'; el.dispatchEvent(new Event('change', { bubbles: true })); });
  await page.locator('[data-testid="train-start"]').click();
  await page.waitForFunction(() => Number(document.querySelector('[data-testid="train-status"]')?.dataset.step) >= 5, null, { timeout: SLOW });
  await page.screenshot({ path: join(outDir, 'train-running.png'), fullPage: true });
  await page.locator('[data-testid="train-pause"]').click();
  await page.waitForFunction(() => document.querySelector('[data-testid="train-status"]')?.dataset.status === 'Paused', null, { timeout: SLOW });
  const paused = await stepOf(page);
  await page.waitForTimeout(1500);
  assert.equal(await stepOf(page), paused, 'no step while paused');
  await page.locator('[data-testid="train-step"]').click();
  await page.waitForFunction((n) => Number(document.querySelector('[data-testid="train-status"]')?.dataset.step) === n + 1, paused, { timeout: SLOW });
  assert.deepEqual(errors, []);
  await page.close();
});

test('without a balancing loss the load collapses: the max expert share is clearly above the default run from the same seed', async () => {
  const maxShare = async (lbl) => {
    const { page, errors } = await openTrain(`&train.steps=150&train.e=8&train.k=1&train.recipe=switch${lbl}`);
    await trainToEnd(page);
    const layers = [];
    for (const l of [0, 1]) {
      await page.locator(`[data-testid="layer-${l}"]`).click();
      layers.push(await num(page, 'train-load', 'data-max-share'));
    }
    assert.deepEqual(errors, []);
    if (lbl) await page.screenshot({ path: join(outDir, 'train-collapse.png'), fullPage: true });
    await page.close();
    return Math.max(...layers);
  };
  const balanced = await maxShare('');
  const collapsed = await maxShare('&train.lbl=0');
  console.log(`max expert share, LBL 0.01: ${balanced.toFixed(3)}, LBL 0: ${collapsed.toFixed(3)} (uniform 0.125)`);
  assert.ok(collapsed > balanced * 1.3, `LBL 0 gives ${collapsed}, the default ${balanced}`);
});

test('recipe views: SMoE-Dropout k rises to E, loss-free shows its moving bias, and a text of ours joins the mix', async () => {
  let { page, errors } = await openTrain('&train.steps=60&train.recipe=smoe_dropout&train.e=6');
  await trainToEnd(page);
  assert.equal(await page.locator('[data-testid="train-router"]').getAttribute('data-k'), '6', 'k reached E at the last step');
  assert.match(await page.locator('[data-testid="train-router"] ~ .hint').textContent(), /no learned gate/, 'a frozen router has no entropy to show');
  assert.deepEqual(errors, []);
  await page.close();
  ({ page, errors } = await openTrain('&train.steps=60&train.recipe=lossfree'));
  await page.locator('[data-testid="train-own-text"]').evaluate((el) => { el.closest('details').open = true; });
  await page.locator('[data-testid="train-own-text"]').fill('zzzz qqqq '.repeat(400));
  await trainToEnd(page);
  const confidence = Number(await page.locator('[data-testid="train-router"]').getAttribute('data-confidence'));
  assert.ok(confidence > 0 && confidence <= 1, `the router's confidence: ${confidence}`);
  const bias = await page.locator('[data-testid="train-bias"] td').allTextContents();
  assert.equal(bias.length, 2 * 4, 'a bias per expert and layer');
  assert.ok(bias.some((b) => Number(b) !== 0), `the bias moved: ${bias}`);
  const domains = (await page.locator('[data-testid="train-domains"]').getAttribute('data-domains')).split(',');
  assert.ok(domains.includes('yours') && domains.length === 13, `our text is a domain of the mix: ${domains}`);
  assert.equal(await page.locator('[data-testid="train-domains"]').getAttribute('data-rows'), '13', 'with its own held-out slice');
  await page.screenshot({ path: join(outDir, 'train-lossfree.png'), fullPage: true });
  assert.deepEqual(errors, []);
  await page.close();
});
