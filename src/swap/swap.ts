import { existsSync } from 'node:fs';
import type { Config } from '../config.js';
import type { Embedder, ModelSource } from '../embed/types.js';
import { AppError } from '../errors.js';
import type { VectorIndex } from '../index/types.js';
import type { Engine, ServingPair } from '../serving/engine.js';
import { decodeSource } from '../serving/models.js';
import type { Collection } from '../store/types.js';
import { KeyedMutex } from '../util/mutex.js';
import { loadModel, specForDir } from './models.js';

class VerifyError extends Error {}

export interface ShadowBuild {
  pair: ServingPair;
  /** Store seq read before each collection's build started: the catch-up replays everything after it. */
  startSeqs: Map<number, number>;
}

export interface CutOverReport {
  version: string;
  generation: number;
  collections: { name: string; count: number; live: number; caughtUp: number; sampleQueries: number; sampleSelfHits: number }[];
}

export type ReembedProgress = (collection: string, done: number, total: number, overall: { done: number; total: number }) => void;

/**
 * The (model, index) pointer switch: shadow re-embed next to the champion, catch up writes, verify, then
 * promote in the store (the commit point a restart reads) and flip the in-memory pair. Cut-over and
 * rollback are serialized; document writes are paused only for the catch-up + flip, never for the build.
 */
export class Swapper {
  private readonly lock = new KeyedMutex();
  /** Store seq at which a version stopped receiving writes: a rollback replays from there. */
  private readonly retiredAt = new Map<string, number>();

  constructor(private readonly engine: Engine, private readonly config: Config) {}

  /** Re-embeds every collection with `embedder` into fresh indexes (throttled by REEMBED_PAUSE_MS). */
  async shadowBuild(version: string, embedder: Embedder, onProgress?: ReembedProgress): Promise<ShadowBuild> {
    const { store, indexManager, metrics } = this.engine;
    const cols = await store.listCollections();
    const totals = new Map<number, number>();
    for (const c of cols) totals.set(c.id, await store.countLiveChunks(c.id));
    const overallTotal = [...totals.values()].reduce((a, b) => a + b, 0);
    let doneBefore = 0;
    const indexes = new Map<number, VectorIndex>();
    const startSeqs = new Map<number, number>();
    for (const c of cols) {
      const key = { collectionId: c.id, modelVersion: version };
      // A build that died half-way in this process (or a rejected earlier try) must not be reused.
      if (indexManager.get(key)) await indexManager.drop(key);
      startSeqs.set(c.id, await store.currentSeq());
      const idx = await this.engine.buildIndex(c, version, embedder, (done, total) => {
        metrics.reembedProgress.set({ collection: c.name, model_version: version }, total > 0 ? done / total : 1);
        onProgress?.(c.name, done, total, { done: doneBefore + done, total: overallTotal });
      }, this.config.REEMBED_PAUSE_MS);
      doneBefore += totals.get(c.id) ?? 0;
      indexes.set(c.id, idx);
    }
    return { pair: { version, embedder, generation: -1, indexes }, startSeqs };
  }

  /** Catch-up, verification and the atomic switch, with document writes paused. */
  cutOver(build: ShadowBuild, kind: 'promote' | 'rollback' = 'promote'): Promise<CutOverReport> {
    return this.lock.run('swap', async () => {
      const report = await this.engine.exclusive(() => this.switchLocked(build, kind));
      // Snapshots take the write lock themselves; a crash before this point rebuilds from the store.
      await this.engine.snapshotAll().catch((err) => this.engine.log.warn('snapshot after cut-over failed', { err: String(err) }));
      return report;
    });
  }

