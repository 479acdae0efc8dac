// Hugging Face checkpoints in the page: the tiny random fixtures of tools/hf/make_fixtures.py
// (one per architecture and layout) opened from files and from another host's URL, routed, and
// shown with their own experts; the page's routing equals the CLI's on the same folder.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { serveDist } from './serve.mjs';
import { dist, launch, openPage, outDir, root, SLOW } from './harness.mjs';

const FIXTURES = join(root, 'crates/model/tests/fixtures/hf');
const PROMPT = 'The router scores each expert.';
/** Fixture, architecture, experts per layer. */
const MODELS = [
  ['mixtral', 'MixtralForCausalLM', 4],
  ['mixtral-fused', 'MixtralForCausalLM', 4],
  ['qwen2-moe', 'Qwen2MoeForCausalLM', 6],
  ['qwen3-moe', 'Qwen3MoeForCausalLM', 4],
  ['olmoe', 'OlmoeForCausalLM', 4],
];

let server, hfHost, browser;
before(async () => {
  server = await serveDist(dist);
  hfHost = await serveDist(FIXTURES, { cors: true });
  browser = await launch({});
});
after(async () => {
  await browser?.close();
  server?.close();
  hfHost?.close();
});

function switchyard(args) {
  const bin = join(process.env.CARGO_TARGET_DIR ?? join(root, 'target'), 'release', 'switchyard');
  return execFileSync(bin, args, { cwd: root, encoding: 'utf8', maxBuffer: 1 << 28 });
}

const open = (url) => openPage(browser, url);

/** The exported trace of what the page shows, once it is a run of `checkpoint` (and `router`). */
async function exported(page, checkpoint, router = null) {
  const deadline = Date.now() + SLOW;
  for (;;) {
    await page.locator('[data-testid="speed"]', { hasNotText: 'running' }).waitFor({ timeout: SLOW });
    const [download] = await Promise.all([page.waitForEvent('download'), page.locator('[data-testid="export-json"]').click()]);
    const trace = JSON.parse(await readFile(await download.path(), 'utf8'));
    const q = new URLSearchParams(trace.query);
    if (trace.checkpoint === checkpoint && (router === null || q.get('router') === router)) return trace;
    assert.ok(Date.now() < deadline, `no run of ${checkpoint} came`);
    await page.waitForTimeout(200);
  }
}

/** A fixture file as Playwright's in-memory file. */
async function file(name, dir) {
  return { name, mimeType: 'application/octet-stream', buffer: await readFile(join(FIXTURES, dir, name)) };
}

/** The page's routing equals `switchyard trace --checkpoint DIR` on the same settings. */
function sameAsCli(web, name) {
  const cli = JSON.parse(switchyard(['trace', '--checkpoint', join(FIXTURES, name), '--url', `?${web.query}`]));
  assert.deepEqual(web.tokens.map((t) => t.id), cli.tokens.map((t) => t.id), `${name}: tokens`);
  let worst = 0;
  web.layers.forEach((l, i) => l.routing.forEach((r, t) => {
    const c = cli.layers[i].routing[t];
    assert.deepEqual(r.experts, c.experts, `${name}: layer ${i} token ${t}`);
    r.probs.forEach((p, e) => { worst = Math.max(worst, Math.abs(p - c.probs[e])); });
  }));
  assert.ok(worst <= 1e-5, `${name}: router probabilities differ from the CLI's by ${worst}`);
  return worst;
}

