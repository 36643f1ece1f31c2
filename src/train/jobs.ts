import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../config.js';
import type { Embedder } from '../embed/types.js';
import { trainableModelDir } from '../embed/hub.js';
import { AppError } from '../errors.js';
import type { IndexBackend } from '../index/types.js';
import type { Metrics } from '../metrics.js';
import type { RemoteArtifacts } from '../objects/remote.js';
import type { StrategyBook } from '../search/tuner.js';
import type { CollectionCatalog } from '../serving/catalog.js';
import type { Engine } from '../serving/engine.js';
import { decodeSource, encodeSource, modelsDir } from '../serving/models.js';
import type {
  CollectionStore,
  DocumentStore,
  IndexRecordStore,
  JobClaim,
  JobState,
  JobStore,
  Metadata,
  ModelStore,
  QueryLogStore,
  TrainJobRow,
} from '../store/types.js';
import { TERMINAL_JOB_STATES } from '../store/types.js';
import type { Logger } from '../util/log.js';
import { loadModel, specForDir } from '../swap/models.js';
import type { Swapper } from '../swap/swap.js';
import { TrainerError, missingArtifactFiles, type TrainerBackend } from './backends.js';
import { writeBundle, type JobSpec } from './bundle.js';
import { evalCorpus, rankWith, relevantMap, type Ranking } from './evaluate.js';
import type { LlmMiner } from './llm.js';
import { HELD_OUT, feedbackByQuery, heldOutSize, minePairs, type EvalQuery, type MiningOptions } from './mining.js';
import { detectGroupField } from './groups.js';
import { Bm25Index } from '../eval/bm25.js';
import { bestPerDocument, type Scored } from '../search/fusion.js';
import {
  candidateOptions,
  chooseStrategy,
  evaluateStrategies,
  gateStrategies,
  scoreOf,
  type QueryRankings,
  type ServedMode,
  type Strategy,
  type StrategyEvaluation,
} from '../search/strategy.js';

/** Scores one model's rankings against the held-out relevance judgements (src/eval). */
export type IrMetricsFn = (relevant: Map<string, Set<string>>, rankings: Map<string, Ranking>) => Record<string, number>;

interface GateDecision {
  passed: boolean;
  [k: string]: unknown;
}

/** Candidate vs champion on the same held-out queries (src/eval). */
export type GateFn = (
  candidate: Record<string, number>,
  champion: Record<string, number>,
  opts: { margin: number; tolerance: number },
) => GateDecision;

export interface JobRunnerDeps {
  /** The serving pair (the parent a job trains from and the gate's champion) and model sources to resolve. */
  engine: Pick<Engine, 'serving' | 'resolveModelSource'>;
  catalog: CollectionCatalog;
  /** The gate saves both models' strategies for the collection. */
  strategies: Pick<StrategyBook, 'save'>;
  /** A failed job's candidate indexes are dropped. */
  indexes: Pick<IndexBackend, 'drop'>;
  /** Where a gated candidate is published for the other replicas; absent = DATA_DIR only. */
  remote?: RemoteArtifacts;
  metrics: Metrics;
  log: Logger;
  /** Jobs and eval reports, the models they produce, and the documents and feedback they train on. */
  store: JobStore & ModelStore & IndexRecordStore & CollectionStore & DocumentStore & QueryLogStore;
  config: Config;
  trainer: TrainerBackend;
  swapper: Swapper;
  irMetrics: IrMetricsFn;
  gate: GateFn;
  /** A fresh LLM miner per job (usage counters are per job), or undefined when no LLM is configured. */
  llm?: () => LlmMiner | undefined;
  mining?: Partial<Omit<MiningOptions, 'llm'>>;
  /** Corpus cap for the gate's exact search (see evalCorpus). */
  evalMaxChunks?: number;
}

/** A job failure whose message is safe and useful to show in /jobs. */
class JobFailure extends Error {}

const NON_TERMINAL: JobState[] = ['queued', 'mining', 'training', 'evaluating', 'reembedding', 'swapping'];
// How often replicas on Postgres look for jobs whose replica died (see JobRunner.startOrphanSweep).
const ORPHAN_SWEEP_MS = 60_000;

