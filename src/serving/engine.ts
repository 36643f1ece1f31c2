import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../config.js';
import { AppError } from '../errors.js';
import type { EmbedOptions, Embedder, ModelSpec } from '../embed/types.js';
import { IndexLostError } from '../index/errors.js';
import type { Hit, IndexBackend, VectorIndex } from '../index/types.js';
import type { Metrics } from '../metrics.js';
import type { Collection, Scalar, Store } from '../store/types.js';
import type { Logger } from '../util/log.js';
import { KeyedMutex } from '../util/mutex.js';
import type { RemoteArtifacts } from '../objects/remote.js';
import type { ModelSource } from '../embed/types.js';
import type { Scored } from '../search/fusion.js';
import type { Retrieval } from '../search/modes/types.js';
import { DepthPlanner } from '../search/depth.js';
import { uuidv7 } from '../util/ids.js';
import { rankBoth, runSearch, type SearchRequest, type SearchResultItem } from '../search/search.js';
import type { StrategyBook } from '../search/tuner.js';
import { decodeSource, encodeSource, modelsDir, readModelCard } from './models.js';
import { QueryLogBuffer } from './querylog.js';
import { ChunkCache } from './chunk-cache.js';
import { IndexLifecycle } from './lifecycle.js';
import type { CollectionCatalog } from './catalog.js';

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
  /** Collections by name: the search resolves its collection here; follow() resets it to the live ones. */
  catalog: CollectionCatalog;
  /** Per-collection serving strategies (mode "auto"), filled by the StrategyTuner and the gate; read by `auto` searches. */
  strategies: StrategyBook;
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

/**
 * Memory for hydrated chunks (text, document id, metadata) on the search path: at ~100 B of text a chunk,
 * about 100k of them; at the default 1000-character chunks, ~15k.
 */
const CHUNK_CACHE_BYTES = 32 * 2 ** 20;

// The engine owns the serving state: which (model, indexes) pair answers, the write lock that orders changes
// to its indexes, the search path over it, following other replicas, and the primitives a swap is built from.
export class Engine {
  private current: ServingPair | undefined;
  /** The pair before the last cut-over, kept loaded so a rollback is a pointer flip plus a catch-up. */
  private previous: ServingPair | undefined;
  private readonly writes = new KeyedMutex();
  /** The query-log buffer; routes flush it through flushQueryLog, tests also stop it to simulate a crash. */
  readonly queryLog: QueryLogBuffer;
  /** Hits hydrated from memory where seen before (labels are write-once; writes forget the ones they tombstone). */
  private readonly chunkCache = new ChunkCache(CHUNK_CACHE_BYTES);
  /** Vector searches' index depth, learned per collection (src/search/depth.ts). */
  private readonly depths = new DepthPlanner();
  /** One Retrieval per serving pair, built on first use: a search should not allocate six closures. */
  private readonly retrievals = new WeakMap<ServingPair, Retrieval>();
  /** Pairs pushed out by a swap, freed after a grace period; stop() frees the ones still waiting. */
  private readonly retiring = new Map<ServingPair, NodeJS.Timeout>();
  private followTimer: NodeJS.Timeout | undefined;
  private ready = false;
  private stopping = false;
  /** Open, recover, snapshot and publish the indexes of the serving pairs (./lifecycle.ts). */
  private readonly lifecycle: IndexLifecycle;

  constructor(private readonly deps: EngineDeps) {
    this.lifecycle = new IndexLifecycle({
      config: deps.config,
      store: deps.store,
      indexes: deps.indexes,
      metrics: deps.metrics,
      log: deps.log,
      remote: deps.remote,
      exclusive: (fn) => this.exclusive(fn),
      forgetChunks: (labels) => this.chunkCache.forget(labels),
      serving: () => this.current,
      indexedThrough: () => (this.deps.store.dialect === 'postgres' ? this.lastFollowSeq : undefined),
    });
    this.queryLog = new QueryLogBuffer(deps.store, deps.metrics, deps.log, {
      flushMs: deps.config.QUERY_LOG_FLUSH_MS,
      maxBuffer: deps.config.QUERY_LOG_MAX_BUFFER,
    });
  }

  isReady(): boolean {
    return this.ready && !this.stopping;
  }

  get serving(): ServingPair {
    if (!this.current) throw new AppError('not_ready', 'the server is still loading its model and indexes');
    return this.current;
  }

  get previousPair(): ServingPair | undefined {
    return this.previous;
  }

