// Hostile and careless input, in headless Chromium on the CPU path: more than a hundred links
// (malformed, extreme, oversized, with `?` and `#` inside values), hostile postMessages from the
// parent page, a sibling frame and the top window of a page that is not embedded, and the
// engine's failure modes (a link that crashes it, a stalled download, a stale cached
// checkpoint, rapid checkpoint switches). For each: no page error, no unreadable reply, the page
// settles with views or a clear message, and history does not grow per message.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { serveDist } from './serve.mjs';
import { dist, launch, openedQuery, outDir, PATH, SLOW } from './harness.mjs';

// SwiftShader runs the domain view's dozen prompts in tens of seconds on this machine.
const SETTLE = PATH === 'webgpu' ? 120_000 : 30_000;

let server;
let browser;

/** A parent page with the embedded view (`src`) and a sibling frame that can reach it. */
const parentPage = (src) => `<!doctype html><meta charset="utf-8"><title>parent</title>
<iframe id="target" name="target" src="${src}" width="900" height="500"></iframe>
<iframe id="sibling" name="sibling" src="/sibling.html" width="200" height="100"></iframe>
<script>
  window.reports = []; window.problems = [];
  addEventListener('message', (e) => {
    if (e.data?.type === 'switchyard:routing') reports.push(e.data);
    if (e.data?.type === 'switchyard:problems') problems.push(e.data);
  });
  window.send = (m) => document.getElementById('target').contentWindow.postMessage(m, '*');
</script>`;

const sibling = `<!doctype html><meta charset="utf-8"><title>sibling</title><script>
  window.attack = (m) => parent.frames.target.postMessage(m, '*');
</script>`;

before(async () => {
  await mkdir(outDir, { recursive: true });
  server = await serveDist(dist, { pages: { '/sibling.html': sibling } });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  server?.close();
});

/** The page's errors (uncaught exceptions; with `console`, console errors too). */
function watch(page, { console: withConsole = false } = {}) {
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  if (withConsole) page.on('console', (m) => { if (m.type() === 'error') errors.push(`console: ${m.text()}`); });
  return errors;
}

/**
 * Waits until no load or run is in flight and the page shows views or an engine message, then
 * checks that nothing unreadable or NaN is on screen. Returns what it shows.
 */
async function settle(frame, what) {
  await frame.waitForTimeout(150);
  await frame.waitForFunction(() => {
    const speed = document.querySelector('[data-testid="speed"], [data-testid="embedded"]');
    const running = /running/.test(document.querySelector('[data-testid="speed"]')?.textContent ?? '')
      || document.querySelector('[data-testid="embedded"][aria-busy="true"]');
    const loading = document.querySelector('[data-testid="loading"]');
    const views = document.querySelectorAll('[data-testid="token"]').length > 0
      || document.querySelector('[data-testid="embedded"] canvas, [data-testid="embedded"] table');
    const message = document.querySelector('[data-testid="run-error"], [data-testid="load-error"], [data-testid="crashed"]');
    return speed && !running && !loading && (views || message);
  }, null, { timeout: SETTLE }).catch(() => assert.fail(`${what}: the page did not settle within ${SETTLE / 1000} s`));
  const text = await frame.evaluate(() => document.body.innerText);
  assert.ok(!/unreadable|could not read a request/i.test(text), `${what}: ${text.slice(0, 300)}`);
  // NaN as a number on screen (the banner may quote a link's `NaN`).
  const shownNumbers = await frame.evaluate(() => {
    const body = document.body.cloneNode(true);
    body.querySelectorAll('[data-testid="problems"]').forEach((e) => e.remove());
    return body.textContent;
  });
  assert.ok(!/\bNaN\b/.test(shownNumbers), `${what}: NaN on screen`);
  return {
    text,
    prompt: await frame.evaluate(() => document.querySelector('[data-testid="prompt"]')?.value ?? null),
    tokens: await frame.evaluate(() => [...document.querySelectorAll('[data-testid="token"]')].map((e) => e.textContent).join('')),
    problems: await frame.evaluate(() => document.querySelector('[data-testid="problems"]')?.textContent ?? ''),
  };
}

