// BM25 baseline on a data set's split: npx tsx bench/eval/bm25.ts [--data ../shared/data/go] [--split dev]
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Bm25Index } from '../../src/eval/bm25.js';
import { computeIrMetrics, type RankedHit } from '../../src/eval/metrics.js';

const { values: a } = parseArgs({
  options: {
    data: { type: 'string', multiple: true },
    split: { type: 'string', default: 'dev' },
    k1: { type: 'string', default: '1.2' },
    b: { type: 'string', default: '0.75' },
  },
});

function readJsonl<T>(p: string): T[] {
  return readFileSync(p, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as T);
}

for (const dir of a.data ?? ['../shared/data/go', '../shared/data/pubmedqa']) {
  const t0 = performance.now();
  const corpus = readJsonl<{ id: string; text: string }>(join(dir, 'corpus.jsonl'));
  const queries = readJsonl<{ query: string; relevant: string[] }>(join(dir, `queries.${a.split}.jsonl`));
  const idx = new Bm25Index(corpus, { k1: Number(a.k1), b: Number(a.b) });
  const relevant = new Map<string, Set<string>>();
  const rankings = new Map<string, RankedHit[]>();
  queries.forEach((q, i) => {
    relevant.set(String(i), new Set(q.relevant));
    rankings.set(String(i), idx.search(q.query, 100));
  });
  const m = computeIrMetrics(relevant, rankings);
  const secs = (performance.now() - t0) / 1000;
  const keys = ['recall@1', 'recall@3', 'recall@5', 'recall@10', 'mrr@10', 'ndcg@10', 'map@100'] as const;
  console.log(
    JSON.stringify({
      data: dir,
      split: a.split,
      queries: queries.length,
      corpus: corpus.length,
      secs: Number(secs.toFixed(1)),
      ...Object.fromEntries(keys.map((k) => [k, Number(m[k].toFixed(4))])),
    }),
  );
}
