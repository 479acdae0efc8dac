// Where the page's time goes (not a test: it prints profiles). Run after a trunk build, ideally
// one with function names kept (SWITCHYARD_KEEP_NAMES=1 trunk build --release):
//   node tests/browser/profile.mjs
// Records V8 CPU profiles of the page's main thread and of the engine worker, through the
// Chrome DevTools Protocol, while the page (CPU path) does two things the benchmark times:
// a router change with 256 tokens, and decoding 240 tokens. Prints the functions with the most
// self time in each thread, and the share of time each thread was idle.
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { serveDist } from './serve.mjs';
import { BASE_FLAGS, CHROMIUM, dist, firstSeen, watchFirstSeen } from './harness.mjs';

const TOP = Number(process.env.PROFILE_TOP ?? 25);
const PROSE = 'The harbour was quiet in the early morning, and the fishing boats rocked gently against the old stone wall while gulls circled above the market. ';

/** A DevTools session of one target (the page, the engine worker), through the browser's. */
class ChildSession {
  constructor(cdp, sessionId) {
    this.cdp = cdp;
    this.sessionId = sessionId;
    this.next = 1;
    this.waiting = new Map();
    cdp.on('Target.receivedMessageFromTarget', (e) => {
      if (e.sessionId !== sessionId) return;
      const msg = JSON.parse(e.message);
      const done = this.waiting.get(msg.id);
      if (done) { this.waiting.delete(msg.id); done(msg); }
    });
  }
  send(method, params = {}) {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, (msg) => (msg.error ? reject(new Error(msg.error.message)) : resolve(msg.result)));
      this.cdp.send('Target.sendMessageToTarget', { sessionId: this.sessionId, message: JSON.stringify({ id, method, params }) });
    });
  }
}

/** Self time per function name (ms), and the idle share, of a V8 CPU profile. */
function summarise(profile) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  const dt = profile.timeDeltas;
  let total = 0;
  profile.samples.forEach((id, i) => {
    const n = byId.get(id);
    const f = n.callFrame;
    const name = f.functionName || `(anonymous ${f.url.split('/').pop()}:${f.lineNumber})`;
    const ms = (dt[i] ?? 0) / 1000;
    total += ms;
    self.set(name, (self.get(name) ?? 0) + ms);
  });
  const rows = [...self.entries()].sort((a, b) => b[1] - a[1]);
  return { total, idle: self.get('(idle)') ?? 0, rows };
}

function print(title, s) {
  const busy = s.total - s.idle;
  console.log(`\n### ${title}: ${s.total.toFixed(0)} ms sampled, ${busy.toFixed(0)} ms busy (${(100 * busy / s.total).toFixed(0)} %)`);
  console.log('| self ms | % of busy | function |\n|---:|---:|---|');
  for (const [name, ms] of s.rows.filter(([n]) => n !== '(idle)').slice(0, TOP)) {
    console.log(`| ${ms.toFixed(1)} | ${(100 * ms / busy).toFixed(1)} | ${name.replace(/\|/g, '\\|').slice(0, 150)} |`);
  }
}

const server = await serveDist(dist);
const browser = await chromium.launch({
  executablePath: CHROMIUM, headless: true, args: BASE_FLAGS,
});
const context = await browser.newContext();
const page = await context.newPage();
page.on('crash', () => console.log('the page crashed'));
page.on('pageerror', (e) => console.log('page error', String(e).slice(0, 300)));
const root = await browser.newBrowserCDPSession();

