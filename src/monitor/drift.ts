import type { Config } from '../config.js';
import type { Metrics } from '../metrics.js';
import type { DriftReportRow, JobStore, ModelStore, QueryLogRow, QueryLogStore } from '../store/types.js';
import { spawnWorker } from '../util/worker.js';
import type { Logger } from '../util/log.js';
import { computeEmbeddingDrift, type EmbeddingDrift, type EmbeddingDriftInput } from './embedding-drift.js';
import { ksTwoSample, type KsResult } from './stats.js';

interface WindowInfo {
  n: number;
  from: string | null;
  to: string | null;
  /** Queries per minute over the window's time span (volume drift). */
  perMinute: number;
}

export interface DriftMetrics {
  status: 'ok' | 'insufficient_data';
  modelVersion: string;
  reference: WindowInfo & { since: string; basis: 'champion_promoted' | 'baseline' };
  current: WindowInfo;
  centroidDistance: number | null;
  domainAuc: number | null;
  mmd: { mmd2: number; pValue: number; sigma: number; permutations: number } | null;
  top1Score: (KsResult & { refMean: number; curMean: number; n: [number, number] }) | null;
  top1Gap: (KsResult & { refMean: number; curMean: number; n: [number, number] }) | null;
  volumeRatio: number | null;
  thresholds: { auc: number; centroid: number; mmdPValue: number; minQueries: number; window: number };
  reasons: string[];
  cooldown: boolean;
  autoRetrain: boolean;
}

export interface DriftCheck {
  report: DriftReportRow;
  metrics: DriftMetrics;
}

export interface DriftDeps {
  store: QueryLogStore & ModelStore & JobStore;
  config: Config;
  metrics: Metrics;
  log: Logger;
  /** Embeds texts with the model now serving; returns the version that produced the vectors. */
  embed(texts: string[]): Promise<{ vectors: Float32Array[]; model: string }>;
  servingVersion(): string;
  /** Creates a retrain job when drift fires (AUTO_RETRAIN); returns its id or undefined if none was made. */
  onDrift?(collection: string, metrics: DriftMetrics): Promise<string | undefined>;
}

export interface DriftCheckOptions {
  /** A configured baseline: the reference window starts here instead of at the champion's promotion. */
  referenceSince?: number;
  /** Skip job creation even if drift fires (on-demand checks from the API can still create jobs). */
  noTrigger?: boolean;
}

/** Query-log rows one slice of a scan for text queries covers (see textWindow). */
const LOG_SLICE = 5000;

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

const iso = (t: number | undefined) => (t === undefined ? null : new Date(t).toISOString());

function windowInfo(rows: QueryLogRow[]): WindowInfo {
  if (rows.length === 0) return { n: 0, from: null, to: null, perMinute: 0 };
  const ts = rows.map((r) => r.createdAt);
  const from = Math.min(...ts);
  const to = Math.max(...ts);
  // A window logged within one millisecond has no measurable rate; count it over one second.
  return { n: rows.length, from: iso(from), to: iso(to), perMinute: rows.length / (Math.max(1000, to - from) / 60_000) };
}

const avg = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);

function scoreSeries(rows: QueryLogRow[], version: string) {
  // Scores are only comparable from one model and from cosine ranking (hybrid scores are RRF ranks).
  const usable = rows.filter((r) => r.mode === 'vector' && r.modelVersion === version && r.scores.length > 0);
  return {
    top1: usable.map((r) => r.scores[0]!),
    gap: usable.filter((r) => r.scores.length > 1).map((r) => r.scores[0]! - r.scores[1]!),
  };
}

function ksBlock(a: number[], b: number[]) {
  if (a.length < 2 || b.length < 2) return null;
  return { ...ksTwoSample(a, b), refMean: avg(a), curMean: avg(b), n: [a.length, b.length] as [number, number] };
}

/** Runs the embedding statistics in a worker thread (they are quadratic in the window size). */
function embeddingDriftOffThread(input: EmbeddingDriftInput): Promise<EmbeddingDrift> {
  return new Promise((resolve, reject) => {
    const w = spawnWorker(new URL('./stats-worker.ts', import.meta.url), { workerData: input, name: 'drift-stats' });
    w.once('message', (m: EmbeddingDrift) => {
      resolve(m);
      void w.terminate();
    });
    w.once('error', reject);
    w.once('exit', (code) => {
      if (code !== 0) reject(new Error(`drift stats worker exited with ${code}`));
    });
  });
}

/**
 * Compares the current window of logged queries with the reference window (the first DRIFT_WINDOW
 * queries after the champion went live, or a configured baseline). Every run is stored and exported;
 * drift fires only when a shift is both significant (MMD permutation p-value) and large enough to matter
 * (domain-classifier AUC or centroid distance), so a big but harmless window never triggers a retrain.
 */
