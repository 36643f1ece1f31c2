// End-to-end retrieval quality through the real HTTP API, as a user would measure it:
//   npm run bench:quality -- --url http://127.0.0.1:8080 --data ../shared/data/go [--queries 2000] [--ingest]
// Ingests corpus.jsonl into a collection (with --ingest; then asks the server to decide the collection's
// strategy, as its tuner would within 30 s), replays dev queries through /search in each mode — auto (the
// default), vector, keyword, hybrid — and prints Recall@k / NDCG@10 / MRR@10 per mode, computed by src/eval
// (sentence-transformers definitions), on the tune and the test half of the dev file side by side
// (bench/split.ts: nothing is chosen on the test half) and as ratios to keyword (BM25).
import { createReadStream, existsSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { computeIrMetrics } from '../../src/eval/metrics.js';
import { fusionFittedOnTune, halfOf } from '../split.js';
import type { QueryRankings } from '../../src/search/strategy.js';

const { values: a } = parseArgs({
  options: {
    url: { type: 'string', default: 'http://127.0.0.1:8080' },
    data: { type: 'string', default: '../shared/data/go' },
    collection: { type: 'string' },
    queries: { type: 'string', default: '2000' },
    split: { type: 'string', default: 'dev' },
    ingest: { type: 'boolean', default: false },
    modes: { type: 'string', default: 'auto,vector,keyword,hybrid' },
    concurrency: { type: 'string', default: '8' },
    key: { type: 'string' },
  },
});
const collection = a.collection ?? (a.data!.replace(/\/+$/, '').split('/').pop() || 'corpus');
const headers: Record<string, string> = { 'content-type': 'application/json', ...(a.key ? { authorization: `Bearer ${a.key}` } : {}) };

async function* jsonl<T>(file: string): AsyncGenerator<T> {
  for await (const line of createInterface({ input: createReadStream(file), crlfDelay: Infinity }))
    if (line.trim()) yield JSON.parse(line) as T;
}

async function post<T>(path: string, body: unknown): Promise<T> {
  const r = await fetch(a.url + path, { method: 'POST', headers, body: JSON.stringify(body) });
  const j = (await r.json()) as T & { error?: { code: string; message: string } };
  if (!r.ok) throw new Error(`${path}: ${r.status} ${j.error?.code}: ${j.error?.message}`);
  return j;
}

async function pool<T>(items: T[], n: number, fn: (x: T) => Promise<void>) {
  let i = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (i < items.length) await fn(items[i++]!);
    }),
  );
}

if (a.ingest) {
  await fetch(a.url + '/collections', { method: 'POST', headers, body: JSON.stringify({ name: collection }) });
  const t0 = performance.now();
  let batch: { id: string; text: string; metadata: Record<string, unknown> }[] = [];
  let n = 0;
  const flush = async () => {
    if (batch.length) {
      await post(`/collections/${collection}/documents`, { documents: batch });
      n += batch.length;
      batch = [];
    }
  };
  for await (const d of jsonl<{ id: string; text: string; [k: string]: unknown }>(join(a.data!, 'corpus.jsonl'))) {
    const { id, text, ...meta } = d;
    batch.push({ id, text, metadata: meta });
    if (batch.length === 256) {
      await flush();
      if (n % 5120 === 0) process.stderr.write(`ingested ${n}\n`);
    }
  }
  await flush();
  const s = (performance.now() - t0) / 1000;
  console.log(`ingest: ${n} documents in ${s.toFixed(1)} s (${(n / s).toFixed(0)} docs/s)`);
  const d = await post<{ strategy: unknown }>(`/collections/${collection}/strategy`, {});
  console.log(`strategy decided after ingest: ${JSON.stringify(d.strategy)}`);
}
const info = (await (await fetch(`${a.url}/collections/${collection}`, { headers })).json()) as {
  strategy?: { mode: string; weight?: number; source: string; queries: number; scores: unknown } | null;
};
console.log(`serving strategy (auto): ${JSON.stringify(info.strategy ?? null)}`);

