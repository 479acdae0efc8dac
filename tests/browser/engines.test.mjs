// Which engine module a visit downloads and runs: the CPU engine by default, never the WebGPU
// engine without an adapter or with backend=cpu; backend=webgpu forces WebGPU; with an adapter
// and backend=auto the page measures both engines on the checkpoint and keeps the faster one
// (on this machine the adapter is SwiftShader, so the CPU), saying so in the header.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { serveDist } from './serve.mjs';
import { dist, launch, outDir, SLOW } from './harness.mjs';

const contexts = [];

const servers = [];

after(async () => {
  for (const c of contexts) await c.close();
  for (const s of servers) s.close();
});

async function visit(flags, query) {
  const server = await serveDist(dist);
  servers.push(server);
  // The path is this test's subject: its own flags, no forced backend.
  const context = await launch({ path: 'cpu', flags });
  contexts.push(context);
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${server.url}?v=1&ckpt=topk&router=topk&k=2&prompt=${encodeURIComponent('The cat sat on the mat.')}${query}`);
  await page.locator('[data-testid="token"]').first().waitFor({ timeout: SLOW });
  const engines = () => [...new Set(server.requests.map((r) => r.path).filter((p) => p.includes('switchyard-engine')).map((p) => p.split('_')[0].replace('.js', '')))].sort();
  return { page, errors, engines, server };
}

const badge = (page) => page.locator('[data-testid="backend"] .badge').textContent();

test('a CPU-path visit never downloads the WebGPU engine; backend= forces the path', async () => {
  // No adapter (WebGPU off): the CPU engine alone, and the page says why.
  let v = await visit([], '');
  await v.page.waitForTimeout(1500);
  assert.equal(await badge(v.page), 'CPU');
  assert.match(await v.page.locator('[data-testid="backend-notice"]').textContent(), /navigator\.gpu|no adapter/);
  assert.deepEqual(v.engines(), ['/switchyard-engine-cpu'], 'only the CPU engine is requested');
  assert.deepEqual(v.errors, []);
  v.server.close();
  // An adapter, but backend=cpu: nothing about WebGPU is touched.
  v = await visit(['--enable-unsafe-webgpu'], '&backend=cpu');
  await v.page.waitForTimeout(3000);
  assert.equal(await badge(v.page), 'CPU');
  assert.match(await v.page.locator('[data-testid="backend-notice"]').textContent(), /backend=cpu/);
  assert.deepEqual(v.engines(), ['/switchyard-engine-cpu']);
  v.server.close();
  // backend=webgpu: the WebGPU engine only.
  v = await visit(['--enable-unsafe-webgpu'], '&backend=webgpu');
  assert.equal(await badge(v.page), 'WEBGPU');
  assert.deepEqual(v.engines(), ['/switchyard-engine-webgpu']);
  assert.equal(await v.page.locator('[data-testid="backend-choice"]').inputValue(), 'webgpu');
  assert.deepEqual(v.errors, []);
  v.server.close();
});

test('backend=auto with an adapter measures both engines and keeps the faster one, saying why', async () => {
  const v = await visit(['--enable-unsafe-webgpu'], '');
  const notice = v.page.locator('[data-testid="backend-notice"]', { hasText: 'measured on this model' });
  await notice.waitFor({ timeout: SLOW });
  const text = await notice.textContent();
  console.log(`calibration: ${text}`);
  const [cpu, gpu] = [...text.matchAll(/(CPU|WebGPU) (\d+) ms/g)].map((m) => Number(m[2]));
  assert.ok(cpu > 0 && gpu > 0, text);
  const chosen = await badge(v.page);
  assert.equal(chosen, cpu <= gpu ? 'CPU' : 'WEBGPU', `the faster engine runs: ${text}`);
  assert.deepEqual(v.engines(), ['/switchyard-engine-cpu', '/switchyard-engine-webgpu'], 'both were started to measure');
  await v.page.screenshot({ path: join(outDir, 'engines-calibrated.png') });
  // The views still route as before once the choice is made.
  assert.ok((await v.page.locator('[data-testid="token"]').count()) > 3);
  assert.deepEqual(v.errors, []);
  v.server.close();
});

test('the engine follows a link\'s backend= through history, not only the picker', async () => {
  const v = await visit(['--enable-unsafe-webgpu'], '&backend=cpu');
  assert.equal(await badge(v.page), 'CPU');
  // Back/forward to a link that forces WebGPU moves the engine there, and back again to the CPU.
  const go = (backend) => v.page.evaluate((b) => {
    const url = new URL(location.href);
    url.searchParams.set('backend', b);
    history.pushState(null, '', url);
    dispatchEvent(new PopStateEvent('popstate'));
  }, backend);
  await go('webgpu');
  await v.page.locator('[data-testid="backend"] .badge', { hasText: 'WEBGPU' }).waitFor({ timeout: SLOW });
  await v.page.locator('[data-testid="token"]').first().waitFor({ timeout: SLOW });
  assert.ok(v.engines().includes('/switchyard-engine-webgpu'), 'the WebGPU engine was started');
  await go('cpu');
  await v.page.locator('[data-testid="backend"] .badge', { hasText: 'CPU' }).waitFor({ timeout: SLOW });
  assert.deepEqual(v.errors, []);
  v.server.close();
});