const P = encodeURIComponent;
const BASE = 'v=1&ckpt=topk';

/** Links whose values hold `?` or `#`: they must open exactly as written, with no correction. */
const EXACT = [
  ['v=1&ckpt=topk&prompt=Why?', 'Why?'],
  ['?v=1&ckpt=topk&router=topk&k=2&prompt=Why?+And+how?', 'Why? And how?'],
  [`${BASE}&prompt=${P('C# or F#?')}`, 'C# or F#?'],
  [`${BASE}&prompt=${P('a=b&c=d?e#f')}`, 'a=b&c=d?e#f'],
  [`${BASE}&prompt=what?where?`, 'what?where?'],
  [`${BASE}&prompt=%3F%23%26%3D`, '?#&='],
];

/** Hostile or careless links, each opened by a fresh page load. */
const LOADED = [
  'v=2&ckpt=topk&router=topk&k=1&prompt=a+newer+link',
  'v=&ckpt=topk&prompt=x', 'v=0&prompt=x', 'ckpt=topk&prompt=no+version', '', '&&&', '=', 'v=1&=x', '%', '%zz=%zz',
  'v=1&ckpt=topk&prompt=%FF%FE%00', `v=1&ckpt=${P('../../etc/passwd')}&prompt=x`, `v=1&ckpt=${'a'.repeat(65)}&prompt=x`,
  'v=1&ckpt=%E2%80%AEpot&prompt=x', 'v=1&ckpt=nonexistent&prompt=x', 'v=1&ckpt=topk&ckpt_hash=deadbeef&prompt=x',
  'v=1&ckpt=topk&ckpt_hash=zz&prompt=x', `${BASE}&prompt=${'x'.repeat(8001)}`,
  `${BASE}&${Array.from({ length: 30 }, (_, i) => `junk${i}=${i}`).join('&')}&prompt=thirty+unknown+keys`,
  `${BASE}&prompt=a&prompt=b&k=1&k=2`, `${BASE}&%E2%80%AE=1&prompt=${P('abc\u202Edef\u200B')}`,
  `${BASE}&panel=evil&embed=evil&prompt=x`, `${BASE}&show=prompt&prompt=x`,
  `${BASE}&panel=train&train.e=999&train.k=0&train.d=33&train.lr=NaN&train.steps=-1&prompt=x`,
  `${BASE}&panel=train&train.recipe=evil&train.mix=${P('../x:1,a:1e9,b:-1,:')}&train.lbl=1e38&prompt=x`,
  'v=1&ckpt=trained-in-page&prompt=x',
  'v=1&ckpt=hf-files&prompt=x', 'v=1&ckpt=hf-url&prompt=x', `v=1&ckpt=hf-url&hf=${P('javascript:alert(1)')}&prompt=x`,
  `v=1&ckpt=hf-url&hf=${P('http://127.0.0.1:9/nothing/')}&prompt=x`, `v=1&ckpt=hf-url&hf=${P('https://exa mple.org/"><b>')}&prompt=x`,
  `v=1&trace=${P('file:///etc/passwd')}&prompt=x`, `v=1&trace=${P('http://127.0.0.1:9/t.json')}&prompt=x`,
  `${BASE}&origin=${P('javascript:alert(1)')}&prompt=x`, `${BASE}&layer=63&panel=grid&prompt=deep`,
  `${BASE}&token=30000&prompt=x`, `${BASE}&embed=heatmap&layer=9&token=99&prompt=embedded`,
];

