// The self-tuning loop, mounted on the server through startServer's `extend` hook: drift monitor →
// retrain job (mining, trainer, gate) → shadow re-embed → cut-over, plus its HTTP routes.
import type { Hono } from 'hono';
import type { Config } from './config.js';
import { computeIrMetrics } from './eval/metrics.js';
import { decideGate } from './eval/gate.js';
import type { AppEnv } from './http/app.js';
import { loopRoutes } from './http/routes/loop.js';
import { DriftMonitor } from './monitor/drift.js';
import type { Engine } from './serving/engine.js';
import { AppError } from './errors.js';
import { Swapper } from './swap/swap.js';
import { trainerFromConfig, type TrainerBackend } from './train/backends.js';
import { JobRunner, type GateFn, type IrMetricsFn } from './train/jobs.js';
import { LlmMiner } from './train/llm.js';
import type { MiningOptions } from './train/mining.js';

export interface Loop {
  monitor: DriftMonitor;
  jobs: JobRunner;
  swapper: Swapper;
}

export interface LoopOptions {
  /** Overrides the backend chosen by TRAINER_BACKEND (tests). */
  trainer?: TrainerBackend;
  /** Receives the loop's parts once built (tests and scripts drive them directly). */
  onReady?: (loop: Loop) => void;
  evalMaxChunks?: number;
  mining?: Partial<Omit<MiningOptions, 'llm'>>;
}

const irMetrics: IrMetricsFn = (relevant, rankings) => flatten(computeIrMetrics(relevant, rankings));
// Spread into a plain record: the stored decision is JSON, whatever fields src/eval adds later.
const gate: GateFn = (candidate, champion, opts) => ({ ...decideGate(candidate, champion, opts) });

/** Nested metric objects ({ recall: { 1: x } }) become flat keys ("recall@1") for storage and the gate. */
function flatten(m: unknown, prefix = ''): Record<string, number> {
  const out: Record<string, number> = {};
  if (typeof m === 'number') out[prefix || 'value'] = m;
  else if (m !== null && typeof m === 'object') {
    for (const [k, v] of Object.entries(m)) Object.assign(out, flatten(v, prefix ? `${prefix}@${k}` : k));
  }
  return out;
}

function createLoop(ctx: { engine: Engine; config: Config }, opts: LoopOptions = {}) {
  const { engine, config } = ctx;
  const swapper = new Swapper(engine, config);
  const llm = config.LLM_BASE_URL && config.LLM_MODEL
    ? () => new LlmMiner({
      baseURL: config.LLM_BASE_URL!, model: config.LLM_MODEL!, apiKey: config.LLM_API_KEY, concurrency: config.LLM_CONCURRENCY,
    }, engine.log)
    : undefined;
  const jobs = new JobRunner({
    engine, store: engine.store, config, swapper, irMetrics, gate, llm,
    trainer: opts.trainer ?? trainerFromConfig(config),
    evalMaxChunks: opts.evalMaxChunks,
    mining: opts.mining,
  });
  const monitor = new DriftMonitor({
    store: engine.store, config, metrics: engine.metrics, log: engine.log,
    // The serving model, in the 'bulk' lane: re-embedding a window must not delay live searches.
    embed: async (texts) => {
      const pair = engine.serving;
      return { vectors: await pair.embedder.embed(texts, { priority: 'bulk', kind: 'query' }), model: pair.version };
    },
    servingVersion: () => engine.serving.version,
    async onDrift(collection) {
      try {
        return (await jobs.create(collection, 'drift')).id;
      } catch (err) {
        // One job per collection: a drift that fires while a job runs is already being handled.
        if (err instanceof AppError && (err.code === 'job_running' || err.code === 'collection_empty' || err.code === 'not_enough_feedback')) {
          engine.log.info('drift detected; no job created', { collection, reason: err.message });
          return undefined;
        }
        throw err;
      }
    },
  });
  return { monitor, jobs, swapper };
}

/** startServer's `extend` hook (src/main.ts). */
export async function withLoop(ctx: { engine: Engine; config: Config }, opts: LoopOptions = {}): Promise<{ extraRoutes: ((app: Hono<AppEnv>) => void)[]; close: () => Promise<void> }> {
  const loop = createLoop(ctx, opts);
  const rec = await loop.jobs.recover();
  if (rec.resumed.length + rec.failed.length + rec.completed.length > 0) ctx.engine.log.warn('retrain jobs recovered after restart', rec);
  if (rec.runningElsewhere.length > 0) ctx.engine.log.info('retrain jobs running on other replicas', { jobs: rec.runningElsewhere });
  if (ctx.engine.store.dialect === 'postgres') loop.jobs.startOrphanSweep();
  loop.monitor.start(async () => (await ctx.engine.store.listCollections()).map((c) => c.name));
  opts.onReady?.(loop);
  return {
    extraRoutes: [loopRoutes({ engine: ctx.engine, store: ctx.engine.store, ...loop })],
    close: async () => {
      await loop.monitor.stop();
      await loop.jobs.stop();
    },
  };
}
