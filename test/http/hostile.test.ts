// The hostile set: inputs and situations a hostile run and a review found answering 500 (or leaking, or
// disagreeing with the README). Every case must answer a stable 4xx/503 code — 0 × 5xx — and the server
// must keep serving afterwards.
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createApiKey } from '../../src/auth/keys.js';
import { MAX_JSON_DEPTH } from '../../src/http/validate.js';
import { startServer } from '../../src/server.js';
import { REPO, TINY_MODEL, freePort, startTestServer, tempDir, type TestServer } from '../helpers.js';

const bearer = (k: string) => ({ authorization: `Bearer ${k}` });
const nested = (depth: number, leaf: unknown = 1): unknown => {
  let v = leaf;
  for (let i = 0; i < depth; i++) v = { a: v };
  return v;
};
const statuses: number[] = [];

let s: TestServer;
let admin: string;
let read: string;
beforeAll(async () => {
  s = await startTestServer({ AUTH: 'on', ADMIN_API_KEY: 'hostile-admin-key-0123456789' }, { loop: true });
  admin = 'hostile-admin-key-0123456789';
  read = (await createApiKey(s.store, { role: 'read', name: 'app' })).key;
  await s.req('POST', '/collections', { name: 'h' }, bearer(admin));
  await s.req('POST', '/collections/h/documents', { documents: [{ id: '1', text: 'seed document' }] }, bearer(admin));
}, 60_000);
afterAll(async () => {
  await s?.dispose();
  // The whole file's answers: 0 × 5xx.
  expect(statuses.filter((x) => x >= 500 && x !== 503)).toEqual([]);
});

async function call(method: string, path: string, body?: unknown, key = admin) {
  const r = await s.req(method, path, body, bearer(key));
  statuses.push(r.status);
  expect(r.status, `${method} ${path} → ${JSON.stringify(r.body).slice(0, 300)}`).toBeLessThan(500);
  return r;
}

describe('metadata nested thousands deep (JSON.stringify overflowed the stack)', () => {
  test(`5,000 levels → 400 nesting_too_deep on every JSON route; ${MAX_JSON_DEPTH} levels in all is fine`, async () => {
    // Written as text: JSON.stringify itself cannot produce it.
    const deep = `${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}`;
    const bodies: [string, string, string][] = [
      ['POST', '/collections/h/documents', `{"documents":[{"id":"d","text":"deep","metadata":${deep}}]}`],
      ['POST', '/search', `{"collection":"h","query":"x","filter":${deep}}`],
      ['POST', '/collections', `{"name":"n","hnsw":${deep}}`],
      ['POST', '/v1/embeddings', `{"input":[${deep}]}`],
      ['POST', '/feedback', `{"queryId":${deep},"documentId":"1"}`],
      ['POST', '/collections/h/retrain', `{"trigger":${deep}}`],
    ];
    for (const [method, path, body] of bodies) {
      const r = await call(method, path, body);
      expect(r.status).toBe(400);
      expect(r.body.error.code).toBe('nesting_too_deep');
    }
    // body (1) → documents (2) → document (3) → metadata (4) → … : metadata may hold 28 more levels.
    const ok = await call('POST', '/collections/h/documents', { documents: [{ id: 'ok', text: 'nested but fine', metadata: nested(29) }] });
    expect(ok.status).toBe(200);
    expect((await call('GET', '/collections/h/documents/ok')).body.metadata).toEqual(nested(29));
    const over = await call('POST', '/collections/h/documents', { documents: [{ id: 'no', text: 'one too deep', metadata: nested(30) }] });
    expect(over.body.error.code).toBe('nesting_too_deep');
  });
});

