// Worker-thread pool with a batching queue on the main thread.
//
// Concurrent embed() calls are merged into ONNX batches of up to maxBatch texts. A worker with nothing to do
// takes whatever is queued at once: on CPU the per-text cost barely drops with batch size, so making an
// idle worker wait would only add latency. While every worker is busy, a partial batch waits up to
// maxWaitMs for company. Each worker holds at most MAX_INFLIGHT batches so the next one is already there
// when the current finishes (no gap waiting on the main thread); the rest stay in the main queue, where
// later calls still merge into them and where maxQueue is enforced.
//
// With `lazy`, only the first worker starts with the pool; the others start one at a time when texts wait while no
// running worker is idle, and then stay (an idle server holds one session; concurrent load gets them all).
//
// Two lanes: 'query' (default) and 'bulk'. Batches are filled from the query lane first, so a search
// arriving behind a 10k-document re-embed waits for at most the batches already in flight, not the whole
// re-embed. Each lane has its own maxQueue bound, so bulk work cannot make queries 'overloaded'.
import { availableParallelism } from 'node:os';
import type { Worker } from 'node:worker_threads';
import { AppError } from '../errors.js';
import { spawnWorker, stopWorker } from '../util/worker.js';
import type { FromWorker, LoadFailure, ToWorker, WorkerInit } from './protocol.js';
import { WEIGHTS } from './hub.js';
import { promptFor, type StConfig } from './st.js';
import type { EmbedObserver, EmbedOptions, EmbedPriority, Embedder, EmbedderOptions, ModelDescription, ModelSpec } from './types.js';

const MAX_INFLIGHT = 2;
const RESPAWN_BASE_MS = 100;
const RESPAWN_MAX_MS = 5_000;

/** A worker could not load the model; the registry turns this into a ModelLoadError. */
export class WorkerLoadError extends Error {
  constructor(
    readonly reason: LoadFailure,
    message: string,
  ) {
    super(message);
    this.name = 'WorkerLoadError';
  }
}

/** A worker died with requests on it (crash, OOM, terminate); those requests fail with this. */
export class EmbedWorkerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EmbedWorkerError';
  }
}

interface Request {
  texts: string[];
  /** Index into the model's prompt table (ToWorker.prompts), -1 for none. */
  prompt: number;
  out: Float32Array[];
  remaining: number;
  settled: boolean;
  resolve(v: Float32Array[]): void;
  reject(e: Error): void;
}

/** One request's texts (indices into request.texts) waiting in the queue or riding in a batch. */
interface Segment {
  req: Request;
  indices: number[];
  /** Texts before this index were already taken into batches (a cursor, so huge requests are not re-sliced). */
  start: number;
  enqueuedAt: number;
}

interface Lane {
  segs: Segment[];
  queued: number;
}

interface Batch {
  id: number;
  parts: Segment[];
  size: number;
}

/** A worker whose model is loaded; slots only exist from 'ready' until exit. */
interface Slot {
  index: number;
  worker: Worker;
  inflight: Map<number, Batch>;
  inflightTexts: number;
  lastError?: Error;
}

export interface PoolStats {
  /** Workers with a loaded model (fewer than configured while one restarts). */
  workers: number;
  batches: number;
  texts: number;
  restarts: number;
  queued: number;
  inflight: number;
}

const workerEntry = new URL(import.meta.url.endsWith('.ts') ? './worker.ts' : './worker.js', import.meta.url);

export class EmbedPool implements Embedder {
  readonly dim: number;
  /** Effective token limit per text (maxTokens capped by the model). */
  readonly maxTokens: number;
  readonly model: ModelDescription;
  private readonly promptIndex: Map<string, number>;
  private get st(): StConfig {
    return this.init.st!;
  }
  private readonly slots: (Slot | undefined)[];
  private readonly lanes: Record<EmbedPriority, Lane> = { query: { segs: [], queued: 0 }, bulk: { segs: [], queued: 0 } };
  /** Lanes in the order batches are filled from. */
  private readonly order: Lane[] = [this.lanes.query, this.lanes.bulk];
  private nextBatchId = 1;
  private timer: NodeJS.Timeout | undefined;
  private closing = false;
  private closed = false;
  private closePromise: Promise<void> | undefined;
  private drained: (() => void) | undefined;
  private readonly counters = { batches: 0, texts: 0, restarts: 0 };
  private readonly respawnDelay: number[];
  /** Workers launched at least once (lazy pools start the others on demand; see grow). */
  private readonly launched: boolean[];
  private growing = false;
  private growBlockedUntil = 0;

