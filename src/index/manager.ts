import { availableParallelism } from 'node:os';
import type { Worker } from 'node:worker_threads';

import { spawnWorker, stopWorker } from '../util/worker.js';
import { IndexClosedError, IndexLostError, IndexSnapshotError, IndexStateError } from './errors.js';
import type { SearchItem, ShardState, ShardTuning, ToHnswWorker, WorkerReady, WorkerRequest, WorkerResponse } from './protocol.js';
import type { HnswParams, Hit, IndexBackend, IndexKey, SearchOptions, VectorIndex } from './types.js';

export interface IndexManagerOptions {
  /** Worker threads in the pool. Default: one per CPU core, at most 2. */
  workers?: number;
  /**
   * Copies of every index, each in a different worker (capped at `workers`). Searches go to the least
   * busy copy, mutations to all. Costs memory and insert CPU × replicas; see bench/search for when it pays.
   */
  replicas?: number;
  /**
   * Most queries packed into one worker message. Small: a batch's answers all return when its last search
   * ends, so smaller batches let the main thread answer while the worker searches (see the README).
   */
  maxSearchBatch?: number;
  /** Search messages in flight per worker; further queries queue and leave together as one batch. */
  searchPipeline?: number;
  /** Elements per add message; bounds how long one message keeps a worker from answering searches. */
  addChunk?: number;
  /** Default capacity for create() when none is given. */
  initialCapacity?: number;
  /** Filters allowing at most this many live labels are scored exactly (brute force). */
  bruteForceMaxLabels?: number;
  /** ... or at most this fraction of the index. */
  bruteForceMaxFraction?: number;
  /** Larger filters first try an unfiltered search with ef up to this and keep the allowed hits; 0 disables. */
  oversampleMaxK?: number;
  /** Keep a flat f32 copy of every index's vectors for exact filtered search (see ShardTuning.vectorCopy). */
  vectorCopy?: boolean;
}

export const DEFAULT_HNSW_PARAMS: HnswParams = { M: 16, efConstruction: 200, efSearch: 100 };

export function keyId(key: IndexKey): string {
  return `${key.collectionId}:${key.modelVersion}`;
}

interface Pending {
  resolve: (res: WorkerResponse) => void;
  reject: (err: Error) => void;
}

interface QueuedSearch {
  keyId: string;
  vector: Float32Array;
  k: number;
  ef: number;
  allow: Float64Array | null;
  resolve: (hits: Hit[]) => void;
  reject: (err: Error) => void;
}

// One worker thread. Searches are not posted one by one: up to `pipeline` batches are in flight and
// everything that arrives meanwhile leaves as the next batch, so under load the per-message cost
// (structured clone, wake-up, event-loop turn on both sides) is paid once per batch, while a lone
// query still goes out immediately.
class WorkerSlot {
  worker!: Worker;
  ready!: Promise<void>;
  readonly hosted = new Set<ManagedIndex>();
  private readonly pending = new Map<number, Pending>();
  private readonly queue: QueuedSearch[] = [];
  private inflightBatches = 0;
  private pumpScheduled = false;
  private inflightItems = 0;
  private nextId = 1;
  private stopping = false;

  constructor(
    readonly slot: number,
    private readonly opts: Required<IndexManagerOptions>,
    private readonly onCrash: (slot: WorkerSlot, err: Error) => void,
  ) {
    this.start();
  }

  private start(): void {
    const worker = spawnWorker(new URL('./hnsw-worker.ts', import.meta.url), { name: `hnsw-${this.slot}` });
    this.worker = worker;
    let started = false;
    let lastError: Error | undefined;
    this.ready = new Promise<void>((resolve, reject) => {
      const onMsg = (m: WorkerReady) => {
        if (m?.ready) {
          started = true;
          worker.off('message', onMsg);
          worker.on('message', (res: WorkerResponse) => this.onResponse(res));
          resolve();
        }
      };
      worker.on('message', onMsg);
      worker.once('exit', (code) => {
        if (!started)
          reject(new Error(`index worker ${this.slot} failed to start (exit code ${code}${lastError ? `: ${lastError.message}` : ''})`));
      });
    });
    this.ready.catch(() => undefined);
    worker.on('error', (err) => {
      lastError = err;
    });
    worker.once('exit', (code) => {
      // A worker that never started would fail again the same way: no respawn loop, calls reject.
      if (this.stopping || this.worker !== worker || !started) return;
      const err = new IndexLostError(
        `index worker ${this.slot} exited (code ${code}${lastError ? `: ${lastError.message}` : ''}); its indexes must be reloaded`,
      );
      this.failAll(err);
      this.onCrash(this, err);
      this.start();
    });
  }

