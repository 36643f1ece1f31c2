import { describe, expect, it } from 'vitest';

import { ChunkCache } from '../../src/serving/chunk-cache.js';
import type { HydratedChunk, Store } from '../../src/store/types.js';

// A store stand-in that counts hydrate calls and answers only live labels.
function fakeStore(rows: Map<number, HydratedChunk>) {
  const calls: number[][] = [];
  const store = {
    async hydrate(labels: readonly number[]) {
      calls.push([...labels]);
      const out = new Map<number, HydratedChunk>();
      for (const l of labels) {
        const r = rows.get(l);
        if (r) out.set(l, r);
      }
      return out;
    },
  } as unknown as Store;
  return { store, calls };
}

const chunk = (label: number, text = `text ${label}`): HydratedChunk => ({ label, docId: `d${label}`, n: 0, text, metadata: { label } });

describe('ChunkCache', () => {
  it('answers seen labels from memory and sends only the misses to the store', async () => {
    const rows = new Map([1, 2, 3].map((l) => [l, chunk(l)]));
    const { store, calls } = fakeStore(rows);
    const cache = new ChunkCache(1 << 20);
    const first = await cache.hydrate(store, [1, 2]);
    expect([...first.keys()]).toEqual([1, 2]);
    const second = await cache.hydrate(store, [2, 3, 1]);
    expect(second.get(2)).toEqual(chunk(2));
    expect(second.get(3)).toEqual(chunk(3));
    expect(calls).toEqual([[1, 2], [3]]);
  });

  it('a forgotten (tombstoned) label goes back to the store, which no longer has it', async () => {
    const rows = new Map([1, 2].map((l) => [l, chunk(l)]));
    const { store, calls } = fakeStore(rows);
    const cache = new ChunkCache(1 << 20);
    await cache.hydrate(store, [1, 2]);
    rows.delete(1);
    cache.forget([1]);
    const res = await cache.hydrate(store, [1, 2]);
    expect(res.has(1)).toBe(false);
    expect(res.get(2)).toEqual(chunk(2));
    expect(calls.at(-1)).toEqual([1]);
  });

  it('labels the store does not return are not cached', async () => {
    const { store, calls } = fakeStore(new Map());
    const cache = new ChunkCache(1 << 20);
    await cache.hydrate(store, [7]);
    await cache.hydrate(store, [7]);
    expect(calls).toEqual([[7], [7]]);
    expect(cache.size).toBe(0);
  });

  it('stays within its byte bound, dropping the least recently used first', async () => {
    const rows = new Map(Array.from({ length: 100 }, (_, l) => [l, chunk(l, 'x'.repeat(1000))]));
    const { store, calls } = fakeStore(rows);
    // ~2.2 KB an entry: room for four.
    const cache = new ChunkCache(10_000);
    for (const l of [0, 1, 2, 3]) await cache.hydrate(store, [l]);
    await cache.hydrate(store, [0]); // 0 is now the most recently used
    await cache.hydrate(store, [4]); // evicts 1
    expect(cache.size).toBe(4);
    calls.length = 0;
    await cache.hydrate(store, [0, 2, 3, 4]);
    expect(calls).toEqual([]);
    await cache.hydrate(store, [1]);
    expect(calls).toEqual([[1]]);
  });
});
