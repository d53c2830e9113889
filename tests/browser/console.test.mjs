// Drives Debian's Chromium against a live Berth: a portal page on another origin
// (fetch with a bearer, EventSource with a ticket), an unlisted origin (refused by CORS),
// and the built-in console (pull progress to 100%, a terminal running `echo hi`).
// Environment (from scripts/browser.sh): BERTH_URL, TOKEN, PORTAL_PORT, OTHER_PORT, IMAGE, SHOT.
import http from 'node:http';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const { BERTH_URL, TOKEN, PORTAL_PORT, OTHER_PORT, IMAGE, SHOT } = process.env;
const t0 = Date.now();
const step = (s) => console.log(`[browser ${((Date.now() - t0) / 1000).toFixed(1)}s] ${s}`);

const page = '<!doctype html><title>portal</title><p>portal</p>';
const serve = (port) => new Promise((ok) => {
  const s = http.createServer((_, res) => { res.writeHead(200, { 'content-type': 'text/html' }); res.end(page); });
  s.listen(Number(port), '127.0.0.1', () => ok(s));
});
const servers = [await serve(PORTAL_PORT), await serve(OTHER_PORT)];

async function api(method, path, body) {
  const res = await fetch(BERTH_URL + path, { method, headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' }, body: body && JSON.stringify(body) });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

// 0. Serving: redirect, content types, caching, a problem for a missing file.
{
  const r = await fetch(`${BERTH_URL}/ui`, { redirect: 'manual' });
  assert.equal(r.status, 301); assert.equal(r.headers.get('location'), '/ui/');
  const types = { '/ui/': 'text/html', '/ui/app.js': 'text/javascript', '/ui/console.css': 'text/css', '/ui/vendor/xterm/xterm.mjs': 'text/javascript' };
  for (const [path, type] of Object.entries(types)) {
    const res = await fetch(BERTH_URL + path);
    assert.equal(res.status, 200, path); assert.ok(res.headers.get('content-type').startsWith(type), `${path}: ${res.headers.get('content-type')}`);
    assert.equal(res.headers.get('cache-control'), path.includes('/vendor/') ? 'public, max-age=3600' : 'no-cache', path);
    const again = await fetch(BERTH_URL + path, { headers: { 'If-None-Match': res.headers.get('etag') } });
    assert.equal(again.status, 304, path);
  }
  const missing = await fetch(`${BERTH_URL}/ui/nope.js`);
  assert.equal(missing.status, 404);
  assert.equal((await missing.json()).code, 'not_found');
  step('serving: /ui redirects, content types, Cache-Control, ETag 304, 404 problem');
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium', headless: true,
  args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-gpu', '--no-first-run'],
});
let container;
try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const tab = await ctx.newPage();
  tab.on('console', (m) => m.type() === 'error' && console.log('  page error:', m.text()));

  // 1. The portal origin: a bearer fetch, then a pull followed by EventSource with a ticket.
  await tab.goto(`http://127.0.0.1:${PORTAL_PORT}/`);
  const listed = await tab.evaluate(async ({ url, token }) => {
    const res = await fetch(`${url}/v1/containers`, { headers: { Authorization: `Bearer ${token}` } });
    const body = await res.json();
    return { status: res.status, isArray: Array.isArray(body) };
  }, { url: BERTH_URL, token: TOKEN });
  assert.deepEqual(listed, { status: 200, isArray: true });
  step('portal fetch with a bearer: 200, an array');

  const events = await tab.evaluate(async ({ url, token, image }) => {
    const call = async (path, body) => {
      const res = await fetch(url + path, { method: 'POST', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
      if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
      return res.json();
    };
    const job = await call('/v1/images/pull', { image });
    const path = `/v1/jobs/${job.id}/events`;
    const { ticket } = await call('/v1/tickets', { path });
    return await new Promise((ok, fail) => {
      const seen = [];
      const es = new EventSource(`${url}${path}?ticket=${encodeURIComponent(ticket)}`);
      for (const name of ['state', 'progress', 'layer', 'log', 'result', 'error']) es.addEventListener(name, () => seen.push(name));
      es.addEventListener('end', (e) => { es.close(); seen.push('end'); ok({ seen, end: JSON.parse(e.data) }); });
      es.onerror = () => { es.close(); fail(new Error(`EventSource failed after ${seen.join(',')}`)); };
      setTimeout(() => fail(new Error('no end in 60 s')), 60000);
    });
  }, { url: BERTH_URL, token: TOKEN, image: IMAGE });
  assert.equal(events.seen.at(-1), 'end');
  assert.ok(events.seen.includes('result'), `events: ${events.seen}`);
  assert.equal(events.end.state, 'succeeded');
  step(`portal EventSource with a ticket: ${events.seen.length} events to end (${events.end.state})`);

  // 2. An unlisted origin: the browser blocks the response.
  const other = await ctx.newPage();
  await other.goto(`http://127.0.0.1:${OTHER_PORT}/`);
  const blocked = await other.evaluate(async ({ url, token }) => {
    try { const r = await fetch(`${url}/v1/containers`, { headers: { Authorization: `Bearer ${token}` } }); return `not blocked: ${r.status}`; }
    catch (e) { return `${e.name}: ${e.message}`; }
  }, { url: BERTH_URL, token: TOKEN });
  assert.match(blocked, /^TypeError: Failed to fetch/);
  step(`unlisted origin refused (${blocked})`);
  await other.close();

  // 3. The console: a pull's progress bar reaching 100%.
  await api('DELETE', `/v1/images/${encodeURIComponent(IMAGE)}?force=true`);
  await tab.goto(`${BERTH_URL}/ui/#token=${TOKEN}`);
  await tab.waitForSelector('#jobs');
  assert.equal(new URL(tab.url()).hash, '#/jobs', 'the token is removed from the address bar');
  await tab.click('nav a[data-nav=images]');
  await tab.fill('#pull input[name=image]', IMAGE);
  await tab.click('#pull button');
  await tab.waitForFunction(() => document.querySelector('#overall')?.getAttribute('aria-valuenow') === '100', null, { timeout: 60000 });
  assert.equal(await tab.$eval('#overall', (el) => el.value), 100);
  await tab.waitForSelector('#result:not(:empty)');
  step('console pull: progress bar at 100%');
  await tab.screenshot({ path: SHOT, fullPage: true });
  await tab.click('nav a[data-nav=jobs]');
  await tab.waitForSelector('#jobs tbody tr');
  assert.equal(await tab.textContent('#live'), 'live');

  // 4. A terminal: exec into a container started through the API, type, read the buffer.
  const run = await api('POST', '/v1/containers', { image: 'berth-test/busybox:latest', cmd: ['sleep', '300'], labels: { 'berth-browser-test': String(process.pid) } });
  for (let i = 0; i < 60 && !container; i++) {
    const job = await api('GET', `/v1/jobs/${run.id}`);
    container = job.result?.container_id;
    if (!container) await new Promise((r) => setTimeout(r, 500));
  }
  assert.ok(container, 'the run job made a container');
  await tab.goto(`${BERTH_URL}/ui/#/exec/${container}`);
  await tab.waitForFunction(() => document.querySelector('#term-status')?.textContent === 'connected', null, { timeout: 20000 });
  await tab.click('#terminal');
  await tab.keyboard.type('echo h""i\n');
  await tab.waitForFunction(() => {
    const b = window.berthTerminal?.buffer.active;
    if (!b) return false;
    for (let i = 0; i < b.length; i++) if (b.getLine(i)?.translateToString(true).trim() === 'hi') return true;
    return false;
  }, null, { timeout: 20000 });
  step('console terminal: `echo hi` printed hi');
} finally {
  if (container) await api('DELETE', `/v1/containers/${container}?force=true`).catch((e) => console.log(e.message));
  await browser.close();
  for (const s of servers) s.close();
}
step('all passed');
