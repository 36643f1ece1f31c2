import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../config.js';
import type { Embedder, ModelSource } from '../embed/types.js';
import { AppError } from '../errors.js';
import type { IndexBackend, VectorIndex } from '../index/types.js';
import type { Metrics } from '../metrics.js';
import type { Engine, ServingPair } from '../serving/engine.js';
import { decodeSource } from '../serving/models.js';
import type { Collection, CollectionStore, DocumentStore, IndexRecordStore, ModelStore } from '../store/types.js';
import type { Logger } from '../util/log.js';
import { KeyedMutex } from '../util/mutex.js';
import { seededRandom } from '../util/random.js';
import { loadModel, specForDir } from './models.js';

class VerifyError extends Error {}

export interface ShadowBuild {
  pair: ServingPair;
  /** Store seq read before each collection's build started: the catch-up replays everything after it. */
  startSeqs: Map<number, number>;
  /** How the trainer's embeddings were used, when they were offered. */
  reembed?: ReembedReport;
}

/** Candidate embeddings the trainer wrote into the artifact (trainer/README.md `embed_corpus`). */
export interface TrainerEmbeddings {
  /** The artifact's embeddings/ directory (manifest.json, ids.json, vectors.f32). */
  dir: string;
  /** The collection whose live chunks the bundle's embed.jsonl held (ids = chunk labels). */
  collectionId: number;
  /** Store seq read before the bundle's chunks were: writes after it are embedded here. */
  seq: number;
}

export interface ReembedReport {
  source: 'trainer_embeddings' | 'cpu';
  fallbackReason?: string;
  /** Rows in the file, rows indexed from it, live chunks embedded here (written since the bundle). */
  rows?: number;
  fromFile?: number;
  embeddedHere?: number;
  sample?: { n: number; minCosine: number };
  /** Seconds: reading + checksums, the sample re-embed, building the index from the file, or the CPU re-embed. */
  seconds: { load?: number; verify?: number; build?: number; cpu?: number };
}

/** Lowest cosine a sampled trainer vector may have with this server's own embedding of the same chunk. */
const EMBEDDINGS_MIN_COSINE = 0.999;
/** Chunks of the file re-embedded here before it is trusted. */
const EMBEDDINGS_SAMPLE = 32;

class EmbeddingsRefused extends Error {}

interface LoadedEmbeddings {
  rows: Map<number, number>;
  vectors: Float32Array;
  dim: number;
  count: number;
}

const secs = (t0: number) => Math.round(performance.now() - t0) / 1000;

export interface CutOverReport {
  version: string;
  generation: number;
  collections: { name: string; count: number; live: number; caughtUp: number; sampleQueries: number; sampleSelfHits: number }[];
}

export type ReembedProgress = (collection: string, done: number, total: number, overall: { done: number; total: number }) => void;

interface SwapperDeps {
  /** The serving pairs, the write lock, and the index builds, catch-ups and snapshots a swap is made of. */
  engine: Pick<
    Engine,
    | 'serving'
    | 'previousPair'
    | 'exclusive'
    | 'buildIndex'
    | 'catchUp'
    | 'recordBuilding'
    | 'activate'
    | 'snapshotAll'
    | 'resolveModelSource'
  >;
  /** The parts of the store a swap reads and writes. */
  store: CollectionStore & DocumentStore & ModelStore & IndexRecordStore;
  /** Where the candidate's indexes are created (and a half-built one from an earlier try dropped). */
  indexes: IndexBackend;
  config: Config;
  metrics: Metrics;
  log: Logger;
}

/**
 * The (model, index) pointer switch: shadow re-embed next to the champion, catch up writes, verify, then
 * promote in the store (the commit point a restart reads) and flip the in-memory pair. Cut-over and
 * rollback are serialized; document writes are paused only for the catch-up + flip, never for the build.
 */
export class Swapper {
  private readonly lock = new KeyedMutex();
  /** Store seq at which a version stopped receiving writes: a rollback replays from there. */
  private readonly retiredAt = new Map<string, number>();

  constructor(private readonly deps: SwapperDeps) {}