  load(): number {
    return this.queue.length + this.inflightItems;
  }

  async call(req: WorkerRequest, transfer: ArrayBuffer[] = []): Promise<WorkerResponse> {
    await this.ready;
    return new Promise<WorkerResponse>((resolve, reject) => {
      this.pending.set(req.id, { resolve, reject });
      this.worker.postMessage(req, transfer);
    });
  }

  id(): number {
    return this.nextId++;
  }

  search(q: QueuedSearch): void {
    this.queue.push(q);
    // Searches that arrive in one turn of the event loop (the requests parsed from one read of the
    // sockets) leave together: one message for the turn instead of one per query.
    if (!this.pumpScheduled) {
      this.pumpScheduled = true;
      setImmediate(() => {
        this.pumpScheduled = false;
        this.pump();
      });
    }
  }

  private pump(): void {
    while (this.inflightBatches < this.opts.searchPipeline && this.queue.length > 0) {
      const batch = this.queue.splice(0, this.opts.maxSearchBatch);
      let total = 0;
      for (const q of batch) total += q.vector.length;
      const vectors = new Float32Array(total);
      const items: SearchItem[] = [];
      let offset = 0;
      for (const q of batch) {
        vectors.set(q.vector, offset);
        items.push({ keyId: q.keyId, offset, k: q.k, ef: q.ef, allow: q.allow });
        offset += q.vector.length;
      }
      const transfer: ArrayBuffer[] = [vectors.buffer];
      for (const it of items) if (it.allow) transfer.push(it.allow.buffer as ArrayBuffer);
      this.inflightBatches++;
      this.inflightItems += batch.length;
      const id = this.id();
      this.call({ op: 'search', id, items, vectors }, transfer).then(
        (res) => {
          this.settleBatch(batch);
          if (!res.ok || !('lengths' in res)) {
            const err = res.ok ? new Error('malformed search response') : toError(res.error);
            for (const q of batch) q.reject(err);
            return;
          }
          let at = 0;
          batch.forEach((q, i) => {
            const n = res.lengths[i] as number;
            if (n < 0) {
              q.reject(new IndexStateError(res.errors[i] ?? 'search failed'));
              return;
            }
            const hits: Hit[] = new Array(n);
            for (let j = 0; j < n; j++) hits[j] = { label: res.labels[at + j] as number, score: res.scores[at + j] as number };
            at += n;
            q.resolve(hits);
          });
        },
        (err: Error) => {
          this.settleBatch(batch);
          for (const q of batch) q.reject(err);
        },
      );
    }
  }

  private settleBatch(batch: QueuedSearch[]): void {
    this.inflightBatches--;
    this.inflightItems -= batch.length;
    this.pump();
  }

  private onResponse(res: WorkerResponse): void {
    const p = this.pending.get(res.id);
    if (!p) return;
    this.pending.delete(res.id);
    p.resolve(res);
  }

  private failAll(err: Error): void {
    const pending = [...this.pending.values()];
    this.pending.clear();
    // In-flight batches are among `pending`; their rejection handlers settle the counters.
    const queued = this.queue.splice(0);
    for (const p of pending) p.reject(err);
    for (const q of queued) q.reject(err);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.failAll(new IndexClosedError('index manager closed'));
    await stopWorker(this.worker, { op: 'close' } satisfies ToHnswWorker);
  }
}

function toError(e: { name: string; message: string }): Error {
  if (e.name === 'IndexSnapshotError') return new IndexSnapshotError(e.message);
  const err = new Error(e.message);
  err.name = e.name;
  return err;
}

async function expectOk(p: Promise<WorkerResponse>): Promise<ShardState | undefined> {
  const res = await p;
  if (!res.ok) throw toError(res.error);
  return 'state' in res ? res.state : undefined;
}

const MAX_LABEL = 2 ** 32 - 1;

