import type { Context, Hono, MiddlewareHandler } from 'hono';
import { AppError } from '../../errors.js';
import type { DriftMonitor } from '../../monitor/drift.js';
import type { CollectionCatalog } from '../../serving/catalog.js';
import type { Engine } from '../../serving/engine.js';
import type { EvalReportRow, JobStore, ModelStore, ModelVersionRow, QueryLogStore, TrainJobRow } from '../../store/types.js';
import type { Swapper } from '../../swap/swap.js';
import type { JobRunner } from '../../train/jobs.js';
import type { AppEnv } from '../app.js';
import { defineRoute } from '../route.js';
import {
  CollectionName,
  DriftCheck,
  DriftQuery,
  DriftReports,
  DriftReportsQuery,
  JobId,
  JobInfo,
  JobList,
  JobsQuery,
  ModelsResponse,
  ModelVersion,
  RetrainBody,
  RollbackResult,
} from '../schemas.js';

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

/** Answers forbidden before the request is validated (a read key learns nothing about the body). */
const adminOnly: MiddlewareHandler<AppEnv> = async (c, next) => {
  requireAdmin(c);
  await next();
};

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
    id: j.id,
    collection: j.collection,
    trigger: j.trigger,
    state: j.state,
    progress,
    timings: j.timings,
    parentVersion: j.parentVersion,
    candidateVersion: j.candidateVersion,
    error: admin || j.error === null ? j.error : j.error.split('\n', 1)[0]!,
    gate: e ? { passed: e.passed, decision: e.decision, metrics: e.metrics, evalReportId: e.id } : null,
    createdAt: iso(j.createdAt),
    updatedAt: iso(j.updatedAt),
  };
}

function modelView(m: ModelVersionRow, champion: string | undefined, evals: EvalReportRow[]) {
  return {
    version: m.version,
    parentVersion: m.parentVersion,
    status: m.status,
    champion: m.version === champion,
    dim: m.dim,
    source: m.source,
    card: m.card,
    createdAt: iso(m.createdAt),
    promotedAt: iso(m.promotedAt),
    evalReports: evals.map((e) => ({
      id: e.id,
      jobId: e.jobId,
      championVersion: e.championVersion,
      passed: e.passed,
      metrics: e.metrics,
      decision: e.decision,
      createdAt: iso(e.createdAt),
    })),
  };
}

interface LoopRoutesDeps {
  /** The serving and previous pairs (/models) and the query log a drift check flushes first. */
  engine: Pick<Engine, 'serving' | 'previousPair' | 'flushQueryLog'>;
  catalog: CollectionCatalog;
  store: JobStore & ModelStore & QueryLogStore;
  monitor: DriftMonitor;
  jobs: JobRunner;
  swapper: Swapper;
}

