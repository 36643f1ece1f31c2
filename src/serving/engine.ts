import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import type { Config } from '../config.js';
import { AppError } from '../errors.js';
import type { EmbedOptions, Embedder, ModelSpec } from '../embed/types.js';
import { IndexLostError } from '../index/errors.js';
import type { Hit, IndexBackend, IndexKey, VectorIndex } from '../index/types.js';
import type { Metrics } from '../metrics.js';
import type { Collection, Metadata, Scalar, Store } from '../store/types.js';
import { isForeignKeyViolation } from '../store/errors.js';
import { chunkText } from '../util/chunk.js';
import type { Logger } from '../util/log.js';
import { KeyedMutex } from '../util/mutex.js';
import type { RemoteArtifacts } from '../objects/remote.js';
import type { ModelSource } from '../embed/types.js';
import type { Scored } from '../search/fusion.js';
import type { Retrieval } from '../search/modes/types.js';
import { rankBoth, runSearch, type SearchRequest, type SearchResultItem } from '../search/search.js';
import { StrategyBook } from '../search/tuner.js';
import { decodeSource, encodeSource, readModelCard } from './models.js';
import { QueryLogBuffer } from './querylog.js';
import { ChunkCache } from './chunk-cache.js';

/** A model and the indexes built with it: they are only ever served together. */
export interface ServingPair {
  version: string;
  embedder: Embedder;
  generation: number;
  indexes: Map<number, VectorIndex>;
}

type LoadEmbedder = (spec: ModelSpec) => Promise<Embedder>;

export interface EngineDeps {
  config: Config;
  store: Store;
  /** hnswlib worker threads (in memory, snapshots) or pgvector (tables in the Postgres store). */
  indexes: IndexBackend;
  metrics: Metrics;
  log: Logger;
  loadEmbedder: LoadEmbedder;
  /** The model configured by EMBED_MODEL / MODEL_DIR (or the committed base model). */
  configuredModel: ModelSpec;
  /** Shared object storage for snapshots and model artifacts (OBJECT_STORE_URL); absent = DATA_DIR only. */
  remote?: RemoteArtifacts;
}

export interface SearchResponse {
  results: SearchResultItem[];
  /** The mode that answered (for `auto`, the collection's strategy) and the fusion's dense weight (hybrid). */
  mode: 'vector' | 'keyword' | 'hybrid';
  weight?: number;
  model: string;
  queryId: string;
  tookMs: number;
}

export interface DocumentIn {
  id: string;
  text: string;
  metadata?: Metadata;
}

/**
 * Memory for hydrated chunks (text, document id, metadata) on the search path: at ~100 B of text a chunk,
 * about 100k of them; at the default 1000-character chunks, ~15k.
 */
const CHUNK_CACHE_BYTES = 32 * 2 ** 20;

// The engine owns the serving state: which (model, indexes) pair answers, how writes reach the
// store and the index, snapshots, and the primitives a swap is built from.
export class Engine {
  private current: ServingPair | undefined;
  /** The pair before the last cut-over, kept loaded so a rollback is a pointer flip plus a catch-up. */
  private previous: ServingPair | undefined;
  private readonly writes = new KeyedMutex();
  readonly queryLog: QueryLogBuffer;
  /** Hits hydrated from memory where seen before (labels are write-once; writes forget the ones they tombstone). */
  private readonly chunkCache = new ChunkCache(CHUNK_CACHE_BYTES);
  private snapshotTimer: NodeJS.Timeout | undefined;
  private followTimer: NodeJS.Timeout | undefined;
  private readonly snapshotSeqs = new Map<string, number>();
  private ready = false;
  private stopping = false;
  /** Per-collection serving strategies (mode "auto"), filled by the StrategyTuner and the gate. */
  readonly strategies: StrategyBook;

  constructor(private readonly deps: EngineDeps) {
    this.strategies = new StrategyBook({ store: deps.store, metrics: deps.metrics });
    this.queryLog = new QueryLogBuffer(deps.store, deps.metrics, deps.log, {
      flushMs: deps.config.QUERY_LOG_FLUSH_MS,
      maxBuffer: deps.config.QUERY_LOG_MAX_BUFFER,
    });
  }

  get store(): Store { return this.deps.store; }
  get config(): Config { return this.deps.config; }
  get metrics(): Metrics { return this.deps.metrics; }
  get log(): Logger { return this.deps.log; }
  get indexManager(): IndexBackend { return this.deps.indexes; }
  isReady(): boolean { return this.ready && !this.stopping; }

