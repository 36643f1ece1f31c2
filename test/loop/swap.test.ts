// Shadow re-embed + cut-over + rollback on a real engine (ONNX tiny model) with each index backend: SQLite with
// hnswlib workers, and PGlite with pgvector (the candidate's vectors in a table of their own).
// The "candidate" is a copy of the tiny model under another version name: real files, real load.
import { cpSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi, type MockInstance } from 'vitest';
import { encodeSource, modelsDir } from '../../src/serving/models.js';
import { loadModel, specForDir } from '../../src/swap/models.js';
import type { Config } from '../../src/config.js';
import { Swapper } from '../../src/swap/swap.js';
import { startTestServer, tempDir, TINY_MODEL, type TestServer } from '../helpers.js';

const docs = (from: number, n: number) =>
  Array.from({ length: n }, (_, i) => ({
    id: `d${from + i}`,
    text: `document ${from + i} about subject ${(from + i) % 13} and topic ${(from + i) % 7}`,
  }));

const BACKENDS = {
  hnswlib: (_dir: string): Partial<Config> => ({}),
  pgvector: (dir: string): Partial<Config> => ({ DATABASE_URL: `pglite://${join(dir, 'pg')}`, INDEX_BACKEND: 'pgvector' }),
};

describe.each(Object.keys(BACKENDS) as (keyof typeof BACKENDS)[])('Swapper on %s', (backend) => {
  let dir: string;
  let extra: Partial<Config>;
  let s: TestServer;
  let swapper: Swapper;
  let base: string;
  const candDir = () => join(modelsDir(s.config), 'cand-1');
  /** close() of the pairs a swap pushed out (freed after a grace period, or when the server stops). */
  const retiredCloses: MockInstance[] = [];

  beforeAll(async () => {
    dir = tempDir('swap-');
    extra = BACKENDS[backend](dir);
    s = await startTestServer({ DATA_DIR: dir, REEMBED_BATCH: 16, REEMBED_PAUSE_MS: 2, ...extra });
    expect(s.indexes.kind).toBe(backend);
    base = s.engine.serving.version;
    swapper = new Swapper({ engine: s.engine, store: s.store, indexes: s.indexes, config: s.config, metrics: s.metrics, log: s.log });
    await s.req('POST', '/collections', { name: 'a' });
    await s.req('POST', '/collections', { name: 'b' });
    await s.req('POST', '/collections/a/documents', { documents: docs(0, 200) });
    await s.req('POST', '/collections/b/documents', { documents: docs(1000, 40) });
    cpSync(TINY_MODEL, candDir(), { recursive: true });
  }, 60_000);

  afterAll(async () => {
    await s?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it('re-embeds in the shadow, catches up writes made meanwhile, verifies, then switches atomically', async () => {
    const cfg = s.config;
    const cand = await loadModel(specForDir('cand-1', candDir(), cfg), cfg);
    await s.store.upsertModelVersion({
      version: 'cand-1',
      parentVersion: base,
      source: encodeSource({ kind: 'dir', path: candDir() }),
      dim: cand.dim,
      status: 'candidate',
      card: {},
    });
    const seen: number[] = [];
    // Writes and searches while the shadow build runs: upserts, a replacement and a delete.
    const build = swapper.shadowBuild('cand-1', cand, (_c, _d, _t, o) => seen.push(o.done / o.total));
    const writes = (async () => {
      await s.req('POST', '/collections/a/documents', { documents: docs(200, 30) });
      await s.req('POST', '/collections/a/documents', { documents: [{ id: 'd5', text: 'replaced text of document five about zebras' }] });
      await s.req('DELETE', '/collections/a/documents/d7');
    })();
    // Searches run from before the shadow build until after the cut-over (at least 20, and 2 more once it is
    // done, however fast the build and the cut-over are on this machine): none may fail.
    const searches: number[] = [];
    let cutOverDone = false;
    let afterCutOver = 0;
    const searching = (async () => {
      for (let i = 0; i < 20 || afterCutOver < 2; i++) {
        if (cutOverDone) afterCutOver++;
        searches.push(
          (await s.req('POST', '/search', { collection: 'a', query: `subject ${i % 13}`, k: 3, mode: i % 2 ? 'vector' : 'hybrid' })).status,
        );
      }
    })();
    const b = await build;
    await writes;
    expect(s.engine.serving.version).toBe(base);
    expect(seen.at(-1)).toBe(1);
    const r = await swapper.cutOver(b).finally(() => {
      cutOverDone = true;
    });
    await searching;
    expect(afterCutOver).toBeGreaterThanOrEqual(2);
    expect(searches.filter((x) => x !== 200)).toEqual([]);
    expect(r.version).toBe('cand-1');
    const ra = r.collections.find((c) => c.name === 'a')!;
    expect(ra.count).toBe(229);
    expect(ra.live).toBe(229);
    expect(ra.sampleQueries).toBe(5);
    expect(s.engine.serving.version).toBe('cand-1');
    expect(s.engine.previousPair?.version).toBe(base);
    expect((await s.store.getServing())!.modelVersion).toBe('cand-1');
    // The caught-up writes are searchable in the new index, the deleted one is gone.
    const z = await s.req('POST', '/search', { collection: 'a', query: 'replaced text of document five about zebras', k: 1 });
    expect(z.body.model).toBe('cand-1');
    expect(z.body.results[0].id).toBe('d5');
    const all = await s.req('POST', '/search', { collection: 'a', query: 'document 7 about subject 7 and topic 0', k: 50 });
    expect(all.body.results.map((x: { id: string }) => x.id)).not.toContain('d7');
    expect((await s.store.listIndexRecords({ modelVersion: 'cand-1' })).every((x) => x.status === 'ready')).toBe(true);
  }, 60_000);

  it('rolls back to the retained pair instantly, replaying writes made since it stopped serving', async () => {
    await s.req('POST', '/collections/a/documents', { documents: [{ id: 'late', text: 'a late document about penguins and ice' }] });
    const r = await swapper.rollback(base);
    expect(r).toMatchObject({ version: base, changed: true, rebuilt: false });
    expect(s.engine.serving.version).toBe(base);
    const q = await s.req('POST', '/search', { collection: 'a', query: 'a late document about penguins and ice', k: 1 });
    expect(q.body.model).toBe(base);
    expect(q.body.results[0].id).toBe('late');
    expect((await s.req('GET', '/collections/a')).body.chunks).toBe(230);
  }, 60_000);

  it('rolls forward to a former champion that is no longer loaded by rebuilding it from its files', async () => {
    // Retire the loaded copy of cand-1 by cycling through another version.
    cpSync(TINY_MODEL, join(modelsDir(s.config), 'cand-2'), { recursive: true });
    const cfg = s.config;
    const c2 = await loadModel(specForDir('cand-2', join(modelsDir(s.config), 'cand-2'), cfg), cfg);
    await s.store.upsertModelVersion({
      version: 'cand-2',
      parentVersion: base,
      source: encodeSource({ kind: 'dir', path: join(modelsDir(s.config), 'cand-2') }),
      dim: c2.dim,
      status: 'candidate',
      card: {},
    });
    retiredCloses.push(vi.spyOn(s.engine.previousPair!.embedder, 'close'));
    await swapper.cutOver(await swapper.shadowBuild('cand-2', c2));
    expect(s.engine.previousPair?.version).toBe(base);
    retiredCloses.push(vi.spyOn(s.engine.previousPair!.embedder, 'close'));
    const r = await swapper.rollback('cand-1');
    expect(r).toMatchObject({ version: 'cand-1', changed: true, rebuilt: true });
    expect(s.engine.serving.version).toBe('cand-1');
    expect((await s.req('GET', '/collections/a')).body.chunks).toBe(230);
    const q = await s.req('POST', '/search', { collection: 'b', query: 'document 1003 about subject 2 and topic 2', k: 1 });
    expect(q.body.model).toBe('cand-1');
    expect(q.body.results[0].id).toBe('d1003');
  }, 60_000);

  it('a restart serves the last committed champion with every document', async () => {
    // Two pairs were pushed out less than their grace period ago: stopping frees them (their embed workers
    // would otherwise outlive the server and be killed mid-call when the process exits).
    expect(retiredCloses).toHaveLength(2);
    for (const close of retiredCloses) expect(close).not.toHaveBeenCalled();
    await s.close();
    for (const close of retiredCloses) expect(close).toHaveBeenCalledTimes(1);
    const again = await startTestServer({ DATA_DIR: dir, ...extra });
    try {
      expect(again.engine.serving.version).toBe('cand-1');
      expect((await again.req('GET', '/collections/a')).body).toMatchObject({ documents: 230, chunks: 230, model: 'cand-1' });
      const q = await again.req('POST', '/search', { collection: 'a', query: 'a late document about penguins and ice', k: 1 });
      expect(q.body.results[0].id).toBe('late');
    } finally {
      await again.close();
    }
    s = await startTestServer({ DATA_DIR: dir, ...extra });
  }, 60_000);
});
