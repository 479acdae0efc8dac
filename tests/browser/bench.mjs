// Benchmark of the built page (not a test: it prints numbers). Run after `trunk build --release`:
//   node tests/browser/bench.mjs            (or `cargo xtask bench-web`)
// For the CPU path (WebGPU off) and the WebGPU path (SwiftShader here): navigation to the first
// routing view, a 128-token run, decode tokens/s, router change to updated views (256 tokens);
// the native CLI's decode on the same checkpoint; wasm and asset sizes, raw and gzip.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { chromium } from 'playwright-core';
import { serveDist } from './serve.mjs';
import { BASE_FLAGS, CHROMIUM, dist, firstSeen, root, watchFirstSeen } from './harness.mjs';

const REPS = Number(process.env.BENCH_REPS ?? 5);
// BENCH_PATHS=cpu measures one path only (a quicker loop while profiling).
const PATHS = (process.env.BENCH_PATHS ?? 'cpu,webgpu').split(',');
const TIMEOUT = 600_000;
// Tokens per decode run, in the page and natively (from a one- or few-token prompt).
const DECODE = 128;
const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
const PROSE = 'The harbour was quiet in the early morning, and the fishing boats rocked gently against the old stone wall while gulls circled above the market. ';

function switchyard(args, env = {}) {
  const bin = join(process.env.CARGO_TARGET_DIR ?? join(root, 'target'), 'release', 'switchyard');
  if (!existsSync(bin)) throw new Error(`${bin} is missing: build it with cargo build --release -p switchyard-cli`);
  return execFileSync(bin, args, { cwd: root, encoding: 'utf8', env: { ...process.env, ...env } });
}

/** A prefix of PROSE repeated that the shipped tokenizer cuts into exactly `n` tokens. */
function promptOf(n) {
  const text = PROSE.repeat(Math.ceil(n / 20) + 2);
  const { pieces } = JSON.parse(switchyard(['tokenize', '--tokenizer', 'assets/tokenizer.json', '--text', text]));
  return pieces.slice(0, n).join('');
}

const stripState = () => [...document.querySelectorAll('[data-testid="token"]')].map((e) => e.dataset.expert).join(',');

