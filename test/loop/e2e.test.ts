// The self-tuning loop end to end on a real server (HTTP on a real port, ONNX tiny model):
// BP traffic → MF/CC traffic with feedback → the scheduler's drift check fires → retrain job → trainer
// (`command` backend returning an artifact the real trainer produced: tiny-ft-go) → gate → shadow
// re-embed → cut-over, while a concurrent search load runs; then a worse candidate (tiny-bad) is
// rejected and nothing changes; then a rollback switches back instantly.
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Loop } from '../../src/loop.js';
import { REPO, startTestServer, tempDir, type TestServer } from '../helpers.js';
import { GO_FIXTURE as GO, goScenario, type GoQuery } from './go-data.js';

const FT = join(REPO, 'test/fixtures/models/tiny-ft-go');
const BAD = join(REPO, 'test/fixtures/models/tiny-bad');

// Response bodies are checked field by field below; a loose type keeps the assertions readable.
interface Json {
  [k: string]: any;
}

// On the default store (SQLite, hnswlib indexes) with the full GO scenario; on Postgres (PGlite in-process) with
// hnswlib indexes and with the pgvector index backend, where the swap writes the candidate's vectors into a
// table of their own and must serve with 0 failed searches. PGlite is a wasm Postgres on the test's main thread:
// every query of the server, the search load and the loop shares its one connection, so the PGlite variants run
// the smallest scenario that still goes drift → job → gate → shadow re-embed → swap (the crash test's: 600
// passages, 60 + 60 queries, windows of 50) to keep the three inside the CI budget.
const FULL = { scenario: { split: 'dev', bp: 160, shift: 240, corpusSize: 2500, seed: 5 }, window: 150, minQueries: 100 } as const;
const SMALL = { scenario: { split: 'dev', bp: 60, shift: 60, corpusSize: 600, seed: 11 }, window: 50, minQueries: 40 } as const;
const STORES = [
  { store: 'sqlite', ...FULL },
  { store: 'pglite', ...SMALL },
  { store: 'pglite+pgvector', ...SMALL },
] as const;