  get serving(): ServingPair {
    if (!this.current) throw new AppError('not_ready', 'the server is still loading its model and indexes');
    return this.current;
  }

  get previousPair(): ServingPair | undefined { return this.previous; }

  indexPath(collectionId: number, version: string): string {
    return join(this.deps.config.DATA_DIR, 'indexes', `${collectionId}-${version}.hnsw`);
  }

  modelsDir(): string {
    return join(this.deps.config.DATA_DIR, 'models');
  }

  get remote(): RemoteArtifacts | undefined { return this.deps.remote; }

  /**
   * A model directory another replica (or an earlier pod) wrote is not on this machine: fetch it from
   * the object store into DATA_DIR/models/<version>. Anything else is returned as is.
   */
  async resolveModelSource(version: string, source: ModelSource): Promise<ModelSource> {
    const remote = this.deps.remote;
    if (source.kind !== 'dir' || existsSync(source.path) || !remote) return source;
    const local = join(this.modelsDir(), version);
    if (existsSync(join(local, 'config.json'))) return { kind: 'dir', path: local };
    const t0 = Date.now();
    if (await remote.fetchModel(version, local)) {
      this.deps.log.info('model fetched from the object store', { version, location: remote.location, ms: Date.now() - t0 });
      return { kind: 'dir', path: local };
    }
    return source;
  }

