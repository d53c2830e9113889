// Drives Debian's Chromium against a live Berth: a portal page on another origin
// (fetch with a bearer, EventSource with a ticket), an unlisted origin (refused by CORS),
// and the built-in console: a pull's overall and per-layer bars to 100%, a build from an
// uploaded context with its steps, a job canceled from its page, a container's live logs,
// stop and remove from the containers table, and terminals on exec (`echo hi`) and attach.
// Environment (from scripts/browser.sh): BERTH_URL, TOKEN, PORTAL_PORT, OTHER_PORT, IMAGE,
// CONTEXT (a tar), BUILD_TAG, SHOT.
import http from 'node:http';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const { BERTH_URL, TOKEN, PORTAL_PORT, OTHER_PORT, IMAGE, CONTEXT, BUILD_TAG, SHOT } = process.env;
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
const made = [];
const waitJob = async (id, pred) => {
  for (let i = 0; i < 120; i++) {
    const job = await api('GET', `/v1/jobs/${id}`);
    if (pred(job)) return job;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`job ${id}: not there in 30 s`);
};
const runContainer = async (spec) => {
  const run = await api('POST', '/v1/containers', { image: 'berth-test/busybox:latest', labels: { 'berth-browser-test': String(process.pid) }, ...spec });
  const job = await waitJob(run.id, (j) => j.result?.container_id || ['failed', 'canceled'].includes(j.state));
  assert.ok(job.result?.container_id, `the run job made a container: ${JSON.stringify(job)}`);
  made.push(job.result.container_id);
  return job.result.container_id;
};
const terminalHas = (text) => tab.waitForFunction((want) => {
  const b = window.berthTerminal?.buffer.active;
  if (!b) return false;
  for (let i = 0; i < b.length; i++) if (b.getLine(i)?.translateToString(true).trim() === want) return true;
  return false;
}, text, { timeout: 20000 });
let tab;
try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  tab = await ctx.newPage();
  tab.on('dialog', (d) => d.accept());
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
  const layers = await tab.$$eval('#layers progress[data-layer]', (els) => els.map((e) => e.value));
  assert.ok(layers.length >= 1, 'one bar per layer');
  assert.ok(layers.every((v) => v === 100), `every layer bar at 100: ${layers}`);
  step(`console pull: progress bar at 100%, ${layers.length} layer bar(s) at 100%`);
  await tab.screenshot({ path: SHOT, fullPage: true });
  await tab.click('nav a[data-nav=jobs]');
  await tab.waitForSelector('#jobs tbody tr');
  // The live feed reconnects when the page comes back to the jobs: live within seconds.
  await tab.waitForFunction(() => document.querySelector('#live')?.textContent === 'live', null, { timeout: 10000 });
  assert.equal(await tab.textContent('#live'), 'live');

  // 4. A terminal: exec into a container started through the API, type, read the buffer.
  container = await runContainer({ cmd: ['sh', '-c', 'trap "exit 0" TERM; while :; do echo tick; sleep 0.5; done'] });
  await tab.goto(`${BERTH_URL}/ui/#/exec/${container}`);
  await tab.waitForFunction(() => document.querySelector('#term-status')?.textContent === 'connected', null, { timeout: 20000 });
  await tab.click('#terminal');
  await tab.keyboard.type('echo h""i\n');
  await terminalHas('hi');
  step('console terminal: `echo hi` printed hi');

  // 5. Live logs of that container: lines keep arriving.
  await tab.goto(`${BERTH_URL}/ui/#/containers/${container}/logs`);
  await tab.waitForFunction(() => (document.querySelector('#log')?.textContent.match(/tick/g) || []).length >= 3, null, { timeout: 20000 });
  const before = await tab.$eval('#log', (el) => (el.textContent.match(/tick/g) || []).length);
  await tab.waitForFunction((n) => (document.querySelector('#log')?.textContent.match(/tick/g) || []).length > n, before, { timeout: 20000 });
  step('console logs: live lines arriving');

  // 6. The containers table: stop, then remove (its confirm dialog accepted).
  await tab.goto(`${BERTH_URL}/ui/#/containers`);
  const row = `#containers tr[data-container="${container}"]`;
  await tab.waitForSelector(`${row} [data-state=running]`);
  await tab.click(`${row} button:text-is("stop")`);
  await tab.waitForSelector(`${row} [data-state=exited]`, { timeout: 30000 });
  assert.equal((await api('GET', `/v1/containers/${container}`)).State.Running, false);
  await tab.click(`${row} button:text-is("remove")`);
  await tab.waitForSelector(row, { state: 'detached', timeout: 20000 });
  const gone = await fetch(`${BERTH_URL}/v1/containers/${container}`, { headers: { Authorization: `Bearer ${TOKEN}` } });
  assert.equal(gone.status, 404);
  step('console containers: stop, then remove');

  // 7. Attach: a terminal on a container's own TTY.
  const tty = await runContainer({ cmd: ['sh'], tty: true, open_stdin: true });
  await tab.goto(`${BERTH_URL}/ui/#/attach/${tty}`);
  await tab.waitForFunction(() => document.querySelector('#term-status')?.textContent === 'connected', null, { timeout: 20000 });
  await tab.click('#terminal');
  await tab.keyboard.type('echo a""b\n');
  await terminalHas('ab');
  step('console attach: `echo ab` printed ab');

  // 8. A build from an uploaded context: steps listed, the job succeeds.
  await tab.goto(`${BERTH_URL}/ui/#/images`);
  await tab.setInputFiles('#build input[name=context]', CONTEXT);
  await tab.fill('#build input[name=tag]', BUILD_TAG);
  await tab.click('#build button');
  await tab.waitForSelector('h2 [data-state=succeeded]', { timeout: 60000 });
  const steps = await tab.$$eval('#steps li', (els) => els.map((e) => e.textContent));
  assert.ok(steps.some((s) => s.includes('COPY a /a')) && steps.some((s) => s.includes('RUN cat /a')), `build steps: ${steps}`);
  const built = await fetch(`${BERTH_URL}/v1/images/${BUILD_TAG}`, { headers: { Authorization: `Bearer ${TOKEN}` } });
  assert.equal(built.status, 200);
  step(`console build from an uploaded context: ${steps.length} steps, succeeded`);

  // 9. Cancel from a job's page.
  const long = await api('POST', '/v1/containers', { image: 'berth-test/busybox:latest', cmd: ['sleep', '300'], detach: false, auto_remove: true, labels: { 'berth-browser-test': String(process.pid) } });
  await waitJob(long.id, (j) => j.state === 'running');
  await tab.goto(`${BERTH_URL}/ui/#/jobs/${long.id}`);
  await tab.click('button:text-is("Cancel job")');
  await tab.waitForSelector('h2 [data-state=canceled]', { timeout: 30000 });
  assert.equal((await api('GET', `/v1/jobs/${long.id}`)).state, 'canceled');
  step('console job page: canceled');

  // 10. The console as a portal: served from another origin (localhost, listed in
  // BERTH_CORS_ORIGINS) and pointed at this Berth; streams, a terminal, a problem.
  const cross = await ctx.newPage();
  const calls = new Set();
  cross.on('request', (r) => { const u = new URL(r.url()); if (u.pathname.startsWith('/v1/')) calls.add(u.origin); });
  const consoleOrigin = BERTH_URL.replace('127.0.0.1', 'localhost');
  await cross.goto(`${consoleOrigin}/ui/#token=${TOKEN}`);
  await cross.fill('#base', BERTH_URL);
  await cross.click('#connect button');
  calls.clear();
  await cross.reload(); // the token and the base URL stay for the tab (sessionStorage)
  await cross.waitForFunction(() => document.querySelector('#live')?.textContent === 'live', null, { timeout: 20000 });
  await cross.click('nav a[data-nav=images]');
  await cross.fill('#pull input[name=image]', 'Not A Valid Reference');
  await cross.click('#pull button');
  await cross.waitForSelector('#problem:not([hidden])');
  const problem = await cross.textContent('#problem');
  assert.match(problem, /invalid_reference/, `the problem shown: ${problem}`);
  const sleeper = await runContainer({ cmd: ['sleep', '300'] });
  await cross.goto(`${consoleOrigin}/ui/#/exec/${sleeper}`);
  await cross.waitForFunction(() => document.querySelector('#term-status')?.textContent === 'connected', null, { timeout: 20000 });
  assert.deepEqual([...calls], [BERTH_URL], 'every API call went to the other origin');
  step(`console from ${consoleOrigin} against ${BERTH_URL}: live jobs, a problem (${problem.trim().slice(0, 60)}…), a terminal`);
} finally {
  for (const c of made) await api('DELETE', `/v1/containers/${c}?force=true`).catch(() => {});
  await browser.close();
  for (const s of servers) s.close();
}
step('all passed');