export class DriftMonitor {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  /** Query embeddings by model version and text: the same logged query is re-embedded on every run otherwise. */
  private readonly cache = new Map<string, Float32Array>();
  private static readonly CACHE_MAX = 50_000;
  /** Off-thread by default; tests of the decision logic may run inline. */
  constructor(
    private readonly deps: DriftDeps,
    private readonly opts: { inline?: boolean; permutations?: number; logSlice?: number } = {},
  ) {}

  private async embedCached(texts: string[]): Promise<Float32Array[]> {
    const version = this.deps.servingVersion();
    const key = (v: string, t: string) => `${v}\u0000${t}`;
    let missing = [...new Set(texts.filter((t) => !this.cache.has(key(version, t))))];
    // Emptied when full rather than LRU-trimmed: every text of this run must still be there when read back
    // below, and the two windows of one run are at most 2 × DRIFT_WINDOW texts.
    if (this.cache.size + missing.length > DriftMonitor.CACHE_MAX) {
      this.cache.clear();
      missing = [...new Set(texts)];
    }
    if (missing.length > 0) {
      const out = await this.deps.embed(missing);
      if (out.model !== version) return (await this.deps.embed(texts)).vectors; // a swap happened meanwhile
      missing.forEach((t, i) => this.cache.set(key(version, t), out.vectors[i]!));
    }
    return texts.map((t) => this.cache.get(key(version, t))!);
  }

  /**
   * The first (or newest) `limit` logged queries that have text. Vector-only searches carry no text to
   * re-embed, so they are skipped — which can mean reading past the whole log (hundreds of thousands of
   * rows). The store scans it in bounded slices of about LOG_SLICE rows, filtering in SQL, with a turn of
   * the event loop between slices: one read of the whole log once held the main thread (and every search)
   * for 8 s.
   */
  private async textWindow(
    collection: string,
    o: { since: number; limit: number; newestFirst?: boolean; exclude?: Set<string> },
  ): Promise<QueryLogRow[]> {
    const out: QueryLogRow[] = [];
    const scanRows = this.opts.logSlice ?? LOG_SLICE;
    let from: number | undefined = o.newestFirst ? Number.MAX_SAFE_INTEGER : o.since;
    while (from !== undefined) {
      const slice = await this.deps.store.queryLogTextSlice(collection, { from, newestFirst: o.newestFirst, floor: o.since, scanRows });
      for (const r of slice.rows) {
        if (r.query === null || r.query.trim() === '' || o.exclude?.has(r.id)) continue;
        out.push(r);
        if (out.length >= o.limit) return out;
      }
      from = slice.next;
      if (from !== undefined) await yieldToEventLoop();
    }
    return out;
  }