  /**
   * Re-embeds every collection with `embedder` into fresh indexes (throttled by REEMBED_PAUSE_MS). With
   * `embeddings` (the trainer's vectors of one collection's chunks), that collection's index is built from the
   * file once its checksums, dim and a seeded sample re-embedded here check out; otherwise it is re-embedded
   * here like the others, and the report says why.
   */
  async shadowBuild(
    version: string,
    embedder: Embedder,
    onProgress?: ReembedProgress,
    embeddings?: TrainerEmbeddings,
  ): Promise<ShadowBuild> {
    const { store, indexes: backend, metrics, log } = this.deps;
    let loaded: LoadedEmbeddings | undefined;
    let reembed: ReembedReport | undefined;
    if (embeddings) {
      reembed = { source: 'cpu', seconds: {} };
      try {
        loaded = await this.loadEmbeddings(embeddings, embedder, reembed);
        reembed.source = 'trainer_embeddings';
      } catch (err) {
        if (!(err instanceof EmbeddingsRefused)) throw err;
        reembed.fallbackReason = err.message;
        log.warn(`trainer embeddings refused, re-embedding on the CPU: ${err.message}`, { version, dir: embeddings.dir });
      }
    }
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
      if (backend.get(key)) await backend.drop(key);
      startSeqs.set(c.id, await store.currentSeq());
      const progress = (done: number, total: number) => {
        metrics.reembedProgress.set({ collection: c.name, model_version: version }, total > 0 ? done / total : 1);
        onProgress?.(c.name, done, total, { done: doneBefore + done, total: overallTotal });
      };
      const t0 = performance.now();
      const fromFile = loaded && embeddings?.collectionId === c.id;
      const idx = fromFile
        ? await this.buildFromEmbeddings(c, version, embedder, loaded!, embeddings!.seq, startSeqs.get(c.id)!, reembed!, progress)
        : await this.deps.engine.buildIndex(c, version, embedder, progress, this.deps.config.REEMBED_PAUSE_MS);
      if (reembed && embeddings?.collectionId === c.id) reembed.seconds[fromFile ? 'build' : 'cpu'] = secs(t0);
      doneBefore += totals.get(c.id) ?? 0;
      indexes.set(c.id, idx);
    }
    return { pair: { version, embedder, generation: -1, indexes }, startSeqs, ...(reembed ? { reembed } : {}) };
  }

  /** Reads and checks the trainer's embeddings; EmbeddingsRefused says why they cannot be used. */
  private async loadEmbeddings(e: TrainerEmbeddings, embedder: Embedder, report: ReembedReport): Promise<LoadedEmbeddings> {
    const refuse = (why: string): never => {
      throw new EmbeddingsRefused(why);
    };
    let t0 = performance.now();
    const read = (name: string): Buffer => {
      const path = join(e.dir, name);
      if (!existsSync(path)) refuse(`${name} is missing`);
      try {
        return readFileSync(path);
      } catch (err) {
        return refuse(`${name} cannot be read: ${err instanceof Error ? err.message : String(err)}`);
      }
    };
    // A trainer that does not embed the corpus (or an older one) leaves no embeddings/: the CPU path, as before.
    if (!existsSync(join(e.dir, 'manifest.json')))
      refuse('the artifact has no embeddings/manifest.json (the trainer did not embed the corpus)');
    let manifest: Record<string, unknown>;
    try {
      manifest = JSON.parse(read('manifest.json').toString('utf8')) as Record<string, unknown>;
    } catch (err) {
      if (err instanceof EmbeddingsRefused) throw err;
      return refuse(`manifest.json is not JSON: ${err instanceof Error ? err.message : String(err)}`);
    }
    const { format, dim, count } = manifest;
    const sums = (manifest.sha256 ?? {}) as Record<string, unknown>;
    if (format !== 'f32le') refuse(`manifest.json format ${JSON.stringify(format)}, expected "f32le"`);
    if (typeof dim !== 'number' || typeof count !== 'number' || !Number.isInteger(dim) || !Number.isInteger(count) || dim < 1 || count < 1)
      refuse('manifest.json has no valid dim/count');
    if (dim !== embedder.dim) refuse(`dim ${String(dim)} in manifest.json, the candidate embeds ${embedder.dim}`);
    const d = dim as number;
    const n = count as number;
    const bytes = read('vectors.f32');
    const idsRaw = read('ids.json');
    for (const [name, buf] of [
      ['vectors.f32', bytes],
      ['ids.json', idsRaw],
    ] as const) {
      const got = createHash('sha256').update(buf).digest('hex');
      if (got !== sums[name])
        refuse(`${name} sha256 ${got.slice(0, 12)}… does not match manifest.json (${String(sums[name]).slice(0, 12)}…)`);
    }
    if (bytes.length !== n * d * 4) refuse(`vectors.f32 holds ${bytes.length} bytes, manifest.json says ${n} × ${d} float32`);
    let ids: unknown;
    try {
      ids = JSON.parse(idsRaw.toString('utf8'));
    } catch {
      return refuse('ids.json is not JSON');
    }
    if (!Array.isArray(ids) || ids.length !== n) refuse(`ids.json does not list ${n} ids`);
    const rows = new Map<number, number>();
    (ids as unknown[]).forEach((id, i) => {
      const label = typeof id === 'string' && /^[0-9]+$/.test(id) ? Number(id) : NaN;
      if (!Number.isSafeInteger(label) || label < 1) refuse(`ids.json row ${i}: ${JSON.stringify(id)} is not a chunk label`);
      rows.set(label, i);
    });
    // float32 little-endian; a copy when the buffer is not 4-byte aligned.
    const vectors =
      bytes.byteOffset % 4 === 0
        ? new Float32Array(bytes.buffer, bytes.byteOffset, n * d)
        : new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
    report.rows = n;
    report.seconds.load = secs(t0);

    // A seeded sample of still-live chunks, re-embedded here exactly as documents are indexed.
    t0 = performance.now();
    const rand = seededRandom(e.seq + n);
    const labels = [...rows.keys()];
    const picked = new Set<number>();
    const sample: { label: number; text: string }[] = [];
    for (let tries = 0; tries < 8 && sample.length < EMBEDDINGS_SAMPLE && picked.size < labels.length; tries++) {
      const want: number[] = [];
      while (want.length < (EMBEDDINGS_SAMPLE - sample.length) * 2 && picked.size < labels.length) {
        const l = labels[Math.floor(rand() * labels.length)]!;
        if (!picked.has(l)) {
          picked.add(l);
          want.push(l);
        }
      }
      const live = await this.deps.store.hydrate(want);
      for (const l of want) {
        const h = live.get(l);
        if (h && sample.length < EMBEDDINGS_SAMPLE) sample.push({ label: l, text: h.text });
      }
    }
    if (sample.length === 0) refuse('no chunk of the file is live any more: nothing to check it against');
    const mine = await embedder.embed(
      sample.map((x) => x.text),
      { priority: 'bulk', kind: 'document' },
    );
    let minCosine = 1;
    sample.forEach((x, i) => {
      const off = rows.get(x.label)! * d;
      const a = vectors.subarray(off, off + d);
      const b = mine[i]!;
      let dot = 0,
        na = 0,
        nb = 0;
      for (let k = 0; k < d; k++) {
        dot += a[k]! * b[k]!;
        na += a[k]! * a[k]!;
        nb += b[k]! * b[k]!;
      }
      const cos = dot / (Math.sqrt(na * nb) || 1);
      if (!(cos >= EMBEDDINGS_MIN_COSINE))
        refuse(`chunk ${x.label}: cosine ${cos.toFixed(4)} with this server's embedding, below ${EMBEDDINGS_MIN_COSINE}`);
      minCosine = Math.min(minCosine, cos);
    });
    report.sample = { n: sample.length, minCosine: Math.round(minCosine * 1e6) / 1e6 };
    report.seconds.verify = secs(t0);
    return { rows, vectors, dim: d, count: n };
  }

  /**
   * An index of `c` from the trainer's vectors: every live chunk in the file, and the ones written since the
   * bundle (`bundleSeq`) embedded here; writes made during the build are caught up from `startSeq`.
   */
  private async buildFromEmbeddings(
    c: Collection,
    version: string,
    embedder: Embedder,
    file: LoadedEmbeddings,
    bundleSeq: number,
    startSeq: number,
    report: ReembedReport,
    onProgress: (done: number, total: number) => void,
  ): Promise<VectorIndex> {
    const { store, indexes } = this.deps;
    const since = new Set((await store.changesSince(c.id, bundleSeq)).added.map((r) => r.label));
    const total = await store.countLiveChunks(c.id);
    const idx = await indexes.create({ collectionId: c.id, modelVersion: version }, embedder.dim, c.hnsw, Math.max(1024, total));
    let after = 0;
    let done = 0;
    let fromFile = 0;
    let here = 0;
    onProgress(0, total);
    for (;;) {
      const rows = await store.liveChunks(c.id, after, 2000);
      if (rows.length === 0) break;
      const labels: number[] = [];
      const vecs: Float32Array[] = [];
      const missing = rows.filter((r) => {
        const i = file.rows.get(r.label);
        if (i === undefined || since.has(r.label)) return true;
        labels.push(r.label);
        vecs.push(file.vectors.subarray(i * file.dim, (i + 1) * file.dim));
        return false;
      });
      if (missing.length > 0) {
        labels.push(...missing.map((r) => r.label));
        vecs.push(
          ...(await embedder.embed(
            missing.map((r) => r.text),
            { priority: 'bulk', kind: 'document' },
          )),
        );
      }
      await idx.add(labels, vecs);
      fromFile += rows.length - missing.length;
      here += missing.length;
      after = rows[rows.length - 1]!.label;
      done += rows.length;
      onProgress(done, total);
    }
    await idx.seal?.();
    here += await this.deps.engine.catchUp(c.id, idx, embedder, startSeq);
    await this.deps.engine.recordBuilding(c.id, version, idx);
    report.fromFile = fromFile;
    report.embeddedHere = here;
    return idx;
  }

  /** Catch-up, verification and the atomic switch, with document writes paused. */
  cutOver(build: ShadowBuild, kind: 'promote' | 'rollback' = 'promote'): Promise<CutOverReport> {
    return this.lock.run('swap', async () => {
      const report = await this.deps.engine.exclusive(() => this.switchLocked(build, kind));
      // Snapshots take the write lock themselves; a crash before this point rebuilds from the store.
      await this.deps.engine.snapshotAll().catch((err) => this.deps.log.warn('snapshot after cut-over failed', { err: String(err) }));
      return report;
    });
  }

  private async switchLocked(build: ShadowBuild, kind: 'promote' | 'rollback'): Promise<CutOverReport> {
    const { store, metrics, log } = this.deps;
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
        idx = await this.deps.engine.buildIndex(c, pair.version, pair.embedder);
        pair.indexes.set(c.id, idx);
      } else {
        caughtUp = await this.deps.engine.catchUp(c.id, idx, pair.embedder, build.startSeqs.get(c.id) ?? 0);
      }
      report.collections.push({ name: c.name, caughtUp, ...(await this.verify(c, idx, pair.embedder)) });
    }
    const retiring = this.deps.engine.serving.version;
    const seq = await store.currentSeq();
    const pointer = await store.promote(pair.version);
    pair.generation = pointer.generation;
    await this.deps.engine.activate(pair);
    this.retiredAt.set(retiring, seq);
    metrics.swaps.inc({ kind });
    report.generation = pointer.generation;
    log.info('model cut-over', { kind, from: retiring, to: pair.version, generation: pointer.generation });
    return report;
  }

  /** Counts must equal the store's live chunks; a few stored chunks searched by their own text must hit. */
  private async verify(c: Collection, idx: VectorIndex, embedder: Embedder) {
    const live = await this.deps.store.countLiveChunks(c.id);
    const count = idx.count();
    if (count !== live) throw new VerifyError(`index for "${c.name}" holds ${count} vectors but the store has ${live} live chunks`);
    const sample = live > 0 ? await this.deps.store.sampleChunks(c.id, 5) : [];
    let selfHits = 0;
    if (sample.length > 0) {
      const vecs = await embedder.embed(
        sample.map((s) => s.text),
        { kind: 'document' },
      ); // as indexed: a self-hit check
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
    const { store } = this.deps;
    const row = await store.getModelVersion(version);
    if (!row) throw new AppError('model_not_found', `no model version "${version}"`);
    if (this.deps.engine.serving.version === version) {
      return { version, generation: (await store.getServing())?.generation ?? 0, collections: [], rebuilt: false, changed: false };
    }
    if (row.status === 'purged') throw new AppError('model_unavailable', `model version "${version}" was purged`);
    if (row.promotedAt === null)
      throw new AppError(
        'model_unavailable',
        `model version "${version}" never served (status ${row.status}); only former champions can be rolled back to`,
      );
    const prev = this.deps.engine.previousPair;
    if (prev && prev.version === version) {
      const from = this.retiredAt.get(version) ?? 0;
      const startSeqs = new Map([...prev.indexes.keys()].map((cid) => [cid, from] as [number, number]));
      const r = await this.cutOver({ pair: prev, startSeqs }, 'rollback');
      return { ...r, rebuilt: false, changed: true };
    }
    let source: ModelSource;
    try {
      source = await this.deps.engine.resolveModelSource(version, decodeSource(row.source));
    } catch (err) {
      throw new AppError(
        'model_unavailable',
        `model version "${version}" has no usable source: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
    if (source.kind === 'dir' && !existsSync(source.path))
      throw new AppError('model_unavailable', `the files of model version "${version}" are gone (${source.path})`);
    let embedder: Embedder;
    try {
      const spec =
        source.kind === 'dir'
          ? specForDir(version, source.path, this.deps.config)
          : { version, source, dtype: this.deps.config.EMBED_DTYPE ?? ('fp32' as const) };
      embedder = await loadModel(spec, this.deps.config, this.deps.metrics);
    } catch (err) {
      throw new AppError(
        'model_unavailable',
        `model version "${version}" cannot be loaded: ${String(err instanceof Error ? err.message : err)}`,
      );
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
