// A static file server for the trunk build in dist/, on a free loopback port.
// Options: `prefix` serves the site under a sub-path (as a static host may); `corruptOnce` is a
// set of file names whose next download is cut short and garbled, to test the page's recovery;
// `stallOnce` is a set of file names whose next download sends its headers and first bytes and
// then nothing (a stalled connection); `pages` maps extra paths to HTML the tests write (parent
// pages for embedding); `cors` lets any origin read the files (another static host). Every
// request is recorded with its status in `requests`.
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { basename, extname, join, normalize } from 'node:path';

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript',
  '.wasm': 'application/wasm',
  '.css': 'text/css',
  '.json': 'application/json',
  '.png': 'image/png',
  '.safetensors': 'application/octet-stream',
};

export async function serveDist(dir, { prefix = '/', corruptOnce = new Set(), stallOnce = new Set(), pages = {}, cors = false } = {}) {
  const served = [];
  const requests = [];
  const stalled = [];
  const server = createServer(async (req, res) => {
    let path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    const answer = (status, type, body) => {
      requests.push({ path, status });
      const allow = cors ? { 'access-control-allow-origin': '*' } : {};
      res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), ...allow });
      res.end(body);
    };
    if (pages[path] !== undefined) return answer(200, TYPES['.html'], pages[path]);
    if (!path.startsWith(prefix)) return answer(404, 'text/plain', 'not found');
    path = normalize(`/${path.slice(prefix.length)}`).replace(/^(\.\.[/\\])+/, '');
    const file = join(dir, path.endsWith('/') ? `${path}index.html` : path);
    try {
      let body = await readFile(file);
      served.push(path);
      if (corruptOnce.delete(basename(file))) {
        body = Buffer.from(body.subarray(0, 4096)).fill(7, 100);
      }
      if (stallOnce.delete(basename(file))) {
        requests.push({ path, status: 200, stalled: true });
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length, ...(cors ? { 'access-control-allow-origin': '*' } : {}) });
        res.write(body.subarray(0, 65536));
        stalled.push(res);
        return; // and never another byte
      }
      answer(200, TYPES[extname(file)] ?? 'application/octet-stream', body);
    } catch {
      answer(404, 'text/plain', 'not found');
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}${prefix}`,
    origin: `http://127.0.0.1:${server.address().port}`,
    served,
    requests,
    close: () => {
      for (const res of stalled) res.destroy();
      server.close();
    },
  };
}
