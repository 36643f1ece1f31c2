// Dense retrieval quality of a model artifact as served (the server's embed pool: transformers.js + onnxruntime-node, CPU), scored by
// src/eval/metrics.ts with exact search. Cross-checks the Python numbers in model_card.json / trainer/RESULTS.md.
//   npx tsx bench/eval/model.ts --model test/fixtures/models/tiny-ft-go --data ../shared/data/go [--queries 2000] [--dtype fp32|q8]
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadEmbedder } from '../../src/embed/registry.js';
import { computeIrMetrics, type RankedHit } from '../../src/eval/metrics.js';

const { values: a } = parseArgs({
  options: {
    model: { type: 'string', default: 'test/fixtures/models/tiny-ft-go' },
    data: { type: 'string', default: '../shared/data/go' },
    split: { type: 'string', default: 'dev' },
    queries: { type: 'string', default: '0' },
    dtype: { type: 'string', default: 'fp32' },
    batch: { type: 'string', default: '64' },
  },
});

function readJsonl<T>(p: string): T[] {
  return readFileSync(p, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as T);
}

const modelDir = resolve(a.model);
const dtype = a.dtype === 'q8' ? 'q8' : 'fp32';
// The served path (worker pool, our tokenization and pooling), truncating where sentence-transformers does.
let maxTokens: number | undefined;
try {
  maxTokens = (JSON.parse(readFileSync(join(modelDir, 'model_card.json'), 'utf8')) as { max_seq_length?: number }).max_seq_length;
} catch {
  /* no card: the model's own limit */
}
const embedder = await loadEmbedder(
  { version: 'bench', source: { kind: 'dir', path: modelDir }, dtype },
  {
    cacheDir: '/tmp',
    workers: 2,
    maxBatch: Number(a.batch),
    maxWaitMs: 2,
    maxQueue: 1_000_000,
    maxTokens,
  },
);

async function embed(texts: string[]): Promise<{ data: Float32Array; dim: number }> {
  const rows = await embedder.embed(texts, { priority: 'bulk' });
  const dim = embedder.dim;
  const data = new Float32Array(texts.length * dim);
  rows.forEach((r, i) => data.set(r, i * dim));
  return { data, dim };
}

const corpus = readJsonl<{ id: string; text: string }>(join(a.data, 'corpus.jsonl'));
let queries = readJsonl<{ query: string; relevant: string[] }>(join(a.data, `queries.${a.split}.jsonl`));
const nq = Number(a.queries);
if (nq > 0) queries = queries.slice(0, nq);
const t0 = performance.now();
const C = await embed(corpus.map((c) => c.text));
const t1 = performance.now();
const Q = await embed(queries.map((q) => q.query));
const t2 = performance.now();
const d = C.dim;
const relevant = new Map<string, Set<string>>();
const rankings = new Map<string, RankedHit[]>();
const K = 100;
for (let qi = 0; qi < queries.length; qi++) {
  const q = Q.data.subarray(qi * d, qi * d + d);
  const scores = new Float32Array(corpus.length);
  for (let j = 0; j < corpus.length; j++) {
    let s = 0;
    const off = j * d;
    for (let k = 0; k < d; k++) s += (q[k] ?? 0) * (C.data[off + k] ?? 0);
    scores[j] = s;
  }
  // top K by insertion into a small sorted buffer (scores below the current K-th are skipped)
  const top: number[] = [];
  for (let j = 0; j < scores.length; j++) {
    const s = scores[j] ?? 0;
    if (top.length === K && s <= (scores[top[K - 1] ?? 0] ?? 0)) continue;
    let lo = 0;
    let hi = top.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((scores[top[mid] ?? 0] ?? 0) >= s) lo = mid + 1;
      else hi = mid;
    }
    top.splice(lo, 0, j);
    if (top.length > K) top.pop();
  }
  rankings.set(
    String(qi),
    top.map((j) => ({ id: corpus[j]?.id ?? '', score: scores[j] ?? 0 })),
  );
  relevant.set(String(qi), new Set(queries[qi]?.relevant ?? []));
}
const m = computeIrMetrics(relevant, rankings);
const keys = ['recall@1', 'recall@3', 'recall@5', 'recall@10', 'mrr@10', 'ndcg@10', 'map@100'] as const;
console.log(
  JSON.stringify({
    model: a.model,
    dtype,
    data: a.data,
    split: a.split,
    queries: queries.length,
    corpus: corpus.length,
    corpus_embed_per_s: Math.round(corpus.length / ((t1 - t0) / 1000)),
    query_embed_per_s: Math.round(queries.length / ((t2 - t1) / 1000)),
    search_secs: Number(((performance.now() - t2) / 1000).toFixed(1)),
    ...Object.fromEntries(keys.map((k) => [k, Number(m[k].toFixed(4))])),
  }),
);
await embedder.close();
