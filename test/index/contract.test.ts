// The index contract, run on both backends: hnswlib worker threads (IndexManager) and pgvector (tables in a
// PGlite database with PGlite's pgvector build). Backend-specific behaviour (snapshots, worker crashes; stored
// tables, reconciliation) is tested below the shared part and in manager.test.ts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  IndexManager,
  IndexStateError,
  PgVectorIndexes,
  type HnswParams,
  type IndexBackend,
  type IndexKey,
  type VectorIndex,
} from '../../src/index/index.js';
import { ConfigError, loadConfig } from '../../src/config.js';
import { StoreOpenError } from '../../src/store/errors.js';
import { PgStore } from '../../src/store/pg/store.js';
import { migrateVectors } from '../../src/store/pg/vectors.js';
import { MIGRATIONS_ROOT } from '../../src/store/index.js';
import { randomUnitVector, seededRandom } from '../../src/util/random.js';
import { dot, exactTopK } from './exact.js';

const DIM = 32;
const N = 3000;
const PARAMS: HnswParams = { M: 16, efConstruction: 100, efSearch: 100 };
const rand = seededRandom(7);
const labels = Array.from({ length: N }, (_, i) => i * 3 + 7); // non-contiguous, like rowids after deletes
const vectors = labels.map(() => randomUnitVector(DIM, rand));
const byLabel = new Map(labels.map((l, i) => [l, vectors[i] as Float32Array]));
const queries = Array.from({ length: 50 }, () => randomUnitVector(DIM, rand));

interface Harness {
  backend: IndexBackend;
  /** A key whose collection exists (pgvector's catalog refers to the store's collections). */
  key(n: number): Promise<IndexKey>;
  close(): Promise<void>;
}

async function pgliteStore(): Promise<PgStore> {
  return PgStore.pglite(undefined, { migrationsFolder: `${MIGRATIONS_ROOT}/pg`, vectors: true });
}

const BACKENDS: Record<string, () => Promise<Harness>> = {
  hnswlib: async () => {
    const backend = new IndexManager({ workers: 1 });
    return { backend, key: async (n) => ({ collectionId: n, modelVersion: 'v1' }), close: () => backend.close() };
  },
  pgvector: async () => {
    const store = await pgliteStore();
    const backend = await PgVectorIndexes.open(store.sql);
    return {
      backend,
      key: async (n) => {
        const c = await store.createCollection({ name: `c${n}`, hnsw: PARAMS, chunk: { size: 100, overlap: 10 } });
        return { collectionId: c.id, modelVersion: 'v1' };
      },
      close: async () => {
        await backend.close();
        await store.close();
      },
    };
  },
};

/** A fresh index holding `ls`, bulk-loaded as a build does (seal() where the backend has it). */
async function filled(h: Harness, n: number, ls = labels, vs = vectors): Promise<VectorIndex> {
  const idx = await h.backend.create(await h.key(n), DIM, PARAMS, 100);
  await idx.add(ls, vs);
  await idx.seal?.();
  return idx;
}

