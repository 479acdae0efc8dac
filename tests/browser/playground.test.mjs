// The playground as a person uses it, in headless Chromium: open it, wait for the routing view,
// type, switch routers, click a token, switch an expert off, share a link, open a malformed
// link, go back, overflow the context, lose the engine, survive a corrupt download, and run
// under a sub-path and on WebGPU. Screenshots of the main states go to tests/browser/out/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { serveDist } from './serve.mjs';
import { dist, launch, outDir, PATH, PATH_BADGE, root, SLOW } from './harness.mjs';

let server;
let browser; // the path under test (harness.mjs: CPU unless SWITCHYARD_BROWSER_PATH=webgpu)

before(async () => {
  await mkdir(outDir, { recursive: true });
  server = await serveDist(dist);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  server?.close();
});

async function open(context, url) {
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(url);
  await page.locator('[data-testid="token-strip"]').waitFor({ timeout: SLOW });
  return { page, errors };
}

/** The experts the strip shows, with the token texts, once no run is in flight. */
async function strip(page) {
  await page.locator('[data-testid="speed"]', { hasNotText: 'running' }).waitFor({ timeout: SLOW });
  return page.locator('[data-testid="token"]').evaluateAll((els) => els.map((e) => [e.textContent, e.dataset.expert]));
}

/** Waits until the strip differs from `before`. */
async function changed(page, before) {
  const deadline = Date.now() + SLOW;
  for (;;) {
    const now = await strip(page);
    if (JSON.stringify(now) !== JSON.stringify(before)) return now;
    assert.ok(Date.now() < deadline, 'the views did not update');
    await page.waitForTimeout(100);
  }
}

const shot = (page, name) => page.screenshot({ path: join(outDir, `${name}.png`), fullPage: true });
const query = (page) => new URL(page.url()).searchParams;

test('a person types, switches routers, inspects a token, switches an expert off and shares the link', async () => {
  const { page, errors } = await open(browser, server.url);
  await assert.doesNotReject(page.locator('[data-testid="backend"]', { hasText: PATH_BADGE }).waitFor());
  // Without an adapter the header says why it runs on the CPU (a forced WebGPU run needs no reason).
  if (PATH === 'cpu') assert.match(await page.locator('[data-testid="backend-notice"]').textContent(), /navigator\.gpu|adapter/);
  const first = await strip(page);
  assert.ok(first.length > 20, `the Rust example should give many tokens, got ${first.length}`);
  assert.ok(first.every(([, e]) => /^[0-7]$/.test(e)), 'every token shows an expert');
  assert.ok(new Set(first.map(([, e]) => e)).size > 1, 'a trained router uses more than one expert');
  await shot(page, 'playground-first-view');

  // Type a prompt.
  await page.locator('[data-testid="prompt"]').fill('Le chat dort sur le canapé pendant que la pluie tombe.');
  const typed = await changed(page, first);
  assert.equal(typed.map(([t]) => t).join(''), 'Le chat dort sur le canapé pendant que la pluie tombe.');
  assert.equal(query(page).get('prompt'), 'Le chat dort sur le canapé pendant que la pluie tombe.');

  // Pick an example, then switch the router to THOR: assignments and metrics change.
  await page.locator('[data-testid="example-code_python"]').click();
  const python = await changed(page, typed);
  await page.locator('[data-testid="tab-Load & metrics"]').click();
  const topkMetrics = await page.locator('[data-testid="metrics"]').textContent();
  await page.locator('[data-testid="router"]').selectOption('thor');
  const thor = await changed(page, python);
  assert.equal(query(page).get('router'), 'thor');
  assert.equal(thor.map(([t]) => t).join(''), python.map(([t]) => t).join(''), 'same tokens');
  assert.notEqual((await page.locator('[data-testid="metrics"]').textContent()), topkMetrics, 'metrics change with the router');
  await assert.doesNotReject(page.locator('[data-testid="router-explain"]', { hasText: 'random expert' }).waitFor());

  // Back to top-k with k = 1 through the slider.
  await page.locator('[data-testid="router"]').selectOption('topk');
  const topk2 = await changed(page, thor);
  assert.deepEqual(topk2, python, 'top-k again gives the same routing as before');
  await page.locator('[data-testid="param-k"]').fill('1');
  await page.waitForFunction(() => new URL(location.href).searchParams.get('k') === '1');
  // Top-1 keeps each token's top expert, but every layer now activates exactly one expert.
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll('[data-testid="metrics"] tbody tr')];
    return rows.length === 4 && rows.every((r) => r.children[9].textContent === '1.00');
  }, null, { timeout: SLOW });
  assert.deepEqual(await strip(page), topk2, 'top-1 routes each token to its top-2 first choice');

  // Click a token: its routing in every layer.
  await page.locator('[data-testid="token"]').nth(3).click();
  const detail = page.locator('[data-testid="token-detail"]');
  await detail.waitFor();
  assert.equal(await detail.locator('tbody tr').count(), 4, 'one row per layer');
  assert.equal(query(page).get('token'), '3');
  await page.locator('[data-testid="tab-Heatmap"]').click();
  await page.locator('[data-testid="heatmap"]').waitFor();
  await shot(page, 'playground-token-detail-heatmap');
  await savePng(page, 'token-detail');

  // Switch off the most used expert of layer 0: no token goes to it any more.
  await page.locator('[data-testid="layer-0"]').click();
  const before = await strip(page);
  const counts = {};
  for (const [, e] of before) counts[e] = (counts[e] ?? 0) + 1;
  const top = Object.entries(counts).sort((a, b) => b[1] - a[1])[0][0];
  await page.locator('[data-testid="tab-Load & metrics"]').click();
  await page.locator(`[data-testid="ablate-${top}"]`).click();
  const ablated = await changed(page, before);
  assert.ok(ablated.every(([, e]) => e !== top), `expert ${top} is off at layer 0`);
  assert.equal(query(page).get('ablate'), `0:${top}`);
  await shot(page, 'playground-ablated-load');

  // Share: the link opened in a fresh page gives the same experts.
  const link = page.url();
  const other = await open(browser, link);
  assert.deepEqual(await strip(other.page), ablated, 'the shared link reproduces the routing');
  await other.page.close();

  // Back undoes the ablation.
  await page.goBack();
  await page.waitForFunction(() => !new URL(location.href).searchParams.has('ablate'));
  assert.deepEqual(await changed(page, ablated), before, 'back restores the routing before the ablation');
  assert.deepEqual(errors, []);
  await page.close();
});

