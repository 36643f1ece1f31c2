import { afterAll, expect, test } from 'vitest';
import { encodeSource } from '../../src/serving/models.js';
import { TINY_MODEL, freshPostgres, startTestServer, type TestServer } from '../helpers.js';

// N stateless replicas share one Postgres. Needs a real server (CI starts one; see .ci/run).
const url = process.env.TEST_DATABASE_URL;
const servers: TestServer[] = [];
const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const s of servers) await s.dispose();
  for (const c of cleanups) await c();
});

async function eventually<T>(fn: () => Promise<T>, ok: (v: T) => boolean, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (ok(v) || Date.now() > end) return v;
    await new Promise((r) => setTimeout(r, 200));
  }
}

test.skipIf(!url)('replicas on one Postgres see each other\'s writes and follow the champion pointer', async () => {
  const db = await freshPostgres('rt_replicas');
  cleanups.push(db.drop);
  const a = await startTestServer({ DATABASE_URL: db.url });
  servers.push(a);
  const b = await startTestServer({ DATABASE_URL: db.url, LOG_LEVEL: (process.env.TEST_LOG_LEVEL as 'warn' | undefined) ?? 'silent' });
  servers.push(b);
  expect((await a.req('POST', '/collections', { name: 'shared' })).status).toBe(201);
  await a.req('POST', '/collections/shared/documents', { documents: [{ id: 'r1', text: 'written through replica a about glaciers' }] });
  const seen = await eventually(
    () => b.req('POST', '/search', { collection: 'shared', query: 'written through replica a about glaciers', k: 1 }),
    (r) => r.status === 200 && r.body.results[0]?.id === 'r1',
  );
  expect(seen.body.results[0].id).toBe('r1');
  // Replica a deletes; b stops returning it.
  await a.req('DELETE', '/collections/shared/documents/r1');
  const gone = await eventually(
    () => b.req('POST', '/search', { collection: 'shared', query: 'glaciers', k: 1 }),
    (r) => r.status === 200 && r.body.results.length === 0,
  );
  expect(gone.body.results).toEqual([]);
  await a.req('POST', '/collections/shared/documents', { documents: [{ id: 'r2', text: 'a document that both replicas must serve' }] });

  // A champion change recorded by one replica (as a swap does) is picked up by the other, which
  // builds its own index for the new model before it serves with it.
  await a.store.upsertModelVersion({ version: 'tiny-next', parentVersion: a.engine.serving.version, source: encodeSource({ kind: 'dir', path: TINY_MODEL }), dim: a.engine.serving.embedder.dim, status: 'candidate', card: {} });
  await a.store.promote('tiny-next');
  const followed = await eventually(
    () => b.req('POST', '/search', { collection: 'shared', query: 'a document that both replicas must serve', k: 1 }),
    (r) => r.status === 200 && r.body.model === 'tiny-next',
    60_000,
  );
  expect(followed.body.model).toBe('tiny-next');
  expect(followed.body.results[0].id).toBe('r2');
}, 120_000);
