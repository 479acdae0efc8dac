// Benchmark of the Train view (prints numbers; not a test): in-page training tokens/s against
// the native trainer on the same tiny config with one thread, the time to the first visible
// specialisation (one expert at ≥ 2× its uniform share on one held-out domain), the trainer
// module's size, and the longest frame gap while training. `cargo xtask bench` runs it.
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';
import { serveDist } from './serve.mjs';
import { dist, launch, root } from './harness.mjs';

const STEPS = 200;
const server = await serveDist(dist);
const browser = await launch({ path: 'cpu' });
const page = await browser.newPage();
await page.goto(`${server.url}?v=1&ckpt=topk&panel=train&prompt=hi&train.steps=${STEPS}`);
await page.locator('[data-testid="train"]').waitFor({ timeout: 240_000 });
await page.evaluate(() => {
  window.__gap = 0;
  let last = performance.now();
  const tick = (t) => { window.__gap = Math.max(window.__gap, t - last); last = t; requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
});
await page.waitForTimeout(500);
await page.evaluate(() => { window.__gap = 0; });
const t0 = Date.now();
await page.locator('[data-testid="train-start"]').click();
let special = null;
for (;;) {
  const [status, ratio] = await page.evaluate(() => [
    document.querySelector('[data-testid="train-status"]')?.dataset.status,
    Number(document.querySelector('[data-testid="train-domains"]')?.dataset.maxRatio ?? 0),
  ]);
  if (special === null && ratio >= 2) special = (Date.now() - t0) / 1000;
  if (status === 'Finished') break;
  await page.waitForTimeout(100);
}
const wall = (Date.now() - t0) / 1000;
const gap = await page.evaluate(() => window.__gap);
const text = await page.locator('[data-testid="train-status"]').textContent();
const inPage = Number(/([\d.]+) tokens\/s/.exec(text)?.[1] ?? 0);
await browser.close();
server.close();

const cli = join(process.env.CARGO_TARGET_DIR ?? join(root, 'target'), 'release', 'switchyard');
const out = '/tmp/switchyard-bench-native-train';
rmSync(out, { recursive: true, force: true });
execFileSync(cli, ['train', '--recipe', 'topk', '--corpus', join(root, 'assets/train'), '--out', out, '--d-model', '64', '--layers', '2',
  '--heads', '4', '--experts', '4', '--d-ff', '128', '--context', '64', '--steps', String(STEPS), '--batch', '8', '--seq-len', '64',
  '--lr', '0.003', '--warmup', '20', '--eval-every', '100000'], { env: { ...process.env, RAYON_NUM_THREADS: '1' }, stdio: 'ignore' });
const native = JSON.parse(readFileSync(join(out, 'train.json'), 'utf8')).tokens_per_s;
const module = readdirSync(dist).find((f) => f.startsWith('switchyard-engine-train') && f.endsWith('.wasm'));
const gz = gzipSync(readFileSync(join(dist, module)), { level: 9 }).length;

const row = (a, b, c) => console.log(`| ${a} | ${b} | ${c} |`);
console.log(`\nTrain view, default config (E 4, k 2, width 64, 2 layers), ${STEPS} steps of 8 × 64 bytes:\n`);
console.log('| figure | measured | goal |\n|---|---:|---:|');
row('in-page ÷ native training tokens/s (native: 1 thread)', `${(inPage / native).toFixed(2)} (${inPage.toFixed(0)} / ${native.toFixed(0)})`, '≥ 0.4');
row('first visible specialisation (≥ 2× uniform on one domain)', special === null ? `not within ${wall.toFixed(1)} s` : `${special.toFixed(1)} s`, '≤ 60 s');
row('train module, gzip', `${(gz / 1e6).toFixed(2)} MB`, '≤ 2 MB');
row('longest frame gap while training', `${gap.toFixed(0)} ms`, '≤ 50 ms');
console.log(`\n(${STEPS} steps in ${wall.toFixed(1)} s of page time, held-out maps every 25 steps.)`);
