// Benchmark of the read-only mode on a large recorded trace (prints numbers; not a test): a
// synthetic trace of 4096 tokens × 48 layers × 64 experts, top-8 (the size of a big model's
// trace), opened from a file; the time until the strip shows it, and the time of what a person
// does next (another layer, a token's detail, each view, a capacity what-if), with the longest
// main-thread task and frame gap. `cargo xtask bench` runs it.
import { createWriteStream } from 'node:fs';
import { mkdtemp, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serveDist } from './serve.mjs';
import { dist, launch } from './harness.mjs';

const [T, L, E, K] = [4096, 48, 64, 8];

/** A seeded generator, so every run benchmarks the same file. */
function rng(seed) {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
}

async function writeTrace(path) {
  const out = createWriteStream(path);
  const put = (s) => (out.write(s) ? Promise.resolve() : new Promise((r) => out.once('drain', r)));
  const rand = rng(7);
  await put(`{"format":"switchyard-trace/1","checkpoint":"synthetic-${E}x${L}","backend":"bench-trace.mjs","recorded":{"model":"synthetic","architecture":"synthetic","tool":"tests/browser/bench-trace.mjs","routing":"top-${K} of random logits"},"tokens":[`);
  for (let t = 0; t < T; t++) {
    await put(`${t ? ',' : ''}{"id":${t % 50000},"text":"w${t}","label":"${['code', 'prose', 'math', 'legal'][Math.floor(t / 1024)]}"}`);
  }
  await put('],"layers":[');
  for (let l = 0; l < L; l++) {
    await put(`${l ? ',' : ''}{"layer":${l},"routing":[`);
    for (let t = 0; t < T; t++) {
      const z = Array.from({ length: E }, (_, e) => 3 * rand() + (e === (t + l) % E ? 2 : 0));
      const m = Math.max(...z);
      const ex = z.map((v) => Math.exp(v - m));
      const sum = ex.reduce((a, b) => a + b, 0);
      const p = ex.map((v) => v / sum);
      const top = [...p.keys()].sort((a, b) => p[b] - p[a]).slice(0, K);
      const mass = top.reduce((a, e) => a + p[e], 0);
      await put(`${t ? ',' : ''}{"token":${t},"experts":[${top}],"weights":[${top.map((e) => (p[e] / mass).toFixed(5))}],"probs":[${p.map((v) => v.toFixed(6))}]}`);
    }
    await put(']}');
  }
  await put(']}');
  await new Promise((r) => out.end(r));
}

const dir = await mkdtemp(join(tmpdir(), 'switchyard-trace-'));
const file = join(dir, 'large.trace.json');
let t = Date.now();
await writeTrace(file);
const mb = (await stat(file)).size / 1e6;
console.log(`synthetic trace: ${T} tokens × ${L} layers × ${E} experts, top-${K}: ${mb.toFixed(0)} MB (written in ${((Date.now() - t) / 1000).toFixed(1)} s)`);

const server = await serveDist(dist);
const browser = await launch({ path: 'cpu' });
const page = await browser.newPage();
await page.goto(`${server.url}?v=1&ckpt=topk&prompt=hi`);
await page.locator('[data-testid="token-strip"][data-checkpoint="topk"]').waitFor({ timeout: 240_000 });
await page.evaluate(() => {
  window.__long = 0;
  new PerformanceObserver((list) => { for (const e of list.getEntries()) window.__long = Math.max(window.__long, e.duration); }).observe({ type: 'longtask', buffered: false });
  window.__gap = 0;
  let last = performance.now();
  const tick = (now) => { window.__gap = Math.max(window.__gap, now - last); last = now; requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
});
const measure = async (what, act, done) => {
  await page.evaluate(() => { window.__long = 0; window.__gap = 0; });
  const t0 = Date.now();
  await act();
  await done();
  const ms = Date.now() - t0;
  const [long, gap] = await page.evaluate(() => [window.__long, window.__gap]);
  console.log(`${what.padEnd(44)} ${String(ms).padStart(6)} ms   longest main-thread task ${long.toFixed(0).padStart(5)} ms   longest frame gap ${gap.toFixed(0).padStart(5)} ms`);
};
const name = `synthetic-${E}x${L}`;
await page.locator('[data-testid="open-trace"] summary').click();
await measure('open the file until the strip shows it', () => page.setInputFiles('[data-testid="trace-file"]', file),
  () => page.locator(`[data-testid="token-strip"][data-checkpoint="${name}"]`).waitFor({ timeout: 600_000 }));
await measure('another layer (layer 47)', () => page.locator('[data-testid="layer-47"]').click(),
  () => page.locator('[data-testid="token-strip"][data-layer="47"]').waitFor());
await measure('a token\'s detail (token 2000, every layer)', () => page.locator('[data-testid="token"]').nth(2000).click(),
  () => page.locator('[data-testid="token-detail"]').waitFor());
for (const [tab, sel] of [['All layers', 'grid'], ['Heatmap', 'heatmap-canvas'], ['Load & metrics', 'load-bars'], ['Experts', 'experts'], ['Domains', 'domain-grid'], ['Capacity', 'capacity']]) {
  await measure(`view: ${tab}`, () => page.locator(`[data-testid="tab-${tab}"]`).click(), () => page.locator(`[data-testid="${sel}"]`).first().waitFor({ timeout: 120_000 }));
}
await measure('capacity what-if (cf 1.25, all 48 layers)', () => page.locator('[data-testid="capacity-on"]').click(),
  () => page.locator('[data-testid="speed"]', { hasNotText: 'running' }).waitFor({ timeout: 600_000 }));
await browser.close();
server.close();
