// The index lifecycle: every (collection, model version) index from open to close. Opening loads a snapshot
// (local, or the object store's when newer) and replays the store's later changes, or builds from the store
// (the source of truth); a dead index worker is recovered the same way; snapshots are written on a timer under
// the write lock and published to the object store outside it. Which pair serves, and when it changes, is the
// engine's (./engine.ts); this module only keeps the indexes of a pair in line with the store.

import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../config.js';
import type { Embedder } from '../embed/types.js';
import type { IndexBackend, IndexKey, VectorIndex } from '../index/types.js';
import type { Metrics } from '../metrics.js';
import type { RemoteArtifacts } from '../objects/remote.js';
import type { Collection, Store } from '../store/types.js';
import type { Logger } from '../util/log.js';
import type { ServingPair } from './engine.js';

export interface IndexLifecycleDeps {
  config: Pick<Config, 'DATA_DIR' | 'REEMBED_BATCH' | 'SNAPSHOT_EVERY_SECONDS'>;
  store: Store;
  indexes: IndexBackend;
  metrics: Metrics;
  log: Logger;
  remote?: RemoteArtifacts;
  /** The engine's write lock: replays and snapshots must not interleave with document writes. */
  exclusive: <T>(fn: () => Promise<T>) => Promise<T>;
  /** Labels tombstoned by a replay: hydrated copies of them must go (the engine's chunk cache). */
  forgetChunks: (labels: readonly number[]) => void;
  /** The pair serving now (snapshots are of its indexes); undefined while loading. */
  serving: () => ServingPair | undefined;
  /**
   * The store sequence through which the serving indexes hold every write, where other replicas write too (the
   * engine's follow position); undefined where every write goes through this process's write lock.
   */
  indexedThrough: () => number | undefined;
}

/** Where a collection's index snapshot for one model version lives under DATA_DIR. */
export function indexFile(dataDir: string, collectionId: number, version: string): string {
  return join(dataDir, 'indexes', `${collectionId}-${version}.hnsw`);
}

export class IndexLifecycle {
  /** Store change sequence each (collection, version) index was last snapshotted at; -1 = built, never written. */
  private readonly snapshotSeqs = new Map<string, number>();
  private snapshotTimer: NodeJS.Timeout | undefined;

  constructor(private readonly deps: IndexLifecycleDeps) {}

  indexPath(collectionId: number, version: string): string {
    return indexFile(this.deps.config.DATA_DIR, collectionId, version);
  }

  /** Snapshots every SNAPSHOT_EVERY_SECONDS; a tick that finds one still running is skipped. */
  startSnapshots(): void {
    this.snapshotTimer = setInterval(() => {
      if (!this.snapshotBusy) void this.snapshotAll().catch((e) => this.deps.log.error('snapshot failed', { err: String(e) }));
    }, this.deps.config.SNAPSHOT_EVERY_SECONDS * 1000);
    this.snapshotTimer.unref();
  }

  stopSnapshots(): void {
    if (this.snapshotTimer) clearInterval(this.snapshotTimer);
  }

  /** A rebuilt index has not been written yet: the next snapshot writes it whatever the sequence. */
  forgetSnapshot(collectionId: number, version: string): void {
    this.snapshotSeqs.delete(this.seqKey(collectionId, version));
  }

  /** Frees a deleted collection's index for `version` with its snapshot files, local and remote, and its metric. */
  async drop(c: Collection, version: string): Promise<void> {
    await this.deps.indexes.drop({ collectionId: c.id, modelVersion: version }).catch(() => undefined);
    rmSync(this.indexPath(c.id, version), { force: true });
    rmSync(`${this.indexPath(c.id, version)}.meta.json`, { force: true });
    void this.deps.remote
      ?.deleteSnapshots(c.id, version)
      .catch((err) =>
        this.deps.log.warn('object-store snapshots of a deleted collection not removed', { collection: c.name, err: String(err) }),
      );
    this.deps.metrics.indexSize.remove({ collection: c.name, model_version: version });
  }

  /** The index of `c` for `version`: already open, stored (pgvector), a snapshot plus replay, or built from the store. */
  async openIndex(
    c: Collection,
    version: string,
    embedder: Embedder,
    onProgress?: (done: number, total: number) => void,
  ): Promise<VectorIndex> {
    const { indexes, log } = this.deps;
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
  private async openStored(
    c: Collection,
    version: string,
    embedder: Embedder,
    onProgress?: (done: number, total: number) => void,
  ): Promise<VectorIndex> {
    const { store, indexes, log } = this.deps;
    const idx = await indexes.open({ collectionId: c.id, modelVersion: version }, embedder.dim, c.hnsw);
    if (!idx) return this.buildIndex(c, version, embedder, onProgress);
    const missing = (await idx.reconcile?.()) ?? [];
    for (let i = 0; i < missing.length; i += 256) {
      const rows = await store.hydrate(missing.slice(i, i + 256));
      const live = [...rows.values()];
      if (live.length)
        await idx.add(
          live.map((r) => r.label),
          await embedder.embed(
            live.map((r) => r.text),
            { priority: 'bulk', kind: 'document' },
          ),
        );
    }
    log.info('index opened', { collection: c.name, version, backend: indexes.kind, count: idx.count(), embedded: missing.length });
    return idx;
  }

  /** Replaces the local snapshot with the object store's when that one is newer. Returns its meta if it did. */
  private async fetchRemoteSnapshot(
    c: Collection,
    version: string,
    path: string,
    localSeq: number | undefined,
  ): Promise<SnapshotMeta | undefined> {
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
      this.deps.log.info('index snapshot fetched from the object store', {
        collection: c.name,
        version,
        seq: ptr.seq,
        bytes: ptr.bytes,
        ms: Date.now() - t0,
      });
      return meta;
    } catch (err) {
      this.deps.log.warn('object-store snapshot unusable; using local data', { collection: c.name, version, err: String(err) });
      return undefined;
    }
  }