function slug(s: string): string {
  return s.replace(/[^A-Za-z0-9._-]+/g, '-').slice(0, 40);
}

function stamp(t: number): string {
  return new Date(t).toISOString().replace(/[-:T]/g, '').slice(0, 14);
}

/**
 * Retrain jobs: queued → mining → training → evaluating → reembedding → swapping → done | rejected |
 * failed. Every transition (with progress and per-state timings) is written to the store before the work
 * of the next state starts, so after a crash the row says exactly where the job stopped.
 */
export class JobRunner {
  private readonly active = new Map<string, Promise<void>>();
  private readonly abort = new AbortController();

  constructor(private readonly deps: JobRunnerDeps) {}

  private get store() {
    return this.deps.store;
  }
  private get metrics() {
    return this.deps.metrics;
  }
  private get log() {
    return this.deps.log;
  }

  jobDir(id: string): string {
    return join(this.deps.config.DATA_DIR, 'jobs', id);
  }
  private stagingDir(version: string): string {
    return join(modelsDir(this.deps.config), '.staging', version);
  }

  /** Creates a job (409 job_running / collection_empty) and starts it in the background. */
  async create(collection: string, trigger: string): Promise<TrainJobRow> {
    const c = await this.deps.catalog.require(collection);
    if ((await this.store.countDocuments(c.id)) === 0)
      throw new AppError('collection_empty', `collection "${collection}" has no documents to train on`);
    if (trigger === 'drift') {
      // A drift job is only created when its gate will have real held-out queries to score on.
      const held = heldOutSize((await feedbackByQuery(this.store, collection)).size);
      const need = this.deps.mining?.minEvalQueries ?? HELD_OUT.minEvalQueries;
      if (held < need)
        throw new AppError(
          'not_enough_feedback',
          `only ${held} held-out queries with feedback in "${collection}"; a drift job needs ${need}`,
        );
    }
    const parent = this.deps.engine.serving.version;
    const now = Date.now();
    const job = await this.store.insertJob({
      id: randomUUID(),
      collection,
      trigger,
      state: 'queued',
      progress: {},
      timings: {},
      parentVersion: parent,
      candidateVersion: null,
      error: null,
    });
    this.metrics.trainJobs.inc({ state: 'queued' });
    this.log.info('retrain job created', { job: job.id, collection, trigger, parent, at: now });
    const claim = await this.store.claimJob(job.id);
    // Not claimable: another replica's sweep picked the queued job up in the meantime and runs it.
    if (claim) this.launch(job, claim);
    return job;
  }

  private launch(job: TrainJobRow, claim: JobClaim): void {
    const p = this.run(job)
      .finally(() => claim.release().catch((err: unknown) => this.log.warn('job claim not released', { job: job.id, err: String(err) })))
      .finally(() => this.active.delete(job.id));
    this.active.set(job.id, p);
  }

  /** Waits for a job's background run (tests, shutdown). */
  async wait(id: string): Promise<TrainJobRow | undefined> {
    await this.active.get(id);
    return this.store.getJob(id);
  }

  /**
   * On startup: a queued job is started again (nothing was done yet); a job caught mid-way is failed with
   * the reason — unless the store shows its candidate already became champion, the cut-over's commit point.
   * Only jobs no live process holds (claimJob) are touched: on Postgres another replica may be running them.
   */
  async recover(): Promise<{ resumed: string[]; failed: string[]; completed: string[]; runningElsewhere: string[] }> {
    // Staging dirs are under this process's own DATA_DIR (never shared between replicas).
    rmSync(join(modelsDir(this.deps.config), '.staging'), { recursive: true, force: true });
    return this.adoptOrphans();
  }

  /**
   * Replicas sharing Postgres: a job whose replica died (its claim went with its connection) would block
   * its collection forever (409 job_running); survivors adopt it every ORPHAN_SWEEP_MS.
   */
  startOrphanSweep(everyMs = ORPHAN_SWEEP_MS): void {
    if (this.sweep) return;
    this.sweep = setInterval(() => {
      void this.adoptOrphans()
        .then((r) => {
          if (r.resumed.length + r.failed.length + r.completed.length > 0) this.log.warn('orphaned retrain jobs adopted', r);
        })
        .catch((err: unknown) => this.log.warn('orphan sweep failed', { err: String(err) }));
    }, everyMs);
    this.sweep.unref();
  }

