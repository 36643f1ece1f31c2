// The self-tuning loop's glue: drift monitor → retrain job (mining, trainer, gate) → shadow re-embed →
// cut-over. The parts are constructed and wired in src/server.ts (`startServer({ loop })`); this module holds
// what they are wired with: the eval adapters, the drift → job policy and the start-up sequence.
import { computeIrMetrics } from './eval/metrics.js';
import { decideGate } from './eval/gate.js';
import { AppError } from './errors.js';
import type { DriftMonitor } from './monitor/drift.js';
import type { Store } from './store/types.js';
import type { Swapper } from './swap/swap.js';
import type { TrainerBackend } from './train/backends.js';
import type { GateFn, IrMetricsFn, JobRunner } from './train/jobs.js';
import type { MiningOptions } from './train/mining.js';
import type { Logger } from './util/log.js';

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

export const irMetrics: IrMetricsFn = (relevant, rankings) => flatten(computeIrMetrics(relevant, rankings));
// Spread into a plain record: the stored decision is JSON, whatever fields src/eval adds later.
export const gate: GateFn = (candidate, champion, opts) => ({ ...decideGate(candidate, champion, opts) });

/** Nested metric objects ({ recall: { 1: x } }) become flat keys ("recall@1") for storage and the gate. */
function flatten(m: unknown, prefix = ''): Record<string, number> {
  const out: Record<string, number> = {};
  if (typeof m === 'number') out[prefix || 'value'] = m;
  else if (m !== null && typeof m === 'object') {
    for (const [k, v] of Object.entries(m)) Object.assign(out, flatten(v, prefix ? `${prefix}@${k}` : k));
  }
  return out;
}

/** The monitor's `onDrift`: a drift job, unless one runs already or the collection cannot be trained yet. */
export function retrainOnDrift(jobs: JobRunner, log: Logger): (collection: string) => Promise<string | undefined> {
  return async (collection) => {
    try {
      return (await jobs.create(collection, 'drift')).id;
    } catch (err) {
      // One job per collection: a drift that fires while a job runs is already being handled.
      if (
        err instanceof AppError &&
        (err.code === 'job_running' || err.code === 'collection_empty' || err.code === 'not_enough_feedback')
      ) {
        log.info('drift detected; no job created', { collection, reason: err.message });
        return undefined;
      }
      throw err;
    }
  };
}

/** Resumes or fails jobs a restart interrupted, adopts orphans of dead replicas (Postgres), starts the monitor. */
export async function startLoop(loop: Loop, store: Store, log: Logger): Promise<void> {
  const rec = await loop.jobs.recover();
  if (rec.resumed.length + rec.failed.length + rec.completed.length > 0) log.warn('retrain jobs recovered after restart', rec);
  if (rec.runningElsewhere.length > 0) log.info('retrain jobs running on other replicas', { jobs: rec.runningElsewhere });
  if (store.dialect === 'postgres') loop.jobs.startOrphanSweep();
  loop.monitor.start(async () => (await store.listCollections()).map((c) => c.name));
}

export async function stopLoop(loop: Loop): Promise<void> {
  await loop.monitor.stop();
  await loop.jobs.stop();
}