  async check(collection: string, opts: DriftCheckOptions = {}): Promise<DriftCheck> {
    const { store, config, metrics, log } = this.deps;
    const pointer = await store.getServing();
    const champion = pointer ? await store.getModelVersion(pointer.modelVersion) : undefined;
    const modelVersion = champion?.version ?? 'unknown';
    const since = opts.referenceSince ?? champion?.promotedAt ?? champion?.createdAt ?? 0;
    const W = config.DRIFT_WINDOW;
    const ref = await this.textWindow(collection, { since, limit: W });
    const refIds = new Set(ref.map((r) => r.id));
    const refEnd = ref.length ? ref[ref.length - 1]!.createdAt : since;
    const cur = (await this.textWindow(collection, { since: refEnd, limit: W, newestFirst: true, exclude: refIds })).reverse();

    const m: DriftMetrics = {
      status: 'ok',
      modelVersion,
      reference: {
        ...windowInfo(ref),
        since: new Date(since).toISOString(),
        basis: opts.referenceSince !== undefined ? 'baseline' : 'champion_promoted',
      },
      current: windowInfo(cur),
      centroidDistance: null,
      domainAuc: null,
      mmd: null,
      top1Score: null,
      top1Gap: null,
      volumeRatio: null,
      thresholds: {
        auc: config.DRIFT_AUC_THRESHOLD,
        centroid: config.DRIFT_CENTROID_THRESHOLD,
        mmdPValue: config.DRIFT_MMD_PVALUE,
        minQueries: config.DRIFT_MIN_QUERIES,
        window: W,
      },
      reasons: [],
      cooldown: false,
      autoRetrain: config.AUTO_RETRAIN,
    };
    let drifted = false;
    if (ref.length < config.DRIFT_MIN_QUERIES || cur.length < config.DRIFT_MIN_QUERIES) {
      m.status = 'insufficient_data';
      m.reasons.push(`need ${config.DRIFT_MIN_QUERIES} queries in each window (reference ${ref.length}, current ${cur.length})`);
    } else {
      const vectors = await this.embedCached([...ref, ...cur].map((r) => r.query!));
      const input: EmbeddingDriftInput = {
        ref: vectors.slice(0, ref.length),
        cur: vectors.slice(ref.length),
        permutations: this.opts.permutations ?? 200,
        seed: 17,
        mmdMaxPerWindow: 400,
      };
      const e = this.opts.inline ? computeEmbeddingDrift(input) : await embeddingDriftOffThread(input);
      m.centroidDistance = e.centroidDistance;
      m.domainAuc = e.domainAuc;
      m.mmd = e.mmd;
      const rs = scoreSeries(ref, modelVersion);
      const cs = scoreSeries(cur, modelVersion);
      m.top1Score = ksBlock(rs.top1, cs.top1);
      m.top1Gap = ksBlock(rs.gap, cs.gap);
      m.volumeRatio = m.reference.perMinute > 0 ? m.current.perMinute / m.reference.perMinute : null;

      const significant = e.mmd.pValue < config.DRIFT_MMD_PVALUE;
      const aucHit = e.domainAuc >= config.DRIFT_AUC_THRESHOLD;
      const centroidHit = e.centroidDistance >= config.DRIFT_CENTROID_THRESHOLD;
      if (aucHit) m.reasons.push(`domain-classifier AUC ${e.domainAuc.toFixed(3)} ≥ ${config.DRIFT_AUC_THRESHOLD}`);
      if (centroidHit) m.reasons.push(`centroid cosine distance ${e.centroidDistance.toFixed(4)} ≥ ${config.DRIFT_CENTROID_THRESHOLD}`);
      if (significant) m.reasons.push(`MMD permutation p ${e.mmd.pValue.toFixed(4)} < ${config.DRIFT_MMD_PVALUE}`);
      drifted = significant && (aucHit || centroidHit);
    }

    let jobId: string | null = null;
    if (drifted) {
      metrics.driftDetected.inc({ collection });
      // No retrain storms: the cooldown runs from the end of this collection's last job (the job history, not
      // the drift reports). After a swap the reference window restarts at the promotion, and no current window
      // exists before it is full (the windows never overlap).
      const cutoff = Date.now() - config.DRIFT_COOLDOWN_SECONDS * 1000;
      const jobs = await store.listJobs({ collection, limit: 20 });
      const busy = jobs.find((j) => !['done', 'rejected', 'failed'].includes(j.state));
      const recentJob = jobs.find((j) => j.updatedAt >= cutoff);
      if (busy) m.reasons.push(`job ${busy.id} is ${busy.state}`);
      else if (recentJob)
        m.reasons.push(
          `cooldown: job ${recentJob.id} ended ${new Date(recentJob.updatedAt).toISOString()} (DRIFT_COOLDOWN_SECONDS ${config.DRIFT_COOLDOWN_SECONDS})`,
        );
      m.cooldown = busy !== undefined || recentJob !== undefined;
      if (!m.cooldown && config.AUTO_RETRAIN && !opts.noTrigger && this.deps.onDrift) {
        jobId = (await this.deps.onDrift(collection, m)) ?? null;
      }
    }
    const report = await store.insertDriftReport({
      collection,
      modelVersion,
      metrics: m as unknown as Record<string, unknown>,
      drifted,
      jobId,
    });
    this.export(collection, m);
    log.info('drift check', {
      collection,
      drifted,
      jobId,
      auc: m.domainAuc,
      centroid: m.centroidDistance,
      mmdP: m.mmd?.pValue,
      status: m.status,
    });
    return { report, metrics: m };
  }

  private export(collection: string, m: DriftMetrics): void {
    const g = this.deps.metrics.driftScore;
    const set = (metric: string, v: number | null | undefined) => {
      if (v !== null && v !== undefined && Number.isFinite(v)) g.set({ collection, metric }, v);
    };
    set('centroid_distance', m.centroidDistance);
    set('domain_auc', m.domainAuc);
    set('mmd2', m.mmd?.mmd2);
    set('mmd_p_value', m.mmd?.pValue);
    set('top1_score_ks', m.top1Score?.statistic);
    set('top1_gap_ks', m.top1Gap?.statistic);
    set('volume_ratio', m.volumeRatio);
    set('current_window_queries', m.current.n);
  }

  /** Checks every collection each DRIFT_INTERVAL_SECONDS (0 = off); a slow run is never overlapped. */
  start(listCollections: () => Promise<string[]>): void {
    const secs = this.deps.config.DRIFT_INTERVAL_SECONDS;
    if (secs <= 0) return;
    this.timer = setInterval(() => {
      if (this.running) return;
      this.running = (async () => {
        for (const name of await listCollections()) {
          await this.check(name).catch((err) => this.deps.log.error('drift check failed', { collection: name, err: String(err) }));
        }
      })()
        .catch((err) => this.deps.log.error('drift scheduler failed', { err: String(err) }))
        .finally(() => {
          this.running = undefined;
        });
    }, secs * 1000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.running;
  }
}