  private sweep: NodeJS.Timeout | undefined;

  private async adoptOrphans(): Promise<{ resumed: string[]; failed: string[]; completed: string[]; runningElsewhere: string[] }> {
    const out = { resumed: [] as string[], failed: [] as string[], completed: [] as string[], runningElsewhere: [] as string[] };
    const pointer = await this.store.getServing();
    for (const job of await this.store.listJobs({ states: NON_TERMINAL, limit: 1000 })) {
      if (this.active.has(job.id)) continue;
      const claim = await this.store.claimJob(job.id);
      if (!claim) {
        out.runningElsewhere.push(job.id);
        continue;
      }
      // Claimed: re-read, the job may have ended between the listing and the claim.
      const fresh = await this.store.getJob(job.id);
      if (!fresh || !NON_TERMINAL.includes(fresh.state)) {
        await claim.release();
        continue;
      }
      if (fresh.state === 'queued') {
        out.resumed.push(job.id);
        this.launch(fresh, claim);
        continue;
      }
      try {
        await this.settleInterrupted(fresh, pointer?.modelVersion, out);
      } finally {
        await claim.release();
      }
    }
    return out;
  }

  /** A job whose process is gone: done if its cut-over had committed, otherwise failed with the reason. */
  private async settleInterrupted(
    job: TrainJobRow,
    champion: string | undefined,
    out: { failed: string[]; completed: string[] },
  ): Promise<void> {
    if (job.candidateVersion && champion === job.candidateVersion) {
      await this.store.updateJob(job.id, {
        state: 'done',
        progress: { ...job.progress, recovered: 'the cut-over had committed before the restart' },
      });
      this.metrics.trainJobs.inc({ state: 'done' });
      out.completed.push(job.id);
      return;
    }
    await this.store.updateJob(job.id, {
      state: 'failed',
      error: `interrupted by a server restart while ${job.state}; the champion ${champion ?? job.parentVersion} kept serving`,
    });
    this.metrics.trainJobs.inc({ state: 'failed' });
    if (job.candidateVersion) await this.discardCandidateIndexes(job.candidateVersion);
    out.failed.push(job.id);
  }

  private async discardCandidateIndexes(version: string): Promise<void> {
    const pointer = await this.store.getServing();
    if (pointer?.modelVersion === version) return;
    for (const rec of await this.store.listIndexRecords({ modelVersion: version })) {
      await this.deps.indexes.drop({ collectionId: rec.collectionId, modelVersion: version }).catch(() => undefined);
      await this.store.deleteIndexRecord(rec.collectionId, version);
      if (rec.path) rmSync(rec.path, { force: true });
    }
  }

  async stop(): Promise<void> {
    if (this.sweep) clearInterval(this.sweep);
    this.abort.abort();
    await Promise.allSettled([...this.active.values()]);
  }

