import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  IndexLostError,
  IndexManager,
  IndexSnapshotError,
  IndexStateError,
  type HnswParams,
  type VectorIndex,
} from '../../src/index/index.js';
import { randomUnitVector, seededRandom } from '../../src/util/random.js';
import { dot, exactTopK } from './exact.js';

const DIM = 64;
const N = 5000;
const PARAMS: HnswParams = { M: 16, efConstruction: 200, efSearch: 100 };
const rand = seededRandom(42);
const labels = Array.from({ length: N }, (_, i) => i * 3 + 7); // non-contiguous, like rowids after deletes
const vectors = labels.map(() => randomUnitVector(DIM, rand));
const byLabel = new Map(labels.map((l, i) => [l, vectors[i] as Float32Array]));
const queries = Array.from({ length: 100 }, () => randomUnitVector(DIM, rand));

let dir: string;
let manager: IndexManager;
let index: VectorIndex;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'hnsw-test-'));
  manager = new IndexManager({ workers: 2 });
  index = await manager.create({ collectionId: 1, modelVersion: 'v1' }, DIM, PARAMS, 1000);
  await index.add(labels, vectors);
}, 120_000);

afterAll(async () => {
  await manager?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function recallOf(idx: VectorIndex, live: Map<number, Float32Array>, k = 10): Promise<number> {
  let hit = 0;
  for (const q of queries) {
    const truth = new Set(exactTopK(q, live, k));
    const got = await idx.search(q, k);
    for (const h of got) if (truth.has(h.label)) hit++;
  }
  return hit / (queries.length * k);
}

describe('IndexManager', () => {
  it('grows past its initial capacity and counts live elements', () => {
    // Created with capacity 1000, holds 5000.
    expect(index.count()).toBe(N);
    expect(manager.get({ collectionId: 1, modelVersion: 'v1' })).toBe(index);
  });

  it('reaches recall >= 0.95 at efSearch 100 on 5k x 64 and scores are cosine similarities', async () => {
    const recall = await recallOf(index, byLabel);
    expect(recall).toBeGreaterThanOrEqual(0.95);
    const q = queries[0] as Float32Array;
    const [top] = await index.search(q, 1);
    expect(top).toBeDefined();
    expect(top!.score).toBeCloseTo(dot(q, byLabel.get(top!.label) as Float32Array), 4);
  });

  it('finds a stored vector as its own nearest neighbour with score ~1', async () => {
    const hits = await index.search(vectors[123] as Float32Array, 1);
    expect(hits[0]?.label).toBe(labels[123]);
    expect(hits[0]?.score).toBeCloseTo(1, 4);
  });

  it('raises efSearch to k and returns all elements when k exceeds the count', async () => {
    const hits = await index.search(queries[1] as Float32Array, 300, { efSearch: 10 });
    expect(hits).toHaveLength(300);
    for (let i = 1; i < hits.length; i++) expect(hits[i - 1]!.score).toBeGreaterThanOrEqual(hits[i]!.score);

    const small = await manager.create({ collectionId: 9, modelVersion: 'v1' }, DIM, PARAMS, 4);
    await small.add([1, 2, 3], vectors.slice(0, 3));
    expect((await small.search(queries[0] as Float32Array, 10)).map((h) => h.label).sort()).toEqual([1, 2, 3]);
    await small.close();
    expect(manager.get({ collectionId: 9, modelVersion: 'v1' })).toBeUndefined();
  });

  it('rejects bad input with clear errors', async () => {
    await expect(index.search(new Float32Array(DIM + 1), 5)).rejects.toThrow(/dimension/);
    await expect(index.add([-1], [vectors[0] as Float32Array])).rejects.toThrow(RangeError);
    await expect(index.add([1, 2], [vectors[0] as Float32Array])).rejects.toThrow(/labels/);
    await expect(manager.create({ collectionId: 1, modelVersion: 'v1' }, DIM, PARAMS)).rejects.toThrow(IndexStateError);
    expect(await index.search(queries[0] as Float32Array, 0)).toEqual([]);
  });
});

describe('metadata filter (allow)', () => {
  for (const [path, oversampleMaxK] of [
    ['hnsw filter callback', 0],
    ['oversampled unfiltered search (falling back to the filter)', 1000],
  ] as const) {
    it(`${path} path returns k allowed results when k allowed exist`, async () => {
      // Brute-force thresholds at zero force the graph paths even for small allow sets.
      const m = new IndexManager({ workers: 1, bruteForceMaxLabels: 0, bruteForceMaxFraction: 0, oversampleMaxK });
      try {
        const idx = await m.create({ collectionId: 2, modelVersion: 'v1' }, DIM, PARAMS, N);
        await idx.add(labels, vectors);
        for (const fraction of [0.3, 0.03, 0.004]) {
          const allowed = labels.filter((_, i) => i % Math.round(1 / fraction) === 0);
          const allowSet = new Set(allowed);
          for (const q of queries.slice(0, 20)) {
            const hits = await idx.search(q, 10, { allow: allowed });
            expect(hits).toHaveLength(10);
            for (const h of hits) expect(allowSet.has(h.label)).toBe(true);
            for (let i = 1; i < hits.length; i++) expect(hits[i - 1]!.score).toBeGreaterThanOrEqual(hits[i]!.score);
          }
        }
        // A filter anti-correlated with the query: the allowed items are the 30 % farthest from it, so
        // no unfiltered search of moderate depth meets one; k results must still come back.
        const q = queries[3] as Float32Array;
        const far = [...byLabel]
          .sort((a, b) => dot(q, a[1]) - dot(q, b[1]))
          .slice(0, Math.floor(N * 0.3))
          .map(([l]) => l);
        const farSet = new Set(far);
        const hits = await idx.search(q, 10, { allow: far });
        expect(hits).toHaveLength(10);
        for (const h of hits) expect(farSet.has(h.label)).toBe(true);
        // Fewer allowed than k: all of them come back.
        const few = [labels[5] as number, labels[6] as number, 999_999];
        expect((await idx.search(queries[0] as Float32Array, 10, { allow: few })).map((h) => h.label).sort((a, b) => a - b)).toEqual(
          [labels[5], labels[6]].sort((a, b) => (a as number) - (b as number)),
        );
      } finally {
        await m.close();
      }
    });
  }

  it('brute-force path is exact', async () => {
    const allowed = labels.filter((_, i) => i % 97 === 0); // 52 labels: far below the default threshold
    const allowSet = new Set(allowed);
    for (const q of queries.slice(0, 20)) {
      const hits = await index.search(q, 10, { allow: allowed });
      expect(hits.map((h) => h.label)).toEqual(exactTopK(q, byLabel, 10, allowSet));
      expect(hits[0]!.score).toBeCloseTo(dot(q, byLabel.get(hits[0]!.label) as Float32Array), 5);
    }
  });

  it('an empty allow list matches nothing', async () => {
    expect(await index.search(queries[0] as Float32Array, 10, { allow: [] })).toEqual([]);
  });
});

describe('deletes', () => {
  it('never returns marked-deleted items, on any path, and ignores unknown labels', async () => {
    const m = new IndexManager({ workers: 1, bruteForceMaxLabels: 100 });
    try {
      const idx = await m.create({ collectionId: 3, modelVersion: 'v1' }, DIM, PARAMS, N);
      await idx.add(labels, vectors);
      // Delete the exact top-20 of every query, i.e. exactly what a search would want to return.
      const doomed = new Set<number>();
      for (const q of queries) for (const l of exactTopK(q, byLabel, 20)) doomed.add(l);
      await idx.markDeleted([...doomed, 123_456_789, -5, 1.5]);
      await idx.markDeleted([...doomed].slice(0, 10)); // repeated delete is harmless
      expect(idx.count()).toBe(N - doomed.size);

      const liveAllowed = labels.filter((l, i) => i % 3 === 0 || doomed.has(l));
      const liveBrute = labels.filter((l, i) => i % 251 === 0 || doomed.has(l));
      for (const q of queries) {
        for (const hits of [
          await idx.search(q, 20),
          await idx.search(q, 20, { allow: liveAllowed }),
          await idx.search(q, 20, { allow: liveBrute }),
        ]) {
          expect(hits.length).toBeGreaterThan(0);
          for (const h of hits) expect(doomed.has(h.label)).toBe(false);
        }
      }
      // Re-adding a deleted label brings it back.
      const back = [...doomed][0] as number;
      await idx.add([back], [byLabel.get(back) as Float32Array]);
      expect(idx.count()).toBe(N - doomed.size + 1);
      expect((await idx.search(byLabel.get(back) as Float32Array, 1))[0]?.label).toBe(back);
    } finally {
      await m.close();
    }
  });
});

describe('snapshots', () => {
  it('round-trips: identical results, ef restored from params, deletes kept, atomic write', async () => {
    const m = new IndexManager({ workers: 2 });
    try {
      const key = { collectionId: 4, modelVersion: 'v1' };
      const idx = await m.create(key, DIM, PARAMS, 1000);
      await idx.add(labels, vectors);
      await idx.markDeleted(labels.slice(0, 50));
      const path = join(dir, 'rt.hnsw');
      await idx.snapshot(path);
      expect(existsSync(path)).toBe(true);
      expect(existsSync(`${path}.tmp`)).toBe(false);

      const before = await Promise.all(queries.map((q) => idx.search(q, 10)));
      const allow = labels.filter((_, i) => i % 100 === 0);
      const beforeFiltered = await idx.search(queries[0] as Float32Array, 10, { allow });
      await m.drop(key);

      const loaded = await m.load(key, DIM, PARAMS, path);
      expect(loaded.count()).toBe(N - 50);
      const after = await Promise.all(queries.map((q) => loaded.search(q, 10)));
      expect(after).toEqual(before);
      expect(await loaded.search(queries[0] as Float32Array, 10, { allow })).toEqual(beforeFiltered);
      // hnswlib's default ef after readIndex is 10; recall at efSearch 100 proves params were applied.
      const live = new Map([...byLabel].filter(([l]) => !labels.slice(0, 50).includes(l)));
      expect(await recallOf(loaded, live)).toBeGreaterThanOrEqual(0.95);

      // A loaded index keeps growing and snapshots again over the old file.
      await loaded.add([1_000_000], [queries[5] as Float32Array]);
      await loaded.snapshot(path);
      await m.drop(key);
      const again = await m.load(key, DIM, PARAMS, path);
      expect(again.count()).toBe(N - 50 + 1);
      expect((await again.search(queries[5] as Float32Array, 1))[0]?.label).toBe(1_000_000);
    } finally {
      await m.close();
    }
  });

  it('rejects truncated, corrupt, wrong-dimension and missing files with IndexSnapshotError; the pool keeps working', async () => {
    const good = join(dir, 'good.hnsw');
    await index.snapshot(good);
    const bytes = readFileSync(good);
    const cases: Record<string, Buffer> = {
      half: bytes.subarray(0, Math.floor(bytes.length / 2)),
      header: bytes.subarray(0, 60),
      empty: Buffer.alloc(0),
      'one-byte-short': bytes.subarray(0, bytes.length - 1),
      'trailing-bytes': Buffer.concat([bytes, Buffer.alloc(16)]),
      garbage: Buffer.from(Array.from({ length: 100_000 }, (_, i) => (i * 2654435761) % 251)),
    };
    // A header that asks for a petabyte: hnswlib would try to malloc it.
    const huge = Buffer.from(bytes.subarray(0, 4096));
    huge.writeBigUInt64LE(2n ** 40n, 8);
    cases.huge = huge;

    let n = 100;
    for (const [name, buf] of Object.entries(cases)) {
      const p = join(dir, `${name}.hnsw`);
      writeFileSync(p, buf);
      await expect(manager.load({ collectionId: n++, modelVersion: 'v1' }, DIM, PARAMS, p), name).rejects.toThrow(IndexSnapshotError);
    }
    await expect(manager.load({ collectionId: n++, modelVersion: 'v1' }, DIM + 1, PARAMS, good)).rejects.toThrow(/dimensional/);
    await expect(manager.load({ collectionId: n++, modelVersion: 'v1' }, DIM, PARAMS, join(dir, 'missing.hnsw'))).rejects.toThrow(
      IndexSnapshotError,
    );

    // Nothing half-registered, and the pool still serves and loads.
    expect(manager.keys()).toHaveLength(1);
    expect(await index.search(queries[0] as Float32Array, 5)).toHaveLength(5);
    const ok = await manager.load({ collectionId: n, modelVersion: 'v1' }, DIM, PARAMS, good);
    expect(ok.count()).toBe(N);
    await ok.close();
  });
});

describe('concurrency and failure', () => {
  it('serves concurrent searches while adding', async () => {
    const m = new IndexManager({ workers: 2, addChunk: 64 });
    try {
      const idx = await m.create({ collectionId: 5, modelVersion: 'v1' }, DIM, PARAMS, 100);
      await idx.add(labels.slice(0, 200), vectors.slice(0, 200));
      const adding = idx.add(labels.slice(200, 3000), vectors.slice(200, 3000));
      const searches: Promise<unknown>[] = [];
      for (let i = 0; i < 300; i++) {
        const q = queries[i % queries.length] as Float32Array;
        searches.push(
          idx.search(q, 10, i % 3 === 0 ? { allow: labels.slice(0, 500) } : {}).then((hits) => {
            expect(hits.length).toBe(10);
          }),
        );
      }
      await Promise.all([adding, ...searches]);
      expect(idx.count()).toBe(3000);
    } finally {
      await m.close();
    }
  });

  it('replicas answer like the primary', async () => {
    const m = new IndexManager({ workers: 2, replicas: 2 });
    try {
      const idx = await m.create({ collectionId: 6, modelVersion: 'v1' }, DIM, PARAMS, 100);
      await idx.add(labels.slice(0, 2000), vectors.slice(0, 2000));
      await idx.markDeleted(labels.slice(0, 10));
      // Same seed, same insertion order: both copies build the same graph, so any copy may answer.
      const results = await Promise.all(queries.flatMap((q) => [idx.search(q, 10), idx.search(q, 10)]));
      for (let i = 0; i < results.length; i += 2) expect(results[i]).toEqual(results[i + 1]);
      expect(idx.count()).toBe(1990);
    } finally {
      await m.close();
    }
  });

  it('detects a dead worker, fails its indexes with IndexLostError and respawns', async () => {
    const m = new IndexManager({ workers: 1 });
    try {
      const key = { collectionId: 7, modelVersion: 'v1' };
      const idx = await m.create(key, DIM, PARAMS, 100);
      await idx.add(labels.slice(0, 100), vectors.slice(0, 100));
      await m.killWorker(0);
      await expect(idx.search(queries[0] as Float32Array, 5)).rejects.toThrow(IndexLostError);
      expect(m.get(key)).toBeUndefined();
      const fresh = await m.create(key, DIM, PARAMS, 100);
      await fresh.add(labels.slice(0, 100), vectors.slice(0, 100));
      expect(await fresh.search(queries[0] as Float32Array, 5)).toHaveLength(5);
    } finally {
      await m.close();
    }
  });
});
