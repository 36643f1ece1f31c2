import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { computeIrMetrics, sortHits, type RankedHit } from '../../src/eval/metrics.js';

interface FixtureSet {
  n_queries: number;
  relevant: Record<string, string[]>;
  rankings: Record<string, [string, number][]>;
  st_metrics: Record<string, number>;
}
interface Fixture {
  model: string;
  sentence_transformers: string;
  datasets: Record<string, FixtureSet>;
}

// Produced on the H100 device by scripts/gpu/st_fixture.py: sentence-transformers' InformationRetrievalEvaluator
// (write_predictions) top-100 rankings of the tiny-ft-go model + the metric dict it computed from them.
const fx = JSON.parse(
  gunzipSync(readFileSync(new URL('../fixtures/eval/st_ir_fixture.json.gz', import.meta.url))).toString('utf8'),
) as Fixture;

function load(set: FixtureSet) {
  const relevant = new Map(Object.entries(set.relevant).map(([q, r]) => [q, new Set(r)] as const));
  const rankings = new Map(Object.entries(set.rankings).map(([q, r]) => [q, r.map(([id, score]) => ({ id, score }))] as const));
  return { relevant, rankings };
}

describe('computeIrMetrics matches sentence-transformers InformationRetrievalEvaluator', () => {
  for (const [name, set] of Object.entries(fx.datasets)) {
    it(`${name}: every metric equals ST's (${set.n_queries} queries)`, () => {
      const { relevant, rankings } = load(set);
      const m = computeIrMetrics(relevant, rankings);
      const keys = Object.keys(set.st_metrics).sort();
      expect(keys).toEqual(Object.keys(m).sort());
      for (const k of keys) expect(m[k], k).toBeCloseTo(set.st_metrics[k] ?? NaN, 12);
    });

    it(`${name}: input order of hits does not matter (ST sorts by score desc, id asc)`, () => {
      const { relevant, rankings } = load(set);
      const shuffled = new Map([...rankings].map(([q, r]) => [q, [...r].reverse()] as const));
      expect(computeIrMetrics(relevant, shuffled)).toEqual(computeIrMetrics(relevant, rankings));
    });
  }

  it('fixture metrics are non-trivial (the model retrieves something)', () => {
    expect(fx.datasets.go?.st_metrics['ndcg@10']).toBeGreaterThan(0.3);
    expect(fx.datasets.pubmedqa?.st_metrics['ndcg@10']).toBeGreaterThan(0.1);
  });
});

describe('computeIrMetrics definitions', () => {
  const rel = new Map([
    ['q1', new Set(['a', 'c'])],
    ['q2', new Set(['z'])],
  ]);
  const hits = (ids: string[]): RankedHit[] => ids.map((id, i) => ({ id, score: 1 - i / 100 }));

  it('hand-computed example', () => {
    const m = computeIrMetrics(
      rel,
      new Map([
        ['q1', hits(['b', 'a', 'd', 'c'])],
        ['q2', hits(['x', 'y'])],
      ]),
    );
    expect(m['accuracy@1']).toBe(0);
    expect(m['accuracy@3']).toBe(0.5);
    expect(m['precision@1']).toBe(0);
    expect(m['precision@3']).toBeCloseTo((1 / 3 + 0) / 2, 15);
    expect(m['recall@3']).toBeCloseTo((0.5 + 0) / 2, 15);
    expect(m['recall@5']).toBeCloseTo((1 + 0) / 2, 15);
    expect(m['mrr@10']).toBeCloseTo(1 / 2 / 2, 15);
    const dcg = 1 / Math.log2(3) + 1 / Math.log2(5);
    const idcg = 1 + 1 / Math.log2(3);
    expect(m['ndcg@10']).toBeCloseTo(dcg / idcg / 2, 15);
    expect(m['map@100']).toBeCloseTo((1 / 2 + 2 / 4) / 2 / 2, 15);
  });

  it('queries without relevant docs are skipped; queries without a ranking count as misses', () => {
    const r = new Map([
      ['q1', new Set(['a'])],
      ['q0', new Set<string>()],
      ['q2', new Set(['b'])],
    ]);
    const m = computeIrMetrics(
      r,
      new Map([
        ['q1', hits(['a'])],
        ['q0', hits(['a'])],
      ]),
    );
    expect(m['accuracy@1']).toBe(0.5);
    expect(m['ndcg@10']).toBe(0.5);
  });

  it('ties break by ascending id and repeated ids count once', () => {
    expect(
      sortHits(
        [
          { id: 'b', score: 1 },
          { id: 'a', score: 1 },
          { id: 'b', score: 0.5 },
        ],
        10,
      ).map((h) => h.id),
    ).toEqual(['a', 'b']);
  });

  it('empty input gives zeros', () => {
    const m = computeIrMetrics(new Map(), new Map());
    expect(m['ndcg@10']).toBe(0);
    expect(m['recall@10']).toBe(0);
  });
});