  /** Embeds every live chunk of `c` into a fresh index for `version`. Writes that land meanwhile are caught up. */
  async buildIndex(
    c: Collection,
    version: string,
    embedder: Embedder,
    onProgress?: (done: number, total: number) => void,
    pauseMs = 0,
  ): Promise<VectorIndex> {
    const idx = await this.buildIndexUnder(c, { collectionId: c.id, modelVersion: version }, embedder, onProgress, pauseMs);
    await this.recordBuilding(c.id, version, idx);
    return idx;
  }

  /** Records a freshly built, not yet snapshotted index for `version` (however it was filled). */
  async recordBuilding(collectionId: number, version: string, idx: VectorIndex): Promise<void> {
    await this.deps.store.saveIndexRecord({
      collectionId,
      modelVersion: version,
      path: null,
      snapshotSeq: 0,
      count: idx.count(),
      status: 'building',
    });
    this.snapshotSeqs.set(this.seqKey(collectionId, version), -1);
  }

  async buildIndexUnder(
    c: Collection,
    key: IndexKey,
    embedder: Embedder,
    onProgress?: (done: number, total: number) => void,
    pauseMs = 0,
  ): Promise<VectorIndex> {
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
      const vecs = await embedder.embed(
        rows.map((r) => r.text),
        { priority: 'bulk', kind: 'document' },
      );
      await idx.add(
        rows.map((r) => r.label),
        vecs,
      );
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

  /** Applies every store change after `fromSeq` to `idx`. Returns the number of changes applied. */
  async catchUp(collectionId: number, idx: VectorIndex, embedder: Embedder, fromSeq: number): Promise<number> {
    const ch = await this.deps.store.changesSince(collectionId, fromSeq);
    this.deps.forgetChunks(ch.removed);
    if (ch.removed.length) await idx.markDeleted(ch.removed);
    // A shared index (pgvector) may hold these already, written by the replica that took the write.
    let added = ch.added;
    if (idx.absent) {
      const absent = new Set(await idx.absent(added.map((r) => r.label)));
      added = added.filter((r) => absent.has(r.label));
    }
    for (let i = 0; i < added.length; i += 256) {
      const part = added.slice(i, i + 256);
      await idx.add(
        part.map((r) => r.label),
        await embedder.embed(
          part.map((r) => r.text),
          { priority: 'bulk', kind: 'document' },
        ),
      );
    }
    return ch.added.length + ch.removed.length;
  }

  private seqKey(cid: number, version: string) {
    return `${cid}:${version}`;
  }

  reportSize(cid: number, version: string, idx: VectorIndex) {
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
    const pair = this.deps.serving();
    if (!pair) return [];
    return this.deps.exclusive(async () => {
      const written = [];
      // Under the write lock this process's own writes are all in; another replica's are only once followed.
      // A snapshot labelled past what its index holds would make every replica loading it skip those writes.
      const current = await this.deps.store.currentSeq();
      const through = this.deps.indexedThrough();
      const seq = through === undefined ? current : Math.min(current, through);
      for (const [cid, idx] of pair.indexes) {
        const k = this.seqKey(cid, pair.version);
        if (this.snapshotSeqs.get(k) === seq) continue;
        if (this.deps.indexes.persistent) {
          // The index is stored in the database already: nothing to write, only the record to mark ready.
          await this.deps.store.saveIndexRecord({
            collectionId: cid,
            modelVersion: pair.version,
            path: null,
            snapshotSeq: seq,
            count: idx.count(),
            status: 'ready',
          });
          this.snapshotSeqs.set(k, seq);
          continue;
        }
        const path = this.indexPath(cid, pair.version);
        try {
          await idx.snapshot(path);
          writeSnapshotMeta(path, { seq, count: idx.count(), collectionId: cid, modelVersion: pair.version });
          await this.deps.store.saveIndexRecord({
            collectionId: cid,
            modelVersion: pair.version,
            path,
            snapshotSeq: seq,
            count: idx.count(),
            status: 'ready',
          });
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
        this.deps.log.error('index snapshot not published to the object store', {
          collection: w.c.name,
          version: w.version,
          err: String(err),
        });
      }
    }
  }

  private readonly recovering = new Map<string, Promise<VectorIndex>>();

  recoverIndex(pair: ServingPair, c: Collection): Promise<VectorIndex> {
    const key = this.seqKey(c.id, pair.version);
    let p = this.recovering.get(key);
    if (!p) {
      p = this.deps
        .exclusive(async () => {
          const cur = pair.indexes.get(c.id);
          if (cur && cur.count() > 0 && this.deps.indexes.get(cur.key) === cur) return cur; // recovered meanwhile
          await this.deps.indexes.drop({ collectionId: c.id, modelVersion: pair.version }).catch(() => undefined);
          const idx = await this.openIndex(c, pair.version, pair.embedder);
          pair.indexes.set(c.id, idx);
          return idx;
        })
        .finally(() => this.recovering.delete(key));
      this.recovering.set(key, p);
    }
    return p;
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