  private constructor(
    readonly version: string,
    private readonly init: WorkerInit,
    private readonly opts: EmbedderOptions,
    first: { slot: Slot; dim: number; maxTokens: number },
  ) {
    this.dim = first.dim;
    this.maxTokens = first.maxTokens;
    this.promptIndex = new Map(Object.keys(this.st.prompts).map((name, i) => [name, i]));
    this.model = describe(init, first.maxTokens);
    this.slots = new Array<Slot | undefined>(opts.workers).fill(undefined);
    this.respawnDelay = new Array<number>(opts.workers).fill(RESPAWN_BASE_MS);
    this.launched = Array.from({ length: opts.workers }, (_, i) => i === 0 || !opts.lazy);
    this.adopt(first.slot);
  }

  /**
   * Starts worker 0 alone (so a hub download happens once and a bad model fails fast), then the rest.
   * Rejects with WorkerLoadError when the model cannot be loaded. `model` is the local directory (a hub
   * model's cache snapshot) and its sentence-transformers configuration (./st.ts).
   */
  static async start(spec: ModelSpec, opts: EmbedderOptions, model: { dir: string; st: StConfig }): Promise<EmbedPool> {
    if (!Number.isInteger(opts.workers) || opts.workers < 1) throw new RangeError('workers must be an integer ≥ 1');
    if (!Number.isInteger(opts.maxBatch) || opts.maxBatch < 1) throw new RangeError('maxBatch must be an integer ≥ 1');
    const init: WorkerInit = {
      spec,
      dir: model.dir,
      st: model.st,
      cacheDir: opts.cacheDir,
      maxTokens: opts.maxTokens,
      intraOpThreads: opts.intraOpThreads ?? Math.max(1, Math.floor(availableParallelism() / opts.workers)),
      perTextRuns: opts.reproducible ?? spec.dtype === 'q8',
    };
    const first = await launch(0, init);
    const pool = new EmbedPool(spec.version, init, opts, first);
    if (opts.lazy) return pool;
    // Each worker joins the pool the moment it is ready, so none is ever running without exit handling.
    const rest = await Promise.allSettled(
      Array.from({ length: opts.workers - 1 }, (_, i) => launch(i + 1, init).then((r) => pool.adopt(r.slot))),
    );
    const failed = rest.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      await pool.close();
      throw failed.reason;
    }
    return pool;
  }

  embed(texts: string[], options: EmbedOptions = {}): Promise<Float32Array[]> {
    if (this.closing) return Promise.reject(new AppError('not_ready', 'the embedder is shutting down'));
    if (texts.length === 0) return Promise.resolve([]);
    // Checked here, not in the worker: a bad input would otherwise fail every caller merged into its batch.
    const bad = texts.findIndex((t) => typeof t !== 'string');
    if (bad >= 0) return Promise.reject(new TypeError(`embed(): texts[${bad}] is ${typeof texts[bad]}, not a string`));
    let prompt: number;
    try {
      const choice = promptFor(this.st, { kind: options.kind, promptName: options.promptName });
      prompt = choice.name === null || choice.text === '' ? -1 : this.promptIndex.get(choice.name)!;
    } catch (err) {
      return Promise.reject(err as Error);
    }
    const priority = options.priority ?? 'query';
    const lane = this.lanes[priority];
    // A single request larger than maxQueue is admitted into an empty lane, otherwise it could never run.
    if (lane.queued > 0 && lane.queued + texts.length > this.opts.maxQueue) {
      return Promise.reject(
        new AppError(
          'overloaded',
          `embed ${priority} queue is full (${lane.queued} texts waiting, limit ${this.opts.maxQueue})`,
          undefined,
          {
            'Retry-After': '1',
          },
        ),
      );
    }
    return new Promise<Float32Array[]>((resolve, reject) => {
      const req: Request = {
        texts,
        prompt,
        out: new Array<Float32Array>(texts.length),
        remaining: texts.length,
        settled: false,
        resolve,
        reject,
      };
      // Length-sorting a request's texts before they are cut into batches keeps similar lengths together,
      // so a bulk call pads far less (padding is to the longest text of a batch). Results go back by index.
      const indices = texts.map((_, i) => i);
      if (texts.length > 1) indices.sort((a, b) => texts[a]!.length - texts[b]!.length);
      lane.segs.push({ req, indices, start: 0, enqueuedAt: performance.now() });
      lane.queued += texts.length;
      this.pump();
    });
  }

  queueDepth(): number {
    return this.lanes.query.queued + this.lanes.bulk.queued;
  }

  stats(): PoolStats {
    const live = this.slots.filter((s): s is Slot => s !== undefined);
    return {
      workers: live.length,
      batches: this.counters.batches,
      texts: this.counters.texts,
      restarts: this.counters.restarts,
      queued: this.queueDepth(),
      inflight: live.reduce((n, s) => n + s.inflightTexts, 0),
    };
  }

  /**
   * Ops/chaos hook: kills worker `index` exactly as a crash would. Its in-flight requests reject with
   * EmbedWorkerError and a replacement is spawned.
   */
  async terminateWorker(index: number): Promise<void> {
    const slot = this.slots[index];
    if (!slot) throw new RangeError(`no live worker ${index}`);
    slot.lastError = new Error('terminated by terminateWorker()');
    // Not worker.terminate(): landing inside an ONNX run, that aborts the whole process from the addon (a
    // `Napi::Error` that nothing can catch). The pool treats the worker as crashed now (its in-flight texts
    // fail, a replacement starts) and the thread ends itself at its next turn, between native calls.
    const gone = new Promise<void>((resolve) => slot.worker.once('exit', () => resolve()));
    this.onExit(slot, 1);
    slot.worker.postMessage({ type: 'kill' } satisfies ToWorker);
    await gone;
  }

  /** Stops accepting work, finishes what is queued and in flight, then terminates the workers. */
  close(): Promise<void> {
    this.closePromise ??= this.shutdown();
    return this.closePromise;
  }

  private async shutdown(): Promise<void> {
    this.closing = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.pump();
    if (this.busy()) await new Promise<void>((resolve) => (this.drained = resolve));
    this.closed = true;
    const workers = this.slots.filter((s): s is Slot => s !== undefined).map((s) => s.worker);
    this.slots.fill(undefined);
    await Promise.all(workers.map((w) => stopWorker(w, { type: 'close' } satisfies ToWorker)));
  }

  // ---- scheduling ---------------------------------------------------------------------------------

  private busy(): boolean {
    return this.queueDepth() > 0 || this.slots.some((s) => s !== undefined && s.inflightTexts > 0);
  }

  private pump(): void {
    if (this.queueDepth() > 0 && !this.slots.some((s) => s !== undefined && s.inflight.size === 0)) this.grow();
    while (this.queueDepth() > 0) {
      const slot = this.leastBusy();
      if (!slot) return;
      const oldest = Math.min(...this.order.map((l) => l.segs[0]?.enqueuedAt ?? Infinity));
      const due = oldest + this.opts.maxWaitMs;
      const now = performance.now();
      const idle = slot.inflight.size === 0;
      if (this.queueDepth() < this.opts.maxBatch && now < due && !idle && !this.closing) {
        if (!this.timer) {
          this.timer = setTimeout(
            () => {
              this.timer = undefined;
              this.pump();
            },
            Math.max(0, Math.ceil(due - now)),
          );
        }
        return;
      }
      this.dispatch(slot, this.takeBatch());
    }
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.checkDrained();
  }

  private leastBusy(): Slot | undefined {
    let best: Slot | undefined;
    for (const s of this.slots) {
      if (!s || s.inflight.size >= MAX_INFLIGHT) continue;
      if (!best || s.inflightTexts < best.inflightTexts) best = s;
    }
    return best;
  }

  private takeBatch(): Batch {
    const parts: Segment[] = [];
    let size = 0;
    for (const lane of this.order) {
      while (size < this.opts.maxBatch && lane.segs.length > 0) {
        const seg = lane.segs[0]!;
        const take = Math.min(this.opts.maxBatch - size, seg.indices.length - seg.start);
        parts.push({ req: seg.req, indices: seg.indices.slice(seg.start, seg.start + take), start: 0, enqueuedAt: seg.enqueuedAt });
        seg.start += take;
        size += take;
        lane.queued -= take;
        if (seg.start === seg.indices.length) lane.segs.shift();
      }
    }
    return { id: this.nextBatchId++, parts, size };
  }

  private dispatch(slot: Slot, batch: Batch): void {
    const texts: string[] = [];
    const prompts: number[] = [];
    let prompted = false;
    for (const part of batch.parts) {
      for (const i of part.indices) {
        texts.push(part.req.texts[i]!);
        prompts.push(part.req.prompt);
      }
      if (part.req.prompt >= 0) prompted = true;
    }
    slot.inflight.set(batch.id, batch);
    slot.inflightTexts += batch.size;
    slot.worker.postMessage({ type: 'embed', id: batch.id, texts, ...(prompted ? { prompts } : {}) } satisfies ToWorker);
  }

  private checkDrained(): void {
    if (this.drained && !this.busy()) {
      const done = this.drained;
      this.drained = undefined;
      done();
    }
  }

  // ---- worker lifecycle ----------------------------------------------------------------------------

  private adopt(slot: Slot): void {
    this.slots[slot.index] = slot;
    slot.worker.on('message', (msg: FromWorker) => this.onMessage(slot, msg));
    slot.worker.on('error', (err) => {
      slot.lastError = err;
    });
    slot.worker.on('exit', (code) => this.onExit(slot, code));
    this.pump();
  }

  private onMessage(slot: Slot, msg: FromWorker): void {
    if (msg.type !== 'result' && msg.type !== 'error') return;
    const batch = slot.inflight.get(msg.id);
    if (!batch) return;
    slot.inflight.delete(msg.id);
    slot.inflightTexts -= batch.size;
    if (msg.type === 'error') {
      this.failParts(batch.parts, new EmbedWorkerError(`embedding failed: ${msg.message}`));
    } else {
      this.deliver(batch, msg.data, msg.dim);
      this.counters.batches++;
      this.counters.texts += batch.size;
      this.respawnDelay[slot.index] = RESPAWN_BASE_MS;
      observe(this.opts.observer, batch.size, msg.ms, msg.tokens);
    }
    this.pump();
  }

  private deliver(batch: Batch, data: Float32Array, dim: number): void {
    let row = 0;
    for (const part of batch.parts) {
      const { req } = part;
      for (const i of part.indices) {
        // slice, not subarray: each vector owns its memory, so keeping one does not pin the whole batch.
        if (!req.settled) req.out[i] = data.slice(row * dim, (row + 1) * dim);
        row++;
      }
      if (req.settled) continue;
      req.remaining -= part.indices.length;
      if (req.remaining === 0) {
        req.settled = true;
        req.resolve(req.out);
      }
    }
  }

  /** Rejects the requests owning these parts and drops their other pieces still waiting in the queue. */
  private failParts(parts: Segment[], err: Error): void {
    const reqs = new Set<Request>();
    for (const p of parts) if (!p.req.settled) reqs.add(p.req);
    if (reqs.size === 0) return;
    for (const r of reqs) {
      r.settled = true;
      r.reject(err);
    }
    for (const lane of this.order) {
      for (let i = lane.segs.length - 1; i >= 0; i--) {
        const seg = lane.segs[i]!;
        if (reqs.has(seg.req)) {
          lane.queued -= seg.indices.length - seg.start;
          lane.segs.splice(i, 1);
        }
      }
    }
  }

  private onExit(slot: Slot, code: number): void {
    if (this.slots[slot.index] !== slot) return; // closed or already replaced
    this.slots[slot.index] = undefined;
    const lost = [...slot.inflight.values()];
    // A result the thread still posts (terminateWorker lets it finish its turn) belongs to no one now.
    slot.inflight.clear();
    slot.inflightTexts = 0;
    if (lost.length > 0) {
      const texts = lost.reduce((n, b) => n + b.size, 0);
      const why = slot.lastError ? `: ${slot.lastError.message.split('\n', 1)[0]}` : '';
      this.failParts(
        lost.flatMap((b) => b.parts),
        new EmbedWorkerError(
          `embed worker ${slot.index} exited (code ${code})${why}; ${texts} in-flight texts were not embedded, retry the request`,
        ),
      );
    }
    if (!this.closing) this.respawn(slot.index);
    this.pump();
  }

  /**
   * Lazy pools: texts are waiting and no running worker is idle, so start the next worker never launched (one at a
   * time). It stays once started, and crashes are respawned like any other. A failed start is retried no sooner than
   * RESPAWN_MAX_MS later; the running workers carry on meanwhile.
   */
  private grow(): void {
    if (this.growing || this.closing || performance.now() < this.growBlockedUntil) return;
    const index = this.launched.indexOf(false);
    if (index < 0) return;
    this.growing = true;
    this.launched[index] = true;
    this.relaunch(index).then(
      (slot) => {
        this.growing = false;
        if (this.closed) void slot.worker.terminate();
        else this.adopt(slot);
      },
      () => {
        this.growing = false;
        this.launched[index] = false;
        this.growBlockedUntil = performance.now() + RESPAWN_MAX_MS;
      },
    );
  }

  /** launch() for a pool already serving: a worker whose model has another width than the pool's is refused. */
  private relaunch(index: number): Promise<Slot> {
    return launch(index, this.init).then(({ slot, dim }) => {
      if (dim !== this.dim) {
        // The files changed under us; vectors of another width would corrupt every index of this version.
        void slot.worker.terminate();
        throw new WorkerLoadError('invalid', `model files changed on disk: dimension ${dim}, expected ${this.dim}`);
      }
      return slot;
    });
  }

  private respawn(index: number): void {
    this.counters.restarts++;
    this.relaunch(index).then(
      (slot) => {
        // While closing, a replacement still helps drain the queue; once closed it must not outlive us.
        if (this.closed) void slot.worker.terminate();
        else this.adopt(slot);
      },
      (err: unknown) => {
        const message = err instanceof Error ? err.message : String(err);
        if (this.slots.every((s) => s === undefined)) {
          this.failQueue(new EmbedWorkerError(`no embed worker is running (restart failed: ${message})`));
        }
        if (this.closing) return;
        // The model loaded before, so this is likely transient (memory, disk); back off and try again.
        const delay = this.respawnDelay[index]!;
        this.respawnDelay[index] = Math.min(delay * 2, RESPAWN_MAX_MS);
        setTimeout(() => !this.closing && this.respawn(index), delay);
      },
    );
  }

  private failQueue(err: Error): void {
    const segs = this.order.flatMap((lane) => {
      lane.queued = 0;
      return lane.segs.splice(0);
    });
    for (const s of segs) {
      if (s.req.settled) continue;
      s.req.settled = true;
      s.req.reject(err);
    }
    this.checkDrained();
  }
}