test('the page opens a tiny checkpoint of each architecture from files, routes a prompt and shows its experts', async () => {
  const { page, errors } = await open(`${server.url}?v=1&ckpt=topk&prompt=${encodeURIComponent(PROMPT)}`);
  for (const [name, arch, experts] of MODELS) {
    const files = (await readdir(join(FIXTURES, name))).filter((f) => f !== 'reference.json').map((f) => join(FIXTURES, name, f));
    await page.locator('[data-testid="open-model"] summary').click();
    await page.setInputFiles('[data-testid="hf-files"]', files);
    await page.locator('[data-testid="loaded-hf"]', { hasText: arch }).waitFor({ timeout: SLOW });
    await page.locator('[data-testid="loaded"]', { hasText: `2 layers × ${experts} experts` }).waitFor({ timeout: SLOW });
    const web = await exported(page, 'hf-files');
    assert.equal(web.layers[0].routing[0].probs.length, experts, `${name}: the router chooses among its own experts`);
    // The load bars show the model's experts, and the router is the model's own top-k.
    assert.equal(await page.locator('[data-testid="load-bars"] .lrow').count(), experts);
    const q = new URLSearchParams(web.query);
    assert.equal(q.get('router'), 'topk');
    assert.equal(q.get('norm'), name === 'qwen2-moe' || name === 'olmoe' ? 'false' : 'true', `${name}: norm_topk_prob`);
    const worst = sameAsCli(web, name);
    console.log(`${name}: ${arch}, ${web.tokens.length} tokens, page vs CLI max |Δ prob| ${worst.toExponential(2)}`);
    if (name === 'qwen2-moe') await page.screenshot({ path: join(outDir, 'hf-files.png'), fullPage: true });
    await page.locator('[data-testid="open-model"] summary').click();
  }
  // Any router applies to the loaded model as to ours.
  await page.locator('[data-testid="router"]').selectOption('expert_choice');
  const web = await exported(page, 'hf-files', 'expert_choice');
  assert.equal(new URLSearchParams(web.query).get('router'), 'expert_choice');
  sameAsCli(web, 'olmoe');
  assert.deepEqual(errors, []);
  await page.close();
});

test('a picked folder and dropped files open too', async () => {
  const { page, errors } = await open(`${server.url}?v=1&ckpt=topk&prompt=${encodeURIComponent(PROMPT)}`);
  await page.locator('[data-testid="open-model"] summary').click();
  // The folder picker (webkitdirectory): the whole folder, reference.json and all.
  await page.setInputFiles('[data-testid="hf-folder"]', join(FIXTURES, 'qwen2-moe'));
  await page.locator('[data-testid="loaded-hf"]', { hasText: 'Qwen2MoeForCausalLM' }).waitFor({ timeout: SLOW });
  await exported(page, 'hf-files');
  // A drop of the files of another folder.
  const names = (await readdir(join(FIXTURES, 'olmoe'))).filter((f) => f !== 'reference.json');
  const files = await Promise.all(names.map(async (n) => [n, [...await readFile(join(FIXTURES, 'olmoe', n))]]));
  const dt = await page.evaluateHandle((list) => {
    const dt = new DataTransfer();
    for (const [name, bytes] of list) dt.items.add(new File([new Uint8Array(bytes)], name));
    return dt;
  }, files);
  await page.dispatchEvent('[data-testid="hf-drop"]', 'drop', { dataTransfer: dt });
  await page.locator('[data-testid="loaded-hf"]', { hasText: 'OlmoeForCausalLM' }).waitFor({ timeout: SLOW });
  const web = await exported(page, 'hf-files');
  sameAsCli(web, 'olmoe');
  assert.deepEqual(errors, []);
  await page.close();
});

test('a folder on another host opens from its address, and the link opens it again', async () => {
  const url = `${hfHost.url}qwen3-moe/`;
  const { page, errors } = await open(`${server.url}?v=1&ckpt=topk&prompt=${encodeURIComponent(PROMPT)}`);
  await page.locator('[data-testid="open-model"] summary').click();
  await page.locator('[data-testid="hf-url"]').fill(url);
  await page.locator('[data-testid="hf-open-url"]').click();
  await page.locator('[data-testid="loaded-hf"]', { hasText: 'Qwen3MoeForCausalLM' }).waitFor({ timeout: SLOW });
  const web = await exported(page, 'hf-url');
  assert.equal(new URLSearchParams(web.query).get('hf'), url);
  sameAsCli(web, 'qwen3-moe');
  // The shared link, in a fresh page, downloads the same folder and shows the same routing.
  const again = await open(page.url());
  await again.page.locator('[data-testid="loaded-hf"]', { hasText: 'Qwen3MoeForCausalLM' }).waitFor({ timeout: SLOW });
  const second = await exported(again.page, 'hf-url');
  assert.deepEqual(second.layers.map((l) => l.routing.map((r) => r.experts)), web.layers.map((l) => l.routing.map((r) => r.experts)));
  assert.ok(hfHost.requests.some((r) => r.path.endsWith('qwen3-moe/model.safetensors.index.json') && r.status === 404), 'the index was probed');
  assert.deepEqual([...errors, ...again.errors], []);
  await page.close();
  await again.page.close();
});