/** The page, or the engine worker as it is now (a navigation starts a new one). */
async function attach(type) {
  const { targetInfos } = await root.send('Target.getTargets');
  const target = targetInfos.filter((t) => t.type === type && (type === 'page' || t.url.includes('engine'))).pop();
  if (!target) throw new Error(`no ${type} among ${targetInfos.map((t) => `${t.type} ${t.url}`).join(', ')}`);
  const { sessionId } = await root.send('Target.attachToTarget', { targetId: target.targetId, flatten: false });
  return new ChildSession(root, sessionId);
}
// The first view, warm (modules in the HTTP cache, the checkpoint in the Cache API): the
// page's own timeline (navigation, its resources, when the controls and the first token strip
// appeared) and the engine worker's (its module, the `engine: …` marks), on one clock.
await watchFirstSeen(page, [['controls painted', '[data-testid="prompt"]'], ['first token strip', '[data-testid="token"]']]);
async function firstView(url) {
  await page.goto(url);
  await page.locator('[data-testid="token"]').first().waitFor({ timeout: 120_000 });
  const pageSide = await page.evaluate(() => ({
    origin: performance.timeOrigin,
    nav: performance.getEntriesByType('navigation').map((e) => ({ responseEnd: e.responseEnd, domContentLoaded: e.domContentLoadedEventEnd }))[0],
    resources: performance.getEntriesByType('resource').map((e) => ({ name: e.name.split('/').pop().split('?')[0], start: e.startTime, end: e.responseEnd })),
  }));
  const seen = await firstSeen(page);
  const { result } = await (await attach('worker')).send('Runtime.evaluate', { returnByValue: true, expression: `({ origin: performance.timeOrigin,
    marks: performance.getEntriesByType('mark').map((e) => ({ name: e.name, at: e.startTime })),
    resources: performance.getEntriesByType('resource').map((e) => ({ name: e.name.split('/').pop().split('?')[0], start: e.startTime, end: e.responseEnd })) })` });
  const worker = result.value;
  const shift = worker.origin - pageSide.origin;
  const rows = [['page: navigation response', pageSide.nav.responseEnd], ['page: DOMContentLoaded', pageSide.nav.domContentLoaded]];
  for (const r of pageSide.resources.filter((r) => /\.(wasm|js)$/.test(r.name))) rows.push([`page: fetched ${r.name} (from ${r.start.toFixed(0)} ms)`, r.end]);
  for (const [name, at] of Object.entries(seen)) rows.push([`page: ${name}`, at]);
  rows.push(['worker: created', shift]);
  for (const r of worker.resources) rows.push([`worker: fetched ${r.name} (from ${(r.start + shift).toFixed(0)} ms)`, r.end + shift]);
  for (const m of worker.marks) rows.push([`worker: ${m.name}`, m.at + shift]);
  rows.sort((a, b) => a[1] - b[1]);
  console.log('\n## first view, warm cache: ms after navigation start');
  console.log('| ms | event |\n|---:|---|');
  for (const [name, at] of rows) console.log(`| ${at.toFixed(0)} | ${name} |`);
}

const idle = () => page.waitForFunction(() => !document.querySelector('[data-testid="speed"]').textContent.includes('running'), null, { timeout: 120_000 });
const base = `${server.url}?v=1&ckpt=topk&router=topk&k=2`;
const prompt256 = PROSE.repeat(8).slice(0, 740);
const prompt128 = `${base}&prompt=${encodeURIComponent(PROSE.repeat(4).slice(0, 370))}`;
await page.goto(prompt128); // cold: fills the HTTP cache and the Cache API
await page.locator('[data-testid="token"]').first().waitFor({ timeout: 120_000 });
await firstView(prompt128);
await page.goto(`${base}&prompt=${encodeURIComponent(prompt256)}`);
await page.locator('[data-testid="token"]').first().waitFor({ timeout: 120_000 });
await idle();

/** Profiles both threads while `act` runs, `reps` times after one warm-up. */
async function profiled(title, act, reps) {
  await act();
  const [cdp, worker] = [await attach('page'), await attach('worker')];
  console.log(`\n## ${title} (${await page.locator('[data-testid="speed"]').getAttribute('data-tokens')} tokens in the view)`);
  for (const s of [cdp, worker]) {
    await s.send('Profiler.enable');
    await s.send('Profiler.setSamplingInterval', { interval: 200 });
    await s.send('Profiler.start');
  }
  const t0 = Date.now();
  for (let i = 0; i < reps; i++) await act(i);
  const wall = Date.now() - t0;
  const [main, engine] = [(await cdp.send('Profiler.stop')).profile, (await worker.send('Profiler.stop')).profile];
  console.log(`${reps} times in ${wall} ms`);
  print('page main thread', summarise(main));
  print('engine worker', summarise(engine));
}

const changeRouter = async (i = 0) => {
  await page.selectOption('[data-testid="router"]', i % 2 === 0 ? 'hash' : 'topk');
  await idle();
};
await profiled('router change, 256 tokens', changeRouter, 6);

await page.goto(`${base}&gen=240&seed=0&prompt=${encodeURIComponent('The harbour was')}`);
await page.locator('[data-testid="token"]').first().waitFor({ timeout: 120_000 });
await idle();
const decodeAgain = async () => {
  const before = await page.locator('[data-testid="speed"]').getAttribute('data-run-ms');
  await page.locator('[data-testid="run"]').click();
  await page.waitForFunction((b) => { const s = document.querySelector('[data-testid="speed"]'); return !s.textContent.includes('running') && s.dataset.runMs !== b; }, before, { timeout: 120_000 });
  console.log(`decode: ${await page.locator('[data-testid="speed"]').getAttribute('data-tokens-per-s')} tok/s`);
};
await profiled('decode, 240 tokens', decodeAgain, 4);
await browser.close();
server.close();
