// Drives one self-tuning scenario against a running server with nothing but its HTTP API and default
// settings, and measures before / after on the tune and test halves of the dev file (bench/split.ts):
//
//   go        GO corpus; biological-process train queries with feedback, then every molecular-function /
//             cellular-component train query with feedback (a traffic shift); the server's drift monitor
//             must fire and create the job itself.
//   pubmedqa  PubMedQA corpus (pmid / section as metadata); every train question with feedback; no drift to
//             speak of, so the job is asked for with POST /collections/:name/retrain once traffic is in.
//   cold      any corpus, no queries at all: ingest, then POST /retrain (the job trains on pairs the server
//             makes from the corpus and gates on held-out pseudo-queries).
//
// Two phases so a run can outlast one process (the GPU box limits one command to 10 minutes):
//   --phase setup   ingest, strategy at cold start, measure before, traffic, job created → state file
//   --phase finish  search load while the job runs, wait for it, measure after → summary JSON
// (--phase all runs both). Measurements are text searches in each mode — auto (the default), vector,
// keyword, hybrid — with k = 100, scored by src/eval (sentence-transformers' definitions).
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { computeIrMetrics } from '../../src/eval/metrics.js';
import { apiClient, ingestCorpus, type Json, pool, readAll, shuffled, stderrLog } from './common.js';
import { fusionFittedOnTune, halfOf } from '../../bench/split.js';
import type { QueryRankings } from '../../src/search/strategy.js';

const { values: a } = parseArgs({
  options: {
    url: { type: 'string', default: 'http://127.0.0.1:8080' },
    data: { type: 'string' },
    scenario: { type: 'string', default: 'go' },
    collection: { type: 'string' },
    phase: { type: 'string', default: 'all' },
    state: { type: 'string', default: 'scenario-state.json' },
    out: { type: 'string', default: 'scenario-summary.json' },
    /** Dev queries measured per half (tune, test); all of a half when it is smaller. */
    dev: { type: 'string', default: '1000' },
    concurrency: { type: 'string', default: '16' },
    /** GO: seconds to wait for the drift monitor's job before asking for one (recorded as such). */
    'drift-wait': { type: 'string', default: '180' },
    /** Epoch ms by which `finish` must write its summary. */
    deadline: { type: 'string' },
    key: { type: 'string' },
  },
});
const url = a.url!;
const scenario = a.scenario as 'go' | 'pubmedqa' | 'cold';
const col = a.collection ?? scenario;
const t0 = Date.now();
const log = stderrLog(t0, { scenario });
const api = apiClient(url, a.key ?? process.env.LOOP_API_KEY, log);
const { call, ok } = api;

interface Query {
  query: string;
  relevant: string[];
  namespace?: string;
}

const MODES = ['auto', 'vector', 'keyword', 'hybrid'] as const;
/** Every mode on both halves of the dev sample, through /search. */
async function measure(dev: { tune: Query[]; test: Query[] }) {
  const out: Json = {};
  const kept: Record<string, Record<string, Map<string, { id: string; score: number }[]>>> = { tune: {}, test: {} };
  for (const half of ['tune', 'test'] as const) {
    const qs = dev[half];
    const res: Json = { queries: qs.length };
    for (const mode of MODES) {
      const relevant = new Map<string, Set<string>>();
      const rankings = new Map<string, { id: string; score: number }[]>();
      const served: Record<string, number> = {};
      let model = '';
      await pool(qs, Number(a.concurrency), async (q, i) => {
        const r = await ok<{ results: { id: string; score: number }[]; model: string; mode: string }>('POST', '/search', {
          collection: col,
          query: q.query,
          k: 100,
          mode,
        });
        model = r.model;
        served[r.mode] = (served[r.mode] ?? 0) + 1;
        relevant.set(String(i), new Set(q.relevant));
        rankings.set(
          String(i),
          r.results.map((x) => ({ id: x.id, score: x.score })),
        );
      });
      const m = computeIrMetrics(relevant, rankings);
      kept[half]![mode] = rankings;
      res[mode] = { model, served, 'ndcg@10': m['ndcg@10'], 'recall@1': m['recall@1'], 'recall@10': m['recall@10'], 'mrr@10': m['mrr@10'] };
    }
    out[half] = res;
  }
  // The fusion weight fitted on the tune half's queries, applied unchanged to the test half (offline, from the
  // vector and keyword results above).
  const qr = (half: 'tune' | 'test', i: number): QueryRankings => ({
    relevant: new Set(dev[half][i]!.relevant),
    dense: (kept[half]!.vector!.get(String(i)) ?? []).map((h) => ({ key: h.id, score: h.score })),
    sparse: (kept[half]!.keyword!.get(String(i)) ?? []).map((h) => ({ key: h.id, score: h.score })),
  });
  const fit = fusionFittedOnTune({ tune: dev.tune.map((_, i) => qr('tune', i)), test: dev.test.map((_, i) => qr('test', i)) });
  for (const half of ['tune', 'test'] as const) {
    const m = fit.metrics[half];
    (out[half] as Json).hybridFitOnTune = {
      weight: fit.weight,
      'ndcg@10': m['ndcg@10'],
      'recall@1': m['recall@1'],
      'recall@10': m['recall@10'],
      'mrr@10': m['mrr@10'],
    };
  }
  return out;
}