async function measure(label, flags, server, forced) {
  const context = await chromium.launchPersistentContext(await mkdtemp(join(tmpdir(), 'switchyard-bench-')), {
    executablePath: CHROMIUM, headless: true, args: [...BASE_FLAGS, ...flags],
    viewport: { width: 1360, height: 900 },
  });
  const page = await context.newPage();
  const speed = page.locator('[data-testid="speed"]');
  const idle = () => page.waitForFunction(() => !document.querySelector('[data-testid="speed"]').textContent.includes('running'), null, { timeout: TIMEOUT });
  const url = (q) => `${server.url}?v=1&ckpt=topk&router=topk&k=2&${forced}${q}`;
  const out = { path: label };

  // Cold (nothing cached), then warm (the checkpoint in the Cache API, modules in the HTTP
  // cache): navigation to the painted controls and to the first routing view.
  // Times are read on the page's own clock (harness.mjs).
  await watchFirstSeen(page, [['painted', '[data-testid="prompt"], [data-testid="embedded"]'], ['first_view', '[data-testid="token"]']]);
  const first128 = url(`prompt=${encodeURIComponent(promptOf(128))}`);
  for (const key of ['cold', 'warm']) {
    await page.goto(first128);
    await page.locator('[data-testid="token"]').first().waitFor({ timeout: TIMEOUT });
    const seen = await firstSeen(page);
    out[`${key}_painted_ms`] = Math.round(seen.painted);
    out[`${key}_first_view_ms`] = Math.round(seen.first_view);
    await idle();
  }
  out.first_view_ms = out.warm_first_view_ms;
  out.backend = (await page.locator('[data-testid="backend"]').textContent()).trim();
  out.forward_tokens = Number(await speed.getAttribute('data-tokens'));
  const runs = [];
  for (let i = 0; i < REPS; i++) {
    const before = await speed.getAttribute('data-run-ms');
    await page.locator('[data-testid="run"]').click();
    await page.waitForFunction((b) => { const s = document.querySelector('[data-testid="speed"]'); return !s.textContent.includes('running') && s.dataset.runMs !== b; }, before, { timeout: TIMEOUT });
    runs.push(Number(await speed.getAttribute('data-run-ms')));
  }
  out.run_128_ms = median(runs);

  // Router change to updated views, measured in the page, with 256 tokens.
  await page.goto(url(`prompt=${encodeURIComponent(promptOf(256))}`));
  await page.locator('[data-testid="token"]').first().waitFor({ timeout: TIMEOUT });
  await idle();
  out.change_tokens = Number(await speed.getAttribute('data-tokens'));
  const changes = [];
  for (let i = 0; i < REPS; i++) {
    const to = i % 2 === 0 ? 'hash' : 'topk';
    changes.push(await page.evaluate(async ([to, stripFn]) => {
      const strip = new Function(`return (${stripFn})()`);
      const before = strip();
      const select = document.querySelector('[data-testid="router"]');
      const t = performance.now();
      select.value = to;
      select.dispatchEvent(new Event('change', { bubbles: true }));
      return new Promise((resolve) => {
        const check = () => (strip() !== before ? resolve(performance.now() - t) : requestAnimationFrame(check));
        requestAnimationFrame(check);
      });
    }, [to, stripState.toString()]));
    await idle();
  }
  out.router_change_ms = median(changes);

  // Decode: DECODE generated tokens after a short prompt, in steady state: the first runs after
  // a navigation run partly on V8's baseline (Liftoff) code while the optimising tier compiles
  // in the background, so two are a warm-up, and the runs after them are measured. Meanwhile the
  // page's frame loop is watched: the longest gap between animation frames while the engine
  // generates shows whether inference blocks the page (it runs in the worker; only drawing the
  // result takes the page).
  const decode = [];
  const gaps = [];
  await page.goto(url(`gen=${DECODE}&seed=0&prompt=${encodeURIComponent('The harbour was')}`));
  await page.locator('[data-testid="token"]').first().waitFor({ timeout: TIMEOUT });
  await idle();
  out.decode_first_tokens_per_s = Number(await speed.getAttribute('data-tokens-per-s'));
  for (let i = -2; i < REPS; i++) {
    const before = await speed.getAttribute('data-run-ms');
    gaps.push(await page.evaluate(() => new Promise((resolve) => {
      let last = performance.now();
      let worst = 0;
      let sawStreaming = false;
      const frame = () => {
        const now = performance.now();
        const streaming = document.querySelector('[data-testid="streaming"]') !== null;
        sawStreaming ||= streaming;
        if (streaming) worst = Math.max(worst, now - last);
        last = now;
        if (sawStreaming && !streaming) resolve(worst); else requestAnimationFrame(frame);
      };
      document.querySelector('[data-testid="run"]').click();
      requestAnimationFrame(frame);
      setTimeout(() => resolve(sawStreaming ? worst : NaN), 60_000);
    })));
    await page.waitForFunction((b) => { const s = document.querySelector('[data-testid="speed"]'); return !s.textContent.includes('running') && s.dataset.runMs !== b; }, before, { timeout: TIMEOUT });
    if (i >= 0) decode.push(Number(await speed.getAttribute('data-tokens-per-s')));
    out.read_backs_per_token = Number(await speed.getAttribute('data-read-backs')) / Number(await speed.getAttribute('data-tokens'));
  }
  out.decode_tokens_per_s = median(decode);
  out.longest_frame_gap_while_generating_ms = Math.max(...gaps);
  await context.close();
  return out;
}

async function sizes() {
  const rows = [];
  for (const dir of [dist, join(dist, 'assets')]) {
    for (const name of (await readdir(dir)).sort()) {
      const path = join(dir, name);
      if (!(await stat(path)).isFile() || !/\.(wasm|js|safetensors|json)$/.test(name)) continue;
      const body = await readFile(path);
      rows.push({ file: path.slice(dist.length + 1), raw: body.length, gzip: gzipSync(body, { level: 9 }).length });
    }
  }
  return rows;
}

