// End-to-end retrieval quality through the real HTTP API, as a user would measure it:
//   npx tsx bench/quality/index.ts --url http://127.0.0.1:8080 --data ../shared/data/go [--queries 2000] [--ingest]
// Ingests corpus.jsonl into a collection (with --ingest), replays dev queries through /search in each mode
// and prints Recall@k / NDCG@10 / MRR@10 per mode, computed by src/eval (sentence-transformers definitions).
import { createReadStream, existsSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { computeIrMetrics } from '../../src/eval/metrics.js';

const { values: a } = parseArgs({
  options: {
    url: { type: 'string', default: 'http://127.0.0.1:8080' },
    data: { type: 'string', default: '../shared/data/go' },
    collection: { type: 'string' },
    queries: { type: 'string', default: '2000' },
    split: { type: 'string', default: 'dev' },
    ingest: { type: 'boolean', default: false },
    modes: { type: 'string', default: 'vector,keyword,hybrid' },
    concurrency: { type: 'string', default: '8' },
    key: { type: 'string' },
  },
});
const collection = a.collection ?? (a.data!.replace(/\/+$/, '').split('/').pop() || 'corpus');
const headers: Record<string, string> = { 'content-type': 'application/json', ...(a.key ? { authorization: `Bearer ${a.key}` } : {}) };

async function* jsonl<T>(file: string): AsyncGenerator<T> {
  for await (const line of createInterface({ input: createReadStream(file), crlfDelay: Infinity })) if (line.trim()) yield JSON.parse(line) as T;
}

async function post<T>(path: string, body: unknown): Promise<T> {
  const r = await fetch(a.url + path, { method: 'POST', headers, body: JSON.stringify(body) });
  const j = (await r.json()) as T & { error?: { code: string; message: string } };
  if (!r.ok) throw new Error(`${path}: ${r.status} ${j.error?.code}: ${j.error?.message}`);
  return j;
}

async function pool<T>(items: T[], n: number, fn: (x: T) => Promise<void>) {
  let i = 0;
  await Promise.all(Array.from({ length: n }, async () => { while (i < items.length) await fn(items[i++]!); }));
}

if (a.ingest) {
  await fetch(a.url + '/collections', { method: 'POST', headers, body: JSON.stringify({ name: collection }) });
  const t0 = performance.now();
  let batch: { id: string; text: string; metadata: Record<string, unknown> }[] = [];
  let n = 0;
  const flush = async () => { if (batch.length) { await post(`/collections/${collection}/documents`, { documents: batch }); n += batch.length; batch = []; } };
  for await (const d of jsonl<{ id: string; text: string; [k: string]: unknown }>(join(a.data!, 'corpus.jsonl'))) {
    const { id, text, ...meta } = d;
    batch.push({ id, text, metadata: meta });
    if (batch.length === 256) { await flush(); if (n % 5120 === 0) process.stderr.write(`ingested ${n}\n`); }
  }
  await flush();
  const s = (performance.now() - t0) / 1000;
  console.log(`ingest: ${n} documents in ${s.toFixed(1)} s (${(n / s).toFixed(0)} docs/s)`);
}

const qfile = join(a.data!, `queries.${a.split}.jsonl`);
if (!existsSync(qfile)) throw new Error(`no ${qfile}`);
const all: { query: string; relevant: string[] }[] = [];
for await (const q of jsonl<{ query: string; relevant: string[] }>(qfile)) all.push(q);
// Deterministic spread over the split (it is sorted by query text).
const want = Math.min(Number(a.queries), all.length);
const queries = Array.from({ length: want }, (_, i) => all[Math.floor((i * all.length) / want)]!);
const relevant = new Map(queries.map((q, i) => [String(i), new Set(q.relevant)]));

console.log(`collection=${collection} queries=${queries.length} (${a.split})`);
console.log('mode     R@1    R@3    R@5    R@10   MRR@10 NDCG@10  p50ms  p99ms');
for (const mode of a.modes!.split(',')) {
  const rankings = new Map<string, { id: string; score: number }[]>();
  const lat: number[] = [];
  await pool(queries.map((q, i) => [q, i] as const), Number(a.concurrency), async ([q, i]) => {
    const t = performance.now();
    const r = await post<{ results: { id: string; score: number }[] }>('/search', { collection, query: q.query, k: 100, mode });
    lat.push(performance.now() - t);
    rankings.set(String(i), r.results.map((x) => ({ id: x.id, score: x.score })));
  });
  lat.sort((x, y) => x - y);
  const m = computeIrMetrics(relevant, rankings);
  const f = (x: number) => x.toFixed(4);
  console.log(`${mode.padEnd(8)} ${f(m['recall@1'])} ${f(m['recall@3'])} ${f(m['recall@5'])} ${f(m['recall@10'])} ${f(m['mrr@10'])} ${f(m['ndcg@10'])}  ${lat[Math.floor(lat.length * 0.5)]!.toFixed(1).padStart(5)}  ${lat[Math.floor(lat.length * 0.99)]!.toFixed(1).padStart(5)}`);
}