  // ---------------------------------------------------------------- start / stop
  async start(): Promise<void> {
    const { store, configuredModel, log } = this.deps;
    mkdirSync(join(this.deps.config.DATA_DIR, 'indexes'), { recursive: true });
    const known = await store.getModelVersion(configuredModel.version);
    const pointer = await store.getServing();
    let spec: ModelSpec = configuredModel;
    if (!known || !pointer) {
      // A model the operator configured for the first time becomes the champion.
      const embedder = await this.deps.loadEmbedder(configuredModel);
      await store.upsertModelVersion({
        version: configuredModel.version, parentVersion: null, source: encodeSource(configuredModel.source),
        dim: embedder.dim, status: 'champion',
        // `serving`: pooling, prompts, token limit and the ONNX file that serves (src/embed/st.ts).
        card: { ...(configuredModel.source.kind === 'dir' ? readModelCard(configuredModel.source.path) : {}), ...(embedder.model ? { serving: embedder.model } : {}) },
      });
      const p = await store.promote(configuredModel.version);
      await this.activate(await this.buildPair(configuredModel.version, embedder, p.generation));
    } else {
      const row = await store.getModelVersion(pointer.modelVersion);
      if (row) spec = { version: row.version, source: await this.resolveModelSource(row.version, decodeSource(row.source)), dtype: configuredModel.dtype };
      let embedder: Embedder;
      try {
        embedder = await this.deps.loadEmbedder(spec);
      } catch (err) {
        // The champion's files are gone (a purged data dir): fall back to the configured model.
        log.error('champion model could not be loaded; serving the configured model', { version: spec.version, err: String(err) });
        spec = configuredModel;
        embedder = await this.deps.loadEmbedder(spec);
        await store.upsertModelVersion({
          version: spec.version, parentVersion: null, source: encodeSource(spec.source), dim: embedder.dim, status: 'champion', card: {},
        });
        await store.promote(spec.version);
      }
      const p = (await store.getServing())!;
      await this.activate(await this.buildPair(spec.version, embedder, p.generation));
    }
    this.queryLog.start();
    this.snapshotTimer = setInterval(() => {
      if (!this.snapshotBusy) void this.snapshotAll().catch((e) => log.error('snapshot failed', { err: String(e) }));
    }, this.deps.config.SNAPSHOT_EVERY_SECONDS * 1000);
    this.snapshotTimer.unref();
    if (store.dialect === 'postgres') {
      // Replicas share one database: follow other replicas' writes and the champion pointer.
      let busy = false;
      this.followTimer = setInterval(() => {
        // Building a pair for a new champion takes longer than a tick: never run two follows at once.
        if (busy) return;
        busy = true;
        void this.follow().catch((e) => log.warn('follow failed', { err: String(e) })).finally(() => { busy = false; });
      }, 1000);
      this.followTimer.unref();
    }
    this.ready = true;
    log.info('ready', { model: this.serving.version, collections: this.serving.indexes.size });
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.snapshotTimer) clearInterval(this.snapshotTimer);
    if (this.followTimer) clearInterval(this.followTimer);
    await this.queryLog.stop();
    await this.snapshotAll().catch((e) => this.deps.log.error('final snapshot failed', { err: String(e) }));
    for (const pair of [this.current, this.previous]) if (pair) await pair.embedder.close();
    await this.deps.indexes.close();
  }

  // ---------------------------------------------------------------- serving pairs
  /** Loads (snapshot + replay) or builds the index of every collection for `version`. */
  async buildPair(version: string, embedder: Embedder, generation: number,
    onProgress?: (collection: string, done: number, total: number) => void): Promise<ServingPair> {
    const indexes = new Map<number, VectorIndex>();
    for (const c of await this.deps.store.listCollections()) {
      indexes.set(c.id, await this.openIndex(c, version, embedder, onProgress ? (d, t) => onProgress(c.name, d, t) : undefined));
    }
    return { version, embedder, generation, indexes };
  }

  /** Makes `pair` the one that answers. Requests already running keep the pair they started with. */
  async activate(pair: ServingPair): Promise<void> {
    const old = this.current;
    this.current = pair;
    if (old && old.version !== pair.version) {
      const drop = this.previous;
      this.previous = old;
      if (drop && drop.version !== pair.version) {
        // Give in-flight requests on the oldest pair time to finish before freeing it.
        setTimeout(() => void this.releasePair(drop), 30_000).unref();
      }
    }
    this.deps.metrics.modelInfo.reset();
    this.deps.metrics.modelInfo.set({ version: pair.version }, 1);
    // `auto` reads strategies synchronously on the search path: have this model's rows in memory.
    for (const c of await this.deps.store.listCollections()) await this.strategies.load(c, pair.version);
    for (const [cid, idx] of pair.indexes) this.reportSize(cid, pair.version, idx);
  }

  private async releasePair(pair: ServingPair): Promise<void> {
    if (pair === this.current || pair === this.previous) return;
    await pair.embedder.close();
    for (const idx of pair.indexes.values()) await idx.close();
  }

  private async openIndex(c: Collection, version: string, embedder: Embedder, onProgress?: (done: number, total: number) => void): Promise<VectorIndex> {
    const { store, indexes, log } = this.deps;
    const key = { collectionId: c.id, modelVersion: version };
    const existing = indexes.get(key);
    if (existing) return existing;
    if (indexes.persistent) return this.openStored(c, version, embedder, onProgress);
    // The snapshot describes itself in a sidecar written after it: the database's index record is shared
    // by every replica, but snapshot files are local to each.
    const path = this.indexPath(c.id, version);
    let meta = readSnapshotMeta(path);
    const fetched = await this.fetchRemoteSnapshot(c, version, path, existsSync(path) ? meta?.seq : undefined);
    if (fetched) meta = fetched;
    if (meta && existsSync(path)) {
      try {
        const idx = await indexes.load(key, embedder.dim, c.hnsw, path);
        const n = await this.catchUp(c.id, idx, embedder, meta.seq);
        log.info('index loaded', { collection: c.name, version, count: idx.count(), replayed: n });
        this.snapshotSeqs.set(this.seqKey(c.id, version), meta.seq);
        return idx;
      } catch (err) {
        log.warn('index snapshot unusable; rebuilding from the store', { collection: c.name, version, err: String(err) });
        await indexes.drop(key).catch(() => undefined);
      }
    }
    return this.buildIndex(c, version, embedder, onProgress);
  }

  /**
   * A persistent backend (pgvector): the index stored in the database, brought in line with the store's live
   * chunks (vectors of dead chunks removed, live chunks without one embedded); a full build when there is none.
   */
  private async openStored(c: Collection, version: string, embedder: Embedder, onProgress?: (done: number, total: number) => void): Promise<VectorIndex> {
    const { store, indexes, log } = this.deps;
    const idx = await indexes.open({ collectionId: c.id, modelVersion: version }, embedder.dim, c.hnsw);
    if (!idx) return this.buildIndex(c, version, embedder, onProgress);
    const missing = (await idx.reconcile?.()) ?? [];
    for (let i = 0; i < missing.length; i += 256) {
      const rows = await store.hydrate(missing.slice(i, i + 256));
      const live = [...rows.values()];
      if (live.length) await idx.add(live.map((r) => r.label), await embedder.embed(live.map((r) => r.text), { priority: 'bulk', kind: 'document' }));
    }
    log.info('index opened', { collection: c.name, version, backend: indexes.kind, count: idx.count(), embedded: missing.length });
    return idx;
  }

  /** Replaces the local snapshot with the object store's when that one is newer. Returns its meta if it did. */
  private async fetchRemoteSnapshot(c: Collection, version: string, path: string, localSeq: number | undefined): Promise<SnapshotMeta | undefined> {
    const remote = this.deps.remote;
    if (!remote) return undefined;
    try {
      const ptr = await remote.latestSnapshot(c.id, version);
      if (!ptr || (localSeq !== undefined && ptr.seq <= localSeq)) return undefined;
      // Collection ids are per database: a pointer from another deployment sharing the prefix must not load.
      if (ptr.collection?.name !== c.name || ptr.collection.createdAt !== c.createdAt) {
        this.deps.log.warn('object-store snapshot belongs to another collection; ignored', { collection: c.name, key: ptr.key });
        return undefined;
      }
      const t0 = Date.now();
      if (!(await remote.fetchSnapshot(ptr, path))) return undefined;
      const meta: SnapshotMeta = { seq: ptr.seq, count: ptr.count, collectionId: c.id, modelVersion: version };
      writeSnapshotMeta(path, meta);
      this.deps.log.info('index snapshot fetched from the object store', { collection: c.name, version, seq: ptr.seq, bytes: ptr.bytes, ms: Date.now() - t0 });
      return meta;
    } catch (err) {
      this.deps.log.warn('object-store snapshot unusable; using local data', { collection: c.name, version, err: String(err) });
      return undefined;
    }
  }

  /** Embeds every live chunk of `c` into a fresh index for `version`. Writes that land meanwhile are caught up. */
  async buildIndex(c: Collection, version: string, embedder: Embedder, onProgress?: (done: number, total: number) => void,
    pauseMs = 0): Promise<VectorIndex> {
    const idx = await this.buildIndexUnder(c, { collectionId: c.id, modelVersion: version }, embedder, onProgress, pauseMs);
    await this.deps.store.saveIndexRecord({ collectionId: c.id, modelVersion: version, path: null, snapshotSeq: 0, count: idx.count(), status: 'building' });
    this.snapshotSeqs.set(this.seqKey(c.id, version), -1);
    return idx;
  }

  private async buildIndexUnder(c: Collection, key: IndexKey, embedder: Embedder, onProgress?: (done: number, total: number) => void,
    pauseMs = 0): Promise<VectorIndex> {
    const { store, indexes, config } = this.deps;
    const startSeq = await store.currentSeq();
    const total = await store.countLiveChunks(c.id);
    const idx = await indexes.create(key, embedder.dim, c.hnsw, Math.max(1024, total));
    let after = 0;
    let done = 0;
    const batch = config.REEMBED_BATCH;
    onProgress?.(0, total);
    for (;;) {
      const rows = await store.liveChunks(c.id, after, batch);
      if (rows.length === 0) break;
      // Bulk lane: a re-embed or rebuild must never delay live queries.
      const vecs = await embedder.embed(rows.map((r) => r.text), { priority: 'bulk', kind: 'document' });
      await idx.add(rows.map((r) => r.label), vecs);
      after = rows[rows.length - 1]!.label;
      done += rows.length;
      onProgress?.(done, total);
      if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
    }
    await idx.seal?.();
    // Chunks tombstoned while we read past them are still in the index: replay from the start seq.
    await this.catchUp(c.id, idx, embedder, startSeq);
    return idx;
  }

  /** Rebuilds one collection's serving index from the store (the DB is the source of truth). */
  async rebuildCollection(c: Collection): Promise<number> {
    const pair = this.serving;
    return this.exclusive(async () => {
      // Build under a fresh key so searches keep using the old index until the pointer moves.
      const old = pair.indexes.get(c.id);
      let fresh = await this.buildIndexUnder(c, { collectionId: c.id, modelVersion: `${pair.version}@${Date.now()}` }, pair.embedder);
      // A stored index must end up under the serving key, where a restart and the other replicas look for it.
      if (this.deps.indexes.rename) fresh = await this.deps.indexes.rename(fresh, { collectionId: c.id, modelVersion: pair.version });
      pair.indexes.set(c.id, fresh);
      this.snapshotSeqs.delete(this.seqKey(c.id, pair.version));
      // (A renamed stored index replaced the old one in the same transaction: nothing left to free.)
      if (old && !this.deps.indexes.persistent) setTimeout(() => void old.close().catch(() => undefined), 5_000).unref();
      this.reportSize(c.id, pair.version, fresh);
      return fresh.count();
    });
  }

  /** Applies every store change after `fromSeq` to `idx`. Returns the number of changes applied. */
  async catchUp(collectionId: number, idx: VectorIndex, embedder: Embedder, fromSeq: number): Promise<number> {
    const ch = await this.deps.store.changesSince(collectionId, fromSeq);
    this.chunkCache.forget(ch.removed);
    if (ch.removed.length) await idx.markDeleted(ch.removed);
    // A shared index (pgvector) may hold these already, written by the replica that took the write.
    let added = ch.added;
    if (idx.absent) {
      const absent = new Set(await idx.absent(added.map((r) => r.label)));
      added = added.filter((r) => absent.has(r.label));
    }
    for (let i = 0; i < added.length; i += 256) {
      const part = added.slice(i, i + 256);
      await idx.add(part.map((r) => r.label), await embedder.embed(part.map((r) => r.text), { priority: 'bulk', kind: 'document' }));
    }
    return ch.added.length + ch.removed.length;
  }

  /** Runs `fn` with every document write paused (cut-over, rollback, snapshots). */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.writes.run('w', fn);
  }

  private seqKey(cid: number, version: string) { return `${cid}:${version}`; }

  private reportSize(cid: number, version: string, idx: VectorIndex) {
    void this.deps.store.getCollectionById(cid).then((c) => {
      if (c) this.deps.metrics.indexSize.set({ collection: c.name, model_version: version }, idx.count());
    });
  }

  private snapshotChain: Promise<void> = Promise.resolve();
  private snapshotBusy = false;

  /**
   * Writes a snapshot of every serving index that changed since its last snapshot, then publishes them
   * to the object store. Runs one at a time: a publish still uploading a file is never overwritten.
   */
  snapshotAll(): Promise<void> {
    const run = this.snapshotChain.then(async () => {
      this.snapshotBusy = true;
      try {
        await this.publishSnapshots(await this.writeSnapshots());
      } finally {
        this.snapshotBusy = false;
      }
    });
    this.snapshotChain = run.catch(() => undefined);
    return run;
  }

  private async writeSnapshots(): Promise<{ c: Collection; version: string; path: string; seq: number; count: number }[]> {
    const pair = this.current;
    if (!pair) return [];
    return this.exclusive(async () => {
      const written = [];
      const seq = await this.deps.store.currentSeq();
      for (const [cid, idx] of pair.indexes) {
        const k = this.seqKey(cid, pair.version);
        if (this.snapshotSeqs.get(k) === seq) continue;
        if (this.deps.indexes.persistent) {
          // The index is stored in the database already: nothing to write, only the record to mark ready.
          await this.deps.store.saveIndexRecord({ collectionId: cid, modelVersion: pair.version, path: null, snapshotSeq: seq, count: idx.count(), status: 'ready' });
          this.snapshotSeqs.set(k, seq);
          continue;
        }
        const path = this.indexPath(cid, pair.version);
        try {
          await idx.snapshot(path);
          writeSnapshotMeta(path, { seq, count: idx.count(), collectionId: cid, modelVersion: pair.version });
          await this.deps.store.saveIndexRecord({ collectionId: cid, modelVersion: pair.version, path, snapshotSeq: seq, count: idx.count(), status: 'ready' });
          this.snapshotSeqs.set(k, seq);
          this.deps.metrics.snapshots.inc({ result: 'ok' });
        } catch (err) {
          this.deps.metrics.snapshots.inc({ result: 'error' });
          throw err;
        }
        const c = await this.deps.store.getCollectionById(cid);
        if (c) written.push({ c, version: pair.version, path, seq, count: idx.count() });
      }
      return written;
    });
  }

  // Outside the write lock: uploads can take a while and ingest must not wait for them.
  private async publishSnapshots(written: { c: Collection; version: string; path: string; seq: number; count: number }[]): Promise<void> {
    const remote = this.deps.remote;
    if (!remote) return;
    for (const w of written) {
      try {
        await remote.publishSnapshot(w.c, w.version, w.path, { seq: w.seq, count: w.count });
      } catch (err) {
        this.deps.log.error('index snapshot not published to the object store', { collection: w.c.name, version: w.version, err: String(err) });
      }
    }
  }

  /** Postgres replicas: apply other replicas' writes, and follow the champion pointer. */
  private lastFollowSeq = -1;
  async follow(): Promise<void> {
    const pair = this.current;
    if (!pair || this.stopping) return;
    const pointer = await this.deps.store.getServing();
    if (pointer && pointer.generation !== pair.generation && pointer.modelVersion !== pair.version) {
      const row = await this.deps.store.getModelVersion(pointer.modelVersion);
      if (row) {
        const source = await this.resolveModelSource(row.version, decodeSource(row.source));
        const embedder = await this.deps.loadEmbedder({ version: row.version, source, dtype: this.deps.configuredModel.dtype });
        // Build fully before switching: a replica never serves a model with another model's index.
        await this.activate(await this.buildPair(row.version, embedder, pointer.generation));
        this.deps.log.info('followed champion pointer', { version: row.version, generation: pointer.generation });
        return;
      }
    }
    const seq = await this.deps.store.currentSeq();
    if (seq === this.lastFollowSeq) return;
    await this.exclusive(async () => {
      const from = this.lastFollowSeq < 0 ? seq : this.lastFollowSeq;
      for (const c of await this.deps.store.listCollections()) {
        let idx = pair.indexes.get(c.id);
        if (!idx) {
          idx = await this.openIndex(c, pair.version, pair.embedder);
          pair.indexes.set(c.id, idx);
        } else if (from < seq) {
          await this.catchUp(c.id, idx, pair.embedder, from);
        }
      }
      const live = await this.deps.store.listCollections();
      this.collections.clear();
      for (const c of live) this.collections.set(c.name, c);
      for (const cid of [...pair.indexes.keys()]) {
        if (!live.some((c) => c.id === cid)) pair.indexes.delete(cid);
      }
      this.lastFollowSeq = seq;
    });
  }

  // ---------------------------------------------------------------- collections
  // Collections are read on every search and change rarely: cache them. Local creates/deletes update the
  // cache; replicas on Postgres refresh it from follow().
  private readonly collections = new Map<string, Collection>();

  async requireCollection(name: string): Promise<Collection> {
    const hit = this.collections.get(name);
    if (hit) return hit;
    const c = await this.deps.store.getCollection(name);
    if (!c) throw new AppError('collection_not_found', `collection "${name}" does not exist`);
    this.collections.set(name, c);
    return c;
  }

  async createCollection(name: string, hnsw?: Partial<Collection['hnsw']>, chunk?: Partial<Collection['chunk']>): Promise<Collection> {
    const cfg = this.deps.config;
    const size = chunk?.size ?? cfg.CHUNK_SIZE;
    const overlap = chunk?.overlap ?? Math.min(cfg.CHUNK_OVERLAP, size - 1);
    if (overlap >= size) throw new AppError('invalid_request', 'chunk.overlap must be smaller than chunk.size');
    return this.exclusive(async () => {
      const c = await this.deps.store.createCollection({
        name,
        hnsw: { M: hnsw?.M ?? cfg.HNSW_M, efConstruction: hnsw?.efConstruction ?? cfg.HNSW_EF_CONSTRUCTION, efSearch: hnsw?.efSearch ?? cfg.HNSW_EF_SEARCH },
        chunk: { size, overlap },
      });
      const pair = this.serving;
      const idx = await this.deps.indexes.create({ collectionId: c.id, modelVersion: pair.version }, pair.embedder.dim, c.hnsw, 1024);
      await idx.seal?.();
      pair.indexes.set(c.id, idx);
      this.reportSize(c.id, pair.version, pair.indexes.get(c.id)!);
      return c;
    });
  }

  async deleteCollection(name: string): Promise<void> {
    await this.exclusive(async () => {
      const c = await this.requireCollection(name);
      await this.deps.store.deleteCollection(name);
      this.collections.delete(name);
      this.chunkCache.clear();
      this.strategies.forget(c);
      for (const pair of [this.current, this.previous]) {
        if (!pair) continue;
        pair.indexes.delete(c.id);
        await this.deps.indexes.drop({ collectionId: c.id, modelVersion: pair.version }).catch(() => undefined);
        rmSync(this.indexPath(c.id, pair.version), { force: true });
        rmSync(`${this.indexPath(c.id, pair.version)}.meta.json`, { force: true });
        void this.deps.remote?.deleteSnapshots(c.id, pair.version)
          .catch((err) => this.deps.log.warn('object-store snapshots of a deleted collection not removed', { collection: name, err: String(err) }));
        this.deps.metrics.indexSize.remove({ collection: name, model_version: pair.version });
      }
    });
  }

  async describeCollection(c: Collection) {
    const pair = this.serving;
    return {
      name: c.name,
      documents: await this.deps.store.countDocuments(c.id),
      chunks: pair.indexes.get(c.id)?.count() ?? 0,
      model: pair.version,
      // What `mode: "auto"` serves, the numbers behind it and when it was decided (null: keyword until measured).
      strategy: (await this.strategies.get(c, pair.version)) ?? null,
      dim: pair.embedder.dim,
      hnsw: c.hnsw,
      chunk: c.chunk,
      createdAt: new Date(c.createdAt).toISOString(),
    };
  }

  // ---------------------------------------------------------------- documents
  async upsertDocuments(name: string, docs: DocumentIn[]): Promise<{ upserted: number; chunks: number; seq: number }> {
    const c = await this.requireCollection(name);
    const inputs = docs.map((d) => ({ id: d.id, text: d.text, metadata: d.metadata ?? {}, chunks: chunkText(d.text, c.chunk.size, c.chunk.overlap) }));
    let pair = this.serving;
    // Embed outside the write lock: it is the slow part and needs no ordering.
    let vectors = await pair.embedder.embed(inputs.flatMap((d) => d.chunks), { kind: 'document' });
    const res = await this.exclusive(async () => {
      if (this.current !== pair) {
        // A cut-over happened while we embedded: vectors must come from the model now serving.
        pair = this.serving;
        vectors = await pair.embedder.embed(inputs.flatMap((d) => d.chunks), { kind: 'document' });
      }
      // DELETE /collections/:name may have won the lock while we embedded: that is a 404, not a FK error.
      const r = await this.deps.store.upsertDocuments(c.id, inputs).catch((err: unknown) => {
        if (isForeignKeyViolation(err)) throw new AppError('collection_not_found', `collection "${name}" was deleted`);
        throw err;
      });
      this.chunkCache.forget(r.removed);
      const idx = pair.indexes.get(c.id);
      if (idx) {
        if (r.removed.length) await idx.markDeleted(r.removed);
        await idx.add(r.added.map((a) => a.label), vectors);
        this.reportSize(c.id, pair.version, idx);
      }
      return r;
    });
    this.deps.metrics.ingestDocuments.inc({ collection: name }, docs.length);
    this.deps.metrics.ingestChunks.inc({ collection: name }, res.added.length);
    return { upserted: docs.length, chunks: res.added.length, seq: res.seq };
  }

  async deleteDocument(name: string, docId: string): Promise<void> {
    const c = await this.requireCollection(name);
    await this.exclusive(async () => {
      const r = await this.deps.store.deleteDocument(c.id, docId);
      if (!r) throw new AppError('document_not_found', `document "${docId}" not found in "${name}"`);
      this.chunkCache.forget(r.removed);
      const pair = this.serving;
      const idx = pair.indexes.get(c.id);
      if (idx && r.removed.length) {
        await idx.markDeleted(r.removed);
        this.reportSize(c.id, pair.version, idx);
      }
    });
  }

  // ---------------------------------------------------------------- search
  /** POST /search: the pipeline (src/search/search.ts) on the serving pair taken once, then logged and counted. */
  async search(req: SearchRequest): Promise<SearchResponse> {
    const t0 = performance.now();
    const pair = this.serving;
    const c = await this.requireCollection(req.collection);
    const { results, mode, weight } = await runSearch(this.retrieval(pair), c, req, this.deps.config.MAX_K);
    const tookMs = performance.now() - t0;
    const queryId = randomUUID();
    this.queryLog.push({
      id: queryId, collection: c.name, query: req.query ?? null, mode, k: req.k,
      resultIds: results.map((r) => r.id), scores: results.map((r) => r.score),
      modelVersion: pair.version, latencyMs: tookMs, createdAt: Date.now(),
    });
    this.deps.metrics.searches.inc({ mode: req.mode === 'auto' ? `auto_${mode}` : mode });
    return { results, mode, ...(weight !== undefined ? { weight } : {}), model: pair.version, queryId, tookMs: Math.round(tookMs * 1000) / 1000 };
  }

  /** What the strategy tuner measures: document-level dense and keyword rankings with the serving model. */
  rankBoth(c: Collection, query: string, depth: number): Promise<{ dense: Scored<string>[]; sparse: Scored<string>[] }> {
    return rankBoth(this.retrieval(this.serving), c, query, depth);
  }

  /** The engine capabilities the search modes use, bound to one serving pair. */
  private retrieval(pair: ServingPair): Retrieval {
    return {
      model: { version: pair.version, dim: pair.embedder.dim },
      embedQuery: async (text, priority) => (await pair.embedder.embed([text], priority ? { priority, kind: 'query' } : { kind: 'query' }))[0]!,
      vectorSearch: (c, vector, depth, opts) => this.vectorHits(pair, c, vector, depth, opts?.efSearch, opts?.filter),
      keywordSearch: (c, query, depth, filter) => this.deps.store.keywordSearch(c.id, query, depth, filter),
      hydrate: (labels) => this.chunkCache.hydrate(this.deps.store, labels),
      strategy: (c) => this.strategies.peek(c.id, pair.version),
    };
  }

  private async vectorHits(pair: ServingPair, c: Collection, vector: Float32Array, depth: number, efSearch: number | undefined,
    filter: Record<string, Scalar> | undefined): Promise<Hit[]> {
    const idx = pair.indexes.get(c.id);
    if (!idx) throw new AppError('not_ready', `index for "${c.name}" is not loaded yet`);
    let allow: number[] | undefined;
    if (filter) {
      allow = await this.deps.store.labelsMatching(c.id, filter);
      if (allow.length === 0) return [];
    }
    try {
      return await idx.search(vector, depth, { efSearch, allow });
    } catch (err) {
      if (!(err instanceof IndexLostError)) throw err;
      // The worker holding this index died (it respawns empty): reload from snapshot + store, retry once.
      this.deps.log.error('index worker lost; reloading the index', { collection: c.name, version: pair.version, err: String(err) });
      const fresh = await this.recoverIndex(pair, c);
      return fresh.search(vector, depth, { efSearch, allow });
    }
  }

  private readonly recovering = new Map<string, Promise<VectorIndex>>();

  private recoverIndex(pair: ServingPair, c: Collection): Promise<VectorIndex> {
    const key = this.seqKey(c.id, pair.version);
    let p = this.recovering.get(key);
    if (!p) {
      p = this.exclusive(async () => {
        const cur = pair.indexes.get(c.id);
        if (cur && cur.count() > 0 && this.deps.indexes.get(cur.key) === cur) return cur; // recovered meanwhile
        await this.deps.indexes.drop({ collectionId: c.id, modelVersion: pair.version }).catch(() => undefined);
        const idx = await this.openIndex(c, pair.version, pair.embedder);
        pair.indexes.set(c.id, idx);
        return idx;
      }).finally(() => this.recovering.delete(key));
      this.recovering.set(key, p);
    }
    return p;
  }

  /** /v1/embeddings: `options` picks the prompt (input_type query/document or a prompt name). */
  async embedTexts(texts: string[], options: Pick<EmbedOptions, 'kind' | 'promptName'> = {}): Promise<{ vectors: Float32Array[]; model: string }> {
    const pair = this.serving;
    return { vectors: await pair.embedder.embed(texts, options), model: pair.version };
  }
}

interface SnapshotMeta {
  /** Store change sequence the snapshot includes; later changes are replayed on load. */
  seq: number;
  count: number;
  collectionId: number;
  modelVersion: string;
}

function readSnapshotMeta(path: string): SnapshotMeta | undefined {
  try {
    const m = JSON.parse(readFileSync(`${path}.meta.json`, 'utf8')) as SnapshotMeta;
    return Number.isInteger(m.seq) ? m : undefined;
  } catch {
    return undefined;
  }
}

function writeSnapshotMeta(path: string, meta: SnapshotMeta): void {
  // A crash between the snapshot's rename and this write leaves an older seq: replay then re-applies
  // changes the snapshot already has, which is harmless (adds overwrite, deletes are idempotent).
  const tmp = `${path}.meta.json.tmp`;
  writeFileSync(tmp, JSON.stringify(meta));
  renameSync(tmp, `${path}.meta.json`);
}
