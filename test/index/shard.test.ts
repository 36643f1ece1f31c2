// Update-heavy traffic (re-upserts tombstone a chunk and add a new label) must not grow an index
// without bound: hnswlib reuses deleted elements, and the shard recycles its own vector slots.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { Shard } from '../../src/index/shard.js';
import { randomUnitVector, seededRandom } from '../../src/util/random.js';
import { tempDir } from '../helpers.js';

const DIM = 16;
const PARAMS = { M: 8, efConstruction: 100, efSearch: 200 };
const TUNING = { bruteForceMaxLabels: 50, bruteForceMaxFraction: 0.05, oversampleMaxK: 1000 };
const dir = tempDir('shard-');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function exactTop(q: Float32Array, live: Map<number, Float32Array>, k: number, allow?: Set<number>): number[] {
  const s: [number, number][] = [];
  for (const [l, v] of live) {
    if (allow && !allow.has(l)) continue;
    let d = 0;
    for (let i = 0; i < DIM; i++) d += (q[i] as number) * (v[i] as number);
    s.push([l, d]);
  }
  return s
    .sort((a, b) => b[1] - a[1])
    .slice(0, k)
    .map(([l]) => l);
}

// With the flat vector copy (exact scoring from memory) and without (vectors read back from hnswlib).
it.each([true, false])(
  '20 rounds of replacing every document keep the element count near the live count, and results exact (vector copy: %s)',
  async (vectorCopy) => {
    const tuning = { ...TUNING, vectorCopy };
    const rand = seededRandom(3);
    const shard = Shard.create(DIM, PARAMS, 64, tuning);
    const live = new Map<number, Float32Array>();
    let next = 1;
    const addMany = async (n: number) => {
      const labels = Float64Array.from({ length: n }, () => next++);
      const vecs = new Float32Array(n * DIM);
      labels.forEach((l, i) => {
        const v = randomUnitVector(DIM, rand);
        vecs.set(v, i * DIM);
        live.set(l, v);
      });
      await shard.add(labels, vecs);
    };
    await addMany(300);
    const everDeleted: number[] = [];
    for (let round = 0; round < 20; round++) {
      // Replace a third of the documents per round (delete old chunk labels, add new ones).
      const victims = [...live.keys()].filter(() => rand() < 0.34);
      await shard.markDeleted(Float64Array.from(victims));
      for (const v of victims) live.delete(v);
      everDeleted.push(...victims);
      await addMany(victims.length);
      if (round === 9) await shard.snapshot(join(dir, `mid-${vectorCopy}.hnsw`));
    }
    expect(shard.state().count).toBe(live.size);
    // Without reuse this would be 300 + every replacement (~2,000).
    expect(shard.elements()).toBeLessThanOrEqual(live.size + 150);

    const deletedSet = new Set(everDeleted);
    for (let i = 0; i < 30; i++) {
      const q = randomUnitVector(DIM, rand);
      const hits = [...shard.search(q, 10, 200, null).labels];
      expect(hits.some((l) => deletedSet.has(l))).toBe(false);
      const want = exactTop(q, live, 10);
      expect(hits.filter((l) => want.includes(l)).length).toBeGreaterThanOrEqual(9);
      // Filters naming deleted labels (some evicted from hnswlib, some not) return live ones only, exactly.
      const allowList = [...everDeleted.slice(-40), ...[...live.keys()].slice(0, 30)];
      const filtered = [...shard.search(q, 10, 200, Float64Array.from(allowList)).labels];
      expect(filtered).toEqual(exactTop(q, live, 10, new Set(allowList)));
    }

    // A deleted label coming back (a document restored under its old chunk id) is served again.
    const back = everDeleted[0]!;
    const v = randomUnitVector(DIM, rand);
    await shard.add(Float64Array.of(back), v);
    live.set(back, v);
    expect(shard.search(v, 1, 200, null).labels[0]).toBe(back);
    expect(shard.state().count).toBe(live.size);

    // Snapshots taken mid-way and at the end load back to the same answers.
    const end = join(dir, `end-${vectorCopy}.hnsw`);
    await shard.snapshot(end);
    const loaded = await Shard.load(DIM, PARAMS, end, tuning);
    expect(loaded.state().count).toBe(live.size);
    for (let i = 0; i < 10; i++) {
      const q = randomUnitVector(DIM, rand);
      expect([...loaded.search(q, 5, 200, null).labels]).toEqual([...shard.search(q, 5, 200, null).labels]);
      const allowList = [...live.keys()].slice(0, 30);
      expect([...loaded.search(q, 10, 200, Float64Array.from(allowList)).labels]).toEqual(exactTop(q, live, 10, new Set(allowList)));
    }
    // Replacement keeps working after a load.
    const before = loaded.elements();
    await loaded.markDeleted(Float64Array.from([...live.keys()].slice(0, 50)));
    const fresh = Float64Array.from({ length: 50 }, () => next++);
    await loaded.add(
      fresh,
      new Float32Array(50 * DIM).map(() => rand() - 0.5),
    );
    expect(loaded.elements()).toBe(before);
    expect((await Shard.load(DIM, PARAMS, join(dir, `mid-${vectorCopy}.hnsw`), tuning)).state().count).toBe(300);
  },
);

it('an empty index snapshotted and loaded back still takes adds and answers searches', async () => {
  const rand = seededRandom(9);
  const path = join(dir, 'empty.hnsw');
  await Shard.create(DIM, PARAMS, 1024, TUNING).snapshot(path);
  const shard = await Shard.load(DIM, PARAMS, path, TUNING);
  expect(shard.search(randomUnitVector(DIM, rand), 5, 50, null).labels).toHaveLength(0);
  // hnswlib reloads an empty index with room for 0 elements; a small first batch must still fit.
  const vecs = new Float32Array(3000 * DIM).map(() => rand() - 0.5);
  await shard.add(
    Float64Array.from({ length: 10 }, (_, i) => i + 1),
    vecs.subarray(0, 10 * DIM),
  );
  await shard.add(
    Float64Array.from({ length: 2990 }, (_, i) => i + 11),
    vecs.subarray(10 * DIM),
  );
  expect(shard.state().count).toBe(3000);
  expect(shard.search(vecs.subarray(0, DIM), 1, 50, null).labels[0]).toBe(1);
});