describe.each(Object.keys(BACKENDS))('index contract on %s', (name) => {
  let h: Harness;
  let index: VectorIndex;

  beforeAll(async () => {
    h = await (BACKENDS[name] as () => Promise<Harness>)();
    index = await filled(h, 1);
  }, 120_000);

  afterAll(async () => {
    await h?.close();
  });

  it('counts live elements and is found under its key', () => {
    expect(index.count()).toBe(N);
    expect(h.backend.get(index.key)).toBe(index);
  });

  it('reaches recall >= 0.95 at efSearch 100; scores are cosine similarities, best first', async () => {
    let hit = 0;
    for (const q of queries) {
      const truth = new Set(exactTopK(q, byLabel, 10));
      const got = await index.search(q, 10);
      expect(got).toHaveLength(10);
      for (let i = 1; i < got.length; i++) expect(got[i - 1]!.score).toBeGreaterThanOrEqual(got[i]!.score);
      for (const x of got) if (truth.has(x.label)) hit++;
    }
    expect(hit / (queries.length * 10)).toBeGreaterThanOrEqual(0.95);
    const q = queries[0] as Float32Array;
    const [top] = await index.search(q, 1);
    expect(top!.score).toBeCloseTo(dot(q, byLabel.get(top!.label) as Float32Array), 4);
  });

  it('finds a stored vector as its own nearest neighbour with score ~1', async () => {
    const hits = await index.search(vectors[123] as Float32Array, 1);
    expect(hits[0]?.label).toBe(labels[123]);
    expect(hits[0]?.score).toBeCloseTo(1, 4);
  });

  it('returns k results past efSearch, and every element when k exceeds the count', async () => {
    const hits = await index.search(queries[1] as Float32Array, 300, { efSearch: 10 });
    expect(hits).toHaveLength(300);
    for (let i = 1; i < hits.length; i++) expect(hits[i - 1]!.score).toBeGreaterThanOrEqual(hits[i]!.score);
    const small = await filled(h, 9, [1, 2, 3], vectors.slice(0, 3));
    expect((await small.search(queries[0] as Float32Array, 10)).map((x) => x.label).sort()).toEqual([1, 2, 3]);
    await small.close();
    expect(h.backend.get(small.key)).toBeUndefined();
  });

  it('rejects bad input with clear errors', async () => {
    await expect(index.search(new Float32Array(DIM + 1), 5)).rejects.toThrow(/dimension/);
    await expect(index.add([-1], [vectors[0] as Float32Array])).rejects.toThrow(RangeError);
    await expect(index.add([1, 2], [vectors[0] as Float32Array])).rejects.toThrow(/labels/);
    await expect(index.add([1], [new Float32Array(DIM - 1)])).rejects.toThrow(/dimension/);
    await expect(h.backend.create(index.key, DIM, PARAMS)).rejects.toThrow(IndexStateError);
    expect(await index.search(queries[0] as Float32Array, 0)).toEqual([]);
  });

  it('a filter (allow) returns k allowed results whenever k allowed exist', async () => {
    for (const fraction of [0.3, 0.03, 0.004]) {
      const allowed = labels.filter((_, i) => i % Math.round(1 / fraction) === 0);
      const allowSet = new Set(allowed);
      for (const q of queries.slice(0, 10)) {
        const hits = await index.search(q, 10, { allow: allowed });
        expect(hits).toHaveLength(10);
        for (const x of hits) expect(allowSet.has(x.label)).toBe(true);
        for (let i = 1; i < hits.length; i++) expect(hits[i - 1]!.score).toBeGreaterThanOrEqual(hits[i]!.score);
      }
    }
    // Anti-correlated with the query: the allowed items are the 30 % farthest from it.
    const q = queries[3] as Float32Array;
    const far = [...byLabel]
      .sort((a, b) => dot(q, a[1]) - dot(q, b[1]))
      .slice(0, Math.floor(N * 0.3))
      .map(([l]) => l);
    const farSet = new Set(far);
    const hits = await index.search(q, 10, { allow: far });
    expect(hits).toHaveLength(10);
    for (const x of hits) expect(farSet.has(x.label)).toBe(true);
    // Fewer allowed than k: all of them; an unknown label is ignored.
    const few = [labels[5] as number, labels[6] as number, 999_999];
    expect((await index.search(queries[0] as Float32Array, 10, { allow: few })).map((x) => x.label).sort((a, b) => a - b)).toEqual(
      [labels[5] as number, labels[6] as number].sort((a, b) => a - b),
    );
    expect(await index.search(queries[0] as Float32Array, 10, { allow: [] })).toEqual([]);
  });

  it('never returns deleted items, ignores unknown labels, and a re-added label comes back', async () => {
    const idx = await filled(h, 3);
    const doomed = new Set<number>();
    for (const q of queries) for (const l of exactTopK(q, byLabel, 20)) doomed.add(l);
    await idx.markDeleted([...doomed, 123_456_789, -5, 1.5]);
    await idx.markDeleted([...doomed].slice(0, 10));
    expect(idx.count()).toBe(N - doomed.size);
    const someAllowed = labels.filter((l, i) => i % 3 === 0 || doomed.has(l));
    for (const q of queries) {
      for (const hits of [await idx.search(q, 20), await idx.search(q, 20, { allow: someAllowed })]) {
        expect(hits.length).toBe(20);
        for (const x of hits) expect(doomed.has(x.label)).toBe(false);
      }
    }
    const back = [...doomed][0] as number;
    await idx.add([back], [byLabel.get(back) as Float32Array]);
    expect(idx.count()).toBe(N - doomed.size + 1);
    expect((await idx.search(byLabel.get(back) as Float32Array, 1))[0]?.label).toBe(back);
    // Re-adding a live label replaces its vector without counting it twice.
    await idx.add([back], [queries[9] as Float32Array]);
    expect(idx.count()).toBe(N - doomed.size + 1);
    expect((await idx.search(queries[9] as Float32Array, 1))[0]).toMatchObject({ label: back });
    await h.backend.drop(idx.key);
    expect(h.backend.get(idx.key)).toBeUndefined();
  });

  it('serves searches while adding', async () => {
    const idx = await filled(h, 5, labels.slice(0, 200), vectors.slice(0, 200));
    const adding = idx.add(labels.slice(200, 1200), vectors.slice(200, 1200));
    const searches = Array.from({ length: 60 }, (_, i) =>
      idx.search(queries[i % queries.length] as Float32Array, 10, i % 3 === 0 ? { allow: labels.slice(0, 500) } : {}).then((hits) => {
        expect(hits.length).toBe(10);
      }),
    );
    await Promise.all([adding, ...searches]);
    expect(idx.count()).toBe(1200);
  });
});

