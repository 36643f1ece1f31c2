import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { freshPostgres, startTestServer, type TestServer } from '../helpers.js';

const DOCS = [
  {
    id: 'a',
    text: 'The mitochondrion produces energy for the cell through oxidative phosphorylation.',
    metadata: { ns: 'BP', year: 2020, open: true },
  },
  { id: 'b', text: 'Ribosomes translate messenger RNA into protein chains.', metadata: { ns: 'MF', year: 2021, open: false } },
  { id: 'c', text: 'The nucleus stores the genetic material of eukaryotic cells.', metadata: { ns: 'CC', year: 2020, open: true } },
  { id: 'd', text: 'Kinases transfer phosphate groups from ATP to substrate proteins.', metadata: { ns: 'MF', year: 2022, open: true } },
];

// The same API suite runs on the embedded default (SQLite) and on Postgres (PGlite in-process; a real
// server when TEST_DATABASE_URL is set, as in CI), with hnswlib indexes, and on PGlite with the pgvector
// index backend (PGlite's pgvector build: the vectors and their HNSW graphs live in the database).
const STORES: string[] = ['sqlite', 'pglite', 'pglite+pgvector'];
if (process.env.TEST_DATABASE_URL) STORES.push('postgres');

describe.each(STORES)('API on %s', (store) => {
  let s: TestServer;
  let dropDb: (() => Promise<void>) | undefined;
  beforeAll(async () => {
    let databaseUrl: string | undefined;
    if (store.startsWith('pglite')) databaseUrl = 'pglite://memory';
    if (store === 'postgres') ({ url: databaseUrl, drop: dropDb } = await freshPostgres('rt_api'));
    const INDEX_BACKEND = store.endsWith('+pgvector') ? ('pgvector' as const) : ('hnswlib' as const);
    s = await startTestServer({
      DATABASE_URL: databaseUrl,
      INDEX_BACKEND,
      MAX_BATCH_DOCS: 50,
      MAX_TEXT_BYTES: 20_000,
      MAX_BODY_BYTES: 200_000,
      MAX_K: 100,
      CHUNK_SIZE: 200,
      CHUNK_OVERLAP: 40,
    });
    expect(s.indexes.kind).toBe(INDEX_BACKEND);
    expect((await s.req('POST', '/collections', { name: 'bio' })).status).toBe(201);
    expect((await s.req('POST', '/collections/bio/documents', { documents: DOCS })).status).toBe(200);
  }, 60_000);

  afterAll(async () => {
    await s?.dispose();
    await dropDb?.();
  });

  async function docCount(name = 'bio'): Promise<number> {
    return (await s.req('GET', `/collections/${name}`)).body.documents;
  }

  describe('collections', () => {
    test('describe and list', async () => {
      const r = await s.req('GET', '/collections/bio');
      expect(r.status).toBe(200);
      expect(r.body).toMatchObject({ name: 'bio', documents: 4, chunks: 4, model: expect.any(String), dim: expect.any(Number) });
      const l = await s.req('GET', '/collections');
      expect(l.body.collections.map((c: { name: string }) => c.name)).toContain('bio');
    });

    test('duplicate name → 409 collection_exists', async () => {
      const r = await s.req('POST', '/collections', { name: 'bio' });
      expect(r.status).toBe(409);
      expect(r.body.error.code).toBe('collection_exists');
    });

    test('custom hnsw params are kept; delete removes it', async () => {
      expect((await s.req('POST', '/collections', { name: 'tmp', hnsw: { M: 8, efConstruction: 50, efSearch: 20 } })).status).toBe(201);
      expect((await s.req('GET', '/collections/tmp')).body.hnsw).toEqual({ M: 8, efConstruction: 50, efSearch: 20 });
      expect((await s.req('DELETE', '/collections/tmp')).status).toBe(200);
      expect((await s.req('GET', '/collections/tmp')).body.error.code).toBe('collection_not_found');
    });
  });

  describe('documents and search', () => {
    test('a document is its own nearest neighbour', async () => {
      for (const d of DOCS) {
        const r = await s.req('POST', '/search', { collection: 'bio', query: d.text, k: 2, mode: 'vector' });
        expect(r.status).toBe(200);
        expect(r.body.results[0].id).toBe(d.id);
        expect(r.body.results[0].score).toBeCloseTo(1, 3);
        expect(r.body.results[0].metadata).toEqual(d.metadata);
        expect(r.body).toMatchObject({
          mode: 'vector',
          model: expect.any(String),
          queryId: expect.any(String),
          tookMs: expect.any(Number),
        });
      }
    });

    test("the default mode is auto: keyword until the collection's strategy is measured, and it says which mode answered", async () => {
      const r = await s.req('POST', '/search', { collection: 'bio', query: DOCS[0]!.text, k: 2 });
      expect(r.status).toBe(200);
      expect(['keyword', 'vector', 'hybrid']).toContain(r.body.mode);
      expect(r.body.results[0].id).toBe(DOCS[0]!.id);
    });

    test('search by vector gives the same ranking as by text', async () => {
      const emb = await s.req('POST', '/v1/embeddings', { input: DOCS[2]!.text });
      const vector = emb.body.data[0].embedding as number[];
      const r = await s.req('POST', '/search', { collection: 'bio', vector, k: 1 });
      expect(r.body.results[0].id).toBe('c');
    });

    test('a base64 float32 vector (as /v1/embeddings returns it) answers exactly as the same vector in JSON', async () => {
      const emb = await s.req('POST', '/v1/embeddings', { input: DOCS[1]!.text, encoding_format: 'base64' });
      const base64 = emb.body.data[0].embedding as string;
      const bytes = Buffer.from(base64, 'base64');
      const vector = Array.from(new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4));
      const asJson = await s.req('POST', '/search', { collection: 'bio', vector, k: 4, mode: 'vector' });
      const asBase64 = await s.req('POST', '/search', { collection: 'bio', vector: base64, k: 4, mode: 'vector' });
      expect(asBase64.status).toBe(200);
      expect(asBase64.body.results[0].id).toBe(DOCS[1]!.id);
      const ranked = (r: typeof asJson) => r.body.results.map((x: { id: string; score: number }) => [x.id, x.score]);
      expect(ranked(asBase64)).toEqual(ranked(asJson));
    });

    test('metadata filter returns k results when k matching documents exist', async () => {
      const r = await s.req('POST', '/search', { collection: 'bio', query: 'mitochondrion energy', k: 2, filter: { ns: 'MF' } });
      expect(r.body.results.map((x: { id: string }) => x.id).sort()).toEqual(['b', 'd']);
      const typed = await s.req('POST', '/search', { collection: 'bio', query: 'cell', k: 10, filter: { year: 2020, open: true } });
      expect(typed.body.results.map((x: { id: string }) => x.id).sort()).toEqual(['a', 'c']);
      const none = await s.req('POST', '/search', { collection: 'bio', query: 'cell', k: 10, filter: { ns: 'nope' } });
      expect(none.body.results).toEqual([]);
    });

    test('keyword (BM25) and hybrid modes', async () => {
      const kw = await s.req('POST', '/search', { collection: 'bio', query: 'ribosomes messenger', mode: 'keyword', k: 3 });
      expect(kw.status).toBe(200);
      expect(kw.body.results[0].id).toBe('b');
      const hy = await s.req('POST', '/search', { collection: 'bio', query: 'kinases phosphate ATP', mode: 'hybrid', k: 3 });
      expect(hy.body.results[0].id).toBe('d');
      const odd = await s.req('POST', '/search', { collection: 'bio', query: 'AND OR NEAR( "x* -', mode: 'keyword', k: 3 });
      expect(odd.status).toBe(200);
    });

    test('re-upsert replaces the document; delete removes it', async () => {
      await s.req('POST', '/collections', { name: 'edit' });
      await s.req('POST', '/collections/edit/documents', {
        documents: [
          { id: 'x', text: 'old text about volcanoes and lava' },
          { id: 'y', text: 'unrelated words about cooking pasta' },
        ],
      });
      await s.req('POST', '/collections/edit/documents', { documents: [{ id: 'x', text: 'new text about galaxies and stars' }] });
      const r = await s.req('POST', '/search', { collection: 'edit', query: 'new text about galaxies and stars', k: 5 });
      expect(r.body.results.map((x: { id: string }) => x.id)).toEqual(['x', 'y']);
      expect(r.body.results[0].text).toBe('new text about galaxies and stars');
      expect((await s.req('GET', '/collections/edit')).body).toMatchObject({ documents: 2, chunks: 2 });
      expect((await s.req('DELETE', '/collections/edit/documents/x')).status).toBe(200);
      const after = await s.req('POST', '/search', { collection: 'edit', query: 'galaxies', k: 5 });
      expect(after.body.results.map((x: { id: string }) => x.id)).toEqual(['y']);
      expect((await s.req('DELETE', '/collections/edit/documents/x')).body.error.code).toBe('document_not_found');
    });

    test('long texts are chunked; search returns the parent id and the chunk', async () => {
      await s.req('POST', '/collections', { name: 'long', chunk: { size: 120, overlap: 20 } });
      const words = Array.from({ length: 80 }, (_, i) => `w${i}`);
      const text = `${words.join(' ')} The final paragraph talks about photosynthesis in chloroplasts of plant leaves.`;
      await s.req('POST', '/collections/long/documents', {
        documents: [
          { id: 'doc1', text },
          { id: 'doc2', text: 'short unrelated text about trains' },
        ],
      });
      const info = (await s.req('GET', '/collections/long')).body;
      expect(info.documents).toBe(2);
      expect(info.chunks).toBeGreaterThan(3);
      const r = await s.req('POST', '/search', {
        collection: 'long',
        query: 'photosynthesis in chloroplasts of plant leaves',
        k: 2,
        mode: 'keyword',
      });
      expect(r.body.results[0].id).toBe('doc1');
      expect(r.body.results[0].chunk.id).toMatch(/^doc1#\d+$/);
      expect(r.body.results[0].text).toContain('photosynthesis');
      // One result per parent document, although several chunks of doc1 match.
      expect(r.body.results.filter((x: { id: string }) => x.id === 'doc1')).toHaveLength(1);
    });

    test('queries are written to the query log', async () => {
      const r = await s.req('POST', '/search', { collection: 'bio', query: 'nucleus genetic material', k: 3 });
      await s.engine.queryLog.flush();
      const row = await s.store.getQueryLog(r.body.queryId);
      expect(row).toMatchObject({ collection: 'bio', query: 'nucleus genetic material', k: 3, modelVersion: r.body.model });
      expect(row!.resultIds).toEqual(r.body.results.map((x: { id: string }) => x.id));
    });

    test('feedback links a logged query to a document', async () => {
      const r = await s.req('POST', '/search', { collection: 'bio', query: 'protein translation', k: 3 });
      const f = await s.req('POST', '/feedback', { queryId: r.body.queryId, documentId: 'b' });
      expect(f.status).toBe(201);
      expect((await s.req('POST', '/feedback', { queryId: 'nope', documentId: 'b' })).body.error.code).toBe('query_not_found');
      expect((await s.req('POST', '/feedback', { queryId: r.body.queryId, documentId: 'zzz' })).body.error.code).toBe('document_not_found');
    });

    test('admin reindex rebuilds from the store', async () => {
      const r = await s.req('POST', '/collections/bio/reindex');
      expect(r.body).toEqual({ reindexed: true, chunks: 4 });
      const q = await s.req('POST', '/search', { collection: 'bio', query: DOCS[0]!.text, k: 1 });
      expect(q.body.results[0].id).toBe('a');
    });
  });

  describe('bad input: 4xx with a stable code, nothing stored changes', () => {
    const cases: [string, string, string, unknown, number, string][] = [
      ['malformed JSON', 'POST', '/collections/bio/documents', '{"documents": [', 400, 'invalid_json'],
      [
        'unknown collection (ingest)',
        'POST',
        '/collections/nope/documents',
        { documents: [{ id: 'z', text: 'x' }] },
        404,
        'collection_not_found',
      ],
      ['unknown collection (search)', 'POST', '/search', { collection: 'nope', query: 'x' }, 404, 'collection_not_found'],
      ['empty text', 'POST', '/collections/bio/documents', { documents: [{ id: 'z', text: '   ' }] }, 400, 'empty_text'],
      ['non-string text', 'POST', '/collections/bio/documents', { documents: [{ id: 'z', text: 42 }] }, 400, 'empty_text'],
      ['missing text', 'POST', '/collections/bio/documents', { documents: [{ id: 'z' }] }, 400, 'empty_text'],
      ['empty documents array', 'POST', '/collections/bio/documents', { documents: [] }, 400, 'too_many_documents'],
      [
        'too many documents',
        'POST',
        '/collections/bio/documents',
        { documents: Array.from({ length: 51 }, (_, i) => ({ id: `n${i}`, text: 'x' })) },
        400,
        'too_many_documents',
      ],
      [
        'text over max bytes',
        'POST',
        '/collections/bio/documents',
        { documents: [{ id: 'z', text: 'é'.repeat(10_001) }] },
        413,
        'text_too_large',
      ],
      ['vector of wrong dimension', 'POST', '/search', { collection: 'bio', vector: [0.1, 0.2, 0.3] }, 400, 'invalid_vector'],
      ['vector with Infinity', 'POST', '/search', '{"collection":"bio","vector":[1e999]}', 400, 'invalid_vector'],
      ['vector with a string element', 'POST', '/search', { collection: 'bio', vector: [0.1, '0.2'] }, 400, 'invalid_vector'],
      ['base64 vector with a non-base64 character', 'POST', '/search', { collection: 'bio', vector: 'AACAPw$=' }, 400, 'invalid_vector'],
      ['base64 vector of 5 bytes', 'POST', '/search', { collection: 'bio', vector: 'AACAPwA=' }, 400, 'invalid_vector'],
      ['base64 vector holding NaN', 'POST', '/search', { collection: 'bio', vector: 'AADAfw==' }, 400, 'invalid_vector'],
      ['base64 vector of wrong dimension', 'POST', '/search', { collection: 'bio', vector: 'AACAPw==' }, 400, 'invalid_vector'],
      ['k = 0', 'POST', '/search', { collection: 'bio', query: 'x', k: 0 }, 400, 'invalid_k'],
      ['k negative', 'POST', '/search', { collection: 'bio', query: 'x', k: -3 }, 400, 'invalid_k'],
      ['k over max', 'POST', '/search', { collection: 'bio', query: 'x', k: 101 }, 400, 'invalid_k'],
      ['k not an integer', 'POST', '/search', { collection: 'bio', query: 'x', k: 2.5 }, 400, 'invalid_k'],
      ['unknown field (search)', 'POST', '/search', { collection: 'bio', query: 'x', topK: 3 }, 400, 'invalid_request'],
      [
        'unknown field (document)',
        'POST',
        '/collections/bio/documents',
        { documents: [{ id: 'z', text: 'x', meta: {} }] },
        400,
        'invalid_request',
      ],
      ['unknown field (collection)', 'POST', '/collections', { name: 'q', dims: 3 }, 400, 'invalid_request'],
      ['bad collection name', 'POST', '/collections', { name: '../etc' }, 400, 'invalid_request'],
      ['query and vector both', 'POST', '/search', { collection: 'bio', query: 'x', vector: [1] }, 400, 'invalid_request'],
      ['neither query nor vector', 'POST', '/search', { collection: 'bio' }, 400, 'invalid_request'],
      ['empty query', 'POST', '/search', { collection: 'bio', query: '' }, 400, 'empty_text'],
      [
        'body over the limit',
        'POST',
        '/collections/bio/documents',
        JSON.stringify({ documents: [{ id: 'z', text: 'x'.repeat(250_000) }] }),
        413,
        'body_too_large',
      ],
      [
        'duplicate ids in one batch',
        'POST',
        '/collections/bio/documents',
        {
          documents: [
            { id: 'z', text: 'x' },
            { id: 'z', text: 'y' },
          ],
        },
        400,
        'invalid_request',
      ],
      ['unknown route', 'GET', '/nope', undefined, 404, 'not_found'],
      ['embeddings: empty input', 'POST', '/v1/embeddings', { input: [] }, 400, 'too_many_documents'],
    ];
    test.each(cases)('%s', async (_name, method, path, body, status, code) => {
      const before = await docCount();
      const r = await s.req(method, path, body);
      expect(r.status).toBe(status);
      expect(r.body.error.code).toBe(code);
      expect(typeof r.body.error.message).toBe('string');
      expect(await docCount()).toBe(before);
      // The stored documents still answer as before.
      const q = await s.req('POST', '/search', { collection: 'bio', query: DOCS[1]!.text, k: 1 });
      expect(q.body.results[0].id).toBe('b');
    });
  });
});
