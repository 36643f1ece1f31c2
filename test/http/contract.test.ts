// The API contract is defined once per route (src/http/route.ts: defineRoute): these tests keep the
// hono routes, /openapi.json and the response schemas from drifting apart.
import { afterAll, beforeAll, expect, test } from 'vitest';
import { defaultRoleFor } from '../../src/http/auth.js';
import { routeSpecs } from '../../src/http/route.js';
import { startTestServer, type TestServer } from '../helpers.js';

type Op = {
  operationId?: string;
  'x-role'?: string;
  parameters?: { name: string; in: string }[];
  responses: Record<string, { content?: Record<string, { schema?: unknown }>; headers?: Record<string, unknown> }>;
};

let s: TestServer;
let doc: { paths: Record<string, Record<string, Op>> };
beforeAll(async () => {
  s = await startTestServer(
    { TRAINER_BACKEND: 'command', TRAINER_COMMAND: 'echo "no trainer in this test" >&2; exit 3 # {bundle} {out}', AUTO_RETRAIN: false },
    { loop: true },
  );
  doc = (await s.req('GET', '/openapi.json')).body;
}, 60_000);
afterAll(async () => {
  await s?.dispose();
});

const toOpenApi = (path: string) => path.replace(/:(\w+)/g, '{$1}');

test('every served route is in /openapi.json with an operationId and a success response schema', () => {
  const served = new Set(s.app.routes.filter((r) => r.method !== 'ALL' && !r.path.includes('*')).map((r) => `${r.method} ${r.path}`));
  expect(served.size).toBeGreaterThan(25);
  const ids = new Set<string>();
  for (const route of served) {
    const [method, path] = route.split(' ') as [string, string];
    const op = doc.paths[toOpenApi(path)]?.[method.toLowerCase()];
    expect(op, `${route} is served but not in /openapi.json`).toBeDefined();
    expect(op!.operationId, `${route} has no operationId`).toMatch(/^[a-zA-Z]\w*$/);
    expect(ids.has(op!.operationId!), `operationId ${op!.operationId} is used twice`).toBe(false);
    ids.add(op!.operationId!);
    // Every path parameter is declared.
    for (const p of path.match(/:(\w+)/g) ?? [])
      expect(
        op!.parameters?.some((x) => x.in === 'path' && x.name === p.slice(1)),
        `${route}: ${p} is not declared`,
      ).toBe(true);
    const ok = Object.entries(op!.responses).filter(([status]) => /^2\d\d$/.test(status));
    if (ok.length === 0) {
      // Only a redirect may answer without a 2xx: it declares where to.
      const redirect = Object.entries(op!.responses).find(([status]) => /^3\d\d$/.test(status));
      expect(redirect?.[1].headers?.Location, `${route} has no 2xx response`).toBeDefined();
    }
    for (const [status, res] of ok) expect(Object.values(res.content ?? {})[0]?.schema, `${route} ${status} has no schema`).toBeDefined();
    // The documented role is the one the auth middleware enforces.
    if (op!['x-role'] !== 'public' && !path.startsWith('/console')) expect(op!['x-role'], route).toBe(defaultRoleFor(method, path));
  }
  // Nothing documented that is not served.
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const method of Object.keys(ops))
      expect(served, `${method} ${path} is documented but not served`).toContain(
        `${method.toUpperCase()} ${path.replace(/\{(\w+)\}/g, ':$1')}`,
      );
  }
});

/** Calls a route and checks a 2xx JSON answer against the zod schema its definition declares. */
async function call(method: string, path: string, body?: unknown) {
  const r = await s.req(method, path, body);
  expect(r.status, `${method} ${path} → ${JSON.stringify(r.body).slice(0, 300)}`).toBeLessThan(400);
  const bare = path.split('?')[0]!;
  const spec = routeSpecs(s.app).find(
    (x) => x.method === method.toLowerCase() && new RegExp(`^${x.path.replace(/:\w+/g, '[^/]+')}$`).test(bare),
  );
  expect(spec, `${method} ${path} has no definition`).toBeDefined();
  const schema = spec!.responses[r.status]?.schema;
  expect(schema, `${method} ${path}: status ${r.status} is not declared`).toBeDefined();
  const parsed = schema!.safeParse(r.body);
  expect(parsed.success, `${method} ${path}: ${parsed.error?.message}`).toBe(true);
  return r.body;
}

test('real answers match the declared response schemas', async () => {
  await call('GET', '/healthz');
  await call('GET', '/readyz');
  await call('GET', '/metrics');
  await call('GET', '/console');
  await call('GET', '/console/api/whoami');
  await call('POST', '/collections', { name: 'c', hnsw: { M: 8 } });
  await call('GET', '/collections');
  await call('POST', '/collections/c/documents', {
    documents: [
      { id: 'a', text: 'the quick brown fox', metadata: { lang: 'en' } },
      { id: 'b', text: 'a lazy dog sleeps' },
    ],
  });
  await call('GET', '/collections/c');
  await call('GET', '/collections/c/documents/a');
  const hit = await call('POST', '/search', { collection: 'c', query: 'fox', k: 2 });
  await call('POST', '/search', { collection: 'c', query: 'fox', mode: 'hybrid' });
  await call('POST', '/search', { collection: 'c', query: 'fox', mode: 'keyword' });
  const emb = await call('POST', '/v1/embeddings', { input: 'fox', encoding_format: 'base64' });
  await call('POST', '/search', { collection: 'c', vector: emb.data[0].embedding, mode: 'vector' });
  await call('POST', '/feedback', { queryId: hit.queryId, documentId: 'a' });
  await call('POST', '/v1/embeddings', { input: ['fox', 'dog'] });
  await call('POST', '/v1/embeddings', { input: 'fox', encoding_format: 'base64', input_type: 'query' });
  const models = await call('GET', '/v1/models');
  await call('GET', `/v1/models/${encodeURIComponent(models.data[0].id)}`);
  await call('POST', '/collections/c/reindex');
  await call('POST', '/collections/c/strategy');
  await call('GET', '/drift?collection=c');
  await call('GET', '/drift/reports?collection=c&limit=5');
  const job = await call('POST', '/collections/c/retrain', { trigger: 'contract-test' });
  await call('GET', '/jobs?collection=c');
  for (let i = 0; i < 100; i++) {
    const j = await call('GET', `/jobs/${job.id}`);
    if (['done', 'rejected', 'failed'].includes(j.state)) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  await call('GET', `/console/api/jobs/${job.id}/loss`);
  const m = await call('GET', '/models');
  await call('POST', `/models/${encodeURIComponent(m.serving)}/rollback`);
  await call('DELETE', '/collections/c/documents/b');
  await call('DELETE', '/collections/c');
}, 120_000);