describe('pgvector: indexes stored in the database', () => {
  let store: PgStore;
  beforeAll(async () => {
    store = await pgliteStore();
  }, 60_000);
  afterAll(async () => {
    await store?.close();
  });

  it('a new backend on the same database opens the stored index: same count, same answers, HNSW index in place', async () => {
    const c = await store.createCollection({ name: 'persist', hnsw: PARAMS, chunk: { size: 100, overlap: 10 } });
    const key = {
      collectionId: c.id,
      modelVersion: 'model/with:odd chars and a very long name that exceeds any identifier limit of postgres',
    };
    const a = await PgVectorIndexes.open(store.sql);
    const idx = await a.create(key, DIM, PARAMS);
    await idx.add(labels.slice(0, 500), vectors.slice(0, 500));
    const before = await Promise.all(queries.slice(0, 5).map((q) => idx.search(q, 10)));
    await a.close();
    await expect(idx.search(queries[0] as Float32Array, 1)).rejects.toThrow(/closed/);

    const b = await PgVectorIndexes.open(store.sql);
    expect(await b.open(key, DIM + 1, PARAMS)).toBeUndefined(); // another dimension is not this index
    const again = await b.open(key, DIM, PARAMS);
    expect(again?.count()).toBe(500);
    expect(await Promise.all(queries.slice(0, 5).map((q) => again!.search(q, 10)))).toEqual(before);
    // open() built the graph the bulk load left for seal().
    const ix = await store.sql.query(`SELECT indexdef FROM pg_indexes WHERE indexname LIKE 'vec_${c.id}_%_hnsw'`);
    expect(String(ix[0]?.indexdef)).toMatch(/USING hnsw \(embedding vector_cosine_ops\) WITH \(m='16', ef_construction='100'\)/);
    expect(await b.open({ collectionId: c.id, modelVersion: 'never built' }, DIM, PARAMS)).toBeUndefined();
    await b.drop(key);
    expect(await b.open(key, DIM, PARAMS)).toBeUndefined();
    await b.close();
  });

  it('reconcile drops vectors of dead chunks and lists live chunks without one; absent() sees other writers', async () => {
    const c = await store.createCollection({ name: 'recon', hnsw: PARAMS, chunk: { size: 100, overlap: 10 } });
    const docs = Array.from({ length: 6 }, (_, i) => ({ id: `d${i}`, text: `t${i}`, metadata: {}, chunks: [`t${i}`] }));
    const { added } = await store.upsertDocuments(c.id, docs);
    const ls = added.map((r) => r.label);
    const backend = await PgVectorIndexes.open(store.sql);
    const key = { collectionId: c.id, modelVersion: 'v1' };
    const idx = await backend.create(key, DIM, PARAMS);
    await idx.add(ls.slice(0, 4), vectors.slice(0, 4));
    await store.deleteDocument(c.id, 'd0');
    expect(await idx.reconcile!()).toEqual(ls.slice(4));
    expect(idx.count()).toBe(3);
    // A second handle on the same table (another replica) writes; the first sees it through absent().
    const other = await PgVectorIndexes.open(store.sql);
    const twin = (await other.open(key, DIM, PARAMS))!;
    await twin.add([ls[4] as number], [vectors[4] as Float32Array]);
    expect(await idx.absent!(ls.slice(1))).toEqual([ls[5]]);
    expect(idx.count()).toBe(4);
    await backend.close();
    await other.close();
  });

  it('rename replaces the index under a key in one step', async () => {
    const c = await store.createCollection({ name: 'rename', hnsw: PARAMS, chunk: { size: 100, overlap: 10 } });
    const backend = await PgVectorIndexes.open(store.sql);
    const key = { collectionId: c.id, modelVersion: 'v1' };
    const old = await backend.create(key, DIM, PARAMS);
    await old.add([1, 2], vectors.slice(0, 2));
    const fresh = await backend.create({ collectionId: c.id, modelVersion: 'v1@rebuild' }, DIM, PARAMS);
    await fresh.add([5, 6, 7], vectors.slice(5, 8));
    await fresh.seal!();
    const moved = await backend.rename!(fresh, key);
    expect(moved.key).toEqual(key);
    expect(moved.count()).toBe(3);
    expect((await moved.search(vectors[6] as Float32Array, 1))[0]?.label).toBe(6);
    await expect(old.search(vectors[0] as Float32Array, 1)).rejects.toThrow(IndexStateError);
    expect(backend.get({ collectionId: c.id, modelVersion: 'v1@rebuild' })).toBeUndefined();
    const reopened = await (await PgVectorIndexes.open(store.sql)).open(key, DIM, PARAMS);
    expect(reopened?.count()).toBe(3);
    await backend.close();
  });

  it('a database without pgvector, or a backend without Postgres, is one line saying what to do', async () => {
    const plain = await PgStore.pglite(undefined, { migrationsFolder: `${MIGRATIONS_ROOT}/pg` });
    try {
      const err = await migrateVectors((text) => plain.sql.query(text)).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(StoreOpenError);
      expect((err as Error).message).toMatch(
        /^INDEX_BACKEND=pgvector: this Postgres server has no pgvector extension; install it .* or use INDEX_BACKEND=hnswlib$/,
      );
      expect((err as Error).message).not.toContain('\n');
    } finally {
      await plain.close();
    }
    expect(() => loadConfig({ INDEX_BACKEND: 'pgvector' })).toThrow(ConfigError);
    expect(() => loadConfig({ INDEX_BACKEND: 'pgvector', DATABASE_URL: 'sqlite:./x.db' })).toThrow(
      /INDEX_BACKEND=pgvector .* DATABASE_URL/,
    );
    expect(loadConfig({ INDEX_BACKEND: 'pgvector', DATABASE_URL: 'pglite://memory' }).INDEX_BACKEND).toBe('pgvector');
  });

  it('refuses parameters pgvector cannot index and snapshot files', async () => {
    const c = await store.createCollection({ name: 'limits', hnsw: PARAMS, chunk: { size: 100, overlap: 10 } });
    const backend = await PgVectorIndexes.open(store.sql);
    const key = { collectionId: c.id, modelVersion: 'v1' };
    await expect(backend.create(key, 2001, PARAMS)).rejects.toThrow(/2000 dimensions/);
    await expect(backend.create(key, DIM, { ...PARAMS, M: 101 })).rejects.toThrow(/M 101/);
    await expect(backend.load()).rejects.toThrow(/snapshot/);
    await backend.close();
  });
});
