// The typed client against a real server on a real port (tiny ONNX model, SQLite), with API keys on.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/auth/keys.js';
import { RetrievalClient, RetrievalError } from '../../src/client/index.js';
import { apiKeyAuth } from '../../src/http/auth.js';
import { startTestServer, type TestServer } from '../helpers.js';

async function expectCode(p: Promise<unknown>, code: string, status: number): Promise<RetrievalError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(RetrievalError);
  expect({ code: (err as RetrievalError).code, status: (err as RetrievalError).status }).toEqual({ code, status });
  return err as RetrievalError;
}

describe('RetrievalClient against the real server', () => {
  let server: TestServer;
  let admin: RetrievalClient;
  let reader: RetrievalClient;
  let anonymous: RetrievalClient;

  beforeAll(async () => {
    const keys: { admin?: string; read?: string } = {};
    server = await startTestServer(
      { AUTH: 'on' },
      {
        listen: true,
        extend: async ({ store, config, log }) => {
          keys.admin = (await createApiKey(store, { role: 'admin' })).key;
          keys.read = (await createApiKey(store, { role: 'read' })).key;
          return { auth: apiKeyAuth({ store, mode: config.AUTH, logger: log }) };
        },
      },
    );
    admin = new RetrievalClient({ url: server.url, apiKey: keys.admin });
    reader = new RetrievalClient({ url: server.url + '/', apiKey: keys.read });
    anonymous = new RetrievalClient({ url: server.url, retries: 0 });
  });
  afterAll(async () => {
    await server?.dispose();
  });

  it('health and readiness need no key; metrics a read key (METRICS_AUTH=read)', async () => {
    expect(await anonymous.health()).toEqual({ ok: true });
    expect((await anonymous.ready()).ready).toBe(true);
    await expect(anonymous.metrics()).rejects.toMatchObject({ code: 'unauthorized', status: 401 });
    expect(await reader.metrics()).toMatch(/http_requests_total/);
  });

  it('embedding models list the serving model; decideStrategy is admin only', async () => {
    const [m] = await reader.embeddingModels();
    expect(m).toMatchObject({ object: 'model', id: (await reader.ready()).model });
    expect(m!.dimensions).toBeGreaterThan(0);
    await admin.createCollection({ name: 'client-strategy' });
    await admin.upsertDocuments('client-strategy', [{ id: 'a', text: 'a strategy needs documents' }]);
    expect((await admin.decideStrategy('client-strategy')).collection).toBe('client-strategy');
    await expectCode(reader.decideStrategy('client-strategy'), 'forbidden', 403);
  });

  it('collections and documents round-trip with typed results', async () => {
    const c = await admin.createCollection({ name: 'client-docs', hnsw: { M: 8 }, chunk: { size: 200, overlap: 20 } });
    expect(c).toMatchObject({ name: 'client-docs', documents: 0, hnsw: { M: 8 }, chunk: { size: 200, overlap: 20 } });
    expect(c.dim).toBeGreaterThan(0);
    const up = await admin.upsertDocuments('client-docs', [
      { id: 'a', text: 'mitochondria make ATP through oxidative phosphorylation', metadata: { ns: 'BP' } },
      { id: 'b', text: 'the ribosome translates messenger RNA into protein', metadata: { ns: 'MF' } },
      { id: 'c/with slash', text: 'photosynthesis in chloroplasts', metadata: { ns: 'CC' } },
    ]);
    expect(up).toMatchObject({ upserted: 3, chunks: 3 });
    expect((await reader.listCollections()).map((x) => x.name)).toContain('client-docs');
    expect((await reader.getCollection('client-docs')).documents).toBe(3);
    expect(await reader.getDocument('client-docs', 'c/with slash')).toEqual({
      id: 'c/with slash',
      text: 'photosynthesis in chloroplasts',
      metadata: { ns: 'CC' },
    });

    const res = await reader.search({ collection: 'client-docs', query: 'ribosome protein', k: 2, mode: 'keyword' });
    expect(res.results[0]!.id).toBe('b');
    expect(res.queryId).toEqual(expect.any(String));
    const filtered = await reader.search({ collection: 'client-docs', query: 'cell', k: 3, filter: { ns: 'BP' } });
    expect(filtered.results.map((r) => r.id)).toEqual(['a']);

    const fb = await reader.feedback({ queryId: res.queryId, documentId: 'b' });
    expect(fb).toMatchObject({ queryId: res.queryId, documentId: 'b', relevant: true });

    const emb = await reader.embeddings({ input: ['hello', 'world'] });
    expect(emb.data).toHaveLength(2);
    expect(emb.data[0]!.embedding).toHaveLength(c.dim);

    // A Float32Array travels as base64 and ranks exactly as the same numbers sent as JSON.
    const [q] = (await reader.embeddings({ input: ['ribosome translating RNA'] })).data;
    const byArray = await reader.search({ collection: 'client-docs', vector: q!.embedding, k: 3, mode: 'vector' });
    const byF32 = await reader.search({ collection: 'client-docs', vector: Float32Array.from(q!.embedding), k: 3, mode: 'vector' });
    expect(byF32.results.map((r) => [r.id, r.score])).toEqual(byArray.results.map((r) => [r.id, r.score]));
    expect(byF32.results[0]!.id).toBe('b');

    expect(await admin.deleteDocument('client-docs', 'c/with slash')).toEqual({ deleted: true });
    await expectCode(reader.getDocument('client-docs', 'c/with slash'), 'document_not_found', 404);
    expect((await admin.reindex('client-docs')).chunks).toBe(2);
    expect(await admin.deleteCollection('client-docs')).toEqual({ deleted: true });
  });

  it('server error bodies become RetrievalError with code, status and details', async () => {
    await expectCode(admin.getCollection('nope'), 'collection_not_found', 404);
    await admin.createCollection({ name: 'client-dupe' });
    await expectCode(admin.createCollection({ name: 'client-dupe' }), 'collection_exists', 409);
    await expectCode(reader.search({ collection: 'client-dupe', query: 'x', k: 0 }), 'invalid_k', 400);
    await expectCode(admin.upsertDocuments('client-dupe', []), 'too_many_documents', 400);
    const e = await expectCode(admin.createCollection({ name: 'bad name!' }), 'invalid_request', 400);
    expect(e.details).toBeDefined();
    await expectCode(reader.feedback({ queryId: 'no-such-query', documentId: 'x' }), 'query_not_found', 404);
  });

  it('keys: none → 401, read key on a write → 403', async () => {
    await expectCode(anonymous.listCollections(), 'unauthorized', 401);
    await expectCode(new RetrievalClient({ url: server.url, apiKey: 'rk_' + 'A'.repeat(43) }).listCollections(), 'unauthorized', 401);
    await expectCode(reader.createCollection({ name: 'client-forbidden' }), 'forbidden', 403);
    await expectCode(reader.deleteCollection('client-dupe'), 'forbidden', 403);
    await expectCode(reader.upsertDocuments('client-dupe', [{ id: 'x', text: 'y' }]), 'forbidden', 403);
  });

  it('network failures and non-JSON errors are RetrievalErrors too', async () => {
    const dead = new RetrievalClient({ url: 'http://127.0.0.1:9', retries: 1 });
    await expectCode(dead.health(), 'network', 0);
    // A proxy answering HTML, and a server that is overloaded and then recovers.
    let calls = 0;
    const proxy = createServer((req, res) => {
      calls++;
      if (req.url === '/healthz' && calls < 3) {
        res.writeHead(429, { 'retry-after': '0' }).end(JSON.stringify({ error: { code: 'overloaded', message: 'busy' } }));
      } else if (req.url === '/healthz') res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
      else res.writeHead(502, { 'content-type': 'text/html' }).end('<html>bad gateway</html>');
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    try {
      expect(await new RetrievalClient({ url }).health()).toEqual({ ok: true });
      expect(calls).toBe(3);
      calls = 0;
      const e = await expectCode(new RetrievalClient({ url, retries: 0 }).listCollections(), 'http_502', 502);
      expect(e.message).toMatch(/bad gateway/);
      calls = 0;
      const busy = await expectCode(new RetrievalClient({ url, retries: 0 }).health(), 'overloaded', 429);
      expect(busy.retryAfterSeconds).toBe(0);
    } finally {
      proxy.close();
    }
  });
});