const qfile = join(a.data!, `queries.${a.split}.jsonl`);
if (!existsSync(qfile)) throw new Error(`no ${qfile}`);
const all: { query: string; relevant: string[] }[] = [];
for await (const q of jsonl<{ query: string; relevant: string[] }>(qfile)) all.push(q);
// Deterministic spread over the split (it is sorted by query text).
const want = Math.min(Number(a.queries), all.length);
const queries = Array.from({ length: want }, (_, i) => all[Math.floor((i * all.length) / want)]!);
const halves = { tune: [] as number[], test: [] as number[] };
queries.forEach((q, i) => halves[halfOf(q.query)].push(i));

console.log(`collection=${collection} queries=${queries.length} (${a.split}: tune ${halves.tune.length}, test ${halves.test.length})`);
const f = (x: number) => x.toFixed(4);
const rows: { mode: string; half: string; m: Record<string, number>; p50: number; p99: number; served: string }[] = [];
const byMode = new Map<string, Map<string, { id: string; score: number }[]>>();
for (const mode of a.modes!.split(',')) {
  const rankings = new Map<string, { id: string; score: number }[]>();
  const lat: number[] = [];
  const served = new Map<string, number>();
  await pool(
    queries.map((q, i) => [q, i] as const),
    Number(a.concurrency),
    async ([q, i]) => {
      const t = performance.now();
      const r = await post<{ results: { id: string; score: number }[]; mode?: string }>('/search', {
        collection,
        query: q.query,
        k: 100,
        mode,
      });
      lat.push(performance.now() - t);
      served.set(r.mode ?? mode, (served.get(r.mode ?? mode) ?? 0) + 1);
      rankings.set(
        String(i),
        r.results.map((x) => ({ id: x.id, score: x.score })),
      );
    },
  );
  lat.sort((x, y) => x - y);
  byMode.set(mode, rankings);
  for (const half of ['tune', 'test'] as const) {
    const ids = halves[half];
    const m = computeIrMetrics(
      new Map(ids.map((i) => [String(i), new Set(queries[i]!.relevant)])),
      new Map(ids.map((i) => [String(i), rankings.get(String(i)) ?? []])),
    );
    rows.push({
      mode,
      half,
      m,
      p50: lat[Math.floor(lat.length * 0.5)]!,
      p99: lat[Math.floor(lat.length * 0.99)]!,
      served: [...served.entries()].map(([k, v]) => `${k}:${v}`).join(' '),
    });
  }
}
// The fusion weight fitted on the tune half's real queries (what the server does once it has held-out
// feedback), applied unchanged to the test half.
const vec = byMode.get('vector');
const kwr = byMode.get('keyword');
if (vec && kwr) {
  const qr = (i: number): QueryRankings => ({
    relevant: new Set(queries[i]!.relevant),
    dense: (vec.get(String(i)) ?? []).map((h) => ({ key: h.id, score: h.score })),
    sparse: (kwr.get(String(i)) ?? []).map((h) => ({ key: h.id, score: h.score })),
  });
  const fit = fusionFittedOnTune({ tune: halves.tune.map(qr), test: halves.test.map(qr) });
  for (const half of ['tune', 'test'] as const) {
    rows.push({
      mode: `fit w=${fit.weight}`,
      half,
      m: fit.metrics[half],
      p50: NaN,
      p99: NaN,
      served: 'offline: vector + keyword results fused',
    });
  }
}
for (const half of ['tune', 'test'] as const) {
  const kw = rows.find((r) => r.mode === 'keyword' && r.half === half)?.m['ndcg@10'];
  console.log(`\n${half} half (${halves[half].length} queries)`);
  console.log('mode       R@1    R@3    R@5    R@10   MRR@10 NDCG@10  x BM25  p50ms  p99ms  served');
  for (const r of rows.filter((x) => x.half === half)) {
    const m = r.m;
    const ratio = kw ? (m['ndcg@10']! / kw).toFixed(3) : '  -  ';
    console.log(
      `${r.mode.padEnd(10)} ${f(m['recall@1']!)} ${f(m['recall@3']!)} ${f(m['recall@5']!)} ${f(m['recall@10']!)} ${f(m['mrr@10']!)} ${f(m['ndcg@10']!)}  ${ratio.padStart(6)}  ${r.p50.toFixed(1).padStart(5)}  ${r.p99.toFixed(1).padStart(5)}  ${r.served}`,
    );
  }
}