/** More hostile links, opened in the running page by history navigation (the same decoder). */
const NAVIGATED = [
  ...['k=0', 'k=-1', 'k=9', 'k=1e9', 'k=NaN', 'k=', 'k=2.5', 'k=%00', 'k=256'].map((x) => `${BASE}&router=topk&${x}&prompt=hi`),
  ...['cf=0', 'cf=-1', 'cf=inf', 'cf=1e39', 'cf=NaN', 'cf=1e-9', 'cf=256', 'cf=0.01'].map((x) => `${BASE}&router=topk&k=2&${x}&prompt=hi+there`),
  ...['theta=0', 'theta=1e-30', 'theta=-0.1', 'policy=evil', 'cf=0.01&theta=0.001'].map((x) => `${BASE}&router=gshard&${x}&prompt=hi`),
  ...['p=-1', 'p=2', 'p=NaN', 'p=0', 'p=1'].map((x) => `${BASE}&router=top_p&${x}&prompt=hi`),
  ...['init_std=0', 'init_std=1e30', 'init_std=-1', 'k=999', 'init_std=10&k=8&dense=uniform'].map((x) => `${BASE}&router=smoe_dropout&${x}&prompt=hi`),
  ...['cf=0.01&min_cap=0', 'min_cap=99999999', 'cf=256'].map((x) => `${BASE}&router=expert_choice&${x}&prompt=hi`),
  ...['ranks=0,0', 'ranks=', 'ranks=255', 'ranks=7,7,7', 'ranks=a,b'].map((x) => `${BASE}&router=ranks&${x}&prompt=hi`),
  ...['temperature=0', 'temperature=1e-38', 'temperature=1e38', 'temperature=-1', 'sample_p=0', 'sample_p=2', 'sample_k=-1', 'sample_k=1e30']
    .map((x) => `${BASE}&decode=sample&${x}&gen=3&prompt=hi`),
  ...['alpha=0', 'alpha=-1', 'alpha=2', 'alpha=1e-45', 'beta=1e38', 'beta=-1', 'beta=NaN', 'tau_s=0', 'tau_s=1e-38', 'tau_w=1e38',
    'strong=0,0', 'strong=99', 'strong=', 'weak=0,0', 'weak=banana', 'ban_eos=maybe', 'weak=random&beta=100&tau_s=0.01']
    .map((x) => `${BASE}&decode=scmoe&${x}&gen=2&prompt=hi`),
  ...['gen=99999', 'gen=-1', 'gen=600', 'seed=-1', 'seed=99999999999999999999999', 'seed=abc', 'seed=18446744073709551615']
    .map((x) => `${BASE}&${x}&prompt=hi`),
  `${BASE}&ablate=${Array.from({ length: 8 }, (_, e) => `0:${e}`).join(',')}&prompt=everything+off`,
  `${BASE}&force=0:99&prompt=x`, `${BASE}&force=99:0&prompt=x`, `${BASE}&ablate=x:y,1:2:3,,&prompt=x`,
  `${BASE}&ablate=${Array.from({ length: 2000 }, (_, i) => `${i % 4}:${i % 8}`).join(',')}&prompt=many`,
  `${BASE}&add.${P('\u202E')}=x&add.ok=fine&prompt=x&panel=domains`, `${BASE}&add.${'l'.repeat(30)}=x&prompt=x`,
  `${BASE}&${Array.from({ length: 9 }, (_, i) => `add.d${i}=text`).join('&')}&panel=domains&prompt=x`,
  `${BASE}&add.long=${'y'.repeat(4001)}&prompt=x`,
  `${BASE}&b.router=evil&prompt=x&panel=compare`, `${BASE}&b.router=topk&b.k=0&panel=compare&prompt=x`,
  `${BASE}&b.decode=scmoe&b.beta=1e38&b.strong=0,0&panel=compare&prompt=x`, `${BASE}&b.foo=1&prompt=x`,
  `${BASE}&prompt=${P('\u0001\u0007\u001b[31mred')}`, `${BASE}&prompt=${P(' ')}`, `${BASE}&prompt=`,
  `${BASE}&prompt=${P('lorem ipsum '.repeat(400))}`,
];

