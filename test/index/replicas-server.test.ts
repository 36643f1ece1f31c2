import { afterAll, beforeAll, expect, test } from 'vitest';
import type { IndexManager } from '../../src/index/manager.js';
import { startTestServer, type TestServer } from '../helpers.js';

// INDEX_REPLICAS: every index worker holds a copy of the collection and searches go to the least busy one,
// so a write must reach every copy before any search can miss it.
let s: TestServer;
const docs = Array.from({ length: 24 }, (_, i) => ({ id: `d${i}`, text: `protein ${i} binds ligand ${i * 7} in compartment ${i % 5}` }));

beforeAll(async () => {
  s = await startTestServer({ INDEX_WORKERS: 2, INDEX_REPLICAS: 2 });
  expect((await s.req('POST', '/collections', { name: 'r' })).status).toBe(201);
  expect((await s.req('POST', '/collections/r/documents', { documents: docs })).status).toBe(200);
});
afterAll(() => s.dispose());

async function topIdsFor(text: string, times: number): Promise<string[]> {
  const emb = await s.req('POST', '/v1/embeddings', { input: text, input_type: 'query', encoding_format: 'base64' });
  const vector = emb.body.data[0].embedding as string;
  const all = await Promise.all(
    Array.from({ length: times }, () => s.req('POST', '/search', { collection: 'r', vector, k: 3, mode: 'vector' })),
  );
  return all.map((r) => {
    expect(r.status).toBe(200);
    return r.body.results[0]?.id as string;
  });
}

test('with two copies, concurrent searches see every write on both', async () => {
  const indexes = s.indexes as IndexManager;
  const [key] = indexes.keys();
  // Two workers hold the collection (ManagedIndex keeps the slots it lives in).
  expect((indexes.get(key!) as unknown as { replicas: unknown[] }).replicas).toHaveLength(2);
  const target = docs[5]!;
  const before = await topIdsFor(target.text, 40);
  expect(new Set(before)).toEqual(new Set([before[0]]));

  const fresh = { id: 'fresh', text: 'chlorophyll absorbs red and blue light in thylakoid membranes' };
  expect((await s.req('POST', '/collections/r/documents', { documents: [fresh] })).status).toBe(200);
  expect(await topIdsFor(fresh.text, 40)).toEqual(Array(40).fill('fresh'));

  expect((await s.req('DELETE', '/collections/r/documents/fresh')).status).toBe(200);
  expect((await topIdsFor(fresh.text, 40)).filter((id) => id === 'fresh')).toEqual([]);
});
