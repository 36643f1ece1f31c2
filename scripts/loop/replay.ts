// Drives the real self-tuning loop against a running server, with no human step after start:
//   node --import tsx scripts/loop/replay.ts --url http://127.0.0.1:8080 --data <dir with GO jsonl> --out summary.json
// 1. index corpus.jsonl; 2. measure dev NDCG@10 / Recall@k (vector searches: they carry no query text, so
// they stay out of the drift windows); 3. replay biological-process train queries with feedback, then
// molecular-function / cellular-component ones, as users would; 4. keep a search load running while the
// server's own drift monitor fires, the job mines, trains, gates and swaps; 5. measure again; write JSON.
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { computeIrMetrics } from '../../src/eval/metrics.js';
import { apiClient, ingestCorpus, type Json, pool, readAll, shuffled, stderrLog } from './common.js';

const { values: a } = parseArgs({
  options: {
    url: { type: 'string', default: 'http://127.0.0.1:8080' },
    data: { type: 'string', default: '../shared/data/go' },
    out: { type: 'string', default: 'loop-summary.json' },
    collection: { type: 'string', default: 'go' },
    bp: { type: 'string', default: '3000' },
    shift: { type: 'string', default: '6000' },
    dev: { type: 'string', default: '1000' },
    concurrency: { type: 'string', default: '8' },
    'job-timeout': { type: 'string', default: '420' },
    /** Epoch ms by which the summary must be written (the device run has a hard limit). */
    deadline: { type: 'string' },
    'skip-ingest': { type: 'boolean', default: false },
    key: { type: 'string' },
  },
});
const url = a.url!;
const col = a.collection!;
const t0 = Date.now();
const log = stderrLog(t0);
const api = apiClient(url, a.key ?? process.env.LOOP_API_KEY, log);
const { call, ok } = api;

interface Query {
  query: string;
  relevant: string[];
  namespace: string;
}

/** Dev metrics through the API: /v1/embeddings then /search by vector (not logged with text → no drift). */
async function measure(queries: Query[]) {
  const relevant = new Map<string, Set<string>>();
  const rankings = new Map<string, { id: string; score: number }[]>();
  let model = '';
  const batches: Query[][] = [];
  for (let i = 0; i < queries.length; i += 64) batches.push(queries.slice(i, i + 64));
  let base = 0;
  const offsets = batches.map((b) => {
    const o = base;
    base += b.length;
    return o;
  });
  await pool(batches, 4, async (batch, bi) => {
    const emb = await ok<{ data: { embedding: number[] }[] }>('POST', '/v1/embeddings', {
      input: batch.map((q) => q.query),
      encoding_format: 'float',
    });
    for (let j = 0; j < batch.length; j++) {
      const id = String(offsets[bi]! + j);
      const r = await ok<{ results: { id: string; score: number }[]; model: string }>('POST', '/search', {
        collection: col,
        vector: emb.data[j]!.embedding,
        k: 100,
      });
      model = r.model;
      relevant.set(id, new Set(batch[j]!.relevant));
      rankings.set(
        id,
        r.results.map((x) => ({ id: x.id, score: x.score })),
      );
    }
  });
  return { model, queries: queries.length, metrics: computeIrMetrics(relevant, rankings) };
}