test('more than a hundred hostile links: each settles with views or a clear message, and none is lost', async () => {
  const page = await browser.newPage();
  const errors = watch(page);
  let count = 0;
  // Links with `?` and `#` inside values open exactly: no correction, no extra history entry.
  for (const [q, prompt] of EXACT) {
    await page.goto(`${server.url}${q.startsWith('?') ? q : `?${q}`}`);
    const shown = await settle(page, q);
    assert.equal(shown.prompt, prompt, q);
    assert.equal(shown.tokens, prompt, `${q}: the strip shows the prompt`);
    assert.equal(shown.problems, '', `${q}: nothing to correct`);
    assert.equal(await page.evaluate(() => history.length), 2 + count, `${q}: no history entry added`);
    assert.equal(new URL(page.url()).search.replace(/^\?/, ''), openedQuery(q).replace(/^\?/, ''), `${q}: the address bar keeps the link`);
    count += 1;
  }
  for (const q of LOADED) {
    // A page of its own: Chromium keeps at most 50 history entries.
    const fresh = await browser.newPage();
    errors.push(...watch(fresh));
    await fresh.goto(`${server.url}?${q}`);
    const shown = await settle(fresh, q);
    if (shown.problems !== '') {
      // The corrected link is on top; the link as opened is one step back, unchanged.
      assert.equal(await fresh.evaluate(() => history.length), 3, `${q}: the original stays in history`);
      await fresh.goBack();
      const opened = openedQuery(q);
      assert.equal(new URL(fresh.url()).search, opened ? `?${opened}` : '', `${q}: back returns to the link as opened`);
      await fresh.goForward();
      await settle(fresh, `${q} (forward)`);
    } else {
      assert.equal(await fresh.evaluate(() => history.length), 2, `${q}: nothing to correct, no entry added`);
    }
    await fresh.close();
    count += 1;
  }
  // The problem banner is capped.
  await page.goto(`${server.url}?${LOADED.find((q) => q.includes('junk29'))}`);
  await settle(page, 'thirty unknown keys');
  assert.equal(await page.locator('[data-testid="problems"] li').count(), 21, '20 problems and "and N more"');
  assert.match(await page.locator('[data-testid="problems-more"]').textContent(), /and \d+ more/);
  await page.screenshot({ path: join(outDir, 'hostile-banner.png'), fullPage: true });
  // Invisible and direction-changing characters are shown as escapes, in tokens and messages.
  await page.goto(`${server.url}?${LOADED.find((q) => q.includes('%E2%80%AE=1'))}`);
  const shown = await settle(page, 'bidi');
  // (A BPE token may hold the character or only its bytes: either way it is written out.)
  assert.ok(/\\u\{202e\}|\\xe2\\x80\\xae/.test(shown.tokens), shown.tokens);
  assert.ok(!shown.tokens.includes('\u202E') && !shown.tokens.includes('\u200B'), shown.tokens);
  assert.ok(!shown.problems.includes('\u202E') && shown.problems.includes('\\u{202e}'), shown.problems);
  // The rest, through history navigation in the running page.
  for (const q of NAVIGATED) {
    await page.evaluate((url) => {
      history.pushState(null, '', url);
      dispatchEvent(new PopStateEvent('popstate'));
    }, `?${q}`);
    await settle(page, q);
    count += 1;
  }
  console.log(`${count} hostile links opened (${EXACT.length + LOADED.length} by page load, ${NAVIGATED.length} by navigation)`);
  assert.ok(count >= 100, `${count} links`);
  assert.deepEqual(errors, []);
  await page.close();
});