  // ------------------------------------------------------------------------------------------------
  private async run(initial: TrainJobRow): Promise<void> {
    const { engine, config } = this.deps;
    let job = initial;
    let state: JobState = job.state;
    let entered = performance.now();
    const timings: Record<string, number> = { ...job.timings };
    let progress: Metadata = { ...job.progress };
    let lastWrite = 0;
    const t0 = performance.now();

    const persist = async (patch: Partial<Pick<TrainJobRow, 'state' | 'candidateVersion' | 'error'>> = {}) => {
      job = await this.store.updateJob(job.id, { ...patch, progress, timings });
      lastWrite = performance.now();
    };
    const to = async (next: JobState, extra: Partial<Pick<TrainJobRow, 'candidateVersion' | 'error'>> = {}) => {
      const secs = (performance.now() - entered) / 1000;
      timings[state] = Math.round(((timings[state] ?? 0) + secs) * 1000) / 1000;
      this.metrics.trainJobDuration.observe({ state }, secs);
      state = next;
      entered = performance.now();
      if (TERMINAL_JOB_STATES.includes(next)) timings.total = Math.round(((performance.now() - t0) / 1000) * 1000) / 1000;
      progress = { ...progress, state: next };
      await persist({ state: next, ...extra });
      this.metrics.trainJobs.inc({ state: next });
      this.log.info('retrain job state', { job: job.id, state: next });
    };
    /** Progress inside a state: throttled to one write a second (re-embeds report per batch). */
    const report = async (key: string, value: unknown, force = false) => {
      progress = { ...progress, [key]: value };
      if (force || performance.now() - lastWrite > 1000) await persist();
    };

    let candidate: Embedder | undefined;
    let activated = false;
    try {
      const col = await this.deps.catalog.require(job.collection);
      const version = `ft-${slug(job.collection)}-${stamp(Date.now())}-${job.id.slice(0, 6)}`;
      const parentRow = await this.store.getModelVersion(job.parentVersion);

      // ---- mining
      await to('mining', { candidateVersion: version });
      const mineOpts: MiningOptions = {
        ...HELD_OUT,
        seed: this.deps.config.TRAIN_SEED,
        pseudoQueries: 1000,
        // Without enough feedback (a cold start) a job asked for by hand is gated on held-out pseudo-queries.
        coldStartEval: job.trigger === 'drift' ? 0 : 300,
        ...this.deps.mining,
        llm: this.deps.llm?.(),
      };
      const mined = await minePairs(this.store, col.id, col.name, mineOpts).catch((err: unknown) => {
        throw new JobFailure(`mining: ${err instanceof Error ? err.message : String(err)}`);
      });
      const bundleDir = join(this.jobDir(job.id), 'bundle');
      const parentSource = parentRow ? await engine.resolveModelSource(parentRow.version, decodeSource(parentRow.source)) : undefined;
      // A hub champion trains from its cache snapshot (PyTorch weights fetched once) or, offline, by hub id.
      const parentDir =
        parentSource &&
        (await trainableModelDir(parentSource, { cacheDir: join(config.DATA_DIR, 'models/cache'), dtype: config.EMBED_DTYPE ?? 'fp32' })
          .then((r) => ({ path: r.dir, baseModel: r.baseModel }))
          .catch((err: unknown) => {
            throw new JobFailure(
              `the champion ${job.parentVersion} has no local files the trainer can start from: ${err instanceof Error ? err.message : String(err)}`,
            );
          }));
      if (!parentDir) throw new JobFailure(`the champion ${job.parentVersion} is not registered (no model source)`);
      // Documents of one source (sections of an abstract, pages of a manual) make group pairs: find the field.
      const grouping =
        config.TRAIN_GROUP_BY === 'none'
          ? { field: null, reason: 'TRAIN_GROUP_BY=none' }
          : config.TRAIN_GROUP_BY
            ? { field: config.TRAIN_GROUP_BY, reason: 'TRAIN_GROUP_BY' }
            : await detectGroupField(this.store, col.id);
      const bundle = await writeBundle(bundleDir, {
        store: this.store,
        collectionId: col.id,
        pairs: mined.pairs,
        eval: mined.eval,
        baseModelDir: parentDir.path,
        job: {
          version,
          parent_version: job.parentVersion,
          seed: mineOpts.seed,
          collection: col.name,
          ...trainRecipe(
            config,
            parentDir.path,
            engine.serving.version === job.parentVersion ? engine.serving.embedder.model?.maxTokens : undefined,
          ),
          ...(parentDir.baseModel ? { base_model: parentDir.baseModel } : {}),
        },
        groupBy: grouping.field ?? undefined,
        embedChunks: config.TRAIN_EMBED_CORPUS,
      });
      await report(
        'mining',
        {
          ...mined.stats,
          pairs: bundle.pairs,
          corpus: bundle.corpus,
          corpusGroups: bundle.groups,
          dataHash: bundle.dataHash,
          embedRows: bundle.embedRows,
          bundleSeq: bundle.seq,
          groupBy: {
            field: grouping.field,
            reason: grouping.reason,
            ...('candidates' in grouping ? { candidates: grouping.candidates } : {}),
          },
        },
        true,
      );

      // ---- training (a child process; serving continues untouched)
      await to('training');
      const staging = this.stagingDir(version);
      rmSync(staging, { recursive: true, force: true });
      mkdirSync(join(staging, '..'), { recursive: true });
      const trained = await this.deps.trainer.train({
        bundle: bundleDir,
        out: staging,
        timeoutSeconds: config.TRAINER_TIMEOUT_SECONDS,
        signal: this.abort.signal,
        // One slot per event kind (progress, eval before/after, export, done): the last of each is kept.
        onProgress: (p) => {
          const key = typeof p.event === 'string' ? (typeof p.when === 'string' ? `${p.event}_${p.when}` : p.event) : 'progress';
          void report('training', { ...(progress.training as Metadata | undefined), [key]: p, lastEvent: key }).catch(() => undefined);
        },
      });
      const missing = missingArtifactFiles(staging);
      if (missing.length > 0) throw new JobFailure(`trainer exited 0 but its artifact lacks ${missing.join(', ')}`);
      const trainReport = readJson(join(staging, 'train_report.json'));
      const card: Metadata = {
        ...readJson(join(staging, 'model_card.json')),
        version,
        parent_version: job.parentVersion,
        training_data_hash: bundle.dataHash,
        job_id: job.id,
        trainer_backend: this.deps.trainer.name,
      };
      writeFileSync(join(staging, 'model_card.json'), JSON.stringify(card, null, 2));
      const finalDir = join(modelsDir(config), version);
      rmSync(finalDir, { recursive: true, force: true });
      // Only a complete artifact ever appears under its version name.
      renameSync(staging, finalDir);
      await report(
        'training',
        { ...(progress.training as Metadata | undefined), wallSeconds: trained.wallSeconds, report: summarizeTrainReport(trainReport) },
        true,
      );

      // ---- evaluating + gate
      await to('evaluating');
      const spec = specForDir(version, finalDir, config);
      candidate = await loadModel(spec, config, this.metrics).catch((err: unknown) => {
        throw new JobFailure(`candidate model cannot be loaded: ${err instanceof Error ? err.message : String(err)}`);
      });
      const champion = engine.serving;
      const queries = readEval(join(bundleDir, 'eval.jsonl'));
      const corpus = await evalCorpus(this.store, col.id, queries, this.deps.evalMaxChunks ?? 20_000, mineOpts.seed);
      const rel = relevantMap(queries);
      const candRank = await rankWith(candidate, corpus.chunks, queries);
      const champRank = await rankWith(champion.embedder, corpus.chunks, queries);
      const candMetrics = this.deps.irMetrics(rel, candRank);
      const champMetrics = this.deps.irMetrics(rel, champRank);
      // The gate compares strategies: the best the server could serve with the candidate (vector, fitted hybrid,
      // or keyword) against the best without it, on the same held-out queries.
      const sparse = keywordRankings(corpus.chunks, queries);
      const candQR = asQueryRankings(queries, candRank, sparse);
      const candEv = evaluateStrategies(candQR);
      const champEv = evaluateStrategies(asQueryRankings(queries, champRank, sparse));
      const champChoice = chooseStrategy(champEv, { margin: 0 });
      const sg = gateStrategies(
        candidateOptions(candQR),
        candEv,
        champEv,
        (c, h) => this.deps.gate(c, h, { margin: config.GATE_MARGIN, tolerance: config.GATE_TOLERANCE }),
        { weakEvidence: mined.stats.evalSource !== 'feedback', coldMargin: config.STRATEGY_COLD_MARGIN, tolerance: config.GATE_TOLERANCE },
      );
      const candChoice = sg.pick;
      const decision = { ...sg.decision, passed: sg.passed, rule: sg.rule, strategy: sg.pick };
      const strategies = {
        candidate: { chosen: candChoice, ...strategyTable(candEv) },
        champion: { chosen: champChoice, ...strategyTable(champEv) },
        keyword: candEv.keyword,
        evidence: mined.stats.evalSource,
      };
      const documents = await this.store.countDocuments(col.id);
      const strategyRow = (
        ev: StrategyEvaluation,
        choice: { mode: ServedMode; weight?: number; reason: string },
        modelVersion: string,
      ): Strategy => ({
        mode: choice.mode,
        ...(choice.weight !== undefined ? { weight: choice.weight } : {}),
        fusionWeight: ev.hybrid.weight,
        modelVersion,
        source: mined.stats.evalSource === 'feedback' ? 'gate' : 'pseudo_queries',
        queries: queries.length,
        heldOut: queries.length,
        documents,
        decidedAt: new Date().toISOString(),
        reason: `${choice.reason}; measured at the gate of job ${job.id}`,
        scores: {
          vector: ev.vector['ndcg@10'] ?? null,
          keyword: ev.keyword['ndcg@10'] ?? null,
          hybrid: ev.hybrid['ndcg@10'] ?? null,
          hybridRrf: ev.hybridRrf['ndcg@10'] ?? null,
        },
      });
      const evalRow = await this.store.insertEvalReport({
        jobId: job.id,
        candidateVersion: version,
        championVersion: champion.version,
        metrics: {
          candidate: candMetrics,
          champion: champMetrics,
          strategies: strategies as unknown as Metadata,
          best: {
            candidate: (sg.decision as { candidate?: Record<string, number> }).candidate?.['ndcg@10'] ?? scoreOf(candEv, candChoice.mode),
            champion: scoreOf(champEv, champChoice.mode),
          },
          queries: queries.length,
          corpusChunks: corpus.chunks.length,
          corpusSampled: corpus.sampled,
          liveChunks: corpus.liveChunks,
        },
        decision: decision as Metadata,
        passed: decision.passed,
      });
      this.metrics.gateDecisions.inc({ decision: decision.passed ? 'pass' : 'reject' });
      const fullCard = {
        ...card,
        ...(candidate.model ? { serving: candidate.model } : {}),
        eval_report: {
          id: evalRow.id,
          candidate: candMetrics,
          champion: champMetrics,
          strategies,
          champion_version: champion.version,
          passed: decision.passed,
        },
      };
      writeFileSync(join(finalDir, 'model_card.json'), JSON.stringify(fullCard, null, 2));
      await this.store.upsertModelVersion({
        version,
        parentVersion: job.parentVersion,
        source: encodeSource({ kind: 'dir', path: finalDir }),
        dim: candidate.dim,
        status: decision.passed ? 'candidate' : 'rejected',
        card: fullCard,
      });
      // Every gate re-decides the champion's strategy on the held-out queries; the candidate's is kept for the swap.
      if (mined.stats.evalSource === 'feedback') await this.deps.strategies.save(col, strategyRow(champEv, champChoice, champion.version));
      await this.deps.strategies.save(col, strategyRow(candEv, candChoice, version));
      await report('gate', { evalReportId: evalRow.id, ...decision, strategies: { candidate: candChoice, champion: champChoice } }, true);
      if (!decision.passed) {
        await candidate.close();
        candidate = undefined;
        await to('rejected');
        return;
      }

      // Replicas that follow the new champion load it from the object store: upload while re-embedding,
      // and never cut over before the upload is complete.
      const { remote } = this.deps;
      const published = remote?.publishModel(version, finalDir);
      published?.catch(() => undefined);

      // ---- shadow re-embed
      await to('reembedding');
      const reembedStart = performance.now();
      const embeddings = bundle.embedRows > 0 ? { dir: join(finalDir, 'embeddings'), collectionId: col.id, seq: bundle.seq } : undefined;
      const build = await this.deps.swapper.shadowBuild(
        version,
        candidate,
        (collection, done, total, overall) => {
          void report('reembed', {
            collection,
            done,
            total,
            overallDone: overall.done,
            overallTotal: overall.total,
            ratio: overall.total ? overall.done / overall.total : 1,
          }).catch(() => undefined);
        },
        embeddings,
      );
      const how = build.reembed ?? {
        source: 'cpu',
        seconds: {},
        fallbackReason: config.TRAIN_EMBED_CORPUS ? 'the bundle held no chunks' : 'TRAIN_EMBED_CORPUS=false',
      };
      await report(
        'reembed',
        {
          ...(progress.reembed as Metadata),
          ratio: 1,
          ...how,
          seconds: { ...how.seconds, total: Math.round(performance.now() - reembedStart) / 1000 },
        },
        true,
      );

      if (remote && published) {
        const up = await published.catch((err: unknown) => {
          throw new JobFailure(`publishing the model to ${remote.location}: ${err instanceof Error ? err.message : String(err)}`);
        });
        await report('publish', { location: remote.location, ...up }, true);
      }

      // ---- cut-over
      await to('swapping');
      const swap = await this.deps.swapper.cutOver(build);
      activated = true;
      await report('swap', swap, true);
      await to('done');
    } catch (err) {
      const tail = err instanceof TrainerError ? err.stderrTail : [];
      const msg =
        err instanceof JobFailure || err instanceof TrainerError
          ? err.message
          : `${state}: ${err instanceof Error ? err.message : String(err)}`;
      if (!(err instanceof JobFailure) && !(err instanceof TrainerError))
        this.log.error('retrain job failed', { job: job.id, err: err instanceof Error ? err.stack : String(err) });
      if (candidate && !activated) await candidate.close().catch(() => undefined);
      if (job.candidateVersion && !activated) await this.discardCandidateIndexes(job.candidateVersion).catch(() => undefined);
      if (job.candidateVersion) rmSync(this.stagingDir(job.candidateVersion), { recursive: true, force: true });
      progress = { ...progress, ...(tail.length ? { stderrTail: tail } : {}) };
      await to('failed', { error: tail.length ? `${msg}\n${tail.join('\n')}` : msg }).catch((e) =>
        this.log.error('could not persist job failure', { job: job.id, err: String(e) }),
      );
    }
  }
}

