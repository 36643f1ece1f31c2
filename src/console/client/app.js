// @ts-check
// The console's client app: plain ES module, no build step. Pages are rendered into <main> from the
// API's JSON (every call carries the key kept in sessionStorage); charts are Chart.js (window.Chart,
// served from node_modules by the server). Routes live in the hash: #/collections, #/collections/NAME,
// #/playground?c=NAME, #/models, #/models/VERSION, #/jobs, #/jobs/ID, #/drift?c=NAME, #/signin.

const KEY_SLOT = 'tuned-retrieval.console.key';
const TERMINAL = ['done', 'rejected', 'failed'];
const JOB_STATES = ['queued', 'mining', 'training', 'evaluating', 'reembedding', 'swapping'];
const MODES = ['vector', 'keyword', 'hybrid', 'auto'];
const GATE_METRICS = ['ndcg@10', 'recall@1', 'recall@5', 'recall@10', 'mrr@10'];
const COLORS = { before: '#8a94a6', after: '#2457c5', line: '#2457c5', line2: '#d9730d', threshold: '#c4321c', detection: '#c4321c' };
const STATE_COLORS = {
  queued: '#b8c2d6',
  mining: '#6c8ebf',
  training: '#2457c5',
  evaluating: '#8e5bd0',
  reembedding: '#d9730d',
  swapping: '#1a7f37',
};

/** @type {{ key: string | null, role: 'read' | 'admin' | null, auth: 'on' | 'off' | null, timers: number[], charts: any[], route: number }} */
const S = { key: sessionStorage.getItem(KEY_SLOT), role: null, auth: null, timers: [], charts: [], route: 0 };

// ------------------------------------------------------------------------------------------ API
class ApiError extends Error {
  /** @param {number} status @param {string} code @param {string} message */
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/**
 * One API call. `body` is sent as JSON, or verbatim when it is already a string (so that what the user
 * typed reaches the API's own validation and comes back with the API's own error code and message).
 * @param {string} method @param {string} path @param {unknown} [body] @param {string | null} [key]
 */
async function api(method, path, body, key = S.key) {
  /** @type {Record<string, string>} */
  const headers = {};
  if (key) headers.authorization = `Bearer ${key}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
  } catch (err) {
    throw new ApiError(0, 'network', `the server cannot be reached (${err instanceof Error ? err.message : String(err)})`);
  }
  const text = await res.text();
  let json;
  try {
    json = text ? JSON.parse(text) : {};
  } catch {
    json = { error: { code: 'internal', message: text.slice(0, 300) } };
  }
  if (!res.ok) {
    const e = json?.error ? json.error : { code: String(res.status), message: res.statusText };
    const err = new ApiError(res.status, e.code, e.message);
    if (res.status === 401 && key && key === S.key && !path.startsWith('/console/api/whoami')) signOut(err);
    throw err;
  }
  return json;
}

// ------------------------------------------------------------------------------------------ DOM
/**
 * h('div', { class: 'x', onclick: fn }, 'text', child) — children are text or nodes (text is never parsed as HTML).
 * @param {string} tag @param {Record<string, any> | null} [attrs] @param {...any} children
 * @returns {HTMLElement}
 */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'value') /** @type {any} */ (el).value = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
/**
 * A table in its scrolling wrapper: `head` lists the header cells as [label, class?], `body` is the tbody itself
 * (a page that refills it later keeps a reference) or the rows to put in a new one.
 * @param {Record<string, unknown>} attrs @param {[string, string?][]} head @param {unknown} body
 */
function dataTable(attrs, head, body) {
  const tbody = body instanceof HTMLTableSectionElement ? body : h('tbody', null, body);
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      attrs,
      h(
        'thead',
        null,
        h(
          'tr',
          null,
          head.map(([label, cls]) => h('th', cls ? { class: cls } : null, label)),
        ),
      ),
      tbody,
    ),
  );
}
const $main = () => /** @type {HTMLElement} */ (document.getElementById('main'));

/** @param {unknown} err */
function errorBox(err) {
  if (err instanceof ApiError) {
    return h(
      'div',
      { class: 'error', role: 'alert', 'data-code': err.code },
      h('code', null, err.code),
      `: ${err.message}`,
      err.status ? h('span', { class: 'muted small' }, ` (HTTP ${err.status})`) : null,
    );
  }
  return h('div', { class: 'error', role: 'alert', 'data-code': 'client' }, err instanceof Error ? err.message : String(err));
}

/** @param {string} text */
const notice = (text) => h('div', { class: 'notice', role: 'status' }, text);

/** A button only admin keys may press; read keys see it disabled (the API would answer 403 anyway). */
function adminButton(
  /** @type {string} */ label,
  /** @type {(e: Event) => void} */ onclick,
  /** @type {Record<string, any>} */ attrs = {},
) {
  const ro = S.role !== 'admin';
  return h(
    'button',
    { type: 'button', ...attrs, 'data-admin': 'true', disabled: ro, title: ro ? 'needs an admin API key' : undefined, onclick },
    label,
  );
}

const fmtNum = (/** @type {number | null | undefined} */ x, d = 3) =>
  x === null || x === undefined || !Number.isFinite(x) ? '—' : Number(x).toFixed(d);
const fmtInt = (/** @type {number | null | undefined} */ x) => (x === null || x === undefined ? '—' : Number(x).toLocaleString('en-US'));
const fmtTime = (/** @type {string | null | undefined} */ iso) => (iso ? new Date(iso).toLocaleString('en-GB', { hour12: false }) : '—');
const shortTime = (/** @type {number} */ ms) => new Date(ms).toLocaleTimeString('en-GB', { hour12: false });
function fmtSecs(/** @type {number | null | undefined} */ s) {
  if (s === null || s === undefined || !Number.isFinite(s)) return '—';
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m} min ${Math.round(s % 60)} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}
const shortId = (/** @type {string} */ id) => id.slice(0, 8);
const badge = (/** @type {string} */ text, cls = text) => h('span', { class: `badge ${cls}` }, text);
const link = (/** @type {string} */ href, /** @type {any} */ text, attrs = {}) => h('a', { href, ...attrs }, text);

function every(/** @type {() => Promise<void> | void} */ fn, /** @type {number} */ ms) {
  const route = S.route;
  let busy = false;
  const id = window.setInterval(async () => {
    if (busy || route !== S.route) return;
    busy = true;
    try {
      await fn();
    } finally {
      busy = false;
    }
  }, ms);
  S.timers.push(id);
}

/**
 * A Chart.js chart in a sized box; destroyed when the page changes.
 * @param {string} label what the chart shows, for screen readers @param {any} config @param {string} [cls]
 */
function chart(label, config, cls = '') {
  const canvas = h('canvas', { role: 'img', 'aria-label': label });
  const box = h('div', { class: `chart ${cls}` }, canvas);
  const Chart = /** @type {any} */ (window).Chart;
  config.options = { animation: false, maintainAspectRatio: false, responsive: true, ...config.options };
  // Built once the box is in the document (Chart.js measures its parent); pages return their nodes
  // before route() inserts them, so wait for that — unless the user has moved on to another page.
  const route = S.route;
  const build = () => {
    if (route !== S.route) return;
    if (!canvas.isConnected) {
      requestAnimationFrame(build);
      return;
    }
    const c = new Chart(canvas, config);
    S.charts.push(c);
    /** @type {any} */ (box).chart = c;
  };
  queueMicrotask(build);
  return box;
}

// ---------------------------------------------------------------------------------------- shell
const PAGES = [
  ['collections', 'Collections'],
  ['playground', 'Playground'],
  ['models', 'Models'],
  ['jobs', 'Jobs'],
  ['drift', 'Drift'],
];

function renderShell(/** @type {string} */ page) {
  const nav = /** @type {HTMLElement} */ (document.getElementById('nav'));
  nav.replaceChildren(
    S.role
      ? h(
          'ul',
          null,
          PAGES.map(([id, label]) => h('li', null, link(`#/${id}`, label, { 'aria-current': page === id ? 'page' : undefined }))),
        )
      : '',
  );
  const who = /** @type {HTMLElement} */ (document.getElementById('who'));
  who.replaceChildren(
    ...(S.role
      ? [
          h('span', null, S.auth === 'off' ? 'no key (AUTH=off)' : 'key: '),
          S.auth === 'off' ? '' : badge(S.role, S.role === 'admin' ? 'admin' : 'read'),
          S.auth === 'on' ? h('button', { type: 'button', class: 'secondary', id: 'signout', onclick: () => signOut() }, 'Sign out') : '',
        ]
      : []),
  );
  const banner = /** @type {HTMLElement} */ (document.getElementById('banner'));
  banner.replaceChildren(
    S.auth === 'off'
      ? h(
          'span',
          null,
          h('strong', null, 'AUTH=off'),
          ': this server accepts every request without an API key and treats it as admin. Turn keys on (AUTH=on) before exposing it.',
        )
      : '',
  );
}