test('hostile postMessages: only the parent of an embedded view is heard, floods coalesce, caps hold, history stays', async () => {
  const q = `${BASE}&router=topk&k=2&embed=tokens&prompt=${P('The cat sat.')}`;
  const host = await serveDist(dist, { pages: { '/parent.html': parentPage(`${server.url}?${q}`), '/sibling.html': sibling } });
  const page = await browser.newPage();
  const errors = watch(page);
  try {
    await page.goto(`${host.origin}/parent.html`);
    const frame = page.frame({ name: 'target' });
    await frame.locator('[data-testid="token-strip"]').waitFor({ timeout: SLOW });
    await settle(frame, 'first view');
    const history0 = await page.evaluate(() => history.length);
    const send = async (message, what) => {
      await page.evaluate((m) => window.send(m), message);
      await page.waitForTimeout(250);
      return settle(frame, what);
    };
    let messages = 0;
    // From the parent: garbage that is not a set is ignored.
    for (const m of [null, 'switchyard:set', 42, [], { type: 'other', prompt: 'no' }, { prompt: 'no type' }, { type: 'switchyard:set' }]) {
      const shown = await send(m, JSON.stringify(m));
      assert.equal(shown.tokens, 'The cat sat.', `${JSON.stringify(m)} changes nothing`);
      messages += 1;
    }
    // A prompt; a query with a raw `#` in it; a query that tries to leave embed mode.
    assert.equal((await send({ type: 'switchyard:set', prompt: 'Le chat' }, 'prompt')).tokens, 'Le chat');
    let shown = await send({ type: 'switchyard:set', query: `${BASE}&router=thor&thor_mode=token&prompt=C#` }, 'query with #');
    assert.equal(shown.tokens, 'C#');
    shown = await send({ type: 'switchyard:set', query: `${BASE}&embed=grid&show=prompt,router&origin=https://evil.example&prompt=stay` }, 'embed change');
    assert.equal(shown.tokens, 'stay');
    assert.equal(await frame.locator('[data-testid="prompt"]').count(), 0, 'the parent cannot bring back the prompt editor');
    assert.ok(!new URL(frame.url()).searchParams.has('origin'), 'nor pin another origin');
    messages += 3;
    // Over the cap, or not a string: refused with problems, told to the parent too.
    for (const [m, why] of [
      [{ type: 'switchyard:set', prompt: 'z'.repeat(8001) }, 'at most 8000'],
      [{ type: 'switchyard:set', prompt: 42 }, 'must be a string'],
      [{ type: 'switchyard:set', query: { evil: 1 } }, 'must be a string'],
      [{ type: 'switchyard:set', query: `${BASE}&prompt=${'q'.repeat(9000)}` }, 'at most 8000'],
      [{ type: 'switchyard:set', query: `${BASE}&decode=sample&temperature=1e-38&gen=2&prompt=hot` }, 'from 0.01 to 100'],
      [{ type: 'switchyard:set', query: `${BASE}&ckpt=${P('../x')}&prompt=x` }, 'not a checkpoint name'],
      [{ type: 'switchyard:set', query: '%%%&&=&v=9' }, 'version'],
      [{ type: 'switchyard:set', query: `${BASE}&gen=99999&prompt=long` }, 'up to 32768'],
    ]) {
      const problems = await page.evaluate(() => window.problems.length);
      shown = await send(m, why);
      assert.match(shown.problems, new RegExp(why), `${why}: the embedded view says why`);
      assert.ok(await page.evaluate(() => window.problems.length) > problems, `${why}: the parent hears it`);
      messages += 1;
    }
    await send({ type: 'switchyard:set', query: `${BASE}&embed=tokens&prompt=before` }, 'reset');
    // A flood: two hundred sets in one burst end as the last one, in a few runs.
    const reports = await page.evaluate(() => window.reports.length);
    await page.evaluate(() => { for (let i = 0; i < 200; i += 1) window.send({ type: 'switchyard:set', prompt: `flood ${i}` }); });
    await page.waitForTimeout(400);
    shown = await settle(frame, 'flood');
    assert.equal(shown.tokens, 'flood 199');
    const runs = (await page.evaluate(() => window.reports.length)) - reports;
    assert.ok(runs >= 1 && runs <= 5, `the flood coalesced into ${runs} runs`);
    messages += 201;
    assert.equal(await page.evaluate(() => history.length), history0, 'no history entry per message');
    // From a sibling frame: ignored.
    for (const prompt of ['sibling 1', 'sibling 2', 'sibling 3']) {
      await page.frame({ name: 'sibling' }).evaluate((p) => window.attack({ type: 'switchyard:set', prompt: p }), prompt);
      await page.waitForTimeout(250);
      assert.equal((await settle(frame, prompt)).tokens, 'flood 199', `${prompt} is not the parent`);
      messages += 1;
    }
    // From the frame itself: not its parent either.
    await frame.evaluate(() => window.postMessage({ type: 'switchyard:set', prompt: 'self' }, '*'));
    await page.waitForTimeout(250);
    assert.equal((await settle(frame, 'self')).tokens, 'flood 199');
    messages += 1;
    console.log(`${messages} postMessages to an embedded view`);
    assert.ok(messages >= 20);
    await page.screenshot({ path: join(outDir, 'hostile-embed.png'), fullPage: true });
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
    host.close();
  }
});

