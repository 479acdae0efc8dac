// A static file server for the trunk build in dist/, on a free loopback port.
// Options: `prefix` serves the site under a sub-path (as a static host may); `corruptOnce` is a
// set of file names whose next download is cut short and garbled, to test the page's recovery.
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

export async function serveDist(dir, { prefix = '/', corruptOnce = new Set() } = {}) {
  const served = [];
  const server = createServer(async (req, res) => {
    let path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    if (!path.startsWith(prefix)) {
      res.writeHead(404);
      res.end('not found');
      return;
    }
    path = normalize(`/${path.slice(prefix.length)}`).replace(/^(\.\.[/\\])+/, '');
    const file = join(dir, path.endsWith('/') ? `${path}index.html` : path);
    try {
      let body = await readFile(file);
      served.push(path);
      if (corruptOnce.delete(basename(file))) {
        body = Buffer.from(body.subarray(0, 4096)).fill(7, 100);
      }
      res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream', 'content-length': body.length });
      res.end(body);
    } catch {
      res.writeHead(404);
      res.end('not found');
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${server.address().port}${prefix}`, served, close: () => server.close() };
}