test('a malformed link shows what was ignored and falls back to defaults', async () => {
  const bad = `${server.url}?v=1&ckpt=topk&router=nope&k=banana&zzz=<b>x</b>&prompt=<img src=x onerror=alert(1)>`;
  const { page, errors } = await open(browser, bad);
  const banner = page.locator('[data-testid="problems"]');
  await banner.waitFor();
  const text = await banner.textContent();
  for (const key of ['router', 'zzz']) assert.ok(text.includes(key), `banner names ${key}: ${text}`);
  assert.equal(await page.locator('img').count(), 0, 'nothing from the URL is HTML');
  const tokens = await strip(page);
  assert.equal(tokens.map(([t]) => t).join(''), '<img src=x onerror=alert(1)>');
  assert.equal(query(page).get('router'), 'topk', 'the address bar shows what is used');
  await shot(page, 'playground-malformed-link');
  assert.deepEqual(errors, []);
  await page.close();
});

test('a prompt longer than the context gets a message, and the page keeps working', async () => {
  const { page } = await open(browser, `${server.url}?v=1&ckpt=topk&router=topk&k=2&prompt=hello`);
  await strip(page);
  await page.locator('[data-testid="prompt"]').fill('lorem ipsum dolor sit amet '.repeat(120));
  await page.locator('[data-testid="run-error"]', { hasText: 'context' }).waitFor({ timeout: SLOW });
  await page.locator('[data-testid="prompt"]').fill('short again');
  await page.waitForFunction(() => [...document.querySelectorAll('[data-testid="token"]')].map((e) => e.textContent).join('') === 'short again', null, { timeout: SLOW });
  assert.equal(await page.locator('[data-testid="run-error"]').count(), 0);
  await page.close();
});

test('generation streams tokens and reports tokens/s', async () => {
  const { page } = await open(browser, `${server.url}?v=1&ckpt=topk&router=topk&k=2&gen=24&prompt=${encodeURIComponent('fn main() {')}`);
  const tokens = await strip(page);
  assert.ok(tokens.length >= 24, 'prompt plus 24 generated tokens');
  assert.equal(await page.locator('[data-testid="token"].generated').count(), 24);
  const speed = await page.locator('[data-testid="speed"]').textContent();
  assert.match(speed, /[\d.]+ tokens\/s/);
  console.log(`in-page generation (${PATH} path): ${speed}`);
  await page.close();
});

test('when the engine dies (a lost GPU), it restarts on the CPU and the prompt and routing survive', async () => {
  const { page, errors } = await open(browser, `${server.url}?v=1&ckpt=topk&router=topk&k=2&prompt=${encodeURIComponent('The cat sat on the mat.')}`);
  const before = await strip(page);
  await page.evaluate(() => window.switchyardCrashEngine());
  await page.locator('[data-testid="crashed"]').waitFor({ timeout: SLOW });
  assert.equal(await page.locator('[data-testid="prompt"]').inputValue(), 'The cat sat on the mat.');
  await page.locator('[data-testid="loaded"]').waitFor({ timeout: SLOW });
  await page.locator('[data-testid="router"]').selectOption('hash');
  const hashed = await changed(page, before);
  await page.locator('[data-testid="router"]').selectOption('topk');
  assert.deepEqual(await changed(page, hashed), before, 'the restarted engine routes as before');
  assert.deepEqual(errors, []);
  await page.close();
});

test('a corrupt download says what failed, Retry recovers, and the second visit uses the cache', async () => {
  const sub = await serveDist(dist, { prefix: '/tutorials/moe/', corruptOnce: new Set(['thor.safetensors']) });
  const context = await launch();
  try {
    const page = await context.newPage();
    await page.goto(`${sub.url}?v=1&ckpt=thor&router=thor&thor_mode=token&prompt=hi`);
    const error = page.locator('[data-testid="load-error"]');
    await error.waitFor({ timeout: SLOW });
    assert.match(await error.textContent(), /thor\.safetensors/);
    await shot(page, 'playground-load-error');
    await page.locator('[data-testid="retry"]').click();
    await page.locator('[data-testid="token-strip"]').waitFor({ timeout: SLOW });
    assert.match(await page.locator('[data-testid="loaded"]').textContent(), /downloaded/);
    await page.reload();
    await page.locator('[data-testid="token-strip"]').waitFor({ timeout: SLOW });
    assert.match(await page.locator('[data-testid="loaded"]').textContent(), /from the browser cache/);
    assert.ok(sub.served.every((p) => !p.startsWith('/..')), 'served under the sub-path');
  } finally {
    await context.close();
    sub.close();
  }
});