test('a page that is not embedded ignores postMessage and tells nobody; an embed pinned to another origin tells only it', async () => {
  const page = await browser.newPage();
  const errors = watch(page);
  await page.goto(`${server.url}?${BASE}&prompt=${P('top window')}`);
  await settle(page, 'top');
  const history0 = await page.evaluate(() => history.length);
  for (const m of [{ type: 'switchyard:set', prompt: 'hijack' }, { type: 'switchyard:set', query: `${BASE}&prompt=hijack` },
    { type: 'switchyard:set', query: `${BASE}&embed=tokens&prompt=hijack` }]) {
    await page.evaluate((msg) => window.postMessage(msg, '*'), m);
    await page.waitForTimeout(300);
    assert.equal((await settle(page, 'top')).tokens, 'top window', 'a page that is not embedded does not listen');
  }
  assert.equal(await page.evaluate(() => history.length), history0);
  await page.close();
  // A full (not embedded) playground inside a frame reports nothing; an embedded one pinned to
  // another origin reports nothing to this parent; pinned to this parent's origin, it does.
  const pages = { '/sibling.html': sibling };
  const host = await serveDist(dist, { pages });
  pages['/full.html'] = parentPage(`${server.url}?${BASE}&prompt=framed`);
  pages['/wrong.html'] = parentPage(`${server.url}?${BASE}&embed=tokens&origin=${P('https://elsewhere.example')}&prompt=pinned`);
  pages['/right.html'] = parentPage(`${server.url}?${BASE}&embed=tokens&origin=${P(host.origin)}&prompt=pinned`);
  try {
    const heard = async (path) => {
      const p = await browser.newPage();
      errors.push(...watch(p));
      await p.goto(`${host.origin}${path}`);
      const frame = p.frame({ name: 'target' });
      await frame.locator('[data-testid="token-strip"]').waitFor({ timeout: SLOW });
      await settle(frame, path);
      await p.waitForTimeout(300);
      const n = await p.evaluate(() => window.reports.length);
      await p.close();
      return n;
    };
    assert.equal(await heard('/full.html'), 0, 'not embedded: no reports');
    assert.equal(await heard('/wrong.html'), 0, 'pinned elsewhere: no reports here');
    assert.ok(await heard('/right.html') >= 1, 'pinned to this parent: it hears the routing');
  } finally {
    host.close();
  }
  assert.deepEqual(errors, []);
});

test('the engine: a link that crashes it is not replayed in a loop; restarts are bounded; Run recovers', async () => {
  const page = await browser.newPage();
  const errors = watch(page);
  await page.goto(`${server.url}?${BASE}&router=topk&k=2&prompt=${P('The cat sat on the mat.')}`);
  const first = await settle(page, 'first');
  // From now on every run kills the worker, as a link that crashes the engine would.
  await page.evaluate(() => window.switchyardCrashOnRun(true));
  await page.locator('[data-testid="router"]').selectOption('hash');
  const banner = page.locator('[data-testid="crashed"]');
  await page.locator('[data-testid="crashed-run"]').waitFor({ timeout: SLOW });
  assert.match(await banner.textContent(), /stopped the engine again/);
  // It stays stopped: no restart loop replays the link.
  await page.waitForTimeout(3000);
  assert.match(await banner.textContent(), /stopped the engine again/);
  assert.equal(await page.locator('[data-testid="prompt"]').inputValue(), 'The cat sat on the mat.', 'the prompt is kept');
  await page.screenshot({ path: join(outDir, 'hostile-crash-loop.png'), fullPage: true });
  // Run it once more (it still crashes): stopped again; once more: the page stops restarting.
  const runAgain = async (expect) => {
    await page.locator('[data-testid="crashed-run"]').click();
    await page.waitForFunction((re) => new RegExp(re).test(document.querySelector('[data-testid="crashed"]')?.textContent ?? ''), expect, { timeout: SLOW });
  };
  await runAgain('stopped the engine again');
  await runAgain('not restarted by itself');
  await page.locator('[data-testid="crashed-restart"]').waitFor();
  await page.evaluate(() => window.switchyardCrashOnRun(false));
  await page.locator('[data-testid="crashed-restart"]').click();
  await page.locator('[data-testid="loaded"]').waitFor({ timeout: SLOW });
  await page.locator('[data-testid="run"]').click();
  const after = await settle(page, 'after the restart');
  assert.equal(after.tokens, first.tokens, 'the same text routes again');
  assert.equal(await page.locator('[data-testid="crashed"]').count(), 0, 'a finished run clears the banner');
  assert.deepEqual(errors, []);
  await page.close();
});