function readJson(path: string): Metadata {
  if (!existsSync(path)) return {};
  try {
    const v: unknown = JSON.parse(readFileSync(path, 'utf8'));
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Metadata) : {};
  } catch {
    return {};
  }
}

/** The numbers worth showing in /jobs (the full report, loss curve included, stays in the artifact dir). */
/** The model card's max_seq_length (artifacts written by the trainer or pretrain.py), if it has a sane one. */
function cardMaxSeqLength(modelDir: string): number | undefined {
  const file = join(modelDir, 'model_card.json');
  if (!existsSync(file)) return undefined;
  try {
    const v: unknown = (JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>).max_seq_length;
    return typeof v === 'number' && Number.isInteger(v) && v >= 8 && v <= 8192 ? v : undefined;
  } catch {
    return undefined;
  }
}

export function summarizeTrainReport(r: Metadata): Metadata {
  const pick = [
    'device',
    'precision',
    'loss',
    'loss_config',
    'pairs',
    'train_rows',
    'steps',
    'train_seconds',
    'samples_per_second',
    'wall_seconds',
    'eval_before',
    'eval_after',
    'eval_delta',
    'onnx_parity_max_abs_diff',
    'int8_metric_loss',
    'export_seconds',
  ];
  const out: Metadata = Object.fromEntries(Object.entries(r).filter(([k]) => pick.includes(k)));
  // a soup's members: enough to see the spread the average removed, not their full reports
  const soup = r.soup as { members?: Array<Record<string, unknown>>; concurrency?: number } | null | undefined;
  if (soup && Array.isArray(soup.members)) {
    out.soup = {
      concurrency: soup.concurrency ?? null,
      members: soup.members.map((m) => {
        const ev = (m.eval_after ?? {}) as Record<string, unknown>;
        return {
          seed: m.seed,
          train_seconds: m.train_seconds,
          'ndcg@10': ev['ndcg@10'],
          'recall@10': ev['recall@10'],
          'mrr@10': ev['mrr@10'],
        };
      }),
    };
  }
  return out;
}

