import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { createApiKey } from '../../src/auth/keys.js';
import { startTestServer, type TestServer } from '../helpers.js';

let s: TestServer;
let admin: string;
let read: string;

beforeAll(async () => {
  s = await startTestServer({ AUTH: 'on' });
  const file = join(s.dataDir, 'admin.key');
  // The first start mints an admin key into a private file.
  expect(statSync(file).mode & 0o777).toBe(0o600);
  admin = readFileSync(file, 'utf8').trim();
  read = (await createApiKey(s.store, { role: 'read', name: 'rag-app' })).key;
}, 60_000);
afterAll(async () => {
  await s?.dispose();
});

const bearer = (k: string) => ({ authorization: `Bearer ${k}` });

test('no key → 401 unauthorized; health and readiness stay open, /metrics needs a read key (METRICS_AUTH=read)', async () => {
  const r = await s.req('GET', '/collections');
  expect(r.status).toBe(401);
  expect(r.body.error.code).toBe('unauthorized');
  expect(r.headers.get('www-authenticate')).toMatch(/Bearer/);
  for (const p of ['/healthz', '/readyz']) expect((await s.req('GET', p)).status).toBe(200);
  expect((await s.req('GET', '/metrics')).status).toBe(401);
  expect((await s.req('GET', '/metrics', undefined, bearer(read))).status).toBe(200);
});

test('wrong key → 401; keys are stored hashed', async () => {
  expect((await s.req('GET', '/collections', undefined, bearer('rk_nope'))).status).toBe(401);
  const stored = await s.store.findApiKeyByHash(admin);
  expect(stored).toBeUndefined();
});

test('read key searches and embeds but cannot write (403 forbidden); admin can', async () => {
  expect((await s.req('POST', '/collections', { name: 'sec' }, bearer(read))).body.error.code).toBe('forbidden');
  expect((await s.req('POST', '/collections', { name: 'sec' }, bearer(admin))).status).toBe(201);
  const ing = await s.req('POST', '/collections/sec/documents', { documents: [{ id: '1', text: 'secret plans' }] }, bearer(read));
  expect(ing.status).toBe(403);
  expect(
    (await s.req('POST', '/collections/sec/documents', { documents: [{ id: '1', text: 'secret plans' }] }, bearer(admin))).status,
  ).toBe(200);
  const q = await s.req('POST', '/search', { collection: 'sec', query: 'secret plans', k: 1 }, bearer(read));
  expect(q.status).toBe(200);
  expect(q.body.results[0].id).toBe('1');
  expect((await s.req('POST', '/v1/embeddings', { input: 'x' }, { 'x-api-key': read })).status).toBe(200);
  expect((await s.req('DELETE', '/collections/sec', undefined, bearer(read))).status).toBe(403);
});

test('/metrics labels refused requests with the route they asked for, not "unmatched"', async () => {
  await s.req('POST', '/search', { collection: 'x', query: 'q' });
  await s.req('DELETE', '/collections/abc', undefined, bearer(read));
  await s.req('GET', '/no/such/route', undefined, bearer(admin));
  const m = (await s.req('GET', '/metrics', undefined, bearer(read))).body as string;
  expect(m).toMatch(/http_requests_total\{route="\/search",method="POST",status="401"\} [1-9]/);
  expect(m).toMatch(/http_requests_total\{route="\/collections\/:name",method="DELETE",status="403"\} [1-9]/);
  expect(m).toMatch(/http_requests_total\{route="unmatched",method="GET",status="404"\} [1-9]/);
});