test('downloads: a stalled one stops with Retry and never blocks a loaded model; a stale cached copy is replaced for a pinned hash', async () => {
  const stallOnce = new Set(['thor.safetensors', 'smoe-dropout.safetensors']);
  const sub = await serveDist(dist, { stallOnce });
  const context = await launch();
  try {
    const page = await context.newPage();
    const errors = watch(page);
    await page.goto(`${sub.url}?${BASE}&router=topk&k=2&prompt=${P('Hello there.')}`);
    const topk = await settle(page, 'topk');
    // Switching to a checkpoint whose download stalls, then straight back: the loaded model runs.
    await page.locator('[data-testid="checkpoint"]').selectOption('smoe-dropout');
    await page.locator('[data-testid="loading"]').waitFor();
    const t0 = Date.now();
    await page.locator('[data-testid="checkpoint"]').selectOption('topk');
    const back = await settle(page, 'back to topk');
    assert.equal(back.tokens, topk.tokens);
    console.log(`switching back during a stalled download: views again after ${Date.now() - t0} ms`);
    assert.ok(Date.now() - t0 < 10_000);
    // A stalled download stops with a message and Retry.
    await page.locator('[data-testid="checkpoint"]').selectOption('thor');
    const error = page.locator('[data-testid="load-error"]');
    await error.waitFor({ timeout: 40_000 });
    assert.match(await error.textContent(), /stalled/);
    await page.locator('[data-testid="retry"]').click();
    await settle(page, 'thor after Retry');
    assert.match(await page.locator('[data-testid="loaded"]').textContent(), /^thor/);
    // Rapid switches: the last one wins and no stale load reports an error.
    for (const name of ['topk', 'smoe-dropout', 'thor', 'seed-init', 'topk']) {
      await page.locator('[data-testid="checkpoint"]').selectOption(name);
    }
    await settle(page, 'rapid switches');
    assert.match(await page.locator('[data-testid="loaded"]').textContent(), /^topk/);
    assert.equal(await page.locator('[data-testid="load-error"]').count(), 0);
    // A stale cached copy (another checkpoint's bytes under topk's name) is used as it is...
    const hash = (await page.locator('[data-testid="loaded"]').textContent()).match(/\(([0-9a-f]{10})…\)/)[1];
    await page.evaluate(async () => {
      const cache = (await caches.keys()).find((k) => k.startsWith('switchyard-assets-'));
      const c = await caches.open(cache);
      await c.put(new URL('assets/topk.safetensors', location.href), await fetch('assets/thor.safetensors'));
    });
    await page.goto(`${sub.url}?${BASE}&router=topk&k=2&prompt=x`);
    await settle(page, 'stale cache');
    assert.doesNotMatch(await page.locator('[data-testid="loaded"]').textContent(), new RegExp(hash));
    // ...but a link that pins topk's hash replaces it with a fresh download.
    await page.goto(`${sub.url}?${BASE}&ckpt_hash=${hash}&router=topk&k=2&prompt=x`);
    await settle(page, 'pinned');
    const loaded = await page.locator('[data-testid="loaded"]').textContent();
    assert.match(loaded, new RegExp(`${hash}.*downloaded`), loaded);
    assert.equal(await page.locator('[data-testid="run-error"]').count(), 0);
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
    sub.close();
  }
});

test('a first visit to a clean static host requests nothing that fails', async () => {
  const sub = await serveDist(dist);
  const context = await launch();
  try {
    const page = await context.newPage();
    const errors = watch(page, { console: true });
    const failed = [];
    page.on('requestfailed', (r) => failed.push(r.url()));
    await page.goto(sub.url);
    await settle(page, 'first visit');
    await page.waitForTimeout(500);
    assert.deepEqual(sub.requests.filter((r) => r.status >= 400), [], 'no 404 (a favicon included)');
    assert.deepEqual(failed, []);
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
    sub.close();
  }
});