/** @param {ApiError} [why] */
function signOut(why) {
  sessionStorage.removeItem(KEY_SLOT);
  S.key = null;
  S.role = null;
  if (why) sessionStorage.setItem(`${KEY_SLOT}.why`, `${why.code}: ${why.message}`);
  if (location.hash.startsWith('#/signin')) void route();
  else location.hash = '#/signin';
}

/** Who are we: AUTH=off answers without a key; otherwise the stored key's role, or the sign-in page. */
async function whoami() {
  try {
    const w = await api('GET', '/console/api/whoami', undefined, S.key);
    S.auth = w.auth;
    S.role = w.role ?? null;
    return Boolean(w.role);
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      S.auth = 'on';
      if (S.key) {
        sessionStorage.setItem(`${KEY_SLOT}.why`, `${err.code}: ${err.message}`);
        sessionStorage.removeItem(KEY_SLOT);
        S.key = null;
      }
      return false;
    }
    throw err;
  }
}

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, qs] = raw.split('?');
  const parts = (path ?? '').split('/').filter(Boolean).map(decodeURIComponent);
  return { page: parts[0] ?? 'collections', arg: parts[1], query: new URLSearchParams(qs ?? '') };
}

async function route() {
  S.route++;
  for (const t of S.timers) clearInterval(t);
  S.timers = [];
  for (const c of S.charts) c.destroy();
  S.charts = [];
  const { page, arg, query } = parseHash();
  const main = $main();
  if (!S.role) {
    let ok = false;
    try {
      ok = await whoami();
    } catch (err) {
      renderShell('');
      main.replaceChildren(h('h1', null, 'Console'), errorBox(err));
      return;
    }
    if (!ok && page !== 'signin') {
      location.hash = `#/signin?next=${encodeURIComponent(location.hash)}`;
      return;
    }
  }
  const name = page === 'signin' && S.role ? 'collections' : page;
  renderShell(name);
  const render = ROUTES[name] ?? notFound;
  const myRoute = S.route;
  main.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  try {
    const content = await render(arg, query);
    if (myRoute !== S.route) return;
    main.replaceChildren(...(Array.isArray(content) ? content : [content]));
  } catch (err) {
    if (myRoute !== S.route) return;
    main.replaceChildren(h('h1', null, 'Console'), errorBox(err));
  }
  const h1 = main.querySelector('h1');
  document.title = `${h1 ? h1.textContent : 'Console'} · tuned-retrieval`;
  // Focus follows the page: its first field that asks for it, else the page itself (screen readers read the new heading).
  const af = /** @type {HTMLElement | null} */ (main.querySelector('[autofocus]'));
  if (af) af.focus();
  else if (document.activeElement === document.body || !main.contains(document.activeElement)) main.focus({ preventScroll: true });
}

async function notFound() {
  return [h('h1', null, 'Not found'), h('p', null, 'No such page. ', link('#/collections', 'Collections'))];
}

// -------------------------------------------------------------------------------------- sign-in
async function signinPage(/** @type {string | undefined} */ _arg, /** @type {URLSearchParams} */ query) {
  if (S.role) {
    location.hash = '#/collections';
    return [];
  }
  const why = sessionStorage.getItem(`${KEY_SLOT}.why`);
  sessionStorage.removeItem(`${KEY_SLOT}.why`);
  const out = h(
    'div',
    { id: 'signin-result' },
    why ? errorBox(new ApiError(401, why.split(':')[0] ?? 'unauthorized', why.slice(why.indexOf(':') + 2))) : '',
  );
  const input = /** @type {HTMLInputElement} */ (
    h('input', {
      id: 'key',
      name: 'key',
      type: 'password',
      autofocus: true,
      autocomplete: 'off',
      required: true,
      placeholder: 'rk_…',
      'aria-describedby': 'key-help',
    })
  );
  const form = h(
    'form',
    {
      class: 'card',
      id: 'signin',
      onsubmit: async (/** @type {Event} */ e) => {
        e.preventDefault();
        const key = input.value.trim();
        out.replaceChildren();
        try {
          const w = await api('GET', '/console/api/whoami', undefined, key);
          if (!w.role) throw new ApiError(401, 'unauthorized', 'send an API key: Authorization: Bearer <key>');
          S.key = key;
          S.role = w.role;
          S.auth = w.auth;
          sessionStorage.setItem(KEY_SLOT, key);
          const next = query.get('next');
          location.hash = next?.startsWith('#/') && !next.startsWith('#/signin') ? next : '#/collections';
        } catch (err) {
          out.replaceChildren(errorBox(err));
          input.focus();
        }
      },
    },
    h('h2', null, 'Sign in'),
    h(
      'div',
      { class: 'row' },
      h('label', { class: 'grow' }, 'API key', input),
      h('button', { type: 'submit', id: 'signin-submit' }, 'Sign in'),
    ),
    h(
      'p',
      { id: 'key-help', class: 'muted small' },
      'The key stays in this tab (sessionStorage) and is sent as Authorization: Bearer. Read keys see everything and may search and send feedback; admin keys may also create collections, ingest, retrain and roll back. The first start writes an admin key to data/admin.key; "npx retrieval keys create --role read" makes a read key.',
    ),
    out,
  );
  return [h('h1', null, 'Console'), form];
}

// ---------------------------------------------------------------------------------- collections
async function collectionsPage() {
  const { collections } = await api('GET', '/collections');
  const out = h('div', { id: 'create-result' });
  const f = {
    name: /** @type {HTMLInputElement} */ (h('input', { id: 'c-name', name: 'name', required: true, placeholder: 'docs' })),
    M: /** @type {HTMLInputElement} */ (h('input', { id: 'c-m', name: 'M', inputmode: 'numeric', size: 5, placeholder: '16' })),
    efConstruction: /** @type {HTMLInputElement} */ (h('input', { id: 'c-efc', inputmode: 'numeric', size: 5, placeholder: '200' })),
    efSearch: /** @type {HTMLInputElement} */ (h('input', { id: 'c-efs', inputmode: 'numeric', size: 5, placeholder: '64' })),
    size: /** @type {HTMLInputElement} */ (h('input', { id: 'c-size', inputmode: 'numeric', size: 6, placeholder: '1000' })),
    overlap: /** @type {HTMLInputElement} */ (h('input', { id: 'c-overlap', inputmode: 'numeric', size: 6, placeholder: '200' })),
  };
  // Typed values go to the API as they are (numbers when they look like numbers): its validation answers.
  const val = (/** @type {HTMLInputElement} */ i) =>
    i.value.trim() === '' ? undefined : /^-?\d+(\.\d+)?$/.test(i.value.trim()) ? Number(i.value) : i.value;
  const ro = S.role !== 'admin';
  const form = h(
    'form',
    {
      class: 'card',
      id: 'create-collection',
      onsubmit: async (/** @type {Event} */ e) => {
        e.preventDefault();
        out.replaceChildren();
        /** @type {Record<string, any>} */
        const body = { name: f.name.value };
        const hnsw = { M: val(f.M), efConstruction: val(f.efConstruction), efSearch: val(f.efSearch) };
        if (Object.values(hnsw).some((v) => v !== undefined))
          body.hnsw = Object.fromEntries(Object.entries(hnsw).filter(([, v]) => v !== undefined));
        const chunk = { size: val(f.size), overlap: val(f.overlap) };
        if (Object.values(chunk).some((v) => v !== undefined))
          body.chunk = Object.fromEntries(Object.entries(chunk).filter(([, v]) => v !== undefined));
        try {
          const c = await api('POST', '/collections', body);
          location.hash = `#/collections/${encodeURIComponent(c.name)}`;
        } catch (err) {
          out.replaceChildren(errorBox(err));
        }
      },
    },
    h('h2', null, 'New collection'),
    ro ? h('p', { class: 'muted small' }, 'Read key: creating collections needs an admin key.') : '',
    h(
      'div',
      { class: 'row' },
      h('label', null, 'Name', f.name),
      h('label', null, 'HNSW M', f.M),
      h('label', null, 'efConstruction', f.efConstruction),
      h('label', null, 'efSearch', f.efSearch),
      h('label', null, 'Chunk size', f.size),
      h('label', null, 'Overlap', f.overlap),
      h(
        'button',
        { type: 'submit', id: 'create-submit', 'data-admin': 'true', disabled: ro, title: ro ? 'needs an admin API key' : undefined },
        'Create',
      ),
    ),
    out,
  );

  const table =
    collections.length === 0
      ? h('p', { class: 'muted', id: 'no-collections' }, 'No collections yet.')
      : dataTable(
          { id: 'collections' },
          [['Name'], ['Documents', 'num'], ['Chunks', 'num'], ['Model', 'hide-narrow'], ['Index', 'hide-narrow'], ['Strategy']],
          collections.map((/** @type {any} */ c) =>
            h(
              'tr',
              null,
              h('td', null, link(`#/collections/${encodeURIComponent(c.name)}`, c.name)),
              h('td', { class: 'num' }, fmtInt(c.documents)),
              h('td', { class: 'num' }, fmtInt(c.chunks)),
              h('td', { class: 'mono hide-narrow' }, c.model),
              h('td', { class: 'small hide-narrow' }, hnswText(c.hnsw)),
              h('td', null, c.strategy ? badge(c.strategy.mode, 'candidate') : h('span', { class: 'muted small' }, '—')),
            ),
          ),
        );
  return [h('h1', null, 'Collections'), h('div', { class: 'card' }, table), form];
}