const server = await serveDist(dist);
const native = {};
for (const threads of ['1', '2']) {
  const r = JSON.parse(switchyard(['bench', '--checkpoint', 'assets/topk.safetensors', '--runs', String(REPS), '--decode-tokens', String(DECODE), '--json'], { RAYON_NUM_THREADS: threads }));
  native[threads] = r.routers[0];
}
const results = [];
for (const [label, flags, query] of [['cpu', [], ''], ['webgpu', ['--enable-unsafe-webgpu'], 'backend=webgpu&']]) {
  if (!PATHS.includes(label)) continue;
  try {
    results.push(await measure(label, flags, server, query));
  } catch (e) {
    results.push({ path: label, error: String(e).split('\n')[0] });
  }
}
server.close();

const mb = (b) => `${(b / 1e6).toFixed(2)} MB`;
console.log('## Page (headless Chromium on this machine; medians)');
console.log('| path | backend | navigation → UI painted (cold / warm) | navigation → first routing view (cold / warm) | run of 128 tokens | decode, 128 tokens (first run after load / steady) | read-backs per decoded token | router change → views (256 tokens) | longest frame gap while generating |');
console.log('|---|---|---:|---:|---:|---:|---:|---:|---:|');
for (const r of results) {
  if (r.error) { console.log(`| ${r.path} | failed: ${r.error} | | | | | | | |`); continue; }
  console.log(`| ${r.path} | ${r.backend} | ${r.cold_painted_ms} / ${r.warm_painted_ms} ms | ${r.cold_first_view_ms} / ${r.warm_first_view_ms} ms | ${r.run_128_ms.toFixed(1)} ms (${r.forward_tokens} tokens) | ${r.decode_first_tokens_per_s.toFixed(0)} / ${r.decode_tokens_per_s.toFixed(0)} tok/s | ${r.read_backs_per_token.toFixed(2)} | ${r.router_change_ms.toFixed(1)} ms (${r.change_tokens} tokens) | ${r.longest_frame_gap_while_generating_ms.toFixed(0)} ms |`);
}
console.log('\n## Native CLI on the same checkpoint (switchyard bench, top-k)');
for (const [t, r] of Object.entries(native)) {
  console.log(`- ${t} thread(s): forward 128 tokens ${r.forward_ms_median.toFixed(2)} ms, decode ${r.decode_tokens_per_s_median.toFixed(1)} tok/s, read-backs ${r.read_backs_per_forward}/forward ${r.read_backs_per_token}/token`);
}
console.log('\n## Sizes');
console.log('| file | raw | gzip -9 |');
console.log('|---|---:|---:|');
const rows = await sizes();
for (const r of rows) console.log(`| ${r.file} | ${mb(r.raw)} | ${mb(r.gzip)} |`);
const gz = (prefix) => rows.filter((r) => r.file.startsWith(prefix) && r.file.endsWith('.wasm')).reduce((a, r) => a + r.gzip, 0);
const cpu = results.find((r) => r.path === 'cpu' && !r.error);
const gpu = results.find((r) => r.path === 'webgpu' && !r.error);
console.log('\n## Goals (issue 13)');
console.log('| figure | measured | goal |');
console.log('|---|---:|---:|');
console.log(`| UI module, gzip | ${(gz('switchyard-app') / 1e3).toFixed(0)} KB | ≤ 400 KB |`);
console.log(`| CPU engine module, gzip | ${mb(gz('switchyard-engine-cpu'))} | ≤ 1.5 MB |`);
console.log(`| WebGPU engine module, gzip (loaded only for WebGPU) | ${mb(gz('switchyard-engine-webgpu'))} | |`);
if (cpu) {
  console.log(`| navigation → UI painted (warm) | ${cpu.warm_painted_ms} ms | ≤ 300 ms |`);
  console.log(`| navigation → first routing view, warm cache, CPU path | ${cpu.warm_first_view_ms} ms | ≤ 0.8 s |`);
  console.log(`| in-page decode / native decode (1 thread) | ${(100 * cpu.decode_tokens_per_s / native['1'].decode_tokens_per_s_median).toFixed(1)} % | ≥ 50 % |`);
  console.log(`| router change → views redrawn, 256 tokens | ${cpu.router_change_ms.toFixed(1)} ms | ≤ 50 ms |`);
}
if (gpu) console.log(`| read-backs per decoded token, top-k on WebGPU | ${gpu.read_backs_per_token.toFixed(2)} | 1 |`);
console.log(JSON.stringify({ results, native, sizes: rows }));