/** Users: search (the default mode), then feedback for the relevant documents (a click, a citation). */
async function replay(queries: Query[]) {
  let searches = 0;
  let feedback = 0;
  let errors = 0;
  const t = Date.now();
  await pool(queries, Number(a.concurrency), async (q) => {
    const r = await call<{ queryId?: string }>('POST', '/search', { collection: col, query: q.query, k: 10 });
    if (r.status !== 200 || !r.body.queryId) {
      errors++;
      return;
    }
    searches++;
    for (const id of q.relevant) {
      const f = await call('POST', '/feedback', { queryId: r.body.queryId, documentId: id });
      if (f.status === 201) feedback++;
      else errors++;
    }
  });
  return { searches, feedback, errors, seconds: (Date.now() - t) / 1000 };
}

async function devSample(): Promise<{ tune: Query[]; test: Query[] }> {
  const dev = await readAll<Query>(join(a.data!, 'queries.dev.jsonl'));
  const n = Number(a.dev);
  const tune = shuffled(
    dev.filter((q) => halfOf(q.query) === 'tune'),
    11,
  ).slice(0, n);
  const test = shuffled(
    dev.filter((q) => halfOf(q.query) === 'test'),
    12,
  ).slice(0, n);
  return { tune, test };
}

async function setup(): Promise<Json> {
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(url + '/readyz')).ok) break;
    } catch {
      /* not up yet */
    }
    if (i > 900) throw new Error('server never became ready');
    await new Promise((r) => setTimeout(r, 200));
  }
  const st: Json = { scenario, collection: col, startedAt: new Date(t0).toISOString() };
  st.ingest = await ingestCorpus(api, a.data!, col);
  log('ingested', st.ingest as Json);
  st.coldStrategy = (await ok<{ strategy: unknown }>('POST', `/collections/${col}/strategy`, {})).strategy;
  log('cold-start strategy', { strategy: st.coldStrategy });

  const dev = await devSample();
  const train = scenario === 'cold' ? [] : await readAll<Query>(join(a.data!, 'queries.train.jsonl'));
  if (scenario === 'go') {
    // Biological process first: it fills the drift monitor's reference window.
    st.trafficBP = await replay(
      shuffled(
        train.filter((q) => q.namespace === 'BP'),
        3,
      ),
    );
    log('replayed BP', st.trafficBP as Json);
  }
  st.before = await measure(dev);
  log('measured before', { test: st.before });
  if (scenario === 'go') {
    st.trafficShift = await replay(
      shuffled(
        train.filter((q) => q.namespace !== 'BP'),
        4,
      ),
    );
    log('replayed MF/CC', st.trafficShift as Json);
    const until = Date.now() + Number(a['drift-wait']) * 1000;
    while (Date.now() < until) {
      const jobs = (await ok<{ jobs: Json[] }>('GET', `/jobs?collection=${col}`)).jobs;
      const j = jobs.find((x) => x.trigger === 'drift');
      if (j) {
        st.jobId = j.id;
        st.trigger = 'drift';
        break;
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  } else if (scenario === 'pubmedqa') {
    st.traffic = await replay(shuffled(train, 5));
    log('replayed train questions', st.traffic as Json);
  }
  if (!st.jobId) {
    const r = await call<Json>('POST', `/collections/${col}/retrain`, {});
    if (r.status !== 202 && r.status !== 201 && r.status !== 409) throw new Error(`retrain: ${r.status} ${JSON.stringify(r.body)}`);
    // 409: a retried request had created it already.
    st.jobId = r.status === 409 ? (await ok<{ jobs: Json[] }>('GET', `/jobs?collection=${col}`)).jobs[0]?.id : r.body.id;
    st.trigger = scenario === 'go' ? 'api (drift did not create a job in time)' : 'api';
  }
  st.drift = (await ok<{ reports: Json[] }>('GET', `/drift/reports?collection=${col}&limit=50`)).reports.map((r) => ({
    createdAt: r.createdAt,
    drifted: r.drifted,
    jobId: r.jobId,
    metrics: r.metrics,
  }));
  log('job', { id: st.jobId, trigger: st.trigger });
  st.setupSeconds = (Date.now() - t0) / 1000;
  return st;
}

async function finish(st: Json): Promise<Json> {
  const dev = await devSample();
  let jobState = 'running';
  const load = { byState: {} as Record<string, { ok: number; failed: number; models: string[] }>, errors: [] as string[] };
  let stop = false;
  const loadQs = [...dev.tune, ...dev.test];
  const workers = Array.from({ length: 4 }, async (_, w) => {
    for (let i = w; !stop; i += 4) {
      const s = (load.byState[jobState] ??= { ok: 0, failed: 0, models: [] });
      try {
        const r = await call<{ results?: unknown[]; model?: string }>('POST', '/search', {
          collection: col,
          query: loadQs[i % loadQs.length]!.query,
          k: 10,
        });
        if (r.status === 200 && Array.isArray(r.body.results)) {
          s.ok++;
          if (r.body.model && !s.models.includes(r.body.model)) s.models.push(r.body.model);
        } else {
          s.failed++;
          if (load.errors.length < 20) load.errors.push(`${r.status} ${JSON.stringify(r.body).slice(0, 200)}`);
        }
      } catch (err) {
        s.failed++;
        if (load.errors.length < 20) load.errors.push(String(err));
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  });
  const deadline = a.deadline ? Number(a.deadline) - 90_000 : Infinity;
  let job: Json = {};
  while (Date.now() < deadline) {
    job = await ok<Json>('GET', `/jobs/${st.jobId as string}`);
    if (job.state !== jobState) log('job state', { state: job.state });
    jobState = job.state as string;
    if (['done', 'rejected', 'failed'].includes(jobState)) break;
    await new Promise((r) => setTimeout(r, 1000));
  }
  stop = true;
  await Promise.all(workers);
  const out: Json = { ...st, job, load };
  out.after = await measure(dev);
  out.collectionAfter = await ok('GET', `/collections/${col}`);
  out.models = await ok('GET', '/models');
  out.finishedAt = new Date().toISOString();
  const pick = (m: unknown, half: string) => {
    const h = (m as Record<string, Record<string, Record<string, number>>>)[half]!;
    return Object.fromEntries(MODES.map((mode) => [mode, h[mode]?.['ndcg@10']]));
  };
  log('summary', {
    job: { state: job.state, timings: job.timings, error: job.error },
    before: { tune: pick(st.before, 'tune'), test: pick(st.before, 'test') },
    after: { tune: pick(out.after, 'tune'), test: pick(out.after, 'test') },
    loadFailed: Object.values(load.byState).reduce((n, s) => n + s.failed, 0),
  });
  return out;
}

if (!a.data || !existsSync(join(a.data, 'corpus.jsonl'))) throw new Error('--data must name a directory with corpus.jsonl');
if (a.phase === 'setup' || a.phase === 'all') {
  const st = await setup();
  writeFileSync(a.state!, JSON.stringify(st, null, 2));
  if (a.phase === 'all') writeFileSync(a.out!, JSON.stringify(await finish(st), null, 2));
} else if (a.phase === 'finish') {
  writeFileSync(a.out!, JSON.stringify(await finish(JSON.parse(readFileSync(a.state!, 'utf8')) as Json), null, 2));
} else {
  throw new Error('--phase is setup, finish or all');
}