function packLabels(labels: readonly number[]): Float64Array {
  const out = new Float64Array(labels.length);
  labels.forEach((l, i) => {
    // hnswlib-node converts labels with Uint32Value: anything else would silently wrap around.
    if (!Number.isInteger(l) || l < 0 || l > MAX_LABEL) throw new RangeError(`label ${l} is not an integer in 0..2^32-1`);
    out[i] = l;
  });
  return out;
}

class ManagedIndex implements VectorIndex {
  private live = 0;
  private lostError: Error | undefined;
  /** Mutations on this index apply in call order, one chunk message at a time (see addChunk). */
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    readonly key: IndexKey,
    readonly dim: number,
    readonly params: HnswParams,
    readonly id: string,
    readonly replicas: WorkerSlot[],
    private readonly manager: IndexManager,
    private readonly opts: Required<IndexManagerOptions>,
  ) {}

  setState(state: ShardState | undefined): void {
    if (state) this.live = state.count;
  }

  markLost(err: Error): void {
    this.lostError ??= err;
  }

  private check(): void {
    if (this.lostError) throw this.lostError;
  }

  count(): number {
    return this.live;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(() => {
      this.check();
      return fn();
    });
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Sends one request per replica; the first replica is authoritative for the live count. */
  private async broadcast(make: (slot: WorkerSlot) => { req: WorkerRequest; transfer: ArrayBuffer[] }): Promise<void> {
    const states = await Promise.all(
      this.replicas.map((slot) => {
        const { req, transfer } = make(slot);
        return expectOk(slot.call(req, transfer));
      }),
    );
    this.setState(states[0]);
  }

  add(labels: readonly number[], vectors: readonly Float32Array[]): Promise<void> {
    if (labels.length !== vectors.length) return Promise.reject(new RangeError(`${labels.length} labels but ${vectors.length} vectors`));
    let packedLabels: Float64Array;
    try {
      packedLabels = packLabels(labels);
      for (const v of vectors)
        if (v.length !== this.dim) throw new RangeError(`vector of length ${v.length}, index dimension is ${this.dim}`);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.serial(async () => {
      const { dim } = this;
      for (let start = 0; start < labels.length; start += this.opts.addChunk) {
        const n = Math.min(this.opts.addChunk, labels.length - start);
        const chunkLabels = packedLabels.slice(start, start + n);
        const chunkVectors = new Float32Array(n * dim);
        for (let i = 0; i < n; i++) chunkVectors.set(vectors[start + i] as Float32Array, i * dim);
        await this.broadcast((slot) => {
          // Transfer detaches, so every replica but the last gets its own copy.
          const last = slot === this.replicas[this.replicas.length - 1];
          const l = last ? chunkLabels : chunkLabels.slice();
          const v = last ? chunkVectors : chunkVectors.slice();
          return { req: { op: 'add', id: slot.id(), keyId: this.id, labels: l, vectors: v }, transfer: [l.buffer, v.buffer] };
        });
      }
    });
  }

  markDeleted(labels: readonly number[]): Promise<void> {
    // Labels outside the uint32 range cannot be in the index, so they are ignored like unknown ones.
    const packed = Float64Array.from(labels.filter((l) => Number.isInteger(l) && l >= 0 && l <= MAX_LABEL));
    return this.serial(() =>
      this.broadcast((slot) => {
        const l = packed.slice();
        return { req: { op: 'delete', id: slot.id(), keyId: this.id, labels: l }, transfer: [l.buffer] };
      }),
    );
  }

  search(vector: Float32Array, k: number, opts: SearchOptions = {}): Promise<Hit[]> {
    try {
      this.check();
    } catch (err) {
      return Promise.reject(err);
    }
    if (vector.length !== this.dim)
      return Promise.reject(new RangeError(`query of length ${vector.length}, index dimension is ${this.dim}`));
    if (!Number.isInteger(k) || k <= 0) return Promise.resolve([]);
    // hnswlib returns at most ef candidates, so ef below k would silently shorten the answer.
    const ef = Math.max(opts.efSearch ?? this.params.efSearch, k);
    const allow = opts.allow ? Float64Array.from(opts.allow) : null;
    let slot = this.replicas[0] as WorkerSlot;
    for (const r of this.replicas) if (r.load() < slot.load()) slot = r;
    return new Promise<Hit[]>((resolve, reject) => {
      // The copy both decouples the caller's buffer and lets the batch own a contiguous block.
      slot.search({ keyId: this.id, vector: vector.slice(), k, ef, allow, resolve, reject });
    });
  }

  snapshot(path: string): Promise<void> {
    return this.serial(async () => {
      const primary = this.replicas[0] as WorkerSlot;
      this.setState(await expectOk(primary.call({ op: 'snapshot', id: primary.id(), keyId: this.id, path })));
    });
  }

  close(): Promise<void> {
    return this.manager.drop(this.key);
  }

  /** Used by the manager: releases the index in every worker after pending mutations finished. */
  release(): Promise<void> {
    const wasLost = this.lostError !== undefined;
    const run = this.chain.then(async () => {
      // A lost index no longer exists in its worker(s); nothing to free.
      if (wasLost) return;
      await Promise.all(this.replicas.map((slot) => expectOk(slot.call({ op: 'drop', id: slot.id(), keyId: this.id }))));
    });
    this.lostError ??= new IndexStateError(`index ${this.id} was dropped`);
    for (const slot of this.replicas) slot.hosted.delete(this);
    return run;
  }
}

/**
 * Owns a pool of worker threads running hnswlib-node. Every (collectionId, modelVersion) index lives in
 * one worker (or `replicas` workers); all hnswlib calls happen off the main thread.
 */
export class IndexManager implements IndexBackend {
  readonly kind = 'hnswlib' as const;
  readonly persistent = false;
  private readonly opts: Required<IndexManagerOptions>;
  /** Worker threads, started on first use beyond the first (an idle worker thread costs ~15 MiB of RSS). */
  private readonly slots: (WorkerSlot | undefined)[];
  private readonly indexes = new Map<string, ManagedIndex>();
  /** Keys whose create/load is in progress, so two concurrent creates cannot both succeed. */
  private readonly opening = new Set<string>();
  private closed = false;

  constructor(options: IndexManagerOptions = {}) {
    const workers = Math.max(1, Math.floor(options.workers ?? Math.min(2, availableParallelism())));
    this.opts = {
      workers,
      replicas: Math.min(workers, Math.max(1, Math.floor(options.replicas ?? 1))),
      maxSearchBatch: options.maxSearchBatch ?? 4,
      searchPipeline: options.searchPipeline ?? 2,
      addChunk: options.addChunk ?? 128,
      initialCapacity: options.initialCapacity ?? 1024,
      bruteForceMaxLabels: options.bruteForceMaxLabels ?? 4096,
      bruteForceMaxFraction: options.bruteForceMaxFraction ?? 0.02,
      oversampleMaxK: options.oversampleMaxK ?? 1000,
      vectorCopy: options.vectorCopy ?? true,
    };
    this.slots = Array.from({ length: workers }, () => undefined);
    // The first starts now, so a worker that cannot start fails the first call, not a later placement.
    this.slot(0);
  }

  get options(): Readonly<Required<IndexManagerOptions>> {
    return this.opts;
  }

  /** Resolves once every worker thread has started (the first call otherwise waits for it). */
  async ready(): Promise<void> {
    await Promise.all(this.slots.map((s) => s?.ready));
  }

  private slot(i: number): WorkerSlot {
    let s = this.slots[i];
    if (!s) {
      s = new WorkerSlot(i, this.opts, (slot, err) => this.onCrash(slot, err));
      this.slots[i] = s;
    }
    return s;
  }

  private onCrash(slot: WorkerSlot, err: Error): void {
    // Copies of a lost index in healthy workers would drift from the dropped one; drop them all and
    // let the caller reload from the snapshot or the database.
    for (const idx of [...slot.hosted]) {
      idx.markLost(err);
      this.indexes.delete(idx.id);
      for (const other of idx.replicas) {
        other.hosted.delete(idx);
        if (other !== slot) void other.call({ op: 'drop', id: other.id(), keyId: idx.id }).catch(() => undefined);
      }
    }
  }

  private tuning(): ShardTuning {
    const { bruteForceMaxLabels, bruteForceMaxFraction, oversampleMaxK, vectorCopy } = this.opts;
    return { bruteForceMaxLabels, bruteForceMaxFraction, oversampleMaxK, vectorCopy };
  }

  private pickSlots(): WorkerSlot[] {
    // Fewest hosted indexes first (a worker not started yet hosts none); ties by slot number.
    const load = (i: number) => this.slots[i]?.hosted.size ?? 0;
    return this.slots
      .map((_, i) => i)
      .sort((a, b) => load(a) - load(b) || a - b)
      .slice(0, this.opts.replicas)
      .map((i) => this.slot(i));
  }

  private async place(key: IndexKey, dim: number, params: HnswParams, make: (slot: WorkerSlot) => WorkerRequest): Promise<VectorIndex> {
    if (this.closed) throw new IndexClosedError('index manager closed');
    if (!Number.isInteger(dim) || dim <= 0) throw new RangeError(`dimension ${dim} is not a positive integer`);
    const id = keyId(key);
    if (this.indexes.has(id) || this.opening.has(id)) throw new IndexStateError(`index ${id} already exists; drop it first`);
    this.opening.add(id);
    try {
      const replicas = this.pickSlots();
      const idx = new ManagedIndex({ ...key }, dim, { ...params }, id, replicas, this, this.opts);
      const results = await Promise.allSettled(replicas.map((slot) => expectOk(slot.call(make(slot)))));
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) {
        await Promise.all(
          replicas.map((slot, i) =>
            results[i]?.status === 'fulfilled' ? slot.call({ op: 'drop', id: slot.id(), keyId: id }).catch(() => undefined) : undefined,
          ),
        );
        throw failed.reason;
      }
      idx.setState((results[0] as PromiseFulfilledResult<ShardState | undefined>).value);
      if (this.closed) throw new IndexClosedError('index manager closed');
      for (const slot of replicas) slot.hosted.add(idx);
      this.indexes.set(id, idx);
      return idx;
    } finally {
      this.opening.delete(id);
    }
  }

  create(key: IndexKey, dim: number, params: HnswParams, capacity?: number): Promise<VectorIndex> {
    const cap = Math.max(1, Math.floor(capacity ?? this.opts.initialCapacity));
    return this.place(key, dim, params, (slot) => ({
      op: 'create',
      id: slot.id(),
      keyId: keyId(key),
      dim,
      params,
      capacity: cap,
      tuning: this.tuning(),
    }));
  }

  /**
   * Loads a snapshot written by `snapshot()` and sets ef to `params.efSearch` (hnswlib does not persist ef).
   * Throws IndexSnapshotError for a missing, truncated, corrupt or wrong-dimension file: rebuild from the DB.
   */
  load(key: IndexKey, dim: number, params: HnswParams, path: string): Promise<VectorIndex> {
    return this.place(key, dim, params, (slot) => ({
      op: 'load',
      id: slot.id(),
      keyId: keyId(key),
      dim,
      params,
      path,
      tuning: this.tuning(),
    }));
  }

  /** In-memory indexes are not stored anywhere a new process could open them: snapshots are loaded instead. */
  async open(): Promise<VectorIndex | undefined> {
    return undefined;
  }

  get(key: IndexKey): VectorIndex | undefined {
    return this.indexes.get(keyId(key));
  }

  keys(): IndexKey[] {
    return [...this.indexes.values()].map((i) => ({ ...i.key }));
  }

  /** Frees the index in its worker(s). Unknown keys are a no-op. */
  async drop(key: IndexKey): Promise<void> {
    const idx = this.indexes.get(keyId(key));
    if (!idx) return;
    this.indexes.delete(idx.id);
    await idx.release();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const idx of this.indexes.values()) idx.markLost(new IndexClosedError('index manager closed'));
    this.indexes.clear();
    await Promise.all(this.slots.map((s) => s?.stop()));
  }

  /**
   * Ends one worker thread as if it had crashed (tests and chaos drills): its indexes become lost and the slot
   * respawns. The thread ends itself between native calls: worker.terminate() inside an hnswlib call can abort
   * the whole process from the addon.
   */
  async killWorker(slot: number): Promise<void> {
    if (!Number.isInteger(slot) || slot < 0 || slot >= this.slots.length) throw new RangeError(`no worker ${slot}`);
    const s = this.slot(slot);
    await s.ready;
    const { worker } = s;
    const gone = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    worker.postMessage({ op: 'kill' } satisfies ToHnswWorker);
    await gone;
  }
}