test('a download shows its progress and can be cancelled', async () => {
  const stalling = await serveDist(FIXTURES, { cors: true, stallOnce: new Set(['model.safetensors']) });
  const { page, errors } = await open(`${server.url}?v=1&ckpt=topk&prompt=${encodeURIComponent(PROMPT)}`);
  const before = await exported(page, 'topk');
  await page.locator('[data-testid="open-model"] summary').click();
  await page.locator('[data-testid="hf-url"]').fill(`${stalling.url}olmoe/`);
  await page.locator('[data-testid="hf-open-url"]').click();
  await page.locator('[data-testid="loading"]', { hasText: 'model.safetensors' }).waitFor({ timeout: SLOW });
  await page.locator('[data-testid="cancel-load"]').click();
  await page.locator('[data-testid="load-error"]', { hasText: 'was cancelled' }).waitFor();
  assert.equal(await page.locator('[data-testid="loading"]').count(), 0);
  // The views keep the last run; the shipped checkpoint runs again when picked.
  await page.locator('[data-testid="checkpoint"]').selectOption('topk');
  const after = await exported(page, 'topk');
  assert.deepEqual(after.layers[0].routing.map((r) => r.experts), before.layers[0].routing.map((r) => r.experts));
  assert.deepEqual(errors, []);
  await page.close();
  stalling.close();
});

test('what cannot be opened says why, and the page keeps working', async () => {
  const { page, errors } = await open(`${server.url}?v=1&ckpt=topk&prompt=${encodeURIComponent(PROMPT)}`);
  const before = await exported(page, 'topk');
  // A folder without its config.
  await page.locator('[data-testid="open-model"] summary').click();
  await page.setInputFiles('[data-testid="hf-files"]', [join(FIXTURES, 'olmoe', 'tokenizer.json')]);
  await page.locator('[data-testid="hf-message"]', { hasText: 'No config.json' }).waitFor();
  // An unsupported architecture, and a model too large for the page: named, before any weight.
  const cases = [
    ['{"architectures": ["DeepseekV3ForCausalLM"]}', /`DeepseekV3ForCausalLM`: not supported; supported: MixtralForCausalLM, Qwen2MoeForCausalLM/],
    [JSON.stringify({ ...JSON.parse(await readFile(join(FIXTURES, 'mixtral', 'config.json'), 'utf8')), hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 8, num_local_experts: 8, vocab_size: 32000, dtype: 'bfloat16' }),
      /MixtralForCausalLM: 46\.70 B parameters \(93\.4 GB in bfloat16\) is more than the page's CPU engine holds: up to 150 M parameters.*Nothing was downloaded/],
  ];
  for (const [config, message] of cases) {
    await page.setInputFiles('[data-testid="hf-files"]', [
      { name: 'config.json', mimeType: 'application/json', buffer: Buffer.from(config) },
      await file('model.safetensors', 'mixtral'),
      await file('tokenizer.json', 'mixtral'),
    ]);
    await page.locator('[data-testid="load-error"]', { hasText: message }).waitFor({ timeout: SLOW });
  }
  await page.screenshot({ path: join(outDir, 'hf-too-large.png'), fullPage: true });
  // Back to a shipped checkpoint: it runs as before.
  await page.locator('[data-testid="checkpoint"]').selectOption('topk');
  await page.locator('[data-testid="load-error"]').waitFor({ state: 'detached', timeout: SLOW });
  const after = await exported(page, 'topk');
  assert.deepEqual(after.layers[0].routing.map((r) => r.experts), before.layers[0].routing.map((r) => r.experts));
  assert.deepEqual(errors, []);
  await page.close();
});
