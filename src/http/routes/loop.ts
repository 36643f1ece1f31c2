import type { Context, Hono } from 'hono';
import { z } from 'zod';
import { AppError } from '../../errors.js';
import type { DriftMonitor } from '../../monitor/drift.js';
import type { Engine } from '../../serving/engine.js';
import type { EvalReportRow, JobState, ModelVersionRow, TrainJobRow } from '../../store/types.js';
import type { Swapper } from '../../swap/swap.js';
import type { JobRunner } from '../../train/jobs.js';
import type { AppEnv } from '../app.js';
import { CollectionName } from '../schemas.js';
import { parseJson, parseValue } from '../validate.js';

const JOB_STATES = ['queued', 'mining', 'training', 'evaluating', 'reembedding', 'swapping', 'done', 'rejected', 'failed'] as const satisfies readonly JobState[];

const DriftQuery = z.strictObject({
  collection: CollectionName,
  /** A configured baseline: ISO time or epoch ms where the reference window starts. */
  referenceSince: z.string().optional(),
  /** Create a retrain job when drift fires (AUTO_RETRAIN must be on); default: report only. */
  trigger: z.enum(['true', 'false']).optional(),
});

const RetrainBody = z.strictObject({
  trigger: z.string().min(1).max(64).optional(),
});

const JobsQuery = z.strictObject({
  collection: CollectionName.optional(),
  state: z.enum(JOB_STATES).optional(),
  limit: z.coerce.number().int().min(1).max(1000).optional(),
});

const JobId = z.string().regex(/^[0-9a-f-]{8,64}$/i, 'a job id');
const Version = z.string().regex(/^[A-Za-z0-9._-]{1,200}$/, 'a model version');

function parseTime(s: string): number {
  const n = /^\d+$/.test(s) ? Number(s) : Date.parse(s);
  if (!Number.isFinite(n)) throw new AppError('invalid_request', `referenceSince: "${s}" is neither an ISO time nor epoch milliseconds`);
  return n;
}

/** Auth off → no role or 'admin' is set; with auth on, read keys are 'read'. */
const isAdmin = (c: Context<AppEnv>) => c.get('role') !== 'read';

function requireAdmin(c: Context<AppEnv>): void {
  // Auth off → no role is set and everything is allowed; with auth on, only admin keys change models.
  if (c.get('role') === 'read') throw new AppError('forbidden', 'this route needs an admin API key');
}

/** Optional JSON body: an empty body is `{}`, anything else must be a valid object for the schema. */
async function optionalBody<S extends z.ZodType>(c: Context<AppEnv>, schema: S): Promise<z.infer<S>> {
  const text = await c.req.text();
  return parseValue(schema, text.trim() === '' ? {} : parseJson(text));
}

const iso = (t: number | null) => (t === null ? null : new Date(t).toISOString());

/**
 * A failed job's error carries the trainer's stderr tail (Python tracebacks: paths, hosts, library
 * versions). Admin keys (and everyone with AUTH=off) see all of it; read keys get the reason's first line
 * and no `progress.stderrTail`.
 */
function jobView(j: TrainJobRow, admin: boolean, evals: EvalReportRow[] = []) {
  const e = evals[0];
  let progress = j.progress;
  if (!admin && 'stderrTail' in progress) {
    const { stderrTail: _hidden, ...rest } = progress;
    progress = rest;
  }
  return {
    id: j.id, collection: j.collection, trigger: j.trigger, state: j.state, progress, timings: j.timings,
    parentVersion: j.parentVersion, candidateVersion: j.candidateVersion, error: admin || j.error === null ? j.error : j.error.split('\n', 1)[0]!,
    gate: e ? { passed: e.passed, decision: e.decision, metrics: e.metrics, evalReportId: e.id } : null,
    createdAt: iso(j.createdAt), updatedAt: iso(j.updatedAt),
  };
}

function modelView(m: ModelVersionRow, champion: string | undefined, evals: EvalReportRow[]) {
  return {
    version: m.version, parentVersion: m.parentVersion, status: m.status, champion: m.version === champion, dim: m.dim,
    source: m.source, card: m.card, createdAt: iso(m.createdAt), promotedAt: iso(m.promotedAt),
    evalReports: evals.map((e) => ({ id: e.id, jobId: e.jobId, championVersion: e.championVersion, passed: e.passed, metrics: e.metrics, decision: e.decision, createdAt: iso(e.createdAt) })),
  };
}

export function loopRoutes(deps: { engine: Engine; monitor: DriftMonitor; jobs: JobRunner; swapper: Swapper }) {
  const { engine, monitor, jobs, swapper } = deps;
  const store = engine.store;
  return (app: Hono<AppEnv>) => {
    app.get('/drift', async (c) => {
      const q = parseValue(DriftQuery, c.req.query());
      // Reading drift is a read; letting it start a retrain is not.
      if (q.trigger === 'true') requireAdmin(c);
      await engine.requireCollection(q.collection);
      // The buffered query log must be visible to the windows.
      await engine.queryLog.flush();
      const r = await monitor.check(q.collection, {
        referenceSince: q.referenceSince !== undefined ? parseTime(q.referenceSince) : undefined,
        noTrigger: q.trigger !== 'true',
      });
      return c.json({ id: r.report.id, collection: q.collection, drifted: r.report.drifted, jobId: r.report.jobId, createdAt: iso(r.report.createdAt), ...r.metrics });
    });

    app.get('/drift/reports', async (c) => {
      const q = parseValue(z.strictObject({ collection: CollectionName, limit: z.coerce.number().int().min(1).max(1000).optional() }), c.req.query());
      const rows = await store.listDriftReports(q.collection, q.limit ?? 50);
      return c.json({ reports: rows.map((r) => ({ id: r.id, drifted: r.drifted, jobId: r.jobId, modelVersion: r.modelVersion, metrics: r.metrics, createdAt: iso(r.createdAt) })) });
    });

    app.post('/collections/:name/retrain', async (c) => {
      requireAdmin(c);
      const name = parseValue(CollectionName, c.req.param('name'));
      const body = await optionalBody(c, RetrainBody);
      const job = await jobs.create(name, body.trigger ?? 'manual');
      return c.json(jobView(job, true), 202);
    });

    app.get('/jobs', async (c) => {
      const q = parseValue(JobsQuery, c.req.query());
      const rows = await store.listJobs({ collection: q.collection, states: q.state ? [q.state] : undefined, limit: q.limit ?? 100 });
      return c.json({ jobs: rows.map((j) => jobView(j, isAdmin(c))) });
    });

    app.get('/jobs/:id', async (c) => {
      const id = parseValue(JobId, c.req.param('id'));
      const job = await store.getJob(id);
      if (!job) throw new AppError('job_not_found', `no retrain job "${id}"`);
      return c.json(jobView(job, isAdmin(c), await store.listEvalReports({ jobId: id })));
    });

    app.get('/models', async (c) => {
      const champion = (await store.getServing())?.modelVersion;
      const rows = await store.listModelVersions();
      const models = await Promise.all(rows.map(async (m) => modelView(m, champion, await store.listEvalReports({ candidateVersion: m.version }))));
      return c.json({ champion: champion ?? null, serving: engine.serving.version, previous: engine.previousPair?.version ?? null, models });
    });

    app.post('/models/:version/rollback', async (c) => {
      requireAdmin(c);
      const version = parseValue(Version, c.req.param('version'));
      const r = await swapper.rollback(version);
      return c.json({ model: r.version, changed: r.changed, rebuilt: r.rebuilt, generation: r.generation, collections: r.collections });
    });
  };
}