test('upserts racing DELETE /collections/:name → 200 or 404 collection_not_found, never a FOREIGN KEY 500', async () => {
  let notFound = 0;
  // The DELETE lands at different points of the upserts' work: before they look the collection up, while
  // they embed (outside the write lock), and while they wait for the lock.
  for (const [round, delayMs] of [0, 2, 5, 10, 20, 40].entries()) {
    const name = `race${round}`;
    expect((await call('POST', '/collections', { name })).status).toBe(201);
    const upserts = Array.from({ length: 12 }, (_, i) =>
      call('POST', `/collections/${name}/documents`, {
        documents: Array.from({ length: 8 }, (_, j) => ({ id: `d${i}-${j}`, text: `racing document ${i} ${j} `.repeat(20) })),
      }),
    );
    await new Promise((r) => setTimeout(r, delayMs));
    const del = call('DELETE', `/collections/${name}`);
    const all = await Promise.all([...upserts, del]);
    expect((await del).status).toBe(200);
    notFound += all.filter((r) => r.status === 404).length;
    for (const r of all.slice(0, -1)) {
      expect([200, 404], JSON.stringify(r.body)).toContain(r.status);
      if (r.status === 404) expect(r.body.error.code).toBe('collection_not_found');
    }
  }
  expect(notFound).toBeGreaterThan(0);
});

test('GET /jobs/:id: the trainer stderr tail is for admin keys; read keys get the first line', async () => {
  const error = 'trainer exited with code 1\nTraceback (most recent call last):\n  File "/opt/secret/trainer/train.py", line 9';
  const job = await s.store.insertJob({
    id: '0badc0de-0000-4000-8000-000000000001',
    collection: 'h',
    trigger: 'manual',
    state: 'failed',
    progress: { stderrTail: ['Traceback (most recent call last):', '  File "/opt/secret/trainer/train.py"'], mining: { pairs: 3 } },
    timings: {},
    parentVersion: 'base',
    candidateVersion: null,
    error,
  });
  const asAdmin = await call('GET', `/jobs/${job.id}`);
  expect(asAdmin.body.error).toBe(error);
  expect(asAdmin.body.progress.stderrTail).toHaveLength(2);
  const asRead = await call('GET', `/jobs/${job.id}`, undefined, read);
  expect(asRead.status).toBe(200);
  expect(asRead.body.error).toBe('trainer exited with code 1');
  expect(asRead.body.progress).toEqual({ mining: { pairs: 3 } });
  const listed = (await call('GET', '/jobs?collection=h', undefined, read)).body.jobs.find((j: { id: string }) => j.id === job.id);
  expect(JSON.stringify(listed)).not.toContain('/opt/secret');
});

test('a wrong method on a known path → 405 method_not_allowed with Allow; an unknown path → 404', async () => {
  const cases: [string, string, string[]][] = [
    ['DELETE', '/search', ['POST']],
    ['GET', '/search', ['POST']],
    ['PUT', '/collections/h', ['GET', 'HEAD', 'DELETE']],
    ['PATCH', '/collections/h/documents/1', ['GET', 'HEAD', 'DELETE']],
    ['POST', '/jobs', ['GET', 'HEAD']],
  ];
  for (const [method, path, allow] of cases) {
    const r = await call(method, path);
    expect(r.status, `${method} ${path}`).toBe(405);
    expect(r.body.error.code).toBe('method_not_allowed');
    expect(r.headers.get('allow')!.split(', ').sort()).toEqual([...allow].sort());
  }
  const r = await call('GET', '/no/such/route');
  expect(r.status).toBe(404);
  expect(r.body.error.code).toBe('not_found');
});

test('METRICS_AUTH=read (default): /metrics needs a key when AUTH=on; METRICS_AUTH=off opens it', async () => {
  expect((await s.req('GET', '/metrics')).status).toBe(401);
  const m = await call('GET', '/metrics', undefined, read);
  expect(m.body).toContain('http_requests_total');
  const open = await startTestServer({ AUTH: 'on', ADMIN_API_KEY: admin, METRICS_AUTH: 'off' });
  try {
    expect((await open.req('GET', '/metrics')).status).toBe(200);
    expect((await open.req('GET', '/collections')).status).toBe(401);
  } finally {
    await open.dispose();
  }
});

