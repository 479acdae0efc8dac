// The page's forward pass on WebGPU (SwiftShader in headless Chromium) and on the CPU backend:
// each runs on the backend it claims, and the two agree.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { serveDist } from './serve.mjs';
import { launch, outDir, root } from './harness.mjs';

let server;
const results = {};

async function runPage(name, extraFlags) {
  // The adapter is this test's subject: its own flags, no forced backend.
  const context = await launch({ path: 'cpu', flags: extraFlags, viewport: { width: 1100, height: 800 } });
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(`${server.url}#backend-check`);
    await page.locator('[data-testid="report"][data-done="true"]').waitFor({ state: 'attached', timeout: 180_000 });
    await page.screenshot({ path: join(outDir, `${name}.png`), fullPage: true });
    const report = JSON.parse(await page.locator('[data-testid="report"]').textContent());
    assert.deepEqual(errors, [], 'uncaught errors in the page');
    return { page, report, context };
  } catch (e) {
    await context.close();
    throw e;
  }
}

before(async () => {
  await mkdir(outDir, { recursive: true });
  server = await serveDist(join(root, 'dist'));
});

after(() => server?.close());

test('WebGPU on: the forward pass runs on WebGPU and on the CPU, and they agree', async () => {
  const { report, context } = await runPage('webgpu-on', ['--enable-unsafe-webgpu']);
  await context.close();
  assert.ok(report.cpu?.Ok, `CPU run failed: ${JSON.stringify(report.cpu)}`);
  assert.ok(report.webgpu?.Ok, `WebGPU run failed: ${JSON.stringify(report.webgpu)}`);
  assert.equal(report.cpu.Ok.backend, 'cpu');
  assert.equal(report.webgpu.Ok.backend, 'webgpu');
  console.log(`WebGPU adapter in the page: ${report.webgpu.Ok.adapter}`);
  assert.ok(report.webgpu.Ok.adapter.length > 0);
  const a = report.cpu.Ok.last_logits;
  const b = report.webgpu.Ok.last_logits;
  assert.equal(a.length, 256);
  const diff = Math.max(...a.map((x, i) => Math.abs(x - b[i])));
  console.log(`CPU vs WebGPU in the page: max |diff| = ${diff.toExponential(2)}, page says ${report.max_abs_diff}`);
  assert.ok(diff < 1e-3, `logits differ by ${diff}`);
  assert.equal(report.same_routing, true, 'top experts differ between backends');
  results.on = report;
});

test('WebGPU off: the page falls back to the CPU backend and says why', async () => {
  const { report, page, context } = await runPage('webgpu-off', []);
  const status = await page.locator('[data-testid="webgpu-status"]').textContent();
  await context.close();
  assert.ok(report.cpu?.Ok, `CPU run failed: ${JSON.stringify(report.cpu)}`);
  assert.equal(report.cpu.Ok.backend, 'cpu');
  assert.ok(report.webgpu?.Err, 'WebGPU should be unavailable without --enable-unsafe-webgpu');
  assert.match(status, /not available: .*(navigator\.gpu|adapter)/i);
  if (results.on) {
    // Same seed and prompt: the CPU path is deterministic, and WebGPU agreed with it.
    assert.deepEqual(report.cpu.Ok.last_logits, results.on.cpu.Ok.last_logits);
    const b = results.on.webgpu.Ok.last_logits;
    const diff = Math.max(...report.cpu.Ok.last_logits.map((x, i) => Math.abs(x - b[i])));
    assert.ok(diff < 1e-3);
  }
});

// The native `switchyard` binary of this build (cargo test builds it), else `cargo run`.
function nativeTokenize(text) {
  const target = process.env.CARGO_TARGET_DIR ?? join(root, 'target');
  const bin = join(target, 'release', 'switchyard');
  const args = ['tokenize', '--tokenizer', join(root, 'assets', 'tokenizer.json'), '--text', text];
  const out = existsSync(bin)
    ? execFileSync(bin, args, { encoding: 'utf8' })
    : execFileSync('cargo', ['run', '--quiet', '--release', '-p', 'switchyard-cli', '--', ...args], { cwd: root, encoding: 'utf8' });
  return JSON.parse(out);
}

test('the shipped tokenizer loads in the page and tokenizes exactly as the native CLI', () => {
  const report = results.on;
  assert.ok(report, 'the WebGPU-on page ran');
  assert.ok(report.tokenizer?.Ok, `tokenizer failed in the page: ${JSON.stringify(report.tokenizer)}`);
  const page = report.tokenizer.Ok;
  assert.equal(page.round_trip, true, 'decode(encode(text)) != text in the page');
  const sample = 'fn main() { println!("Bonjour, été ✓"); } // 12 + 30 = 42\nThe cat sat.';
  const native = nativeTokenize(sample);
  assert.equal(page.id, native.id, 'the page loaded another tokenizer.json');
  assert.deepEqual(page.ids, native.ids, 'the page and the CLI tokenize differently');
  assert.ok(page.ids.length < sample.length / 2, `BPE should merge: ${page.ids.length} tokens`);
  console.log(`tokenizer in the page: ${page.ids.length} tokens: ${page.pieces.join('|')}`);
});