  /** Writes the buffered query log now: what reads it next (feedback's lookup, a drift check) sees every search. */
  flushQueryLog(): Promise<void> {
    return this.queryLog.flush();
  }

  /**
   * A model directory another replica (or an earlier pod) wrote is not on this machine: fetch it from
   * the object store into DATA_DIR/models/<version>. Anything else is returned as is.
   */
  async resolveModelSource(version: string, source: ModelSource): Promise<ModelSource> {
    const remote = this.deps.remote;
    if (source.kind !== 'dir' || existsSync(source.path) || !remote) return source;
    const local = join(modelsDir(this.deps.config), version);
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
    // The indexes opened below hold every write up to at least this sequence: following starts here, so
    // another replica's writes made while they load are replayed by the first follow.
    if (store.dialect === 'postgres') this.lastFollowSeq = await store.currentSeq();
    const known = await store.getModelVersion(configuredModel.version);
    const pointer = await store.getServing();
    let spec: ModelSpec = configuredModel;
    if (!known || !pointer) {
      // A model the operator configured for the first time becomes the champion.
      const embedder = await this.deps.loadEmbedder(configuredModel);
      await store.upsertModelVersion({
        version: configuredModel.version,
        parentVersion: null,
        source: encodeSource(configuredModel.source),
        dim: embedder.dim,
        status: 'champion',
        // `serving`: pooling, prompts, token limit and the ONNX file that serves (src/embed/st.ts).
        card: {
          ...(configuredModel.source.kind === 'dir' ? readModelCard(configuredModel.source.path) : {}),
          ...(embedder.model ? { serving: embedder.model } : {}),
        },
      });
      const p = await store.promote(configuredModel.version);
      await this.activate(await this.buildPair(configuredModel.version, embedder, p.generation));
    } else {
      const row = await store.getModelVersion(pointer.modelVersion);
      if (row)
        spec = {
          version: row.version,
          source: await this.resolveModelSource(row.version, decodeSource(row.source)),
          dtype: configuredModel.dtype,
        };
      let embedder: Embedder;
      try {
        embedder = await this.deps.loadEmbedder(spec);
      } catch (err) {
        // The champion's files are gone (a purged data dir): fall back to the configured model.
        log.error('champion model could not be loaded; serving the configured model', { version: spec.version, err: String(err) });
        spec = configuredModel;
        embedder = await this.deps.loadEmbedder(spec);
        await store.upsertModelVersion({
          version: spec.version,
          parentVersion: null,
          source: encodeSource(spec.source),
          dim: embedder.dim,
          status: 'champion',
          card: {},
        });
        await store.promote(spec.version);
      }
      const p = (await store.getServing())!;
      await this.activate(await this.buildPair(spec.version, embedder, p.generation));
    }
    this.queryLog.start();
    this.lifecycle.startSnapshots();
    if (store.dialect === 'postgres') {
      // Replicas share one database: follow other replicas' writes and the champion pointer.
      let busy = false;
      this.followTimer = setInterval(() => {
        // Building a pair for a new champion takes longer than a tick: never run two follows at once.
        if (busy) return;
        busy = true;
        void this.follow()
          .catch((e) => log.warn('follow failed', { err: String(e) }))
          .finally(() => {
            busy = false;
          });
      }, 1000);
      this.followTimer.unref();
    }
    this.ready = true;
    log.info('ready', { model: this.serving.version, collections: this.serving.indexes.size });
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.lifecycle.stopSnapshots();
    if (this.followTimer) clearInterval(this.followTimer);
    await this.queryLog.stop();
    await this.lifecycle.snapshotAll().catch((e) => this.deps.log.error('final snapshot failed', { err: String(e) }));
    // A retired pair's embed workers would otherwise outlive the server (and be killed mid-call at exit).
    for (const [pair, timer] of this.retiring) {
      clearTimeout(timer);
      await this.releasePair(pair).catch(() => undefined);
    }
    this.retiring.clear();
    for (const pair of [this.current, this.previous]) if (pair) await pair.embedder.close();
    await this.deps.indexes.close();
  }