const hnswText = (/** @type {any} */ p) => (p ? `M ${p.M} · efC ${p.efConstruction} · efS ${p.efSearch}` : '—');

/** Reads ingest_documents_total{collection} from /metrics (this replica's counter). */
async function ingestCounter(/** @type {string} */ name) {
  const res = await fetch('/metrics', { headers: S.key ? { authorization: `Bearer ${S.key}` } : {} });
  if (!res.ok) return undefined;
  const text = await res.text();
  const esc = name.replace(/[\\"]/g, (ch) => `\\${ch}`);
  for (const line of text.split('\n')) {
    if (line.startsWith(`ingest_documents_total{collection="${esc}"}`)) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return 0;
}

function strategyCard(/** @type {any} */ s) {
  if (!s || typeof s !== 'object') {
    return h(
      'div',
      { class: 'card', id: 'strategy' },
      h('h2', null, 'Serving strategy'),
      h(
        'p',
        { class: 'muted' },
        'This server does not report a serving strategy for the collection; searches use the mode each request asks for (vector by default).',
      ),
    );
  }
  const scores = s.scores && typeof s.scores === 'object' ? Object.entries(s.scores).filter(([, v]) => typeof v === 'number') : [];
  return h(
    'div',
    { class: 'card', id: 'strategy' },
    h('h2', null, 'Serving strategy'),
    h(
      'dl',
      { class: 'kv' },
      h('dt', null, 'Mode'),
      h('dd', null, badge(String(s.mode), 'candidate'), s.weight !== undefined ? ` weight ${fmtNum(s.weight, 2)}` : ''),
      h('dt', null, 'Decided'),
      h('dd', null, fmtTime(s.decidedAt)),
      h('dt', null, 'From'),
      h('dd', null, s.source ?? '—'),
      s.queries !== undefined || s.modelVersion
        ? [
            h('dt', null, 'Measured'),
            h(
              'dd',
              null,
              [
                s.queries !== undefined ? `${fmtInt(s.queries)} queries` : '',
                s.documents !== undefined ? `${fmtInt(s.documents)} documents` : '',
                s.modelVersion ? `model ${s.modelVersion}` : '',
              ]
                .filter(Boolean)
                .join(' · '),
            ),
          ]
        : '',
      s.fusionWeight !== undefined && s.mode !== 'hybrid'
        ? [h('dt', null, 'Fitted fusion'), h('dd', null, `dense weight ${fmtNum(s.fusionWeight, 2)}`)]
        : '',
      s.reason ? [h('dt', null, 'Why'), h('dd', null, String(s.reason))] : '',
    ),
    scores.length
      ? chart(
          `Strategy scores: ${scores.map(([k, v]) => `${k} ${fmtNum(/** @type {number} */ (v))}`).join(', ')}`,
          {
            type: 'bar',
            data: {
              labels: scores.map(([k]) => k),
              datasets: [
                {
                  label: 'score',
                  data: scores.map(([, v]) => v),
                  backgroundColor: scores.map(([k]) => (k === s.mode ? COLORS.after : COLORS.before)),
                },
              ],
            },
            options: { indexAxis: 'y', plugins: { legend: { display: false } }, scales: { x: { beginAtZero: true } } },
          },
          'small',
        )
      : '',
  );
}

async function collectionPage(/** @type {string} */ name) {
  const c = await api('GET', `/collections/${encodeURIComponent(name)}`);
  const stats = h('div', { class: 'grid', id: 'collection-stats' });
  const rate = h('b', { id: 'ingest-rate' }, '—');
  const fill = (/** @type {any} */ x) =>
    stats.replaceChildren(
      h('div', { class: 'card stat' }, h('b', { id: 'doc-count' }, fmtInt(x.documents)), h('span', null, 'documents')),
      h('div', { class: 'card stat' }, h('b', { id: 'chunk-count' }, fmtInt(x.chunks)), h('span', null, 'chunks in the index')),
      h('div', { class: 'card stat' }, rate, h('span', null, 'ingest rate on this replica (documents/s)')),
      h(
        'div',
        { class: 'card' },
        h(
          'dl',
          { class: 'kv' },
          h('dt', null, 'Model'),
          h('dd', { class: 'mono' }, link('#/models', x.model)),
          h('dt', null, 'Dimensions'),
          h('dd', null, x.dim),
          h('dt', null, 'HNSW'),
          h('dd', null, hnswText(x.hnsw)),
          h('dt', null, 'Chunks of'),
          h('dd', null, x.chunk ? `${x.chunk.size} chars, ${x.chunk.overlap} overlap` : '—'),
          h('dt', null, 'Created'),
          h('dd', null, fmtTime(x.createdAt)),
        ),
      ),
    );
  fill(c);
  let last = { n: await ingestCounter(name).catch(() => undefined), t: performance.now() };
  every(async () => {
    const x = await api('GET', `/collections/${encodeURIComponent(name)}`).catch(() => undefined);
    const n = await ingestCounter(name).catch(() => undefined);
    const t = performance.now();
    if (n !== undefined && last.n !== undefined) rate.textContent = ((n - last.n) / ((t - last.t) / 1000)).toFixed(1);
    last = { n, t };
    if (x) {
      const r = rate.textContent;
      fill(x);
      rate.textContent = r;
    }
  }, 2000);

  const out = h('div', { id: 'ingest-result', 'aria-live': 'polite' });
  const docs = /** @type {HTMLTextAreaElement} */ (
    h('textarea', {
      id: 'ingest-docs',
      name: 'documents',
      spellcheck: 'false',
      'aria-describedby': 'ingest-help',
      placeholder: '{"documents":[{"id":"doc-1","text":"…","metadata":{"source":"manual"}}]}',
    })
  );
  const ro = S.role !== 'admin';
  const ingest = h(
    'form',
    {
      class: 'card',
      id: 'ingest',
      onsubmit: async (/** @type {Event} */ e) => {
        e.preventDefault();
        out.replaceChildren(h('p', { class: 'muted' }, 'Ingesting…'));
        try {
          const r = await api('POST', `/collections/${encodeURIComponent(name)}/documents`, ingestBody(docs.value));
          out.replaceChildren(notice(`Upserted ${fmtInt(r.upserted)} documents (${fmtInt(r.chunks)} chunks).`));
          fill(await api('GET', `/collections/${encodeURIComponent(name)}`));
        } catch (err) {
          out.replaceChildren(errorBox(err));
        }
      },
    },
    h('h2', null, 'Ingest documents'),
    h('label', null, 'Documents: the API body, a JSON array, or one JSON document per line', docs),
    h(
      'p',
      { id: 'ingest-help', class: 'muted small' },
      'Re-upserting an id replaces the document. Up to MAX_BATCH_DOCS documents per request.',
    ),
    h(
      'div',
      { class: 'row' },
      h(
        'button',
        { type: 'submit', id: 'ingest-submit', 'data-admin': 'true', disabled: ro, title: ro ? 'needs an admin API key' : undefined },
        'Ingest',
      ),
    ),
    h(
      'label',
      { class: 'file' },
      `Or a JSON-lines file (one {"id","text","metadata"?} per line), sent ${FILE_BATCH} documents a request`,
      h('input', {
        type: 'file',
        id: 'ingest-file',
        accept: '.jsonl,.ndjson,.json,text/plain',
        'data-admin': 'true',
        disabled: ro,
        title: ro ? 'needs an admin API key' : undefined,
        onchange: async (/** @type {Event} */ e) => {
          const input = /** @type {HTMLInputElement} */ (e.target);
          const file = input.files?.[0];
          if (!file) return;
          await ingestFile(name, file, out);
          input.value = '';
          fill(await api('GET', `/collections/${encodeURIComponent(name)}`));
        },
      }),
    ),
    out,
  );

  const jobOut = h('div', { id: 'retrain-result' });
  const actions = h(
    'div',
    { class: 'card' },
    h('h2', null, 'Actions'),
    h(
      'div',
      { class: 'row' },
      link(`#/playground?c=${encodeURIComponent(name)}`, 'Search in the playground'),
      ' · ',
      link(`#/jobs?c=${encodeURIComponent(name)}`, 'Jobs'),
      ' · ',
      link(`#/drift?c=${encodeURIComponent(name)}`, 'Drift'),
      ' · ',
      adminButton(
        'Start a retrain',
        async () => {
          jobOut.replaceChildren();
          try {
            const j = await api('POST', `/collections/${encodeURIComponent(name)}/retrain`, {});
            location.hash = `#/jobs/${j.id}`;
          } catch (err) {
            jobOut.replaceChildren(errorBox(err));
          }
        },
        { id: 'retrain' },
      ),
    ),
    jobOut,
  );
  return [h('h1', null, `Collection ${c.name}`), stats, strategyCard(c.strategy), h('div', { class: 'grid-2' }, ingest, actions)];
}

const FILE_BATCH = 500;

/** Uploads a JSON-lines file in batches, with a progress bar; stops at the first error (the API's, or a line that is not JSON). */
async function ingestFile(/** @type {string} */ name, /** @type {File} */ file, /** @type {HTMLElement} */ out) {
  const lines = (await file.text())
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  /** @type {unknown[]} */
  const docs = [];
  for (const [i, l] of lines.entries()) {
    try {
      docs.push(JSON.parse(l));
    } catch {
      out.replaceChildren(errorBox(new ApiError(0, 'invalid_json', `${file.name} line ${i + 1} is not valid JSON; nothing was sent`)));
      return;
    }
  }
  const bar = /** @type {HTMLProgressElement} */ (h('progress', { id: 'ingest-progress', max: docs.length || 1, value: 0 }));
  const label = h('span', null, `0 of ${fmtInt(docs.length)} documents`);
  out.replaceChildren(h('label', null, label, bar));
  let upserted = 0;
  let chunks = 0;
  for (let i = 0; i < docs.length; i += FILE_BATCH) {
    try {
      const r = await api('POST', `/collections/${encodeURIComponent(name)}/documents`, { documents: docs.slice(i, i + FILE_BATCH) });
      upserted += r.upserted;
      chunks += r.chunks;
    } catch (err) {
      out.replaceChildren(
        h(
          'p',
          { class: 'small' },
          `Stopped at documents ${i + 1}–${Math.min(i + FILE_BATCH, docs.length)} of ${file.name}; ${fmtInt(upserted)} before them were upserted.`,
        ),
        errorBox(err),
      );
      return;
    }
    bar.value = Math.min(i + FILE_BATCH, docs.length);
    label.textContent = `${fmtInt(bar.value)} of ${fmtInt(docs.length)} documents`;
  }
  out.replaceChildren(notice(`Upserted ${fmtInt(upserted)} documents (${fmtInt(chunks)} chunks) from ${file.name}.`));
}

/** The textarea's documents as a request body; anything that is not recognisable goes to the API verbatim. */
function ingestBody(/** @type {string} */ text) {
  const t = text.trim();
  if (t.startsWith('[')) {
    try {
      return { documents: JSON.parse(t) };
    } catch {
      return text;
    }
  }
  if (t.startsWith('{')) {
    try {
      const one = JSON.parse(t);
      return one && typeof one === 'object' && 'documents' in one ? text : { documents: [one] };
    } catch {
      /* JSON lines? */
    }
    const lines = t.split('\n').filter((l) => l.trim());
    try {
      return { documents: lines.map((l) => JSON.parse(l)) };
    } catch {
      return text;
    }
  }
  return text;
}

// ----------------------------------------------------------------------------------- playground
async function playgroundPage(/** @type {string | undefined} */ _arg, /** @type {URLSearchParams} */ query) {
  const { collections } = await api('GET', '/collections');
  if (collections.length === 0)
    return [h('h1', null, 'Playground'), h('p', null, 'No collections yet. ', link('#/collections', 'Create one'), '.')];
  const want = query.get('c');
  const sel = /** @type {HTMLSelectElement} */ (
    h(
      'select',
      { id: 'pg-collection', name: 'collection' },
      collections.map((/** @type {any} */ c) => h('option', { value: c.name, selected: c.name === want }, c.name)),
    )
  );
  const q = /** @type {HTMLInputElement} */ (
    h('input', { id: 'pg-query', name: 'query', type: 'search', placeholder: 'What are you looking for?', value: query.get('q') ?? '' })
  );
  const k = /** @type {HTMLInputElement} */ (
    h('input', { id: 'pg-k', name: 'k', inputmode: 'numeric', size: 4, value: query.get('k') ?? '5' })
  );
  const cols = h('div', { class: 'cols-4', id: 'pg-results' });
  const formOut = h('div');
  const run = async () => {
    formOut.replaceChildren();
    const kv = k.value.trim();
    const kk = /^\d+$/.test(kv) ? Number(kv) : kv;
    cols.replaceChildren(
      ...MODES.map((m) =>
        h('section', { class: 'card', 'data-mode': m, 'aria-busy': 'true' }, h('h2', null, m), h('p', { class: 'muted' }, 'Searching…')),
      ),
    );
    await Promise.all(
      MODES.map(async (mode, i) => {
        const box = /** @type {HTMLElement} */ (cols.children[i]);
        try {
          const r = await api('POST', '/search', { collection: sel.value, query: q.value, k: kk, mode });
          box.replaceChildren(...resultColumn(mode, r));
        } catch (err) {
          box.replaceChildren(h('h2', null, mode), errorBox(err));
        }
        box.removeAttribute('aria-busy');
      }),
    );
  };
  const form = h(
    'form',
    {
      class: 'card',
      id: 'playground',
      onsubmit: (/** @type {Event} */ e) => {
        e.preventDefault();
        void run();
      },
    },
    h(
      'div',
      { class: 'row' },
      h('label', null, 'Collection', sel),
      h('label', { class: 'grow' }, 'Query', q),
      h('label', null, 'k', k),
      h('button', { type: 'submit', id: 'pg-submit' }, 'Search'),
    ),
    h(
      'p',
      { class: 'muted small' },
      'Runs the query in every mode side by side. "Relevant" sends POST /feedback for that result: the loop learns from it.',
    ),
    formOut,
  );
  if (q.value) queueMicrotask(() => void run());
  return [h('h1', null, 'Playground'), form, cols];
}

function resultColumn(/** @type {string} */ mode, /** @type {any} */ r) {
  // auto answers with the collection's strategy; a fusion says its dense weight.
  const served = `${r.mode && r.mode !== mode ? ` → ${r.mode}` : ''}${typeof r.weight === 'number' ? ` (w ${fmtNum(r.weight, 2)})` : ''}`;
  return [
    h('h2', null, mode, served),
    h('p', { class: 'muted small' }, `${r.results.length} results · ${fmtNum(r.tookMs, 1)} ms · `, h('span', { class: 'mono' }, r.model)),
    h(
      'ol',
      { class: 'results' },
      r.results.map((/** @type {any} */ x, /** @type {number} */ i) => {
        const out = h('span', { class: 'small' });
        const btn = /** @type {HTMLButtonElement} */ (
          h(
            'button',
            {
              type: 'button',
              class: 'secondary feedback',
              'data-doc': x.id,
              'aria-label': `Mark ${x.id} relevant (${mode} result ${i + 1})`,
              onclick: async () => {
                btn.disabled = true;
                try {
                  await api('POST', '/feedback', { queryId: r.queryId, documentId: x.id });
                  btn.textContent = '✓ relevant';
                  btn.classList.add('marked');
                } catch (err) {
                  btn.disabled = false;
                  out.replaceChildren(errorBox(err));
                }
              },
            },
            'Relevant',
          )
        );
        return h(
          'li',
          null,
          h('div', { class: 'head' }, h('span', { class: 'id' }, `${i + 1}. ${x.id}`), h('span', { class: 'score' }, fmtNum(x.score, 4))),
          h('p', null, x.text.length > 280 ? `${x.text.slice(0, 280)}…` : x.text),
          btn,
          out,
        );
      }),
    ),
  ];
}

// --------------------------------------------------------------------------------------- models
function lineage(/** @type {any[]} */ models) {
  const by = new Map(models.map((m) => [m.version, m]));
  /** @type {Map<string | null, any[]>} */
  const kids = new Map();
  for (const m of models) {
    const p = m.parentVersion && by.has(m.parentVersion) ? m.parentVersion : null;
    if (!kids.has(p)) kids.set(p, []);
    /** @type {any[]} */ (kids.get(p)).push(m);
  }
  /** @type {(m: any) => HTMLElement} */
  const node = (m) =>
    h(
      'li',
      null,
      h(
        'span',
        { class: 'node' },
        link(`#/models/${encodeURIComponent(m.version)}`, m.version, { class: 'mono' }),
        badge(m.status),
        m.champion && m.status !== 'champion' ? badge('serving', 'champion') : '',
        gateSummary(m),
        h('span', { class: 'muted small' }, fmtTime(m.createdAt)),
      ),
      (kids.get(m.version) ?? []).length ? h('ul', null, (kids.get(m.version) ?? []).map(node)) : '',
    );
  return h('ul', { class: 'tree', id: 'lineage', 'aria-label': 'Model lineage, parent to child' }, (kids.get(null) ?? []).map(node));
}

/** "NDCG@10 0.833 → 0.947": the model's latest gate report in one line. */
function gateSummary(/** @type {any} */ m) {
  const e = (m.evalReports ?? [])[0];
  if (!e) return '';
  const d = e.decision ?? {};
  const before = (typeof d.champion === 'object' ? d.champion : e.metrics?.champion)?.['ndcg@10'];
  const after = (typeof d.candidate === 'object' ? d.candidate : e.metrics?.candidate)?.['ndcg@10'];
  return h('span', { class: 'small' }, `NDCG@10 ${fmtNum(before)} → ${fmtNum(after)} `, badge(e.passed ? 'pass' : 'fail'));
}

async function modelsPage() {
  const r = await api('GET', '/models');
  return [
    h('h1', null, 'Models'),
    h(
      'div',
      { class: 'grid' },
      h(
        'div',
        { class: 'card stat' },
        h('b', { class: 'mono', id: 'champion' }, r.champion ?? '—'),
        h('span', null, 'champion (serving pointer)'),
      ),
      h(
        'div',
        { class: 'card stat' },
        h('b', { class: 'mono' }, r.previous ?? '—'),
        h('span', null, 'previous pair, kept for an instant rollback'),
      ),
    ),
    h(
      'div',
      { class: 'card' },
      h('h2', null, 'Lineage'),
      h('p', { class: 'muted small' }, 'Each fine-tuned model hangs under the champion it was trained from. Open one for its gate report.'),
      r.models.length ? lineage(r.models) : h('p', { class: 'muted' }, 'No models.'),
    ),
  ];
}

/** Before (the champion) vs after (this candidate) on the IR metrics both records have. */
function gateChart(
  /** @type {any} */ before,
  /** @type {any} */ after,
  /** @type {string} */ beforeLabel,
  /** @type {string} */ afterLabel,
  cls = '',
) {
  const keys = GATE_METRICS.filter((k) => typeof before?.[k] === 'number' || typeof after?.[k] === 'number');
  return chart(
    `${beforeLabel} vs ${afterLabel}: ${keys.map((k) => `${k} ${fmtNum(before?.[k])} before, ${fmtNum(after?.[k])} after`).join('; ')}`,
    {
      type: 'bar',
      data: {
        labels: keys,
        datasets: [
          { label: beforeLabel, data: keys.map((k) => before?.[k] ?? null), backgroundColor: COLORS.before },
          { label: afterLabel, data: keys.map((k) => after?.[k] ?? null), backgroundColor: COLORS.after },
        ],
      },
      options: {
        scales: { y: { beginAtZero: true, suggestedMax: 1 } },
        plugins: { legend: { position: 'bottom', labels: { boxWidth: 12 } } },
      },
    },
    cls,
  );
}

function gateTable(/** @type {any} */ champ, /** @type {any} */ cand) {
  const keys = GATE_METRICS.filter((k) => typeof champ?.[k] === 'number' || typeof cand?.[k] === 'number');
  return dataTable(
    { class: 'gate-table' },
    [['metric'], ['before', 'num'], ['after', 'num'], ['Δ', 'num']],
    keys.map((k) =>
      h(
        'tr',
        null,
        h('td', null, k),
        h('td', { class: 'num' }, fmtNum(champ?.[k])),
        h('td', { class: 'num' }, fmtNum(cand?.[k])),
        h(
          'td',
          { class: 'num' },
          typeof cand?.[k] === 'number' && typeof champ?.[k] === 'number'
            ? `${cand[k] >= champ[k] ? '+' : ''}${(cand[k] - champ[k]).toFixed(3)}`
            : '—',
        ),
      ),
    ),
  );
}

const STRATEGY_NAMES = { vector: 'vector', hybrid: 'hybrid (fitted fusion)', hybridRrf: 'hybrid (RRF)', keyword: 'keyword (BM25)' };

/**
 * One eval report: what the gate compared (the best strategy with the candidate against the best without
 * it, when the report has strategies; else vector against vector), then every strategy before vs after.
 */
function gateReport(/** @type {any} */ e) {
  const m = e.metrics ?? {};
  const st = m.strategies && typeof m.strategies === 'object' ? m.strategies : null;
  const d = e.decision ?? {};
  const candMode = st?.candidate?.chosen?.mode;
  const champMode = st?.champion?.chosen?.mode;
  const gateBefore = d.champion && typeof d.champion === 'object' ? d.champion : m.champion;
  const gateAfter = d.candidate && typeof d.candidate === 'object' ? d.candidate : m.candidate;
  const before = `before: ${e.championVersion}${champMode ? ` (${champMode})` : ''}`;
  const after = `after: candidate${candMode ? ` (${candMode})` : ''}`;
  const modes = st ? Object.keys(STRATEGY_NAMES).filter((k) => st.candidate?.[k] && st.champion?.[k]) : [];
  return h(
    'section',
    { class: 'card gate', 'data-report': e.id },
    h(
      'h3',
      null,
      badge(e.passed ? 'pass' : 'fail'),
      ` vs ${e.championVersion} · ${fmtTime(e.createdAt)}`,
      e.jobId ? [' · job ', link(`#/jobs/${e.jobId}`, shortId(e.jobId))] : '',
    ),
    h(
      'p',
      { class: 'muted small' },
      `${m.queries ?? '?'} held-out queries over ${fmtInt(m.corpusChunks)} chunks${st?.evidence ? ` (${st.evidence})` : ''}. `,
      (d.reasons ?? []).join(' '),
    ),
    h(
      'div',
      { class: 'grid-2' },
      h('div', { class: 'gate-main' }, h('h3', null, 'What the gate compared'), gateChart(gateBefore, gateAfter, before, after)),
      h('div', null, h('h3', null, 'Numbers'), gateTable(gateBefore, gateAfter)),
    ),
    modes.length
      ? [
          h('h3', null, 'Per strategy, before vs after'),
          h(
            'div',
            { class: 'grid strategies' },
            modes.map((k) =>
              h(
                'div',
                { 'data-strategy': k },
                h(
                  'h3',
                  null,
                  /** @type {any} */ (STRATEGY_NAMES)[k],
                  k === candMode ? ' ' : '',
                  k === candMode ? badge('chosen', 'pass') : '',
                ),
                gateChart(st.champion[k], st.candidate[k], 'before', 'after', 'small'),
              ),
            ),
          ),
        ]
      : '',
  );
}

async function modelPage(/** @type {string} */ version) {
  const r = await api('GET', '/models');
  const m = r.models.find((/** @type {any} */ x) => x.version === version);
  if (!m) throw new ApiError(404, 'model_not_found', `no model version "${version}"`);
  const out = h('div', { id: 'rollback-result' });
  const canRoll = !m.champion && m.status !== 'rejected' && m.status !== 'candidate';
  const rollback = m.champion
    ? h('button', { type: 'button', id: 'rollback', class: 'secondary', disabled: true }, 'Serving now')
    : adminButton(
        `Roll back to ${version}`,
        async () => {
          if (!window.confirm(`Switch serving to ${version}? In-flight searches finish on the current pair.`)) return;
          out.replaceChildren(h('p', { class: 'muted' }, 'Switching…'));
          try {
            const x = await api('POST', `/models/${encodeURIComponent(version)}/rollback`);
            out.replaceChildren(
              notice(`Serving ${x.model} (${x.changed ? 'switched' : 'already serving'}${x.rebuilt ? ', indexes rebuilt' : ''}).`),
            );
            setTimeout(() => {
              if (parseHash().arg === version) void route();
            }, 800);
          } catch (err) {
            out.replaceChildren(errorBox(err));
          }
        },
        { id: 'rollback', class: 'danger' },
      );
  if (S.role === 'admin' && !m.champion && !canRoll) {
    // A version the API would refuse (rejected, never promoted) keeps the button, but says why.
    /** @type {HTMLButtonElement} */ (rollback).title = `a ${m.status} model was never served; the API answers model_unavailable`;
  }
  const card = m.card ?? {};
  const reports = m.evalReports ?? [];
  return [
    h('h1', null, `Model `, h('span', { class: 'mono' }, version)),
    h(
      'div',
      { class: 'grid' },
      h(
        'div',
        { class: 'card' },
        h(
          'dl',
          { class: 'kv' },
          h('dt', null, 'Status'),
          h('dd', null, badge(m.status), m.champion ? ' serving' : ''),
          h('dt', null, 'Parent'),
          h('dd', { class: 'mono' }, m.parentVersion ? link(`#/models/${encodeURIComponent(m.parentVersion)}`, m.parentVersion) : '—'),
          h('dt', null, 'Created'),
          h('dd', null, fmtTime(m.createdAt)),
          h('dt', null, 'Promoted'),
          h('dd', null, fmtTime(m.promotedAt)),
          h('dt', null, 'Dimensions'),
          h('dd', null, m.dim),
          card.job_id ? [h('dt', null, 'Job'), h('dd', null, link(`#/jobs/${card.job_id}`, shortId(card.job_id)))] : '',
          card.training_data_hash
            ? [h('dt', null, 'Data hash'), h('dd', { class: 'mono' }, String(card.training_data_hash).slice(0, 16))]
            : '',
        ),
      ),
      h(
        'div',
        { class: 'card' },
        h('h2', null, 'Rollback'),
        h(
          'p',
          { class: 'muted small' },
          'Switches the serving pointer back to this version (instant when its pair is retained, else its indexes are rebuilt first).',
        ),
        rollback,
        out,
      ),
    ),
    h('h2', null, 'Gate reports'),
    reports.length === 0 ? h('p', { class: 'muted card' }, 'No gate report: this model was not a candidate of a retrain job.') : '',
    ...reports.map(gateReport),
  ];
}

// ----------------------------------------------------------------------------------------- jobs
function jobRow(/** @type {any} */ j) {
  return h(
    'tr',
    { 'data-job': j.id },
    h('td', null, link(`#/jobs/${j.id}`, shortId(j.id), { class: 'mono' })),
    h('td', null, j.collection),
    h('td', null, j.trigger),
    h('td', null, badge(j.state)),
    h('td', { class: 'hide-narrow' }, fmtTime(j.createdAt)),
    h('td', { class: 'num' }, fmtSecs(j.timings?.total)),
  );
}

async function jobsPage(/** @type {string | undefined} */ _arg, /** @type {URLSearchParams} */ query) {
  const c = query.get('c');
  const path = `/jobs?limit=100${c ? `&collection=${encodeURIComponent(c)}` : ''}`;
  const tbody = h('tbody');
  const fill = (/** @type {any[]} */ jobs) => tbody.replaceChildren(...jobs.map(jobRow));
  const { jobs } = await api('GET', path);
  fill(jobs);
  every(async () => {
    const r = await api('GET', path).catch(() => undefined);
    if (r) fill(r.jobs);
  }, 2000);
  return [
    h('h1', null, c ? `Jobs of ${c}` : 'Jobs'),
    h(
      'div',
      { class: 'card' },
      jobs.length === 0
        ? h('p', { class: 'muted' }, 'No retrain jobs yet. Drift starts one (AUTO_RETRAIN), or an admin does from a collection.')
        : '',
      dataTable({ id: 'jobs' }, [['Job'], ['Collection'], ['Trigger'], ['State'], ['Created', 'hide-narrow'], ['Total', 'num']], tbody),
    ),
  ];
}

/** Live loss points, kept per job while the page is open (the job stores only the trainer's last line). */
const lossSeen = new Map();

async function jobPage(/** @type {string} */ id) {
  let j = await api('GET', `/jobs/${encodeURIComponent(id)}`);
  const head = h('div', { id: 'job-head' });
  const timeline = h('div', { class: 'card', id: 'timeline' });
  const progress = h('div', { id: 'job-progress' });
  const points = lossSeen.get(id) ?? new Map();
  lossSeen.set(id, points);
  /** @type {any} */
  let lossBox;
  /** @type {any} */
  let timeBox;
  let finalCurve = false;
  let curveFromReport = false;

  const addLoss = (/** @type {any} */ p) => {
    if (!p || typeof p.step !== 'number' || typeof p.loss !== 'number') return;
    // A soup's members count their own steps (member_step); the global step interleaves them.
    const step = typeof p.member === 'number' && typeof p.member_step === 'number' ? p.member_step : p.step;
    points.set(`${p.member ?? 0}:${step}`, { x: step, y: p.loss, member: p.member ?? 0 });
  };
  const lossDatasets = () => {
    /** @type {Map<number, any[]>} */
    const byMember = new Map();
    for (const p of [...points.values()].sort((a, b) => a.x - b.x)) {
      if (!byMember.has(p.member)) byMember.set(p.member, []);
      /** @type {any[]} */ (byMember.get(p.member)).push({ x: p.x, y: p.y });
    }
    const palette = [COLORS.line, COLORS.line2, '#1a7f37', '#8e5bd0', '#c4321c', '#6c8ebf', '#9a6700', '#333'];
    return [...byMember.entries()].map(([m, data], i) => ({
      label: byMember.size > 1 ? `loss (soup member ${m})` : 'training loss',
      data,
      borderColor: palette[i % palette.length],
      backgroundColor: palette[i % palette.length],
      pointRadius: data.length > 40 ? 0 : 2,
      tension: 0.2,
    }));
  };

  const render = async () => {
    if (!finalCurve) addLoss(j.progress?.training?.progress);
    if (!finalCurve && j.candidateVersion && ['evaluating', 'reembedding', 'swapping', 'done', 'rejected'].includes(j.state)) {
      // The trainer's whole curve, from the artifact's train_report.json, once training is over.
      const c = await api('GET', `/console/api/jobs/${encodeURIComponent(id)}/loss`).catch(() => undefined);
      if (c?.points.length) {
        points.clear();
        for (const p of c.points) addLoss(p);
        curveFromReport = true;
      }
      finalCurve = Boolean(c);
    }
    const terminal = TERMINAL.includes(j.state);
    head.replaceChildren(
      h(
        'div',
        { class: 'grid' },
        h(
          'div',
          { class: 'card' },
          h(
            'dl',
            { class: 'kv' },
            h('dt', null, 'State'),
            h(
              'dd',
              null,
              h('span', { id: 'job-state', 'data-state': j.state }, badge(j.state)),
              terminal ? '' : h('span', { class: 'muted small' }, ' live'),
            ),
            h('dt', null, 'Collection'),
            h('dd', null, link(`#/collections/${encodeURIComponent(j.collection)}`, j.collection)),
            h('dt', null, 'Trigger'),
            h('dd', null, j.trigger),
            h('dt', null, 'Parent'),
            h('dd', { class: 'mono' }, link(`#/models/${encodeURIComponent(j.parentVersion)}`, j.parentVersion)),
            h('dt', null, 'Candidate'),
            h(
              'dd',
              { class: 'mono' },
              j.candidateVersion
                ? link(`#/models/${encodeURIComponent(j.candidateVersion)}`, j.candidateVersion, { id: 'candidate-link' })
                : '—',
            ),
            h('dt', null, 'Created'),
            h('dd', null, fmtTime(j.createdAt)),
            h('dt', null, 'Updated'),
            h('dd', null, fmtTime(j.updatedAt)),
          ),
        ),
        j.gate
          ? h(
              'div',
              { class: 'card' },
              h('h2', null, 'Gate ', badge(j.gate.passed ? 'pass' : 'fail')),
              h('p', { class: 'small' }, (j.gate.decision?.reasons ?? []).join(' ')),
              j.candidateVersion ? link(`#/models/${encodeURIComponent(j.candidateVersion)}`, 'Gate chart on the model page') : '',
            )
          : '',
      ),
      j.error ? h('div', { class: 'card' }, h('h2', null, 'Why it failed'), h('pre', { class: 'error', id: 'job-error' }, j.error)) : '',
    );

    // State timeline: seconds in each state (timings), the current one open.
    const t = j.timings ?? {};
    const idx = JOB_STATES.indexOf(j.state);
    timeline.replaceChildren(
      h('h2', null, 'Timeline'),
      h(
        'ol',
        { class: 'timeline', id: 'states' },
        [...JOB_STATES, terminal ? j.state : 'done'].map((s, i) =>
          h(
            'li',
            {
              class: s === j.state ? 'current' : t[s] !== undefined || (idx >= 0 && i < idx) ? 'past' : terminal ? 'skipped' : '',
              'data-state': s,
              'aria-current': s === j.state ? 'step' : undefined,
            },
            s,
            t[s] !== undefined ? ` · ${fmtSecs(t[s])}` : s === j.state && !terminal ? ' · now' : '',
          ),
        ),
      ),
      t.total !== undefined ? h('p', { class: 'muted small' }, `total ${fmtSecs(t.total)}`) : '',
    );
    const spans = JOB_STATES.filter((s) => typeof t[s] === 'number');
    const timeData = {
      labels: ['time in state'],
      datasets: spans.map((s) => ({ label: s, data: [t[s]], backgroundColor: /** @type {any} */ (STATE_COLORS)[s] })),
    };
    if (spans.length) {
      if (!timeBox?.chart) {
        timeBox = chart(
          `Time in each state: ${spans.map((s) => `${s} ${fmtSecs(t[s])}`).join(', ')}`,
          {
            type: 'bar',
            data: timeData,
            options: {
              indexAxis: 'y',
              scales: { x: { stacked: true, title: { display: true, text: 'seconds' } }, y: { stacked: true, display: false } },
              plugins: { legend: { position: 'bottom' } },
            },
          },
          'timeline',
        );
      } else {
        timeBox.chart.data = timeData;
        timeBox.chart.update('none');
      }
      timeline.append(timeBox);
    }

    // Progress inside the states.
    const p = j.progress ?? {};
    const parts = [];
    if (p.mining) {
      parts.push(
        h(
          'div',
          { class: 'card' },
          h('h2', null, 'Mining'),
          h(
            'dl',
            { class: 'kv small' },
            Object.entries(p.mining)
              .filter(([, v]) => typeof v === 'number' || typeof v === 'string')
              .slice(0, 12)
              .flatMap(([k, v]) => [h('dt', null, k), h('dd', null, typeof v === 'number' ? fmtInt(v) : String(v).slice(0, 24))]),
          ),
        ),
      );
    }
    if (p.training || j.state === 'training') {
      const tr = p.training ?? {};
      const last = tr.progress;
      const ds = lossDatasets();
      if (!lossBox?.chart) {
        lossBox = chart('Training loss by step', {
          type: 'line',
          data: { datasets: ds },
          options: {
            parsing: true,
            scales: { x: { type: 'linear', title: { display: true, text: 'step' } }, y: { title: { display: true, text: 'loss' } } },
            plugins: { legend: { position: 'bottom' } },
          },
        });
      } else {
        lossBox.chart.data.datasets = ds;
        lossBox.chart.update('none');
      }
      parts.push(
        h(
          'div',
          { class: 'card', id: 'training' },
          h('h2', null, 'Training'),
          h(
            'p',
            { class: 'small muted', id: 'training-last' },
            last
              ? `step ${last.step}${last.total ? ` of ${last.total}` : ''}, loss ${fmtNum(last.loss, 4)}${last.epoch !== undefined ? `, epoch ${fmtNum(last.epoch, 2)}` : ''}`
              : "waiting for the trainer's first progress line…",
            tr.lastEvent ? ` · last event: ${tr.lastEvent}` : '',
            tr.wallSeconds ? ` · ${fmtSecs(tr.wallSeconds)} wall` : '',
            curveFromReport
              ? ` · the curve: all ${fmtInt(points.size)} points of the trainer's report`
              : points.size
                ? ' · the curve: progress lines seen while this page was open'
                : '',
          ),
          points.size ? lossBox : h('p', { class: 'muted' }, 'No loss reported yet.'),
        ),
      );
    }
    if (p.reembed || j.state === 'reembedding') {
      const r = p.reembed ?? {};
      const ratio = typeof r.ratio === 'number' ? r.ratio : 0;
      parts.push(
        h(
          'div',
          { class: 'card', id: 'reembed' },
          h('h2', null, 'Shadow re-embed'),
          h(
            'label',
            null,
            `${Math.round(ratio * 100)}%${r.overallTotal ? ` · ${fmtInt(r.overallDone)} of ${fmtInt(r.overallTotal)} chunks` : ''}${r.collection ? ` · ${r.collection}` : ''}`,
            h('progress', { id: 'reembed-bar', max: 1, value: ratio }),
          ),
        ),
      );
    }
    if (p.swap) parts.push(h('div', { class: 'card' }, h('h2', null, 'Cut-over'), h('pre', null, JSON.stringify(p.swap, null, 1))));
    progress.replaceChildren(h('div', { class: 'grid-2' }, parts));
  };
  await render();
  every(async () => {
    if (TERMINAL.includes(j.state) && (finalCurve || j.state === 'failed')) return;
    const next = await api('GET', `/jobs/${encodeURIComponent(id)}`).catch(() => undefined);
    if (!next) return;
    const changed = JSON.stringify(next) !== JSON.stringify(j);
    j = next;
    if (changed || !finalCurve) await render();
  }, 1000);
  return [h('h1', null, 'Job ', h('span', { class: 'mono' }, shortId(id))), head, timeline, progress];
}

// ---------------------------------------------------------------------------------------- drift
async function driftPage(/** @type {string | undefined} */ _arg, /** @type {URLSearchParams} */ query) {
  const { collections } = await api('GET', '/collections');
  if (collections.length === 0) return [h('h1', null, 'Drift'), h('p', null, 'No collections yet.')];
  const name = query.get('c') ?? collections[0].name;
  const sel = /** @type {HTMLSelectElement} */ (
    h(
      'select',
      {
        id: 'drift-collection',
        onchange: () => {
          location.hash = `#/drift?c=${encodeURIComponent(sel.value)}`;
        },
      },
      collections.map((/** @type {any} */ c) => h('option', { value: c.name, selected: c.name === name }, c.name)),
    )
  );
  const trigger = /** @type {HTMLInputElement} */ (h('input', { type: 'checkbox', id: 'drift-trigger', disabled: S.role !== 'admin' }));
  const out = h('div', { id: 'drift-check-result', 'aria-live': 'polite' });
  const charts = h('div', { id: 'drift-charts' });
  const detections = h('div', { class: 'card', id: 'detections' });
  const check = h(
    'button',
    {
      type: 'button',
      id: 'drift-check',
      onclick: async () => {
        out.replaceChildren(h('p', { class: 'muted' }, 'Checking…'));
        try {
          const r = await api('GET', `/drift?collection=${encodeURIComponent(name)}${trigger.checked ? '&trigger=true' : ''}`);
          out.replaceChildren(
            r.drifted
              ? h(
                  'div',
                  { class: 'error', role: 'status' },
                  `Drift: ${(r.reasons ?? []).join('; ')}`,
                  r.jobId
                    ? [' — started ', link(`#/jobs/${r.jobId}`, `job ${shortId(r.jobId)}`)]
                    : r.cooldown
                      ? ' (cooldown: no new job)'
                      : '',
                )
              : notice(r.status === 'insufficient_data' ? `No verdict: ${(r.reasons ?? []).join('; ')}` : 'No drift.'),
          );
          await draw();
        } catch (err) {
          out.replaceChildren(errorBox(err));
        }
      },
    },
    'Run a check now',
  );

  let lastIds = '';
  const draw = async () => {
    const { reports } = await api('GET', `/drift/reports?collection=${encodeURIComponent(name)}&limit=500`);
    const ids = reports.map((/** @type {any} */ r) => r.id).join(',');
    if (ids === lastIds) return;
    lastIds = ids;
    for (const c of S.charts.splice(0)) c.destroy();
    const rs = [...reports].sort((a, b) => Date.parse(a.createdAt) - Date.parse(b.createdAt));
    charts.replaceChildren(...driftCharts(rs));
    const hits = rs.filter((r) => r.drifted).reverse();
    detections.replaceChildren(
      h('h2', null, `Detections (${hits.length})`),
      hits.length === 0
        ? h('p', { class: 'muted' }, 'No check has crossed the thresholds.')
        : dataTable(
            { id: 'detection-table' },
            [['When'], ['Why'], ['Job']],
            hits.map((r) =>
              h(
                'tr',
                null,
                h('td', null, fmtTime(r.createdAt)),
                h('td', { class: 'small' }, (r.metrics?.reasons ?? []).join('; ')),
                h(
                  'td',
                  null,
                  r.jobId
                    ? link(`#/jobs/${r.jobId}`, shortId(r.jobId), { class: 'mono detection-job' })
                    : h('span', { class: 'muted small' }, r.metrics?.cooldown ? 'cooldown' : 'none'),
                ),
              ),
            ),
          ),
    );
  };
  await draw();
  every(draw, 5000);
  return [
    h('h1', null, `Drift of ${name}`),
    h(
      'div',
      { class: 'card' },
      h(
        'div',
        { class: 'row' },
        h('label', null, 'Collection', sel),
        check,
        h(
          'label',
          { class: 'inline', title: S.role === 'admin' ? undefined : 'needs an admin API key' },
          trigger,
          'start a retrain if it fires',
        ),
      ),
      h(
        'p',
        { class: 'muted small' },
        'Each point is one stored check (the scheduler every DRIFT_INTERVAL_SECONDS, or on demand). Dashed lines: the thresholds; red triangles: checks that detected drift.',
      ),
      out,
    ),
    charts,
    detections,
  ];
}

function driftCharts(/** @type {any[]} */ rs) {
  if (rs.length === 0) return [h('p', { class: 'card muted' }, 'No drift checks stored yet. Run one.')];
  const xs = rs.map((r) => Date.parse(r.createdAt));
  const th = rs[rs.length - 1].metrics?.thresholds ?? {};
  const x0 = xs[0],
    x1 = xs[xs.length - 1] === x0 ? x0 + 1000 : xs[xs.length - 1];
  const series = (/** @type {(m: any) => any} */ f) =>
    rs.map((r, i) => {
      const v = f(r.metrics ?? {});
      return { x: xs[i], y: typeof v === 'number' && Number.isFinite(v) ? v : null };
    });
  const threshold = (/** @type {number | undefined} */ v, /** @type {string} */ label, axis = 'y') =>
    typeof v === 'number'
      ? [
          {
            label,
            data: [
              { x: x0, y: v },
              { x: x1, y: v },
            ],
            borderColor: COLORS.threshold,
            borderDash: [6, 4],
            borderWidth: 1.5,
            pointRadius: 0,
            yAxisID: axis,
          },
        ]
      : [];
  const marks = (/** @type {{x: number, y: number | null}[]} */ s, axis = 'y') => ({
    label: 'drift detected',
    type: 'scatter',
    yAxisID: axis,
    data: s.filter((p, i) => rs[i].drifted && p.y !== null),
    pointStyle: 'triangle',
    pointRadius: 8,
    backgroundColor: COLORS.detection,
    borderColor: COLORS.detection,
  });
  const radius = rs.length > 80 ? 0 : rs.length > 30 ? 2 : 3;
  const line = (/** @type {string} */ label, /** @type {any[]} */ data, color = COLORS.line, axis = 'y') => ({
    label,
    data,
    borderColor: color,
    backgroundColor: color,
    pointRadius: radius,
    pointHitRadius: 6,
    spanGaps: false,
    yAxisID: axis,
  });
  const byX = new Map(rs.map((r, i) => [xs[i], r]));
  // Whole seconds at least: a sub-second step would print the same HH:MM:SS twice.
  const x = {
    type: 'linear',
    ticks: { callback: (/** @type {number} */ v) => shortTime(v), maxTicksLimit: 6, stepSize: x1 - x0 < 6000 ? 1000 : undefined },
    title: { display: false },
  };
  const tooltip = {
    callbacks: {
      title: (/** @type {any[]} */ items) => (items[0] ? new Date(items[0].parsed.x).toLocaleString('en-GB', { hour12: false }) : ''),
      footer: (/** @type {any[]} */ items) => {
        const r = items[0] && byX.get(items[0].parsed.x);
        return r?.drifted ? (r.jobId ? `drift: started job ${shortId(r.jobId)} (click)` : 'drift: no job started') : '';
      },
    },
  };
  // A click on a detection opens the job it started.
  const onClick = (/** @type {any} */ _e, /** @type {any[]} */ els, /** @type {any} */ ch) => {
    for (const el of els) {
      const ds = ch.data.datasets[el.datasetIndex];
      const r = ds.label === 'drift detected' ? byX.get(ds.data[el.index].x) : undefined;
      if (r?.jobId) {
        location.hash = `#/jobs/${r.jobId}`;
        return;
      }
    }
  };
  const opts = (/** @type {any} */ y, /** @type {any} */ extra = {}) => ({
    onClick,
    scales: { x, y, ...extra },
    plugins: { legend: { position: 'bottom', labels: { boxWidth: 12 } }, tooltip },
  });

  const auc = series((m) => m.domainAuc);
  const cen = series((m) => m.centroidDistance);
  const mmdP = series((m) => m.mmd?.pValue);
  const mmd2 = series((m) => m.mmd?.mmd2);
  const ks1 = series((m) => m.top1Score?.statistic);
  const ks2 = series((m) => m.top1Gap?.statistic);
  // p-values on a log axis: 0 (no permutation beat the observed MMD) is drawn at its floor.
  const pFloor = 1 / ((rs[rs.length - 1].metrics?.mmd?.permutations ?? 200) + 1);
  const mmdPlot = mmdP.map((p) => ({ x: p.x, y: p.y === null ? null : Math.max(p.y, pFloor / 2) }));
  const card = (/** @type {string} */ title, /** @type {string} */ help, /** @type {HTMLElement} */ c, /** @type {string} */ id) =>
    h('section', { class: 'card', id }, h('h2', null, title), h('p', { class: 'muted small' }, help), c);
  return [
    h(
      'div',
      { class: 'grid-2' },
      card(
        'Domain classifier AUC',
        `0.5 = the windows are indistinguishable; drift needs ≥ ${th.auc ?? '?'} (or the centroid) and a significant MMD.`,
        chart('Domain classifier ROC-AUC over time with its threshold', {
          type: 'line',
          data: { datasets: [line('domain AUC', auc), ...threshold(th.auc, `threshold ${th.auc}`), marks(auc)] },
          options: opts({ suggestedMin: 0.4, suggestedMax: 1 }),
        }),
        'chart-auc',
      ),
      card(
        'MMD',
        `Kernel MMD² and its permutation p-value (log axis); significant below ${th.mmdPValue ?? '?'}.`,
        chart('MMD squared and permutation p-value over time with the p-value threshold', {
          type: 'line',
          data: {
            datasets: [
              line('p-value', mmdPlot, COLORS.line, 'p'),
              line('MMD²', mmd2, COLORS.line2, 'y'),
              ...threshold(th.mmdPValue, `p threshold ${th.mmdPValue}`, 'p'),
              marks(mmdPlot, 'p'),
            ],
          },
          options: opts(
            { position: 'right', beginAtZero: true, title: { display: true, text: 'MMD²' }, grid: { drawOnChartArea: false } },
            { p: { type: 'logarithmic', position: 'left', max: 1, title: { display: true, text: 'p-value' } } },
          ),
        }),
        'chart-mmd',
      ),
      card(
        'Centroid distance',
        `Cosine distance between the windows' mean query embeddings; drift needs ≥ ${th.centroid ?? '?'} (or the AUC).`,
        chart('Centroid cosine distance over time with its threshold', {
          type: 'line',
          data: { datasets: [line('centroid distance', cen), ...threshold(th.centroid, `threshold ${th.centroid}`), marks(cen)] },
          options: opts({ beginAtZero: true }),
        }),
        'chart-centroid',
      ),
      card(
        'KS statistics',
        "Kolmogorov–Smirnov distance between the windows' top-1 scores and top-1/top-2 gaps (reported, not part of the rule).",
        [...ks1, ...ks2].some((p) => p.y !== null)
          ? chart('KS statistics of top-1 score and top-1 gap over time', {
              type: 'line',
              data: { datasets: [line('top-1 score KS', ks1), line('top-1 gap KS', ks2, COLORS.line2), marks(ks1)] },
              options: opts({ beginAtZero: true, suggestedMax: 1 }),
            })
          : h(
              'p',
              { class: 'muted' },
              'No KS statistic in these checks: they compare the scores of vector searches served by the same model, and the windows had too few.',
            ),
        'chart-ks',
      ),
    ),
  ];
}

// ---------------------------------------------------------------------------------------- start
/** @type {Record<string, (arg: any, query: URLSearchParams) => Promise<any>>} */
const ROUTES = {
  signin: signinPage,
  collections: (arg) => (arg ? collectionPage(arg) : collectionsPage()),
  playground: playgroundPage,
  models: (arg) => (arg ? modelPage(arg) : modelsPage()),
  jobs: (arg, q) => (arg ? jobPage(arg) : jobsPage(arg, q)),
  drift: driftPage,
};

window.addEventListener('hashchange', () => void route());
// The skip link focuses the content; as a plain #main link it would be taken for a route.
document.querySelector('a.skip')?.addEventListener('click', (e) => {
  e.preventDefault();
  $main().focus();
});
if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', () => void route());
else void route();