test('WebGPU on: backend=webgpu runs on WebGPU and routes a shared link as the CPU does', async () => {
  const link = `${server.url}?v=1&ckpt=topk&router=topk&k=2&prompt=${encodeURIComponent('Bonjour tout le monde')}`;
  const reference = await launch({ path: 'cpu' });
  const cpu = await open(reference, link);
  const expected = await strip(cpu.page);
  await reference.close();
  const context = await launch({ path: 'webgpu' });
  try {
    const { page, errors } = await open(context, `${link}&backend=webgpu`);
    await page.locator('[data-testid="backend"]', { hasText: 'WEBGPU' }).waitFor();
    assert.deepEqual(await strip(page), expected, 'same experts on WebGPU and on the CPU');
    await shot(page, 'playground-webgpu');
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});

// The native CLI of this build (cargo test builds it).
function switchyard(args) {
  const bin = join(process.env.CARGO_TARGET_DIR ?? join(root, 'target'), 'release', 'switchyard');
  return execFileSync(bin, args, { cwd: root, encoding: 'utf8', maxBuffer: 1 << 28 });
}

test('the trace exported in the page equals the CLI trace of the same link; CSV and the model card download', async () => {
  const q = `v=1&ckpt=topk&router=topk&k=2&seed=3&gen=6&prompt=${encodeURIComponent('Le chat dort. fn main() { }')}`;
  const { page, errors } = await open(browser, `${server.url}?${q}`);
  await strip(page);
  const save = async (id) => {
    const [download] = await Promise.all([page.waitForEvent('download'), page.locator(`[data-testid="${id}"]`).click()]);
    return { name: download.suggestedFilename(), text: await readFile(await download.path(), 'utf8') };
  };
  const json = await save('export-json');
  assert.equal(json.name, 'switchyard-trace.json');
  const web = JSON.parse(json.text);
  const cli = JSON.parse(switchyard(['trace', '--url', `?${web.query}`]));
  for (const key of ['format', 'checkpoint', 'checkpoint_hash', 'query']) assert.equal(web[key], cli[key], key);
  assert.deepEqual(web.tokens, cli.tokens, 'same tokens, generated ones included');
  assert.equal(web.layers.length, cli.layers.length);
  let worst = 0;
  web.layers.forEach((l, i) => l.routing.forEach((r, t) => {
    const c = cli.layers[i].routing[t];
    assert.deepEqual(r.experts, c.experts, `layer ${i} token ${t}`);
    r.probs.forEach((p, e) => { worst = Math.max(worst, Math.abs(p - c.probs[e])); });
    r.weights.forEach((w, s) => { worst = Math.max(worst, Math.abs(w - c.weights[s])); });
  }));
  console.log(`page vs CLI trace: ${web.tokens.length} tokens, max |Δ prob or weight| = ${worst.toExponential(2)}`);
  assert.ok(worst <= 1e-5, `probabilities differ by ${worst}`);
  const csv = await save('export-csv');
  const rows = csv.text.trim().split('\n');
  assert.match(rows[0], /^token,position,kind,token_id,token_text,layer,slot,expert,weight,rank,dropped,prob/);
  const slots = web.layers.reduce((n, l) => n + l.routing.reduce((m, r) => m + r.experts.length, 0), 0);
  assert.ok(rows.length - 1 >= slots, `one row per slot: ${rows.length - 1} for ${slots}`);
  const card = await save('export-card');
  assert.equal(card.name, 'topk.card.md');
  assert.match(card.text, /^# Model card: `topk`/);
  assert.deepEqual(errors, []);
  await page.close();
});

test('the experts view: dictionary, consecutive rates, co-activation and affinity, following the router', async () => {
  const python = 'def count_words(path):\n    counts = {}\n    for line in open(path):\n        for word in line.split():\n            counts[word] = counts.get(word, 0) + 1\n    return counts';
  const { page, errors } = await open(browser, `${server.url}?v=1&ckpt=topk&router=topk&k=2&layer=1&prompt=${encodeURIComponent(python)}`);
  await strip(page);
  await page.locator('[data-testid="tab-Experts"]').click();
  await page.waitForFunction(() => new URL(location.href).searchParams.get('panel') === 'experts');
  const dictionary = page.locator('[data-testid="dictionary"] tr');
  await dictionary.first().waitFor();
  assert.equal(await dictionary.count(), 8, 'one row per expert');
  for (const id of ['coactivation', 'affinity']) {
    assert.equal(await page.locator(`[data-testid="${id}"]`).getAttribute('data-rows'), '8', id);
  }
  const spec = page.locator('[data-testid="specialisation"]');
  const topk = await spec.textContent();
  assert.match(topk, /Token-ID specialisation [\d.]+ \(random routing: [\d.]+\)/);
  assert.match(await page.locator('[data-testid="consecutive"]').textContent(), /adjacent pairs \(random: [\d.]+%\)/);
  // A dictionary token highlights its occurrences in the strip.
  const piece = page.locator('[data-testid="dict-token"]').first();
  const pieceText = await piece.textContent();
  await piece.click();
  const lit = await page.locator('[data-testid="token"].highlight').evaluateAll((els) => els.map((e) => e.textContent));
  assert.ok(lit.length >= 1 && lit.every((t) => t === pieceText), `highlighted ${JSON.stringify(lit)} for ${JSON.stringify(pieceText)}`);
  await shot(page, 'playground-experts');
  const [png] = await Promise.all([page.waitForEvent('download'), page.locator('[data-testid="png-affinity"]').click()]);
  assert.equal(png.suggestedFilename(), 'switchyard-affinity.png');
  const bytes = await readFile(await png.path());
  assert.deepEqual([...bytes.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'a PNG file');
  await page.locator('[data-testid="router"]').selectOption('hash');
  await page.waitForFunction((before) => document.querySelector('[data-testid="specialisation"]')?.textContent !== before, topk, { timeout: SLOW });
  assert.deepEqual(errors, []);
  await page.close();
});

test('embedding: three views in iframes of the example page (one a router A/B), driven and heard through postMessage', async () => {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${server.url}embed.html`);
  const strip = page.frameLocator('#strip');
  const heat = page.frameLocator('#heatmap');
  await strip.locator('[data-testid="token-strip"]').waitFor({ timeout: SLOW });
  await heat.locator('[data-testid="heatmap-canvas"]').waitFor({ timeout: SLOW });
  // Minimal chrome: no header or prompt editor; the second view shows the router panel it asked for.
  assert.equal(await strip.locator('[data-testid="prompt"]').count(), 0);
  assert.equal(await strip.locator('[data-testid="share"]').count(), 0);
  assert.equal(await heat.locator('[data-testid="router"]').count(), 1);
  const log = page.locator('#log');
  await page.waitForFunction(() => document.getElementById('log').textContent.split('\n').filter(Boolean).length >= 2, null, { timeout: SLOW });
  await page.locator('#french').click();
  await page.waitForFunction(() => (document.getElementById('log').textContent.match(/Le chat dort sur le canapé\./g) ?? []).length >= 2, null, { timeout: SLOW });
  assert.equal(await strip.locator('[data-testid="token"]').evaluateAll((els) => els.map((e) => e.textContent).join('')), 'Le chat dort sur le canapé.');
  // The third view, a router A/B, reports its comparison; a button changes its B.
  await page.waitForFunction(() => /ab: B = router=topk&k=1.* experts changed per layer 100% 100% 100% 100%/.test(document.getElementById('log').textContent), null, { timeout: SLOW });
  await page.locator('#b-scmoe').click();
  await page.waitForFunction(() => /ab: B = .*decode=scmoe.* experts changed per layer 0% 0% 0% 0%/.test(document.getElementById('log').textContent), null, { timeout: SLOW });
  await page.locator('#thor').click();
  // Sets are coalesced (at most one every 100 ms): the change lands a moment later.
  await page.frame({ url: /embed=heatmap/ }).waitForFunction(() => document.querySelector('[data-testid="router"]')?.value === 'thor', null, { timeout: SLOW });
  await page.setViewportSize({ width: 520, height: 900 });
  await page.screenshot({ path: join(outDir, 'embed-example.png'), fullPage: true });
  console.log(`embed log: ${(await log.textContent()).trim().split('\n').slice(-2).join(' | ')}`);
  assert.deepEqual(errors, []);
  await page.close();
});

test('Embed… writes the iframe of the open view, with the tutorial origin its reports are pinned to', async () => {
  const { page, errors } = await open(browser, `${server.url}?v=1&ckpt=topk&router=topk&k=2&panel=heatmap&prompt=hi`);
  await page.locator('[data-testid="embed-code"]').click();
  const snippet = page.locator('[data-testid="embed-snippet"]');
  assert.match(await snippet.inputValue(), /embed=heatmap/);
  assert.doesNotMatch(await snippet.inputValue(), /origin=/);
  await page.locator('[data-testid="embed-origin"]').fill('https://tutorial.example.org/');
  await page.waitForFunction(() => document.querySelector('[data-testid="embed-snippet"]').value.includes('origin=https%3A%2F%2Ftutorial.example.org'));
  await assert.doesNotReject(page.locator('[data-testid="embed-dialog"]', { hasText: 'go only to https://tutorial.example.org' }).waitFor());
  await page.locator('[data-testid="embed-origin"]').fill('not an origin');
  await page.waitForFunction(() => !document.querySelector('[data-testid="embed-snippet"]').value.includes('origin='));
  await page.locator('[data-testid="embed-origin"]').fill('https://tutorial.example.org');
  await page.locator('[data-testid="embed-dialog"]').screenshot({ path: join(outDir, 'embed-dialog.png') });
  assert.deepEqual(errors, []);
  await page.close();
});

/** The numbers a canvas chart drew, as rows of strings. */
const cells = async (page, id) =>
  (await page.locator(`[data-testid="${id}"]`).getAttribute('data-cells')).split(';').map((r) => r.split(','));

/** Clicks a PNG button and checks that a real PNG of a sensible size downloads. */
async function savePng(page, name) {
  const [png] = await Promise.all([page.waitForEvent('download'), page.locator(`[data-testid="png-${name}"]`).first().click()]);
  assert.equal(png.suggestedFilename(), `switchyard-${name}.png`);
  const bytes = await readFile(await png.path());
  assert.deepEqual([...bytes.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], `${name}: a PNG file`);
  const [w, h] = [bytes.readUInt32BE(16), bytes.readUInt32BE(20)];
  assert.ok(w > 60 && h > 20, `${name}: ${w}×${h}`);
  return bytes;
}

const DICKENS = 'It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season of Light, it was the season of Darkness.';

test('the capacity view: dropped tokens in the strip, drop rate by position, following the capacity factor; PNG of DOM views', async () => {
  const { page, errors } = await open(browser, `${server.url}?v=1&ckpt=topk&router=hash&layer=1&panel=capacity&prompt=${encodeURIComponent(DICKENS)}`);
  await strip(page);
  // A router without capacity says so and offers one.
  await page.locator('[data-testid="capacity-off"]').waitFor();
  await page.locator('[data-testid="capacity-on"]').click();
  await page.waitForFunction(() => new URL(location.href).searchParams.get('cf') === '1.25');
  const summary = page.locator('[data-testid="capacity-summary"] tbody tr');
  await summary.first().waitFor({ timeout: SLOW });
  await strip(page);
  const rate = async () => Number((await summary.nth(1).locator('td').nth(1).textContent()).replace('%', ''));
  const at125 = await rate();
  assert.ok(at125 > 10, `top-2 at capacity factor 1.25 drops slots: ${at125}%`);
  const buckets = await cells(page, 'drop-by-position');
  assert.equal(buckets.length, 4, 'one row per layer');
  const dropped = await page.locator('[data-testid="token"].dropped, [data-testid="token"].partial').count();
  assert.ok(dropped > 0, 'dropped tokens are marked in the strip');
  assert.match(await page.locator('[data-testid="dropped-tokens"]').textContent(), /\d\/2/);
  // Position priority drops towards the end: the last full bucket loses more than the first.
  const layer1 = buckets[1].map(Number);
  assert.ok(layer1[0] < layer1[layer1.length - 2], `drop-towards-the-end: ${layer1}`);
  const before = await page.locator('[data-testid="dropped-tokens"]').textContent();
  await page.locator('.capacity [data-testid="param-priority"]').selectOption('reverse_position');
  await page.waitForFunction((b) => document.querySelector('[data-testid="dropped-tokens"]')?.textContent !== b, before, { timeout: SLOW });
  const reversed = (await cells(page, 'drop-by-position'))[1].map(Number);
  assert.ok(reversed[0] > reversed[reversed.length - 2], `reverse priority drops towards the start: ${reversed}`);
  await page.locator('.capacity [data-testid="param-cf"]').fill('4');
  await page.waitForFunction(() => new URL(location.href).searchParams.get('cf') === '4');
  await page.waitForFunction((r) => Number(document.querySelectorAll('[data-testid="capacity-summary"] tbody tr')[1]?.children[1].textContent.replace('%', '')) < r, at125, { timeout: SLOW });
  await page.locator('.capacity [data-testid="param-cf"]').fill('1');
  await page.waitForFunction(() => new URL(location.href).searchParams.get('cf') === '1');
  await strip(page);
  await shot(page, 'playground-capacity');
  await savePng(page, 'token-strip');
  await savePng(page, 'capacity-summary');
  await savePng(page, 'drop-by-position');
  await page.locator('[data-testid="tab-Load & metrics"]').click();
  await savePng(page, 'load-bars');
  await savePng(page, 'metrics');
  assert.deepEqual(errors, []);
  await page.close();
});

test('the domain view: example prompts and a labelled prompt of ours beside the model card, following the router', async () => {
  const { page, errors } = await open(browser, `${server.url}?v=1&ckpt=topk&router=topk&k=2&layer=2&panel=domains&prompt=${encodeURIComponent(DICKENS)}`);
  await strip(page);
  const grid = page.locator('[data-testid="domain-grid"]');
  await grid.waitFor({ timeout: SLOW });
  assert.equal(await grid.getAttribute('data-rows'), '12', 'one row per example prompt (one per corpus domain)');
  for (const row of await cells(page, 'domain-grid')) {
    const sum = row.reduce((a, b) => a + Number(b), 0);
    assert.ok(Math.abs(sum - 100) <= 5, `a domain's shares add up to 100%: ${row}`);
  }
  const card = page.locator('[data-testid="card-domain-grid"]');
  await card.waitFor({ timeout: SLOW });
  assert.equal(await card.getAttribute('data-rows'), '12', 'the card has the 12 validation domains');
  await page.locator('[data-testid="add-label"]').fill('legal');
  await page.locator('[data-testid="add-text"]').fill('The party of the first part shall indemnify the party of the second part against all claims.');
  await page.locator('[data-testid="add-prompt"]').click();
  await page.waitForFunction(() => new URL(location.href).searchParams.get('add.legal')?.startsWith('The party'));
  await page.waitForFunction(() => document.querySelector('[data-testid="domain-grid"]')?.dataset.rows === '13', null, { timeout: SLOW });
  // A bad label is refused with a message, nothing else changes.
  await page.locator('[data-testid="add-label"]').fill('not a label!');
  await page.locator('[data-testid="add-prompt"]').click();
  assert.match(await page.locator('.add-prompt [role="alert"]').textContent(), /A label is 1 to 24 letters/);
  await shot(page, 'playground-domains');
  const topk = await grid.getAttribute('data-cells');
  await page.locator('[data-testid="router"]').selectOption('hash');
  await page.waitForFunction((b) => document.querySelector('[data-testid="domain-grid"]')?.dataset.cells !== b, topk, { timeout: SLOW });
  assert.equal(await card.getAttribute('data-cells') !== null, true, 'the card stays beside it');
  await savePng(page, 'domain-grid');
  assert.deepEqual(errors, []);
  await page.close();
});

test('router A/B: changed experts, router divergence and both next-token distributions, SCMoE included', async () => {
  const { page, errors } = await open(browser, `${server.url}?v=1&ckpt=topk&router=topk&k=2&gen=4&panel=compare&prompt=${encodeURIComponent(DICKENS)}`);
  await strip(page);
  await page.locator('[data-testid="compare-preset"]', { hasText: 'top-1' }).click();
  await page.waitForFunction(() => new URL(location.href).searchParams.get('b.k') === '1');
  const summary = page.locator('[data-testid="compare-summary"] tbody tr');
  await summary.first().waitFor({ timeout: SLOW });
  assert.equal(await summary.count(), 4);
  for (let l = 0; l < 4; l++) {
    assert.equal(await summary.nth(l).locator('td').nth(1).textContent(), '100.0%', 'top-1 keeps one expert where top-2 keeps two');
  }
  // Layer 0 sees the same input under both, so its first choice cannot change; deeper layers see
  // what top-1 made of the previous layers.
  assert.equal(await summary.nth(0).locator('td').nth(2).textContent(), '0.0%');
  assert.equal(await page.locator('[data-testid="compare-grid"]').getAttribute('data-rows'), String(4 * 3 + 1));
  assert.equal(await page.locator('[data-testid="next-a"] tr').count(), 5);
  const routerJs = Number(await summary.nth(0).locator('td').nth(3).textContent());
  assert.ok(routerJs === 0, `top-1 and top-2 share layer 0's router distribution: ${routerJs}`);
  // The A/B exported in the page equals `switchyard compare` for the same link.
  const [download] = await Promise.all([page.waitForEvent('download'), page.locator('[data-testid="export-compare"]').click()]);
  assert.equal(download.suggestedFilename(), 'switchyard-compare.json');
  const web = JSON.parse(await readFile(await download.path(), 'utf8'));
  const cli = JSON.parse(switchyard(['compare', '--url', `?${web.query}`]));
  assert.deepEqual(web.tokens, cli.tokens);
  assert.equal(web.b.query, cli.b.query);
  let worst = 0;
  web.layers.forEach((l, i) => l.tokens.forEach((t, j) => {
    const c = cli.layers[i].tokens[j];
    assert.deepEqual([t.only_a, t.only_b], [c.only_a, c.only_b], `layer ${i} token ${j}`);
    worst = Math.max(worst, Math.abs(t.js - c.js));
  }));
  web.next_js.forEach((d, i) => { worst = Math.max(worst, Math.abs(d - cli.next_js[i])); });
  for (const side of ['a', 'b']) {
    web[side].next.forEach((row, i) => {
      const other = new Map(cli[side].next[i]);
      const shared = row.filter(([id]) => other.has(id));
      assert.ok(shared.length >= 4, `position ${i}: the same next tokens`);
      for (const [id, p] of shared) worst = Math.max(worst, Math.abs(p - other.get(id)));
    });
  }
  console.log(`page vs CLI A/B: ${web.tokens.length} tokens, max |Δ| = ${worst.toExponential(2)}`);
  assert.ok(worst <= 1e-5, `the page's A/B differs from the CLI's by ${worst}`);
  // B = the same router with SCMoE decoding: routing equal, next-token distributions not.
  await page.locator('[data-testid="b-router"]').selectOption('topk');
  await page.locator('[data-testid="param-b.k"]').fill('2');
  await page.waitForFunction(() => new URL(location.href).searchParams.get('b.k') === '2');
  await page.locator('[data-testid="b-decode"]').selectOption('scmoe');
  await page.waitForFunction(() => new URL(location.href).searchParams.get('b.decode') === 'scmoe');
  await page.waitForFunction(() => document.querySelector('[data-testid="compare-summary"] tbody tr td:nth-child(2)')?.textContent === '0.0%', null, { timeout: SLOW });
  const heading = await page.locator('[data-testid="next-tokens"] h3').first().textContent();
  const js = Number(heading.match(/JS divergence ([\d.]+) bits/)[1]);
  assert.ok(js > 0.01, `SCMoE's contrast changes the next-token distribution: ${heading}`);
  const [a, b] = await Promise.all(['next-a', 'next-b'].map((id) => page.locator(`[data-testid="${id}"]`).textContent()));
  assert.notEqual(a, b);
  assert.doesNotMatch(b, /#\d/, 'next tokens are shown as text');
  await shot(page, 'playground-compare');
  await savePng(page, 'next-tokens');
  // B = THOR with greedy decoding (SCMoE routes by its own rank lists): the experts change; THOR
  // has no router distribution, so there is no divergence to show.
  assert.match(await page.locator('[data-testid="b-scmoe-note"]').textContent(), /rank lists/);
  await page.locator('[data-testid="b-decode"]').selectOption('greedy');
  await page.locator('[data-testid="b-router"]').selectOption('thor');
  await page.waitForFunction(() => document.querySelector('[data-testid="compare-summary"] tbody tr td:nth-child(2)')?.textContent !== '0.0%', null, { timeout: SLOW });
  assert.equal(await summary.nth(0).locator('td').nth(3).textContent(), 'n/a', 'THOR has no router probabilities to compare');
  assert.match(await page.locator('[data-testid="compare-b"]').textContent(), /router=thor/);
  // Swap: THOR becomes A (the router panel), top-k with SCMoE becomes B.
  await page.locator('[data-testid="compare-swap"]').click();
  await page.waitForFunction(() => new URL(location.href).searchParams.get('router') === 'thor' && new URL(location.href).searchParams.get('b.router') === 'topk');
  assert.equal(await page.locator('[data-testid="router"]').inputValue(), 'thor');
  // Embedded, the A/B view reports its comparison to the page around it.
  const host = await browser.newPage();
  await host.setContent(`<iframe id="ab" width="700" height="500" src="${server.url}?v=1&ckpt=topk&router=topk&k=2&b.router=topk&b.k=1&embed=compare&prompt=Hello+world"></iframe>
    <script>window.heard = []; addEventListener('message', (e) => { if (e.data?.type === 'switchyard:routing') window.heard.push(e.data); });</script>`);
  await host.waitForFunction(() => window.heard.some((m) => m.comparison), null, { timeout: SLOW });
  const heard = await host.evaluate(() => window.heard.find((m) => m.comparison).comparison);
  assert.match(heard.b, /k=1/);
  assert.deepEqual(heard.changed_rate, [1, 1, 1, 1], 'top-1 against top-2: every token changes its expert set');
  assert.equal(heard.router_js.length, 4);
  await host.close();
  // SCMoE generation in the page: the token detail lists the candidates as text.
  await page.locator('[data-testid="compare-remove"]').click();
  await page.locator('[data-testid="router"]').selectOption('topk');
  await page.locator('[data-testid="decoding"]').selectOption('scmoe');
  await page.waitForFunction(() => new URL(location.href).searchParams.get('decode') === 'scmoe');
  await strip(page);
  await page.locator('[data-testid="token"].generated').first().click();
  const candidates = await page.locator('[data-testid="scmoe-candidates"]').textContent({ timeout: SLOW });
  assert.match(candidates, /strong: .+ 0\.\d\d/);
  assert.doesNotMatch(candidates, /#\d/);
  assert.deepEqual(errors, []);
  await page.close();
});

test('the overview, all-layers grid, heatmap and load views render and follow a router change', async () => {
  const { page, errors } = await open(browser, `${server.url}?v=1&ckpt=topk&router=topk&k=2&layer=1&prompt=${encodeURIComponent(DICKENS)}`);
  await strip(page);
  const views = [
    ['Overview', () => page.locator('[data-testid="grid"]').getAttribute('data-cells')],
    ['All layers', () => page.locator('[data-testid="grid"]').getAttribute('data-cells')],
    ['Heatmap', () => page.locator('[data-testid="heatmap-canvas"]').getAttribute('data-cells')],
    ['Load & metrics', () => page.locator('[data-testid="load-bars"]').textContent()],
  ];
  let router = 'topk';
  for (const [tab, read] of views) {
    await page.locator(`[data-testid="tab-${tab}"]`).click();
    const before = await read();
    assert.ok(before && before.length > 20, `${tab} renders`);
    router = router === 'topk' ? 'hash' : 'topk';
    await page.locator('[data-testid="router"]').selectOption(router);
    const deadline = Date.now() + SLOW;
    while ((await read()) === before) {
      assert.ok(Date.now() < deadline, `${tab} did not follow the router change to ${router}`);
      await page.waitForTimeout(100);
    }
  }
  await page.locator('[data-testid="tab-All layers"]').click();
  await shot(page, 'playground-grid');
  assert.deepEqual(errors, []);
  await page.close();
});

test('compute per token: the strip shades tokens by FFN experts used, per layer and summed, with the distribution, following the router', async () => {
  const prompt = 'fn main() { let x = 42; } The cat sat on the mat, and the dog barked loudly.';
  const { page, errors } = await open(browser, `${server.url}?v=1&ckpt=topk&router=top_p&p=0.6&prompt=${encodeURIComponent(prompt)}`);
  await strip(page);
  await page.locator('[data-testid="shade"]').selectOption('compute');
  await page.waitForFunction(() => new URL(location.href).searchParams.get('shade') === 'compute');
  const compute = () => page.locator('[data-testid="token"]').evaluateAll((els) => els.map((e) => Number(e.dataset.compute)));
  // The trace says how many slots each token kept at each layer: the strip shows exactly that.
  const [download] = await Promise.all([page.waitForEvent('download'), page.locator('[data-testid="export-json"]').click()]);
  const trace = JSON.parse(await readFile(await download.path(), 'utf8'));
  const kept = (l, t) => trace.layers[l].routing[t].dropped.filter((d) => !d).length;
  const perLayer = [];
  for (let l = 0; l < trace.layers.length; l += 1) {
    await page.locator(`[data-testid="layer-${l}"]`).click();
    await page.waitForFunction((l) => document.querySelector('[data-testid="token-strip"]')?.dataset.layer === String(l), l);
    const shown = await compute();
    assert.deepEqual(shown, shown.map((_, t) => kept(l, t)), `layer ${l}: experts used per token`);
    perLayer.push(shown);
  }
  // Top-p gives tokens different amounts of compute, and the distribution counts them.
  assert.ok(new Set(perLayer.flat()).size > 1, 'top-p: the number of experts varies per token');
  const rows = await page.locator('[data-testid="compute-distribution"] .dist-row').evaluateAll((els) => els.map((e) => [Number(e.dataset.experts), Number(e.dataset.tokens)]));
  const last = perLayer[perLayer.length - 1];
  assert.deepEqual(rows, [...new Set(last)].sort((a, b) => a - b).map((c) => [c, last.filter((x) => x === c).length]));
  await shot(page, 'playground-compute');
  // Summed over layers.
  await page.locator('[data-testid="shade"]').selectOption('compute_all');
  await page.waitForFunction(() => new URL(location.href).searchParams.get('shade') === 'compute_all');
  assert.deepEqual(await compute(), last.map((_, t) => perLayer.reduce((s, l) => s + l[t], 0)), 'summed over the layers');
  // Top-2 gives every token two experts at every layer: 2 × layers.
  await page.locator('[data-testid="router"]').selectOption('topk');
  await page.waitForFunction((n) => [...document.querySelectorAll('[data-testid="token"]')].every((e) => e.dataset.compute === String(n)), 2 * perLayer.length, { timeout: SLOW });
  // Back to expert colours: no compute on the tokens.
  await page.locator('[data-testid="shade"]').selectOption('expert');
  await page.waitForFunction(() => !new URL(location.href).searchParams.has('shade'));
  assert.equal(await page.locator('[data-testid="token"][data-compute]').count(), 0);
  assert.deepEqual(errors, []);
  await page.close();
});

test('every shipped checkpoint opens from the picker with its own router, and the picker says its design', async () => {
  const own = {
    deepseek: ['topk', { k: '3', norm: 'false' }], lossfree: ['sigmoid', { k: '2', bias: 'true' }], 'top-p': ['top_p', { p: '0.4' }], 'topk-global': ['topk', { k: '2' }], thor: ['thor', { thor_mode: 'token' }],
    'smoe-dropout': ['smoe_dropout', { k: '8' }], topk: ['topk', { k: '2' }], adamoe: ['topk', { k: '4' }], moepp: ['topk', { k: '2' }],
  };
  const free = { adamoe: 16, moepp: 4 };
  const { page, errors } = await open(browser, `${server.url}?v=1&ckpt=topk&router=hash&prompt=${encodeURIComponent('The cat sat on the mat. fn main() {}')}`);
  await strip(page);
  // The strip is drawn from a run of this checkpoint (not the one before it).
  const ranOn = (name) => page.waitForFunction((n) => document.querySelector('[data-testid="token-strip"]')?.dataset.checkpoint === n, name, { timeout: SLOW });
  const options = await page.locator('[data-testid="checkpoint"] option').evaluateAll((els) => els.map((e) => [e.value, e.textContent]));
  for (const name of Object.keys(own)) {
    const option = options.find(([v]) => v === name);
    assert.ok(option && option[1].length > name.length + 5, `${name} is offered with a line on its design: ${option}`);
  }
  for (const [name, [router, params]] of Object.entries(own)) {
    await page.locator('[data-testid="checkpoint"]').selectOption(name);
    await ranOn(name);
    assert.equal(query(page).get('router'), router, `${name} opens with its own router`);
    for (const [k, v] of Object.entries(params)) assert.equal(query(page).get(k), v, `${name}: ${k}`);
    const tokens = await strip(page);
    assert.ok(tokens.length > 5 && tokens.every(([, e]) => /^\d+$/.test(e)), `${name} routes every token`);
    const experts = name === 'deepseek' ? 15 : 8;
    const extra = free[name] ? ` \\+ ${free[name]} free` : ' ·';
    assert.match(await page.locator('[data-testid="loaded"]').textContent(), new RegExp(`× ${experts} experts${extra}`), `${name}'s experts`);
  }
  // The top-p checkpoint gives tokens different numbers of experts under its own router.
  await page.locator('[data-testid="checkpoint"]').selectOption('top-p');
  await ranOn('top-p');
  await page.locator('[data-testid="shade"]').selectOption('compute');
  await page.locator('[data-testid="compute-distribution"]').waitFor();
  const mean = Number(await page.locator('[data-testid="compute-distribution"]').getAttribute('data-mean'));
  const kinds = await page.locator('[data-testid="compute-distribution"] .dist-row').count();
  assert.ok(kinds > 1 && mean > 1 && mean < 8, `top-p: ${mean} experts per token on average, ${kinds} different counts`);
  await shot(page, 'playground-top-p');
  // The lossfree checkpoint shows its learned selection bias per layer, and choosing without it
  // changes the experts.
  await page.locator('[data-testid="checkpoint"]').selectOption('lossfree');
  await ranOn('lossfree');
  await page.locator('[data-testid="shade"]').selectOption('expert');
  await page.locator('[data-testid="tab-Load & metrics"]').click();
  const bias = async (layer) => {
    await page.locator(`[data-testid="layer-${layer}"]`).click();
    await page.waitForFunction((l) => document.querySelector('[data-testid="bias-bars"]')?.dataset.layer === String(l), layer, { timeout: SLOW });
    return (await page.locator('[data-testid="bias-bars"]').getAttribute('data-values')).split(',').map(Number);
  };
  const b0 = await bias(0);
  assert.equal(b0.length, 8);
  assert.ok(b0.some((v) => v !== 0) && b0.every(Number.isFinite), `a learned bias: ${b0}`);
  assert.notDeepEqual(await bias(2), b0, 'each layer has its own bias');
  await shot(page, 'playground-lossfree-bias');
  const withBias = await strip(page);
  await page.locator('[data-testid="param-bias"]').uncheck();
  await page.waitForFunction(() => new URL(location.href).searchParams.get('bias') === 'false');
  await changed(page, withBias);
  // The deepseek checkpoint's shared expert: its share of every token's MoE output, in the strip.
  await page.locator('[data-testid="shade"]').selectOption('shared');
  assert.match(await page.locator('[data-testid="shared-summary"]').textContent(), /no shared expert/);
  await page.locator('[data-testid="checkpoint"]').selectOption('deepseek');
  await ranOn('deepseek');
  await page.waitForFunction(() => document.querySelector('[data-testid="shared-summary"]')?.dataset.mean);
  const shares = await page.locator('[data-testid="token"]').evaluateAll((els) => els.map((e) => Number(e.dataset.shared)));
  assert.ok(shares.every((v) => v > 0 && v < 1), `every token gets a share of the shared expert: ${shares}`);
  assert.ok(new Set(shares.map((v) => v.toFixed(2))).size > 1, 'the share differs between tokens');
  const summary = Number(await page.locator('[data-testid="shared-summary"]').getAttribute('data-mean'));
  assert.ok(Math.abs(summary - shares.reduce((a, b) => a + b, 0) / shares.length) < 1e-3, 'the summary is the mean of the strip');
  await shot(page, 'playground-deepseek-shared');
  assert.deepEqual(errors, []);
  await page.close();
});

test('free experts: AdaMoE tokens that skip experts and MoE++ zero, copy and constant experts, never shown as numbered experts, following the router and the checkpoint', async () => {
  const prompt = encodeURIComponent('The cat sat on the mat. fn main() { println!("hi"); } Le chat dort.');
  const { page, errors } = await open(browser, `${server.url}?v=1&ckpt=adamoe&router=topk&k=4&shade=compute&prompt=${prompt}`);
  await page.waitForFunction(() => document.querySelector('[data-testid="token-strip"]')?.dataset.checkpoint === 'adamoe', null, { timeout: SLOW });
  await strip(page);
  assert.match(await page.locator('[data-testid="design-explain"]').textContent(), /AdaMoE.*null experts/);
  // Experts used per token: 0 to 4 FFN experts, not always 4 (null slots cost nothing).
  await page.locator('[data-testid="compute-distribution"]').waitFor();
  const used = await page.locator('[data-testid="token"]').evaluateAll((els) => els.map((e) => Number(e.dataset.compute)).filter(Number.isFinite));
  assert.ok(used.every((c) => c >= 0 && c <= 4), `FFN experts per token in 0..4: ${used}`);
  assert.ok(used.some((c) => c < 4), `some tokens skip experts: ${used}`);
  const mean = Number(await page.locator('[data-testid="compute-distribution"]').getAttribute('data-mean'));
  assert.ok(Math.abs(mean - used.reduce((a, b) => a + b, 0) / used.length) < 1e-3, 'the distribution is the strip\'s');
  await shot(page, 'playground-adamoe-compute');
  // The load view groups the null experts into one row and says their share.
  await page.locator('[data-testid="tab-Load & metrics"]').click();
  await page.locator('[data-testid="free-share"]').waitFor();
  const shares = async () => Object.fromEntries((await page.locator('[data-testid="free-share"]').getAttribute('data-shares')).split(',').map((p) => p.split('=')).map(([k, v]) => [k, Number(v)]));
  const nullShare = (await shares()).null;
  assert.ok(nullShare > 0 && nullShare < 1, `null experts take some slots: ${nullShare}`);
  assert.equal(await page.locator('[data-testid="load-bars"] .lrow[data-kind="null"]').count(), 1, 'one row for the 16 null experts');
  assert.equal(await page.locator('[data-testid="load-bars"] .lrow[data-kind="ffn"]').count(), 8);
  assert.match(await page.locator('[data-testid="load-bars"] .lrow[data-kind="null"]').textContent(), /null ×16/);
  await shot(page, 'playground-adamoe-load');
  // Follows the router: with k = 2 the share changes; switching the null experts off leaves none.
  await page.locator('[data-testid="param-k"]').fill('2');
  await page.waitForFunction(() => new URL(location.href).searchParams.get('k') === '2');
  await page.waitForFunction((before) => document.querySelector('[data-testid="free-share"]')?.dataset.shares !== before, `null=${nullShare.toFixed(4)}`, { timeout: SLOW });
  await page.locator('[data-testid="load-bars"] .lrow[data-kind="null"] button', { hasText: 'off' }).click();
  await page.waitForFunction(() => (new URL(location.href).searchParams.get('ablate') ?? '').split(',').length >= 16, null, { timeout: SLOW });
  await page.waitForFunction(() => !document.querySelector('[data-testid="free-share"]') || /null=0\.0000/.test(document.querySelector('[data-testid="free-share"]').dataset.shares), null, { timeout: SLOW });
  // MoE++: the zero, copy and constant experts are named in the legend, the load and the detail.
  await page.locator('[data-testid="checkpoint"]').selectOption('moepp');
  await page.waitForFunction(() => document.querySelector('[data-testid="token-strip"]')?.dataset.checkpoint === 'moepp', null, { timeout: SLOW });
  await strip(page);
  assert.equal(query(page).get('ablate'), null, 'a new checkpoint starts without the old interventions');
  assert.match(await page.locator('[data-testid="design-explain"]').textContent(), /MoE\+\+.*zero/);
  await page.locator('[data-testid="free-share"]').waitFor();
  for (const kind of ['zero', 'copy', 'constant']) {
    assert.equal(await page.locator(`[data-testid="load-bars"] .lrow[data-kind="${kind}"]`).count(), 1, `${kind} row`);
  }
  const moe = await shares();
  assert.ok(Object.keys(moe).length === 3 && Object.values(moe).every((v) => v >= 0 && v < 1), JSON.stringify(moe));
  await page.locator('[data-testid="shade"]').selectOption('expert');
  const chips = await page.locator('[data-testid="free-chip"]').allTextContents();
  assert.deepEqual(chips.sort(), ['constant', 'copy', 'zero']);
  await page.locator('[data-testid="token"]').nth(3).click();
  const detail = await page.locator('[data-testid="token-detail"] .slots').allTextContents();
  assert.ok(detail.every((t) => !/E(8|9|10|11)\b/.test(t)), `free experts are not numbered experts: ${detail}`);
  await shot(page, 'playground-moepp-detail');
  // The domain view's last columns are the free experts, per domain.
  await page.locator('[data-testid="tab-Domains"]').click();
  await page.locator('[data-testid="domain-free"]').waitFor({ timeout: SLOW });
  await page.locator('[data-testid="domain-grid"]').waitFor({ timeout: SLOW });
  await shot(page, 'playground-moepp-domains');
  assert.deepEqual(errors, []);
  await page.close();
});