export function loopRoutes(deps: LoopRoutesDeps) {
  const { engine, catalog, store, monitor, jobs, swapper } = deps;
  const tags = ['loop'];
  return (app: Hono<AppEnv>) => {
    defineRoute(app, {
      method: 'get',
      path: '/drift',
      operationId: 'checkDrift',
      summary: 'Run a drift check now (trigger=true, admin only: let a drift start a retrain)',
      role: 'read',
      tags,
      request: { query: DriftQuery },
      responses: { 200: { description: "The stored report's identity plus every statistic the monitor computed", schema: DriftCheck } },
      handler: async (c, { query: q }) => {
        // Reading drift is a read; letting it start a retrain is not.
        if (q.trigger === 'true') requireAdmin(c);
        await catalog.require(q.collection);
        // The buffered query log must be visible to the windows.
        await engine.flushQueryLog();
        const r = await monitor.check(q.collection, {
          referenceSince: q.referenceSince !== undefined ? parseTime(q.referenceSince) : undefined,
          noTrigger: q.trigger !== 'true',
        });
        return c.json({
          id: r.report.id,
          collection: q.collection,
          drifted: r.report.drifted,
          jobId: r.report.jobId,
          createdAt: iso(r.report.createdAt),
          ...r.metrics,
        });
      },
    });

    defineRoute(app, {
      method: 'get',
      path: '/drift/reports',
      operationId: 'listDriftReports',
      summary: 'Stored drift reports of a collection, newest first',
      role: 'read',
      tags,
      request: { query: DriftReportsQuery },
      responses: { 200: { description: 'The reports', schema: DriftReports } },
      handler: async (c, { query: q }) => {
        const rows = await store.listDriftReports(q.collection, q.limit ?? 50);
        return c.json({
          reports: rows.map((r) => ({
            id: r.id,
            drifted: r.drifted,
            jobId: r.jobId,
            modelVersion: r.modelVersion,
            metrics: r.metrics,
            createdAt: iso(r.createdAt),
          })),
        });
      },
    });

    defineRoute(app, {
      method: 'post',
      path: '/collections/:name/retrain',
      operationId: 'retrain',
      summary: 'Start a retrain job',
      role: 'admin',
      tags,
      middleware: [adminOnly],
      request: { params: { name: CollectionName }, body: RetrainBody, bodyName: 'Retrain', bodyOptional: true },
      responses: { 202: { description: 'The queued job', schema: JobInfo } },
      handler: async (c, { params, body }) => {
        const job = await jobs.create(params.name, body.trigger ?? 'manual');
        return c.json(jobView(job, true), 202);
      },
    });

    defineRoute(app, {
      method: 'get',
      path: '/jobs',
      operationId: 'listJobs',
      summary: 'List retrain jobs',
      role: 'read',
      tags,
      request: { query: JobsQuery },
      responses: { 200: { description: 'Jobs, newest first', schema: JobList } },
      handler: async (c, { query: q }) => {
        const rows = await store.listJobs({ collection: q.collection, states: q.state ? [q.state] : undefined, limit: q.limit ?? 100 });
        return c.json({ jobs: rows.map((j) => jobView(j, isAdmin(c))) });
      },
    });

    defineRoute(app, {
      method: 'get',
      path: '/jobs/:id',
      operationId: 'getJob',
      summary: 'A retrain job: state, progress, timings, gate decision',
      role: 'read',
      tags,
      request: { params: { id: JobId } },
      responses: { 200: { description: 'The job', schema: JobInfo } },
      handler: async (c, { params: { id } }) => {
        const job = await store.getJob(id);
        if (!job) throw new AppError('job_not_found', `no retrain job "${id}"`);
        return c.json(jobView(job, isAdmin(c), await store.listEvalReports({ jobId: id })));
      },
    });

    defineRoute(app, {
      method: 'get',
      path: '/models',
      operationId: 'listModels',
      summary: 'Model versions with their eval reports',
      role: 'read',
      tags,
      responses: { 200: { description: 'Champion, serving and previous versions and every model version', schema: ModelsResponse } },
      handler: async (c) => {
        const champion = (await store.getServing())?.modelVersion;
        const rows = await store.listModelVersions();
        const models = await Promise.all(
          rows.map(async (m) => modelView(m, champion, await store.listEvalReports({ candidateVersion: m.version }))),
        );
        return c.json({
          champion: champion ?? null,
          serving: engine.serving.version,
          previous: engine.previousPair?.version ?? null,
          models,
        });
      },
    });

    defineRoute(app, {
      method: 'post',
      path: '/models/:version/rollback',
      operationId: 'rollbackModel',
      summary: 'Switch serving back to a retained version',
      role: 'admin',
      tags,
      middleware: [adminOnly],
      request: { params: { version: ModelVersion } },
      responses: { 200: { description: 'The cut-over', schema: RollbackResult } },
      handler: async (c, { params: { version } }) => {
        const r = await swapper.rollback(version);
        return c.json({ model: r.version, changed: r.changed, rebuilt: r.rebuilt, generation: r.generation, collections: r.collections });
      },
    });
  };
}