describe.each(STORES)('self-tuning loop end to end on $store', ({ store, scenario: size, window, minQueries }) => {
  let dir: string;
  let server: TestServer;
  let loop: Loop | undefined;
  const which = () => join(dir, 'trainer-fixture');
  let scenario: ReturnType<typeof goScenario>;

  const http = async (method: string, path: string, body?: unknown): Promise<{ status: number; body: Json }> => {
    const r = await fetch(server.url + path, {
      method,
      headers: { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: r.status, body: (await r.json()) as Json };
  };

  /** Search like a RAG app would, then post feedback for the relevant ids that came back or exist. */
  const replay = async (qs: GoQuery[]) => {
    for (const q of qs) {
      const s = await http('POST', '/search', { collection: 'go', query: q.query, k: 10 });
      expect(s.status).toBe(200);
      for (const id of q.relevant) {
        const f = await http('POST', '/feedback', { queryId: s.body.queryId, documentId: id });
        expect(f.status).toBe(201);
      }
    }
  };

  /** Concurrent search load: counts non-200 answers and thrown requests, and which models answered. */
  const load = () => {
    const stats = { ok: 0, failed: 0, models: new Set<string>(), errors: [] as string[] };
    let stop = false;
    const qs = scenario.shift.slice(0, 50);
    const workers = Array.from({ length: 3 }, async (_, w) => {
      for (let i = w; !stop; i++) {
        try {
          const r = await fetch(server.url + '/search', {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ collection: 'go', query: qs[i % qs.length]!.query, k: 5 }),
          });
          const b = (await r.json()) as Json;
          if (r.status === 200 && Array.isArray(b.results) && b.results.length > 0) {
            stats.ok++;
            stats.models.add(b.model as string);
          } else {
            stats.failed++;
            stats.errors.push(`${r.status} ${JSON.stringify(b).slice(0, 200)}`);
          }
        } catch (err) {
          stats.failed++;
          stats.errors.push(String(err));
        }
      }
    });
    return {
      stats,
      stop: async () => {
        stop = true;
        await Promise.all(workers);
      },
    };
  };

  const waitJob = async (id: string, done: (j: Json) => boolean, timeoutMs = 90_000): Promise<Json> => {
    const t0 = Date.now();
    for (;;) {
      const j = (await http('GET', `/jobs/${id}`)).body;
      if (done(j)) return j;
      if (Date.now() - t0 > timeoutMs) throw new Error(`job ${id} stuck in ${j.state}: ${JSON.stringify(j.progress)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  };

  beforeAll(async () => {
    scenario = goScenario(GO, size);
    dir = tempDir('loop-e2e-');
    writeFileSync(which(), FT);
    const pg = store.startsWith('pglite');
    server = await startTestServer(
      {
        DATABASE_URL: pg ? `pglite://${join(dir, 'db')}` : undefined,
        INDEX_BACKEND: store.endsWith('+pgvector') ? 'pgvector' : 'hnswlib',
        DATA_DIR: dir,
        LOG_LEVEL: 'warn',
        EMBED_WORKERS: 1,
        INDEX_WORKERS: 1,
        DRIFT_INTERVAL_SECONDS: 1,
        DRIFT_WINDOW: window,
        DRIFT_MIN_QUERIES: minQueries,
        DRIFT_COOLDOWN_SECONDS: 3600,
        AUTO_RETRAIN: true,
        TRAINER_BACKEND: 'command',
        // Stands in for a remote GPU trainer: leaves an artifact made by the real trainer in {out}.
        TRAINER_COMMAND: `echo "training on {bundle}" >&2; echo '{"event":"progress","step":1,"loss":0.5}'; mkdir -p {out} && cp -R "$(cat '${which()}')"/. {out}/`,
        TRAINER_TIMEOUT_SECONDS: 60,
        REEMBED_PAUSE_MS: 5,
        REEMBED_BATCH: 128,
        GATE_MARGIN: 0.01,
        GATE_TOLERANCE: 0.005,
      },
      {
        listen: true,
        loop: {
          onReady: (l) => {
            loop = l;
          },
          mining: { minEvalQueries: 20 },
        },
      },
    );
    expect((await http('POST', '/collections', { name: 'go' })).status).toBe(201);
    const docs = scenario.docs.map((d) => ({ id: d.id, text: d.text, metadata: { namespace: d.namespace } }));
    expect(server.indexes.kind).toBe(store.endsWith('+pgvector') ? 'pgvector' : 'hnswlib');
    for (let i = 0; i < docs.length; i += 500) {
      expect((await http('POST', '/collections/go/documents', { documents: docs.slice(i, i + 500) })).status).toBe(200);
    }
  }, 120_000);

  afterAll(async () => {
    await server?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('drift → job → gate → shadow re-embed → swap under load with 0 failed searches; a worse candidate is rejected', async () => {
    expect(loop).toBeDefined();
    const base = (await http('GET', '/models')).body;
    const baseVersion = base.champion as string;
    // Every chunk is re-embedded into the candidate's index (a long passage may be cut into two).
    const chunks = (await http('GET', '/collections/go')).body.chunks as number;
    expect(chunks).toBeGreaterThanOrEqual(scenario.docs.length);
    expect(baseVersion).toBe(server.engine.serving.version);
    // The tiny base encoder is useless on GO: measured on pseudo-queries, the collection is served by keyword.
    const cold = (await http('POST', '/collections/go/strategy')).body.strategy;
    expect(cold).toMatchObject({ mode: 'keyword', modelVersion: baseVersion, source: 'pseudo_queries' });
    expect(cold.scores.keyword).toBeGreaterThan(cold.scores.vector);
    expect((await http('POST', '/search', { collection: 'go', query: scenario.bp[0]!.query, k: 5 })).body.mode).toBe('keyword');

    // Biological-process traffic (the reference window), then the shift to MF/CC.
    await replay(scenario.bp);
    const quiet = (await http('GET', '/drift?collection=go')).body;
    expect(quiet.drifted).toBe(false);
    const l = load();
    await replay(scenario.shift);

    // The scheduler (every 1 s) notices and creates the job by itself.
    let jobId: string | undefined;
    for (let i = 0; i < 300 && !jobId; i++) {
      const jobs = (await http('GET', '/jobs?collection=go')).body.jobs as Json[];
      jobId = jobs.find((j) => j.trigger === 'drift')?.id as string | undefined;
      if (!jobId) await new Promise((r) => setTimeout(r, 200));
    }
    expect(jobId).toBeDefined();
    const reports = (await http('GET', '/drift/reports?collection=go')).body.reports as Json[];
    const fired = reports.find((r) => r.jobId === jobId)!;
    expect(fired.drifted).toBe(true);
    // The rule that fired: significant (MMD permutation p) and large (classifier AUC or centroid shift).
    expect(fired.metrics.mmd.pValue).toBeLessThan(0.01);
    expect(fired.metrics.domainAuc >= 0.75 || fired.metrics.centroidDistance >= 0.1).toBe(true);
    // The scheduler may fire as soon as the window holds DRIFT_MIN_QUERIES shifted queries.
    expect(fired.metrics.current.n).toBeGreaterThanOrEqual(minQueries);
    expect(fired.metrics.current.n).toBeLessThanOrEqual(window);

    const job = await waitJob(jobId!, (j) => ['done', 'rejected', 'failed'].includes(j.state as string));
    // The load keeps running until one of its searches lands after the swap (the searches in flight when the job
    // turned done may all have started before it), at most 30 s; the assertion below still needs the new model.
    for (let i = 0; i < 150 && job.state === 'done' && !l.stats.models.has(job.candidateVersion as string); i++) {
      await new Promise((r) => setTimeout(r, 200));
    }
    await l.stop();
    expect(job.error).toBeNull();
    expect(job.state).toBe('done');
    expect(job.gate.passed).toBe(true);
    expect(job.gate.metrics.candidate['ndcg@10']).toBeGreaterThan(job.gate.metrics.champion['ndcg@10'] + 0.01);
    expect(Object.keys(job.timings)).toEqual(
      expect.arrayContaining(['queued', 'mining', 'training', 'evaluating', 'reembedding', 'swapping', 'total']),
    );
    expect(job.progress.training.progress.step).toBe(1);
    expect(job.progress.reembed.ratio).toBe(1);
    expect(job.progress.mining.evalQueries).toBeGreaterThanOrEqual(20);

    // Served throughout, by both models, with no failed request.
    expect(l.stats.errors).toEqual([]);
    expect(l.stats.failed).toBe(0);
    expect(l.stats.ok).toBeGreaterThan(0);
    const newVersion = job.candidateVersion as string;
    expect(l.stats.models.has(newVersion)).toBe(true);

    const models = (await http('GET', '/models')).body;
    expect(models.champion).toBe(newVersion);
    expect(models.previous).toBe(baseVersion);
    const m = (models.models as Json[]).find((x) => x.version === newVersion)!;
    expect(m.status).toBe('champion');
    expect(m.evalReports[0].passed).toBe(true);
    expect(m.card.eval_report.passed).toBe(true);
    const after = await http('POST', '/search', { collection: 'go', query: scenario.shift[0]!.query, k: 5 });
    expect(after.body.model).toBe(newVersion);
    const col = (await http('GET', '/collections/go')).body;
    expect(col.chunks).toBe(chunks);
    // The fine-tuned encoder moved the collection off keyword: the gate measured every strategy with it.
    expect(col.strategy).toMatchObject({ modelVersion: newVersion, source: 'gate' });
    expect(['vector', 'hybrid']).toContain(col.strategy.mode);
    expect(col.strategy.scores[col.strategy.mode]).toBeGreaterThan(col.strategy.scores.keyword);
    expect(job.gate.metrics.strategies.candidate.chosen.mode).toBe(col.strategy.mode);
    expect(after.body.mode).toBe(col.strategy.mode);
    const metrics = await (await fetch(server.url + '/metrics')).text();
    expect(metrics).toMatch(/model_swaps_total\{kind="promote"\} 1/);
    expect(metrics).toMatch(/gate_decisions_total\{decision="pass"\} 1/);
    expect(metrics).toMatch(new RegExp(`model_info\\{version="${newVersion}"\\} 1`));

    // The numbers the note reports (one line, machine-readable).
    console.log(
      JSON.stringify({
        e2e: {
          drift: {
            auc: fired.metrics.domainAuc,
            centroid: fired.metrics.centroidDistance,
            mmdP: fired.metrics.mmd.pValue,
            top1Ks: fired.metrics.top1Score?.statistic,
          },
          gate: { candidate: job.gate.metrics.candidate, champion: job.gate.metrics.champion, queries: job.gate.metrics.queries },
          timings: job.timings,
          load: { ok: l.stats.ok, failed: l.stats.failed, models: [...l.stats.models] },
        },
      }),
    );

    // A worse candidate: the gate rejects it and nothing changes.
    writeFileSync(which(), BAD);
    const l2 = load();
    const r2 = await http('POST', '/collections/go/retrain', {});
    expect(r2.status).toBe(202);
    const bad = await waitJob(r2.body.id as string, (j) => ['done', 'rejected', 'failed'].includes(j.state as string));
    await l2.stop();
    expect(bad.state).toBe('rejected');
    expect(bad.gate.passed).toBe(false);
    expect(l2.stats.failed).toBe(0);
    const models2 = (await http('GET', '/models')).body;
    expect(models2.champion).toBe(newVersion);
    expect((models2.models as Json[]).find((x) => x.version === bad.candidateVersion)!.status).toBe('rejected');
    console.log(
      JSON.stringify({
        e2eRejected: {
          candidate: bad.gate.metrics.candidate['ndcg@10'],
          champion: bad.gate.metrics.champion['ndcg@10'],
          reasons: bad.gate.decision.reasons,
          loadOk: l2.stats.ok,
          loadFailed: l2.stats.failed,
        },
      }),
    );
    expect((await http('POST', '/search', { collection: 'go', query: 'kinase activity', k: 3 })).body.model).toBe(newVersion);

    // Rollback to the retained previous pair is a pointer flip; a rejected version cannot be rolled back to.
    expect((await http('POST', `/models/${bad.candidateVersion}/rollback`)).body.error.code).toBe('model_unavailable');
    const rb = await http('POST', `/models/${baseVersion}/rollback`);
    expect(rb.status).toBe(200);
    expect(rb.body).toMatchObject({ model: baseVersion, changed: true, rebuilt: false });
    expect((await http('POST', '/search', { collection: 'go', query: 'kinase activity', k: 3 })).body.model).toBe(baseVersion);
    expect((await http('GET', '/models')).body.champion).toBe(baseVersion);
  }, 240_000);
});