function describe(init: WorkerInit, maxTokens: number): ModelDescription {
  const st = init.st!;
  return {
    dir: init.dir!,
    file: WEIGHTS[init.spec.dtype],
    dtype: init.spec.dtype,
    pooling: st.pooling,
    normalize: st.normalize,
    includePrompt: st.includePrompt,
    maxTokens,
    prompts: { ...st.prompts },
    defaultPromptName: st.defaultPromptName,
    queryPrompt: promptFor(st, { kind: 'query' }).name,
    documentPrompt: promptFor(st, { kind: 'document' }).name,
    configSource: st.source,
  };
}

function observe(observer: EmbedObserver | undefined, size: number, ms: number, tokens: number): void {
  if (!observer) return;
  try {
    observer.onBatch(size, ms, tokens);
  } catch {
    // A metrics bug must never fail an embedding.
  }
}

/** Spawns one worker and waits for its model to load (or fail). */
function launch(index: number, init: WorkerInit): Promise<{ slot: Slot; dim: number; maxTokens: number }> {
  return new Promise((resolve, reject) => {
    const worker = spawnWorker(workerEntry, {
      workerData: init,
      name: `embed-${index}`,
      preload: ['@huggingface/transformers'],
      // The worker's JS only tokenizes and copies vectors: a 4 MiB young generation (V8's default is several times
      // that) costs nothing measurable in /search by text and holds ~10 MiB less per worker (idle server 242 vs 253 MiB
      // median RSS, bench:peers on 2 cores).
      resourceLimits: { maxYoungGenerationSizeMb: 4 },
    });
    let lastError: Error | undefined;
    // Stays attached for the worker's life: an 'error' event with no listener would crash the process.
    worker.on('error', (err) => {
      lastError = err;
    });
    const cleanup = () => {
      worker.off('message', onMessage);
      worker.off('exit', onExit);
    };
    const onMessage = (msg: FromWorker) => {
      if (msg.type === 'ready') {
        cleanup();
        resolve({ slot: { index, worker, inflight: new Map(), inflightTexts: 0 }, dim: msg.dim, maxTokens: msg.maxTokens });
      } else if (msg.type === 'load-error') {
        cleanup();
        void worker.terminate();
        reject(new WorkerLoadError(msg.reason, msg.message));
      }
    };
    const onExit = (code: number) => {
      cleanup();
      reject(
        new WorkerLoadError(
          'invalid',
          `embed worker exited (code ${code}) before loading the model${lastError ? `: ${lastError.message.split('\n', 1)[0]}` : ''}`,
        ),
      );
    };
    worker.on('message', onMessage);
    worker.on('exit', onExit);
  });
}
