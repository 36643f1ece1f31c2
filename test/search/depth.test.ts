// The vector path's learned index depth (src/search/depth.ts) on an in-memory Retrieval whose answers are
// known: a collection of one-chunk documents is searched at about k, one whose documents have four chunks
// each is searched deep enough to fill k documents, and a low estimate costs a second search, never a result.
import { describe, expect, it } from 'vitest';
import { DepthPlanner } from '../../src/search/depth.js';
import type { Ranked, Retrieval } from '../../src/search/modes/types.js';
import { runSearch, type SearchRequest } from '../../src/search/search.js';
import type { Collection, HydratedChunk } from '../../src/store/types.js';
import { uuidv7 } from '../../src/util/ids.js';

const collection = (id: number): Collection => ({
  id,
  name: `c${id}`,
  hnsw: { M: 16, efConstruction: 200, efSearch: 64 },
  chunk: { size: 256, overlap: 0 },
  createdAt: 0,
});

/** `chunksPerDoc` consecutive labels per document; the index ranks labels 0, 1, 2, … with falling scores. */
function fakeRetrieval(labels: number, chunksPerDoc: number) {
  const depths: number[] = [];
  const r: Retrieval = {
    model: { version: 'm', dim: 2 },
    embedQuery: async () => new Float32Array([1, 0]),
    vectorSearch: async (_c, _v, depth) => {
      depths.push(depth);
      return Array.from({ length: Math.min(depth, labels) }, (_, i): Ranked => ({ label: i, score: 1 - i / 1000 }));
    },
    keywordSearch: async () => [],
    hydrate: async (ls) =>
      new Map(
        ls.map((l): [number, HydratedChunk] => [
          l,
          { docId: `d${Math.floor(l / chunksPerDoc)}`, n: l % chunksPerDoc, text: `chunk ${l}`, metadata: {} } as HydratedChunk,
        ]),
      ),
    strategy: () => undefined,
  };
  return { r, depths };
}

const req = (c: Collection, k = 10): SearchRequest => ({ collection: c.name, vector: [1, 0], k, mode: 'vector' });

describe('vector search depth', () => {
  it('one chunk per document: the first query uses the full allowance, later ones about k', async () => {
    const planner = new DepthPlanner();
    const c = collection(1);
    const { r, depths } = fakeRetrieval(1000, 1);
    for (let i = 0; i < 5; i++) {
      const { results } = await runSearch(r, c, req(c), 100, planner);
      expect(results.map((x) => x.id)).toEqual(Array.from({ length: 10 }, (_, j) => `d${j}`));
    }
    expect(depths[0]).toBe(40); // 3k + 10
    expect(depths.slice(1)).toEqual([14, 14, 14, 14]); // ceil(10 × 1 × 1.2) + 2
  });

  it('four chunks per document: deep enough for k documents, and the same results as the fixed allowance', async () => {
    const planner = new DepthPlanner();
    const c = collection(2);
    const { r, depths } = fakeRetrieval(1000, 4);
    const fixed = await runSearch(r, c, req(c), 100);
    for (let i = 0; i < 3; i++) {
      const { results } = await runSearch(r, c, req(c), 100, planner);
      expect(results).toEqual(fixed.results);
    }
    // 37 ranked chunks fill 10 documents (the 10th document's first chunk is label 36): ratio 3.7, so
    // ceil(10 × 3.7 × 1.2) + 2 = 47, capped at the full allowance
    expect(depths.slice(2)).toEqual([40, 40]);
  });

  it('a low estimate is searched again at the full allowance; a small index is not', async () => {
    const planner = new DepthPlanner();
    const one = collection(3);
    // learned on one-chunk documents…
    await runSearch(fakeRetrieval(1000, 1).r, one, req(one), 100, planner);
    // …then the documents turn out to have five chunks each: 14 chunks fill 3 documents, so search again
    const { r, depths } = fakeRetrieval(1000, 5);
    const { results } = await runSearch(r, one, req(one), 100, planner);
    expect(depths).toEqual([14, 40]);
    expect(results).toHaveLength(8); // 40 chunks hold 8 documents, as with the fixed allowance
    // a collection with fewer chunks than asked for answers what it has, in one search
    const small = collection(4);
    const tiny = fakeRetrieval(6, 1);
    await runSearch(tiny.r, small, req(small), 100, planner);
    const again = await runSearch(tiny.r, small, req(small), 100, planner);
    expect(again.results).toHaveLength(6);
    expect(tiny.depths).toEqual([40, 14]);
  });

  it('is not used for keyword or hybrid, which fuse ranked lists at the full allowance', async () => {
    const planner = new DepthPlanner();
    const c = collection(5);
    const { r, depths } = fakeRetrieval(1000, 1);
    planner.observe(c.id, 10, 10);
    await runSearch(r, c, { collection: c.name, query: 'x', k: 10, mode: 'hybrid' }, 100, planner);
    expect(depths).toEqual([40]);
  });
});

describe('uuidv7', () => {
  it('is an RFC 9562 version 7 UUID whose order follows the clock', () => {
    const a = uuidv7(1_700_000_000_000);
    const b = uuidv7(1_700_000_000_001);
    expect(a).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(a < b).toBe(true);
    expect(Number.parseInt(a.replace(/-/g, '').slice(0, 12), 16)).toBe(1_700_000_000_000);
    expect(new Set(Array.from({ length: 10_000 }, () => uuidv7())).size).toBe(10_000);
  });
});