function readEval(path: string): EvalQuery[] {
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => {
      const o = JSON.parse(l) as { query: string; relevant: string[] };
      return { query: o.query, relevant: o.relevant };
    });
}

/** Learning rates the recipe sweep tries by default: the winners on GO (3e-4) and PubMedQA (8e-4), trainer/RESULTS.md. */
export const SWEEP_LRS = [3e-4, 8e-4];

/**
 * The fine-tuning recipe of a job.json, from the TRAIN_* settings. By default the trainer sweeps learning
 * rate × epochs (epochs from the training-set size) and picks on a validation split of the mined pairs;
 * TRAIN_LR / TRAIN_EPOCHS pin one axis, TRAIN_SWEEP=false pins both.
 */
export function trainRecipe(
  config: Config,
  parentDir?: string,
  servedMaxTokens?: number,
): Omit<JobSpec, 'version' | 'parent_version' | 'seed' | 'collection'> {
  // The champion's token limit: its card's, else what it serves with (a sentence-transformers model's own).
  const maxSeq = config.TRAIN_MAX_SEQ_LENGTH ?? (parentDir ? cardMaxSeqLength(parentDir) : undefined) ?? servedMaxTokens;
  const sweep =
    config.TRAIN_SWEEP && (config.TRAIN_LR === undefined || config.TRAIN_EPOCHS === undefined)
      ? {
          sweep: {
            lr: config.TRAIN_LR !== undefined ? [config.TRAIN_LR] : SWEEP_LRS,
            epochs: config.TRAIN_EPOCHS !== undefined ? [config.TRAIN_EPOCHS] : ('auto' as const),
            select: 'greedy_soup' as const,
          },
        }
      : {};
  return {
    ...(maxSeq !== undefined ? { max_seq_length: maxSeq } : {}),
    loss: config.TRAIN_BATCH_SIZE > 256 ? 'cached_mnrl' : 'mnrl',
    batch_size: config.TRAIN_BATCH_SIZE,
    engine: config.TRAIN_ENGINE,
    epochs: config.TRAIN_EPOCHS ?? 1,
    lr: config.TRAIN_LR ?? SWEEP_LRS[0]!,
    ...sweep,
    corpus_pairs: { group: config.TRAIN_GROUP_PAIRS, ict: config.TRAIN_ICT_PAIRS },
    ...(config.TRAIN_SOUP > 1 ? { soup: config.TRAIN_SOUP } : {}),
    ...(config.TRAIN_HARDNESS > 0 ? { hardness: { mode: 'in_batch_negatives' as const, strength: config.TRAIN_HARDNESS } } : {}),
  };
}