  private async switchLocked(build: ShadowBuild, kind: 'promote' | 'rollback'): Promise<CutOverReport> {
    const { store, metrics, log } = this.engine;
    const { pair } = build;
    const report: CutOverReport = { version: pair.version, generation: 0, collections: [] };
    const cols = await store.listCollections();
    const alive = new Set(cols.map((c) => c.id));
    for (const cid of [...pair.indexes.keys()]) if (!alive.has(cid)) pair.indexes.delete(cid);
    for (const c of cols) {
      let idx = pair.indexes.get(c.id);
      let caughtUp = 0;
      if (!idx) {
        // Created during the re-embed: small by construction, built here under the lock.
        idx = await this.engine.buildIndex(c, pair.version, pair.embedder);
        pair.indexes.set(c.id, idx);
      } else {
        caughtUp = await this.engine.catchUp(c.id, idx, pair.embedder, build.startSeqs.get(c.id) ?? 0);
      }
      report.collections.push({ name: c.name, caughtUp, ...(await this.verify(c, idx, pair.embedder)) });
    }
    const retiring = this.engine.serving.version;
    const seq = await store.currentSeq();
    const pointer = await store.promote(pair.version);
    pair.generation = pointer.generation;
    await this.engine.activate(pair);
    this.retiredAt.set(retiring, seq);
    metrics.swaps.inc({ kind });
    report.generation = pointer.generation;
    log.info('model cut-over', { kind, from: retiring, to: pair.version, generation: pointer.generation });
    return report;
  }

  /** Counts must equal the store's live chunks; a few stored chunks searched by their own text must hit. */
  private async verify(c: Collection, idx: VectorIndex, embedder: Embedder) {
    const live = await this.engine.store.countLiveChunks(c.id);
    const count = idx.count();
    if (count !== live) throw new VerifyError(`index for "${c.name}" holds ${count} vectors but the store has ${live} live chunks`);
    const sample = live > 0 ? await this.engine.store.sampleChunks(c.id, 5) : [];
    let selfHits = 0;
    if (sample.length > 0) {
      const vecs = await embedder.embed(sample.map((s) => s.text), { kind: 'document' }); // as indexed: a self-hit check
      for (let i = 0; i < sample.length; i++) {
        const hits = await idx.search(vecs[i]!, 10);
        if (hits.length === 0) throw new VerifyError(`sample query on "${c.name}" returned no results`);
        if (hits.some((h) => h.label === sample[i]!.label)) selfHits++;
      }
    }
    return { count, live, sampleQueries: sample.length, sampleSelfHits: selfHits };
  }

  /**
   * Switches back to `version`: instantly while its pair is still loaded (plus a catch-up of writes since
   * it stopped serving), otherwise by reloading its files and rebuilding its indexes.
   */
  async rollback(version: string): Promise<CutOverReport & { rebuilt: boolean; changed: boolean }> {
    const { store } = this.engine;
    const row = await store.getModelVersion(version);
    if (!row) throw new AppError('model_not_found', `no model version "${version}"`);
    if (this.engine.serving.version === version) {
      return { version, generation: (await store.getServing())?.generation ?? 0, collections: [], rebuilt: false, changed: false };
    }
    if (row.status === 'purged') throw new AppError('model_unavailable', `model version "${version}" was purged`);
    if (row.promotedAt === null) throw new AppError('model_unavailable', `model version "${version}" never served (status ${row.status}); only former champions can be rolled back to`);
    const prev = this.engine.previousPair;
    if (prev && prev.version === version) {
      const from = this.retiredAt.get(version) ?? 0;
      const startSeqs = new Map([...prev.indexes.keys()].map((cid) => [cid, from] as [number, number]));
      const r = await this.cutOver({ pair: prev, startSeqs }, 'rollback');
      return { ...r, rebuilt: false, changed: true };
    }
    let source: ModelSource;
    try {
      source = await this.engine.resolveModelSource(version, decodeSource(row.source));
    } catch (err) {
      throw new AppError('model_unavailable', `model version "${version}" has no usable source: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (source.kind === 'dir' && !existsSync(source.path)) throw new AppError('model_unavailable', `the files of model version "${version}" are gone (${source.path})`);
    let embedder: Embedder;
    try {
      const spec = source.kind === 'dir' ? specForDir(version, source.path, this.config) : { version, source, dtype: this.config.EMBED_DTYPE ?? 'fp32' as const };
      embedder = await loadModel(spec, this.config, this.engine.metrics);
    } catch (err) {
      throw new AppError('model_unavailable', `model version "${version}" cannot be loaded: ${String(err instanceof Error ? err.message : err)}`);
    }
    try {
      const build = await this.shadowBuild(version, embedder);
      const r = await this.cutOver(build, 'rollback');
      return { ...r, rebuilt: true, changed: true };
    } catch (err) {
      await embedder.close().catch(() => undefined);
      throw err;
    }
  }
}