  // ---------------------------------------------------------------- serving pairs
  /** Loads (snapshot + replay) or builds the index of every collection for `version`. */
  async buildPair(
    version: string,
    embedder: Embedder,
    generation: number,
    onProgress?: (collection: string, done: number, total: number) => void,
  ): Promise<ServingPair> {
    const indexes = new Map<number, VectorIndex>();
    for (const c of await this.deps.store.listCollections()) {
      indexes.set(c.id, await this.lifecycle.openIndex(c, version, embedder, onProgress ? (d, t) => onProgress(c.name, d, t) : undefined));
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
        clearTimeout(this.retiring.get(drop));
        const timer = setTimeout(() => {
          this.retiring.delete(drop);
          void this.releasePair(drop);
        }, 30_000);
        timer.unref();
        this.retiring.set(drop, timer);
      }
    }
    this.deps.metrics.modelInfo.reset();
    this.deps.metrics.modelInfo.set({ version: pair.version }, 1);
    // `auto` reads strategies synchronously on the search path: have this model's rows in memory.
    for (const c of await this.deps.store.listCollections()) await this.deps.strategies.load(c, pair.version);
    for (const [cid, idx] of pair.indexes) this.lifecycle.reportSize(cid, pair.version, idx);
  }

  private async releasePair(pair: ServingPair): Promise<void> {
    if (pair === this.current || pair === this.previous) return;
    await pair.embedder.close();
    for (const idx of pair.indexes.values()) await idx.close();
  }

  /** Rebuilds one collection's serving index from the store (the DB is the source of truth). */
  async rebuildCollection(c: Collection): Promise<number> {
    const pair = this.serving;
    return this.exclusive(async () => {
      // Build under a fresh key so searches keep using the old index until the pointer moves.
      const old = pair.indexes.get(c.id);
      let fresh = await this.lifecycle.buildIndexUnder(
        c,
        { collectionId: c.id, modelVersion: `${pair.version}@${Date.now()}` },
        pair.embedder,
      );
      // A stored index must end up under the serving key, where a restart and the other replicas look for it.
      if (this.deps.indexes.rename) fresh = await this.deps.indexes.rename(fresh, { collectionId: c.id, modelVersion: pair.version });
      pair.indexes.set(c.id, fresh);
      this.lifecycle.forgetSnapshot(c.id, pair.version);
      // (A renamed stored index replaced the old one in the same transaction: nothing left to free.)
      if (old && !this.deps.indexes.persistent) setTimeout(() => void old.close().catch(() => undefined), 5_000).unref();
      this.lifecycle.reportSize(c.id, pair.version, fresh);
      return fresh.count();
    });
  }

  // The lifecycle's operations a swap (src/swap/swap.ts), the routes and the tests drive.
  buildIndex(
    c: Collection,
    version: string,
    embedder: Embedder,
    onProgress?: (done: number, total: number) => void,
    pauseMs = 0,
  ): Promise<VectorIndex> {
    return this.lifecycle.buildIndex(c, version, embedder, onProgress, pauseMs);
  }

  catchUp(collectionId: number, idx: VectorIndex, embedder: Embedder, fromSeq: number): Promise<number> {
    return this.lifecycle.catchUp(collectionId, idx, embedder, fromSeq);
  }

  recordBuilding(collectionId: number, version: string, idx: VectorIndex): Promise<void> {
    return this.lifecycle.recordBuilding(collectionId, version, idx);
  }

  snapshotAll(): Promise<void> {
    return this.lifecycle.snapshotAll();
  }

  /** Runs `fn` with every document write paused (cut-over, rollback, snapshots). */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.writes.run('w', fn);
  }

  /** Postgres replicas: apply other replicas' writes, and follow the champion pointer. */
  private lastFollowSeq = 0;
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
      const from = this.lastFollowSeq;
      for (const c of await this.deps.store.listCollections()) {
        let idx = pair.indexes.get(c.id);
        if (!idx) {
          idx = await this.lifecycle.openIndex(c, pair.version, pair.embedder);
          pair.indexes.set(c.id, idx);
        } else if (from < seq) {
          await this.lifecycle.catchUp(c.id, idx, pair.embedder, from);
        }
      }
      const live = await this.deps.store.listCollections();
      this.deps.catalog.reset(live);
      for (const cid of [...pair.indexes.keys()]) {
        if (!live.some((c) => c.id === cid)) pair.indexes.delete(cid);
      }
      this.lastFollowSeq = seq;
    });
  }

  // ---------------------------------------------------------------- a collection's serving indexes
  // Collections and their documents are ./collections.ts's; these keep the loaded pairs' indexes in line with
  // its store writes. Each runs inside `exclusive`, which the caller holds.

  /** A new collection's empty index in the serving pair. */
  async addCollectionIndex(c: Collection): Promise<void> {
    const pair = this.serving;
    const idx = await this.deps.indexes.create({ collectionId: c.id, modelVersion: pair.version }, pair.embedder.dim, c.hnsw, 1024);
    await idx.seal?.();
    pair.indexes.set(c.id, idx);
    this.lifecycle.reportSize(c.id, pair.version, idx);
  }

  /** A deleted collection: its index in every loaded pair, with the index's files, and every hydrated chunk. */
  async dropCollectionIndexes(c: Collection): Promise<void> {
    this.chunkCache.clear();
    for (const pair of [this.current, this.previous]) {
      if (!pair) continue;
      pair.indexes.delete(c.id);
      await this.lifecycle.drop(c, pair.version);
    }
  }

  /**
   * A store write to `c` applied to `pair`'s index: the chunks it tombstoned (`removed`) are forgotten and
   * marked deleted, the chunks it added go in with their vectors (embedded by `pair`'s model).
   */
  async applyWrite(
    pair: ServingPair,
    c: Collection,
    removed: number[],
    added?: { labels: number[]; vectors: Float32Array[] },
  ): Promise<void> {
    this.chunkCache.forget(removed);
    const idx = pair.indexes.get(c.id);
    if (!idx || (!added && removed.length === 0)) return;
    if (removed.length) await idx.markDeleted(removed);
    if (added) await idx.add(added.labels, added.vectors);
    this.lifecycle.reportSize(c.id, pair.version, idx);
  }

  // ---------------------------------------------------------------- search
  /** POST /search: the pipeline (src/search/search.ts) on the serving pair taken once, then logged and counted. */
  async search(req: SearchRequest): Promise<SearchResponse> {
    const t0 = performance.now();
    const pair = this.serving;
    const c = await this.deps.catalog.require(req.collection);
    const { results, mode, weight } = await runSearch(this.retrieval(pair), c, req, this.deps.config.MAX_K, this.depths);
    const tookMs = performance.now() - t0;
    const queryId = uuidv7();
    this.queryLog.push({
      id: queryId,
      collection: c.name,
      query: req.query ?? null,
      mode,
      k: req.k,
      resultIds: results.map((r) => r.id),
      scores: results.map((r) => r.score),
      modelVersion: pair.version,
      latencyMs: tookMs,
      createdAt: Date.now(),
    });
    this.deps.metrics.searches.inc({ mode: req.mode === 'auto' ? `auto_${mode}` : mode });
    return {
      results,
      mode,
      ...(weight !== undefined ? { weight } : {}),
      model: pair.version,
      queryId,
      tookMs: Math.round(tookMs * 1000) / 1000,
    };
  }

  /** What the strategy tuner measures: document-level dense and keyword rankings with the serving model. */
  rankBoth(c: Collection, query: string, depth: number): Promise<{ dense: Scored<string>[]; sparse: Scored<string>[] }> {
    return rankBoth(this.retrieval(this.serving), c, query, depth);
  }

  /** The engine capabilities the search modes use, bound to one serving pair. */
  private retrieval(pair: ServingPair): Retrieval {
    let r = this.retrievals.get(pair);
    if (!r) {
      r = this.bind(pair);
      this.retrievals.set(pair, r);
    }
    return r;
  }

  private bind(pair: ServingPair): Retrieval {
    return {
      model: { version: pair.version, dim: pair.embedder.dim },
      embedQuery: async (text, priority) =>
        (await pair.embedder.embed([text], priority ? { priority, kind: 'query' } : { kind: 'query' }))[0]!,
      vectorSearch: (c, vector, depth, opts) => this.vectorHits(pair, c, vector, depth, opts?.efSearch, opts?.filter),
      keywordSearch: (c, query, depth, filter) => this.deps.store.keywordSearch(c.id, query, depth, filter),
      hydrate: (labels) => this.chunkCache.hydrate(this.deps.store, labels),
      strategy: (c) => this.deps.strategies.peek(c.id, pair.version),
    };
  }

  private async vectorHits(
    pair: ServingPair,
    c: Collection,
    vector: Float32Array,
    depth: number,
    efSearch: number | undefined,
    filter: Record<string, Scalar> | undefined,
  ): Promise<Hit[]> {
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
      const fresh = await this.lifecycle.recoverIndex(pair, c);
      return fresh.search(vector, depth, { efSearch, allow });
    }
  }

  /** /v1/embeddings: `options` picks the prompt (input_type query/document or a prompt name). */
  async embedTexts(
    texts: string[],
    options: Pick<EmbedOptions, 'kind' | 'promptName'> = {},
  ): Promise<{ vectors: Float32Array[]; model: string }> {
    const pair = this.serving;
    return { vectors: await pair.embedder.embed(texts, options), model: pair.version };
  }
}