/** BM25 over the gate's corpus (chunks), collapsed to each document's best chunk, per eval query. */
function keywordRankings(chunks: { docId: string; text: string }[], queries: EvalQuery[], depth = 100): Map<string, Ranking> {
  const bm = new Bm25Index(chunks.map((c, i) => ({ id: String(i), text: c.text })));
  const out = new Map<string, Ranking>();
  queries.forEach((q, qi) => {
    const docs = bestPerDocument(
      bm.search(q.query, depth * 3).map((h) => ({ key: Number(h.id), score: h.score })),
      (i) => chunks[i]?.docId,
      depth,
    );
    out.set(
      String(qi),
      docs.map((d) => ({ id: d.key, score: d.score })),
    );
  });
  return out;
}

function asQueryRankings(queries: EvalQuery[], dense: Map<string, Ranking>, sparse: Map<string, Ranking>): QueryRankings[] {
  const conv = (r: Ranking | undefined): Scored<string>[] => (r ?? []).map((h) => ({ key: h.id, score: h.score }));
  return queries.map((q, i) => ({ relevant: new Set(q.relevant), dense: conv(dense.get(String(i))), sparse: conv(sparse.get(String(i))) }));
}

/** NDCG@10 / R@10 / MRR@10 of each strategy: the table GET /models shows. */
function strategyTable(ev: StrategyEvaluation): Metadata {
  const pick = (m: Record<string, number>) => ({
    'ndcg@10': m['ndcg@10'] ?? null,
    'recall@1': m['recall@1'] ?? null,
    'recall@10': m['recall@10'] ?? null,
    'mrr@10': m['mrr@10'] ?? null,
  });
  return {
    vector: pick(ev.vector),
    hybrid: { ...pick(ev.hybrid), weight: ev.hybrid.weight },
    hybridRrf: pick(ev.hybridRrf),
    keyword: pick(ev.keyword),
  };
}
