// The Berth console: a client of the public API (no build step, ES modules only).
import { Terminal } from './vendor/xterm/xterm.mjs';
import { FitAddon } from './vendor/addon-fit/addon-fit.mjs';
import { ansiToNodes } from './ansi.js';

const $ = (sel, root = document) => root.querySelector(sel);
const h = (tag, attrs = {}, ...kids) => {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) el.setAttribute(k, v === true ? '' : v);
  }
  for (const kid of kids.flat()) if (kid !== null && kid !== undefined) el.append(kid);
  return el;
};

const put = (el, ...kids) => el.replaceChildren(...kids.flat().filter((k) => k !== null && k !== undefined && k !== false));

// ---- connection: token (fragment or paste box) and base URL, in sessionStorage ----
const store = sessionStorage;
const fragment = new URLSearchParams(location.hash.replace(/^#\/?/, ''));
if (fragment.get('token')) {
  store.setItem('berth.token', fragment.get('token'));
  history.replaceState(null, '', location.pathname + location.search + '#/jobs');
}
const token = () => store.getItem('berth.token') || '';
const base = () => (store.getItem('berth.base') || location.origin).replace(/\/+$/, '');
const ROLES = ['viewer', 'operator', 'admin'];
function claims() {
  try { return JSON.parse(atob(token().split('.')[1].replace(/-/g, '+').replace(/_/g, '/'))); } catch { return {}; }
}
function roleLevel() {
  const r = claims().roles;
  const list = Array.isArray(r) ? r : String(r || '').split(' ');
  return Math.max(-1, ...list.map((x) => ROLES.indexOf(x)));
}
const can = (role) => roleLevel() >= ROLES.indexOf(role);

// ---- problems ----
class Problem extends Error {
  constructor(p) { super(p.detail || p.title); this.p = p; }
}
function showProblem(err) {
  const p = err instanceof Problem ? err.p : { title: 'Error', detail: String(err && err.message || err) };
  const box = $('#problem');
  box.replaceChildren(h('button', { onclick: () => (box.hidden = true), 'aria-label': 'dismiss' }, '×'),
    h('b', {}, p.title || `HTTP ${p.status}`), p.code ? h('span', { class: 'code' }, p.code) : null,
    p.status ? h('span', { class: 'code' }, String(p.status)) : null,
    h('div', { class: 'detail' }, p.detail || ''));
  box.hidden = false;
}
const clearProblem = () => ($('#problem').hidden = true);

async function api(method, path, { json, body, type } = {}) {
  const headers = { Authorization: `Bearer ${token()}` };
  if (json !== undefined) { headers['Content-Type'] = 'application/json'; body = JSON.stringify(json); }
  if (type) headers['Content-Type'] = type;
  let res;
  try { res = await fetch(base() + path, { method, headers, body }); } catch (e) {
    throw new Problem({ title: 'Network error', detail: `${method} ${base()}${path}: ${e.message}. Is Berth reachable, and is this page's origin (${location.origin}) in BERTH_CORS_ORIGINS?` });
  }
  const ct = res.headers.get('content-type') || '';
  if (!res.ok) {
    let p = { title: `${res.status} ${res.statusText}`, status: res.status };
    if (ct.includes('json')) p = { ...p, ...(await res.json().catch(() => ({}))) };
    throw new Problem(p);
  }
  if (res.status === 204) return null;
  return ct.includes('json') ? res.json() : res.text();
}

// A URL for a stream: a fresh single-use ticket each time (POST /v1/tickets), so the
// long-lived token never goes into a URL. Falls back to ?access_token= when the server
// has no tickets route.
async function streamUrl(path, params = {}, ws = false) {
  const q = new URLSearchParams(params);
  try {
    const t = await api('POST', '/v1/tickets', { json: { path } });
    q.set('ticket', t.ticket);
  } catch (e) {
    if (!(e instanceof Problem) || ![404, 405].includes(e.p.status)) throw e;
    q.set('access_token', token());
  }
  let url = `${base()}${path}?${q}`;
  return ws ? url.replace(/^http/, 'ws') : url;
}

// EventSource with a new ticket for every (re)connect. `since` resumes a job's events.
function follow(path, params, handlers, { resume = false } = {}) {
  let es, stopped = false, lastId = null, timer;
  const connect = async () => {
    if (stopped) return;
    let url;
    try { url = await streamUrl(path, resume && lastId ? { ...params, since: lastId } : params); }
    catch (e) { showProblem(e); timer = setTimeout(connect, 5000); return; }
    if (stopped) return;
    es = new EventSource(url);
    es.onopen = () => handlers.open && handlers.open();
    for (const [name, fn] of Object.entries(handlers)) {
      if (name === 'open' || name === 'closed') continue;
      es.addEventListener(name, (ev) => { if (ev.lastEventId) lastId = ev.lastEventId; fn(JSON.parse(ev.data || 'null'), ev); });
    }
    es.addEventListener('end', () => { stopped = true; es.close(); handlers.closed && handlers.closed(); });
    es.onerror = () => { es.close(); handlers.closed && handlers.closed(); if (!stopped) timer = setTimeout(connect, 3000); };
  };
  connect();
  return () => { stopped = true; clearTimeout(timer); es && es.close(); };
}

// ---- views ----
let cleanup = [];
const onLeave = (fn) => cleanup.push(fn);
const badge = (state) => h('span', { class: `badge ${state}`, 'data-state': state }, state);
const short = (id) => (id || '').replace(/^sha256:/, '').slice(0, 12);
const when = (t) => (t ? new Date(t).toLocaleString() : '');
const size = (b) => (b == null ? '' : b > 1e6 ? `${(b / 1e6).toFixed(1)} MB` : b > 1e3 ? `${(b / 1e3).toFixed(1)} kB` : `${b} B`);
const act = (label, fn, cls) => h('button', { class: cls, onclick: async (e) => {
  e.preventDefault(); clearProblem();
  try { await fn(); } catch (err) { showProblem(err); }
} }, label);

const STATES = ['queued', 'running', 'succeeded', 'failed', 'canceled', 'interrupted'];
const KINDS = ['build', 'pull', 'push', 'run', 'prune_images', 'prune_containers'];

async function jobsView(view, params) {
  const state = params.get('state') || '', kind = params.get('kind') || '';
  const setFilter = (k, v) => { const p = new URLSearchParams(params); v ? p.set(k, v) : p.delete(k); location.hash = `#/jobs?${p}`; };
  const select = (name, opts, cur) => h('select', { name, onchange: (e) => setFilter(name, e.target.value) },
    h('option', { value: '' }, `any ${name}`), opts.map((o) => h('option', { value: o, selected: o === cur }, o)));
  const live = h('span', { class: 'live', id: 'live' }, 'connecting');
  const tbody = h('tbody');
  put(view, h('h2', {}, 'Jobs'), h('div', { class: 'filters' }, select('state', STATES, state), select('kind', KINDS, kind), live),
    h('table', { id: 'jobs' }, h('thead', {}, h('tr', {}, ['id', 'kind', 'state', 'phase', 'owner', 'created', ''].map((t) => h('th', {}, t)))), tbody));
  const rows = new Map();
  const row = (j) => h('tr', { 'data-job': j.id },
    h('td', {}, h('a', { href: `#/jobs/${j.id}`, class: 'mono' }, j.id)), h('td', {}, j.kind), h('td', {}, badge(j.state)),
    h('td', {}, j.progress ? `${j.progress.phase}${j.progress.percent != null ? ` ${Math.round(j.progress.percent)}%` : ''}` : ''),
    h('td', {}, j.owner), h('td', {}, when(j.created_at)),
    h('td', { class: 'actions' }, can('operator') && ['queued', 'running'].includes(j.state) ? act('cancel', () => api('POST', `/v1/jobs/${j.id}/cancel`)) : null));
  const upsert = (j) => {
    if ((state && j.state !== state) || (kind && j.kind !== kind)) { rows.get(j.id)?.remove(); rows.delete(j.id); return; }
    const r = row(j);
    if (rows.has(j.id)) rows.get(j.id).replaceWith(r); else tbody.prepend(r);
    rows.set(j.id, r);
  };
  const list = async () => {
    const q = new URLSearchParams({ limit: '100' }); if (state) q.set('state', state); if (kind) q.set('kind', kind);
    const page = await api('GET', `/v1/jobs?${q}`);
    const items = Array.isArray(page) ? page : page.items || page.jobs || [];
    tbody.replaceChildren(); rows.clear();
    for (const j of items.slice().reverse()) upsert(j);
  };
  await list();
  onLeave(follow('/v1/events', {}, {
    open: () => { live.textContent = 'live'; live.classList.add('on'); },
    closed: () => { live.textContent = 'reconnecting'; live.classList.remove('on'); },
    state: async (d) => { try { upsert(await api('GET', `/v1/jobs/${d.job_id}`)); } catch (e) { showProblem(e); } },
    lagged: () => list().catch(showProblem),
  }));
}

function appendLog(pre, text, stream) {
  const stick = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 20;
  const line = h('span', { class: stream || '' }, ...ansiToNodes(text.endsWith('\n') ? text : `${text}\n`));
  pre.append(line);
  if (stick) pre.scrollTop = pre.scrollHeight;
}

async function jobView(view, id) {
  const job = await api('GET', `/v1/jobs/${id}`);
  const stateEl = h('span', {}, badge(job.state));
  const bar = h('progress', { id: 'overall', max: '100', value: '0', 'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-valuenow': '0', 'aria-label': 'overall progress' });
  const pct = h('span', { id: 'overall-text', class: 'mono' }, '');
  const msg = h('div', { class: 'muted mono', id: 'message' });
  const layers = h('div', { class: 'layers', id: 'layers' });
  const steps = h('ol', { class: 'steps', id: 'steps' });
  const log = h('pre', { class: 'log', id: 'log' });
  const result = h('pre', { class: 'log', id: 'result' });
  const error = h('div', { id: 'error' });
  const cancel = can('operator') ? act('Cancel job', () => api('POST', `/v1/jobs/${id}/cancel`), 'danger') : null;
  const setBar = (v, text) => { v = Math.max(0, Math.min(100, Math.round(v))); bar.value = v; bar.setAttribute('aria-valuenow', String(v)); pct.textContent = text || `${v}%`; };
  const progress = (p) => {
    if (p.percent != null) setBar(p.percent, `${Math.round(p.percent)}%${p.total ? ` of ${size(p.total)}` : ''} · ${p.layers_done}/${p.layers_total} layers`);
    else if (p.layers_total) setBar((100 * p.layers_done) / p.layers_total, `${p.layers_done}/${p.layers_total} layers`);
    msg.textContent = `${p.phase}${p.message ? ` — ${p.message}` : ''}`;
  };
  const layerRows = new Map();
  const layer = (l) => {
    let r = layerRows.get(l.id);
    if (!r) {
      r = { bar: h('progress', { max: '100', value: '0', 'data-layer': l.id }), st: h('span', { class: 'st' }), bytes: h('span', { class: 'mono' }) };
      layerRows.set(l.id, r); layers.append(h('span', { class: 'mono' }, l.id), r.bar, r.st, r.bytes);
    }
    r.st.textContent = l.status;
    const done = /complete|already exists|pushed|mounted from/i.test(l.status || '');
    const v = done ? 100 : l.total > 0 ? (100 * (l.current || 0)) / l.total : r.bar.value;
    r.bar.value = v; r.bar.setAttribute('aria-valuenow', String(Math.round(v)));
    r.bytes.textContent = l.total > 0 ? `${size(l.current || 0)} / ${size(l.total)}` : '';
  };
  const setState = (s) => { stateEl.replaceChildren(badge(s)); if (s === 'succeeded') setBar(100); if (cancel && !['queued', 'running'].includes(s)) cancel.remove(); };
  put(view, 
    h('h2', {}, `Job `, h('span', { class: 'mono' }, id), ' ', stateEl, ' ', cancel),
    h('dl', { class: 'kv' }, h('dt', {}, 'kind'), h('dd', {}, job.kind), h('dt', {}, 'owner'), h('dd', {}, job.owner),
      h('dt', {}, 'created'), h('dd', {}, when(job.created_at)), h('dt', {}, 'request'), h('dd', { class: 'mono' }, JSON.stringify(job.request))),
    h('h3', {}, 'Progress'), h('div', { class: 'overall' }, bar, pct), msg, layers,
    job.kind === 'build' ? [h('h3', {}, 'Build steps'), steps] : null,
    h('h3', {}, 'Log'), log, h('h3', {}, 'Result'), result, error);
  if (job.progress) progress(job.progress);
  onLeave(follow(`/v1/jobs/${id}/events`, {}, {
    state: (d) => setState(d.state), progress, layer,
    log: (d) => {
      appendLog(log, d.text, d.stream);
      const m = d.stream === 'build' && /^Step \d+\/\d+ : .*/.exec(d.text.trim());
      if (m) steps.append(h('li', {}, m[0]));
    },
    result: (d) => { result.textContent = JSON.stringify(d, null, 2); },
    error: (d) => { error.replaceChildren(h('div', { class: 'problem' }, h('b', {}, d.code), ' ', d.message)); },
    end: (d) => setState(d.state),
  }, { resume: true }));
}

async function containersView(view) {
  const list = await api('GET', '/v1/containers?all=true');
  const op = can('operator');
  const reload = () => containersView(view);
  put(view, h('h2', {}, 'Containers'), h('table', { id: 'containers' },
    h('thead', {}, h('tr', {}, ['id', 'name', 'image', 'state', 'status', ''].map((t) => h('th', {}, t)))),
    h('tbody', {}, list.map((c) => h('tr', { 'data-container': c.id },
      h('td', { class: 'mono' }, short(c.id)), h('td', {}, (c.names || []).map((n) => n.replace(/^\//, '')).join(', ')),
      h('td', {}, c.image), h('td', {}, badge(c.state)), h('td', {}, c.status),
      h('td', { class: 'actions' }, h('a', { href: `#/containers/${c.id}/logs` }, 'logs'), ' ',
        op && c.state === 'running' ? [h('a', { href: `#/exec/${c.id}` }, 'exec'), ' ', h('a', { href: `#/attach/${c.id}` }, 'attach'), ' ',
          act('stop', async () => { await api('POST', `/v1/containers/${c.id}/stop`); await reload(); })] : null,
        op && c.state !== 'running' ? act('start', async () => { await api('POST', `/v1/containers/${c.id}/start`); await reload(); }) : null,
        op ? act('remove', async () => { if (confirm(`Remove ${short(c.id)}?`)) { await api('DELETE', `/v1/containers/${c.id}?force=true`); await reload(); } }, 'danger') : null)))))); 
}

async function logsView(view, id) {
  const log = h('pre', { class: 'log', id: 'log' });
  put(view, h('h2', {}, 'Logs of ', h('span', { class: 'mono' }, short(id))), log);
  onLeave(follow(`/v1/containers/${id}/logs`, { follow: 'true', tail: '500' }, {
    log: (d) => appendLog(log, d.text, d.stream),
    error: (d) => showProblem(new Problem({ title: 'Log stream failed', code: d.code, detail: d.message })),
    end: (d) => appendLog(log, `\x1b[2m[stream ended: container ${d.state}]\x1b[0m`),
  }));
}

async function imagesView(view) {
  const list = await api('GET', '/v1/images');
  const op = can('operator');
  const pull = h('form', { id: 'pull', onsubmit: async (e) => {
    e.preventDefault(); clearProblem();
    try { const j = await api('POST', '/v1/images/pull', { json: { image: e.target.image.value.trim() } }); location.hash = `#/jobs/${j.id}`; } catch (err) { showProblem(err); }
  } }, h('input', { name: 'image', placeholder: 'registry/image:tag', required: true, size: 32 }), h('button', {}, 'Pull'));
  const build = h('form', { id: 'build', onsubmit: async (e) => {
    e.preventDefault(); clearProblem();
    const f = e.target.context.files[0];
    const type = /\.(tgz|tar\.gz|gz)$/i.test(f.name) ? 'application/gzip' : /\.tar$/i.test(f.name) ? 'application/x-tar' : 'application/octet-stream';
    const q = new URLSearchParams(); for (const t of e.target.tag.value.split(/[ ,]+/).filter(Boolean)) q.append('tag', t);
    try { const j = await api('POST', `/v1/images/build?${q}`, { body: f, type }); location.hash = `#/jobs/${j.id}`; } catch (err) { showProblem(err); }
  } }, h('input', { type: 'file', name: 'context', accept: '.tar,.tar.gz,.tgz', required: true }), h('input', { name: 'tag', placeholder: 'tag(s)', size: 20 }), h('button', {}, 'Build'));
  put(view, h('h2', {}, 'Images'), op ? h('div', { class: 'forms' }, pull, build) : null,
    h('table', { id: 'images' }, h('thead', {}, h('tr', {}, ['id', 'tags', 'size', 'created', ''].map((t) => h('th', {}, t)))),
      h('tbody', {}, list.map((i) => h('tr', {}, h('td', { class: 'mono' }, short(i.id)), h('td', {}, (i.repo_tags || []).join(', ') || h('span', { class: 'muted' }, '<none>')),
        h('td', {}, size(i.size)), h('td', {}, when(typeof i.created === 'number' ? i.created * 1000 : i.created)),
        h('td', { class: 'actions' }, op ? act('remove', async () => {
          const ref = (i.repo_tags || [])[0] || i.id;
          if (confirm(`Remove ${ref}?`)) { await api('DELETE', `/v1/images/${encodeURIComponent(ref)}`); await imagesView(view); }
        }, 'danger') : null))))));
}

async function terminalView(view, mode, id) {
  const box = h('div', { id: 'terminal' });
  const status = h('span', { class: 'muted', id: 'term-status' }, 'connecting');
  put(view, h('h2', {}, `${mode} `, h('span', { class: 'mono' }, short(id)), ' ', status), box);
  const term = new Terminal({ cursorBlink: true, convertEol: false, fontSize: 13, theme: { background: '#000000' } });
  const fit = new FitAddon();
  term.loadAddon(fit); term.open(box); fit.fit();
  window.berthTerminal = term;
  let path, tty = true;
  if (mode === 'exec') {
    const ex = await api('POST', `/v1/containers/${id}/exec`, { json: { cmd: ['sh'], tty: true } });
    path = `/v1/exec/${ex.id}/ws`; tty = ex.tty;
  } else path = `/v1/containers/${id}/attach`;
  const ws = new WebSocket(await streamUrl(path, { cols: term.cols, rows: term.rows, ...(mode === 'attach' ? { logs: 'true' } : {}) }, true));
  ws.binaryType = 'arraybuffer';
  const enc = new TextEncoder();
  ws.onopen = () => { status.textContent = 'connected'; term.focus(); };
  ws.onmessage = (ev) => {
    if (typeof ev.data === 'string') {
      const m = JSON.parse(ev.data);
      if (m.type === 'exit') term.write(`\r\n\x1b[2m[exited with code ${m.exit_code}]\x1b[0m\r\n`);
      else if (m.type === 'detached') term.write('\r\n\x1b[2m[detached]\x1b[0m\r\n');
      else if (m.type === 'error') showProblem(new Problem({ title: 'Session error', code: m.code, detail: m.message }));
      return;
    }
    const bytes = new Uint8Array(ev.data);
    term.write(tty ? bytes : bytes.subarray(1));
  };
  ws.onclose = (ev) => { status.textContent = `closed (${ev.code}${ev.reason ? ` ${ev.reason}` : ''})`; };
  ws.onerror = () => showProblem(new Problem({ title: 'WebSocket failed', detail: `could not open ${path} (is this origin allowed by BERTH_CORS_ORIGINS?)` }));
  term.onData((d) => ws.readyState === 1 && ws.send(enc.encode(d)));
  term.onResize(({ cols, rows }) => ws.readyState === 1 && tty && ws.send(JSON.stringify({ type: 'resize', cols, rows })));
  const onWin = () => fit.fit();
  addEventListener('resize', onWin);
  onLeave(() => { removeEventListener('resize', onWin); ws.close(); term.dispose(); });
}

// ---- routing ----
async function route() {
  for (const fn of cleanup.splice(0)) fn();
  const view = $('#view');
  const [path, query] = location.hash.replace(/^#/, '').split('?');
  const parts = path.split('/').filter(Boolean);
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.nav === (parts[0] || 'jobs'));
  if (!token()) { put(view, h('p', {}, 'Paste a token above (or open /ui/#token=...).')); return; }
  try {
    if (parts[0] === 'jobs' && parts[1]) await jobView(view, parts[1]);
    else if (parts[0] === 'containers' && parts[2] === 'logs') await logsView(view, parts[1]);
    else if (parts[0] === 'containers') await containersView(view);
    else if (parts[0] === 'images') await imagesView(view);
    else if (parts[0] === 'exec' || parts[0] === 'attach') await terminalView(view, parts[0], parts[1]);
    else await jobsView(view, new URLSearchParams(query || ''));
  } catch (e) { showProblem(e); }
}

function header() {
  $('#base').value = store.getItem('berth.base') || '';
  const c = claims();
  $('#who').textContent = token() ? `${c.sub || '?'} · ${[].concat(c.roles || []).join(' ') || 'no roles'}${c.team ? ` · ${c.team}` : ''}` : 'no token';
}
$('#connect').addEventListener('submit', (e) => {
  e.preventDefault();
  const b = $('#base').value.trim(); b ? store.setItem('berth.base', b) : store.removeItem('berth.base');
  const t = $('#token').value.trim(); if (t) store.setItem('berth.token', t);
  $('#token').value = ''; header(); clearProblem(); route();
});
addEventListener('hashchange', route);
header();
route();