/** Users: search, then post feedback for the relevant documents (a click / a citation). */
async function replay(queries: Query[], n: number) {
  let searches = 0;
  let feedback = 0;
  let errors = 0;
  await pool(queries, n, async (q) => {
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
  return { searches, feedback, errors };
}

// ------------------------------------------------------------------------------------------------
for (let i = 0; ; i++) {
  try {
    if ((await fetch(url + '/readyz')).ok) break;
  } catch {
    /* not up yet */
  }
  if (i > 600) throw new Error('server never became ready');
  await new Promise((r) => setTimeout(r, 200));
}
const summary: Json = { startedAt: new Date(t0).toISOString(), url };

if (!a['skip-ingest']) {
  summary.ingest = await ingestCorpus(api, a.data!, col, (d) => ({ namespace: d.namespace }));
  log('ingested', summary.ingest as Json);
}

const dev = await readAll<Query>(join(a.data!, 'queries.dev.jsonl'));
const train = await readAll<Query>(join(a.data!, 'queries.train.jsonl'));
const nDev = Number(a.dev);
const devBP = shuffled(
  dev.filter((q) => q.namespace === 'BP'),
  1,
).slice(0, nDev);
const devShift = shuffled(
  dev.filter((q) => q.namespace !== 'BP'),
  2,
).slice(0, nDev);
const trainBP = shuffled(
  train.filter((q) => q.namespace === 'BP'),
  3,
).slice(0, Number(a.bp));
const trainShift = shuffled(
  train.filter((q) => q.namespace !== 'BP'),
  4,
).slice(0, Number(a.shift));

summary.before = { bp: await measure(devBP), mfcc: await measure(devShift) };
log('measured before', { model: (summary.before as { bp: { model: string } }).bp.model });
const baseModel = (summary.before as { bp: { model: string } }).bp.model;

const tr = Date.now();
summary.trafficBP = await replay(trainBP, Number(a.concurrency));
log('replayed BP', summary.trafficBP as Json);

// A search load from the traffic shift until the end, each answer tagged with the job state. It must not
// start earlier: its MF/CC queries would land in the reference window the drift monitor compares against.
let jobState = 'none';
const load = { byState: {} as Record<string, { ok: number; failed: number; models: string[] }>, errors: [] as string[] };
let stopLoad = false;
const loadWorkers = Array.from({ length: 4 }, async (_, w) => {
  for (let i = w; !stopLoad; i += 4) {
    const state = jobState;
    const s = (load.byState[state] ??= { ok: 0, failed: 0, models: [] });
    try {
      const r = await call<{ results?: unknown[]; model?: string }>('POST', '/search', {
        collection: col,
        query: devShift[i % devShift.length]!.query,
        k: 10,
      });
      if (r.status === 200 && Array.isArray(r.body.results)) {
        s.ok++;
        if (r.body.model && !s.models.includes(r.body.model)) s.models.push(r.body.model);
      } else {
        s.failed++;
        load.errors.push(`${r.status} ${JSON.stringify(r.body).slice(0, 200)}`);
      }
    } catch (err) {
      s.failed++;
      load.errors.push(String(err));
    }
  }
});

summary.trafficShift = await replay(trainShift, Number(a.concurrency));
summary.trafficSeconds = (Date.now() - tr) / 1000;
log('replayed MF/CC', summary.trafficShift as Json);

// From here on the server is on its own: its scheduler must notice the drift and run the job.
let job: Json | undefined;
// Stop waiting early enough to measure again and write the summary before a hard deadline.
const deadline = Math.min(Date.now() + Number(a['job-timeout']) * 1000, a.deadline ? Number(a.deadline) - 45_000 : Infinity);
while (Date.now() < deadline) {
  const jobs = (await ok<{ jobs: Json[] }>('GET', `/jobs?collection=${col}`)).jobs;
  const j = jobs.find((x) => x.trigger === 'drift');
  if (j) {
    job = await ok<Json>('GET', `/jobs/${j.id as string}`);
    if (job.state !== jobState) log('job state', { state: job.state });
    jobState = job.state as string;
    if (['done', 'rejected', 'failed'].includes(jobState)) break;
  }
  await new Promise((r) => setTimeout(r, 500));
}
stopLoad = true;
await Promise.all(loadWorkers);
summary.job = job ?? null;
summary.load = load;
const reports = (await ok<{ reports: Json[] }>('GET', `/drift/reports?collection=${col}&limit=200`)).reports;
summary.driftFired = reports.find((r) => r.drifted === true && r.jobId) ?? null;
summary.driftReports = reports.length;
summary.after = { bp: await measure(devBP), mfcc: await measure(devShift) };
summary.models = await ok('GET', '/models');
summary.baseModel = baseModel;
summary.finishedAt = new Date().toISOString();
summary.wallSeconds = (Date.now() - t0) / 1000;
writeFileSync(a.out!, JSON.stringify(summary, null, 2));
const pick = (x: unknown) => {
  const m = (x as { metrics: Record<string, number> }).metrics;
  return { 'ndcg@10': m['ndcg@10'], 'recall@1': m['recall@1'], 'recall@5': m['recall@5'], 'recall@10': m['recall@10'] };
};
const b = summary.before as { bp: unknown; mfcc: unknown };
const af = summary.after as { bp: unknown; mfcc: unknown };
log('summary', {
  job: job ? { state: job.state, timings: job.timings, error: job.error } : null,
  before: { bp: pick(b.bp), mfcc: pick(b.mfcc) },
  after: { bp: pick(af.bp), mfcc: pick(af.mfcc) },
  loadFailed: Object.values(load.byState).reduce((n, s) => n + s.failed, 0),
});
if (!existsSync(a.out!)) process.exit(1);