test('the port opens while loading: /healthz 200, /readyz and routes 503 not_ready, then ready', async () => {
  const port = await freePort();
  const seen: Record<string, { status: number; code?: string }> = {};
  const server = await startServer({
    env: {},
    config: {
      DATA_DIR: tempDir(),
      MODEL_DIR: TINY_MODEL,
      LOG_LEVEL: 'silent',
      PORT: port,
      HOST: '127.0.0.1',
      AUTH: 'off',
      EMBED_WORKERS: 1,
      INDEX_WORKERS: 1,
      DRIFT_INTERVAL_SECONDS: 0,
    },
    // Runs after the model and indexes load but before the full app takes the port: still loading.
    extend: async () => {
      for (const [method, path] of [
        ['GET', '/healthz'],
        ['GET', '/readyz'],
        ['POST', '/search'],
        ['GET', '/collections'],
      ] as const) {
        const r = await fetch(`http://127.0.0.1:${port}${path}`, { method, body: method === 'POST' ? '{}' : undefined });
        statuses.push(r.status);
        const body = (await r.json()) as { error?: { code: string } };
        seen[`${method} ${path}`] = { status: r.status, code: body.error?.code };
      }
      return {};
    },
  });
  try {
    expect(seen['GET /healthz']!.status).toBe(200);
    for (const k of ['GET /readyz', 'POST /search', 'GET /collections']) expect(seen[k], k).toEqual({ status: 503, code: 'not_ready' });
    expect((await fetch(`${server.url}/readyz`)).status).toBe(200);
  } finally {
    await server.close();
  }
}, 60_000);

describe('start-up failures are one line on stderr and exit 2', () => {
  const run = (env: Record<string, string>) =>
    spawnSync(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      cwd: REPO,
      encoding: 'utf8',
      timeout: 60_000,
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        DATA_DIR: tempDir(),
        MODEL_DIR: TINY_MODEL,
        PORT: '0',
        HOST: '127.0.0.1',
        LOG_LEVEL: 'warn',
        ...env,
      },
    });
  test.each([
    ['DATABASE_URL=mysql://…', { DATABASE_URL: 'mysql://user:pw@db/app' }, /^error: DATABASE_URL must start with postgres:\/\//],
    [
      'an unreachable Postgres',
      { DATABASE_URL: 'postgres://user:secret@127.0.0.1:1/app' },
      /^error: cannot open the Postgres database postgres:\/\/user:\*\*\*@127\.0\.0\.1:1\/app: .*ECONNREFUSED/,
    ],
  ])(
    '%s',
    (_name, env, line) => {
      const r = run(env);
      expect(r.status, r.stderr).toBe(2);
      const lines = r.stderr
        .trim()
        .split('\n')
        .filter((l) => !/ExperimentalWarning|--trace-warnings/.test(l));
      expect(lines, r.stderr).toHaveLength(1);
      expect(lines[0]).toMatch(line);
      expect(r.stderr).not.toContain('secret');
      expect(r.stderr).not.toMatch(/\n\s+at /);
    },
    60_000,
  );

  test('a port already in use', async () => {
    const busy = createServer().listen(0, '127.0.0.1');
    await once(busy, 'listening');
    const { port } = busy.address() as AddressInfo;
    try {
      const r = run({ PORT: String(port) });
      expect(r.status, r.stderr).toBe(2);
      const lines = r.stderr
        .trim()
        .split('\n')
        .filter((l) => !/ExperimentalWarning|--trace-warnings/.test(l));
      expect(lines, r.stderr).toEqual([
        expect.stringMatching(new RegExp(`^error: cannot listen on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE`)),
      ]);
    } finally {
      busy.close();
    }
  }, 60_000);
});

test('npm prints no "Unknown project config" warning; onnxruntime-node post-install stays skipped', () => {
  const r = spawnSync('npm', ['pkg', 'get', 'name'], { cwd: REPO, encoding: 'utf8', timeout: 60_000 });
  expect(r.status).toBe(0);
  expect(r.stderr).not.toMatch(/Unknown (project|user) config/);
  // The skip lives in package.json's allowScripts (npm ≥ 11); .ci/run also exports ONNXRUNTIME_NODE_INSTALL=skip.
  const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { allowScripts: Record<string, boolean> };
  expect(pkg.allowScripts['onnxruntime-node']).toBe(false);
});
