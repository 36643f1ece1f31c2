import { describe, expect, it } from 'vitest';
import { convexFusion, minMaxNormalize, reciprocalRankFusion } from '../../src/search/fusion.js';
import { chooseStrategy, evaluateStrategies, type QueryRankings } from '../../src/search/strategy.js';
import { decideGroupField } from '../../src/train/groups.js';
import { resolveAuto } from '../../src/search/tuner.js';

const list = (...keys: string[]) => keys.map((key, i) => ({ key, score: 1 - i / 10 }));

describe('fusion', () => {
  it('min-max normalises each list to [0, 1]', () => {
    const m = minMaxNormalize([{ key: 'a', score: 3 }, { key: 'b', score: 2 }, { key: 'c', score: 1 }]);
    expect([...m.values()]).toEqual([1, 0.5, 0]);
  });
  it('convex fusion: w = 1 is the vector order, w = 0 the keyword order', () => {
    const dense = list('a', 'b', 'c');
    const sparse = list('c', 'd', 'a');
    expect(convexFusion(dense, sparse, 1).slice(0, 3).map((h) => h.key)).toEqual(['a', 'b', 'c']);
    expect(convexFusion(dense, sparse, 0).slice(0, 3).map((h) => h.key)).toEqual(['c', 'd', 'a']);
  });
  it('convex fusion rewards agreement at w = 0.5', () => {
    const fused = convexFusion(list('a', 'x', 'b'), list('b', 'y', 'a'), 0.5);
    // a and b are in both lists; each list alone ranks one of them last.
    expect(fused.slice(0, 2).map((h) => h.key).sort()).toEqual(['a', 'b']);
  });
  it('RRF is symmetric in its lists', () => {
    const fused = reciprocalRankFusion([list('a', 'b'), list('b', 'a')]);
    expect(fused[0]!.score).toBeCloseTo(1 / 61 + 1 / 62, 12);
    expect(fused[1]!.score).toBeCloseTo(fused[0]!.score, 12);
  });
});

/** Queries whose relevant doc is ranked first by one side and absent from the other side's top. */
function fixture(n: number, denseRight: number, sparseRight: number): QueryRankings[] {
  const out: QueryRankings[] = [];
  for (let i = 0; i < n; i++) {
    const rel = `rel${i}`;
    const noise = Array.from({ length: 12 }, (_, j) => `n${i}-${j}`);
    const dense = i < denseRight ? [rel, ...noise] : [...noise, rel];
    const sparse = i >= n - sparseRight ? [rel, ...noise.slice().reverse()] : noise.slice().reverse();
    out.push({ relevant: new Set([rel]), dense: list(...dense), sparse: list(...sparse) });
  }
  return out;
}

describe('strategy choice', () => {
  it('a useless encoder is served as keyword', () => {
    const ev = evaluateStrategies(fixture(40, 0, 30));
    expect(ev.keyword['ndcg@10']).toBeGreaterThan(ev.vector['ndcg@10']!);
    expect(chooseStrategy(ev, { margin: 0 }).mode).toBe('keyword');
  });
  it('a strong encoder is served as vector', () => {
    const ev = evaluateStrategies(fixture(40, 40, 5));
    expect(chooseStrategy(ev, { margin: 0 }).mode).toBe('vector');
  });
  it('complementary sides are served as hybrid with a fitted weight, which beats both inputs', () => {
    // first half found only by dense, second half only by keyword
    const ev = evaluateStrategies(fixture(40, 20, 20));
    const c = chooseStrategy(ev, { margin: 0 });
    expect(c.mode).toBe('hybrid');
    expect(ev.hybrid['ndcg@10']).toBeGreaterThan(Math.max(ev.vector['ndcg@10']!, ev.keyword['ndcg@10']!));
    expect(c.weight).toBeGreaterThan(0);
    expect(c.weight).toBeLessThan(1);
  });
  it('the fitted fusion is never below the better input on the set it was fitted on', () => {
    for (const [d, s] of [[5, 30], [30, 5], [15, 15], [0, 0], [40, 40]] as const) {
      const ev = evaluateStrategies(fixture(40, d, s));
      expect(ev.hybrid['ndcg@10']!).toBeGreaterThanOrEqual(Math.max(ev.vector['ndcg@10']!, ev.keyword['ndcg@10']!) - 1e-9);
    }
  });
  it('weak evidence needs the margin to leave keyword', () => {
    const ev = evaluateStrategies(fixture(40, 22, 20));
    expect(chooseStrategy(ev, { margin: 0 }).mode).not.toBe('keyword');
    expect(chooseStrategy(ev, { margin: 0.9 }).mode).toBe('keyword');
  });
  it('auto without a decision serves keyword for text and vector for a vector', () => {
    expect(resolveAuto(undefined, true)).toEqual({ mode: 'keyword' });
    expect(resolveAuto(undefined, false)).toEqual({ mode: 'vector' });
  });
});

describe('group field detection', () => {
  const counts = (entries: [string, number][]) => new Map(entries);
  it('finds a source id shared by a few documents (pmid), not a category or a unique id', () => {
    const pmid = counts(Array.from({ length: 300 }, (_, i) => [`p${i}`, 3] as [string, number]));
    const section = counts([['BACKGROUND', 300], ['METHODS', 300], ['RESULTS', 300]]);
    const uid = counts(Array.from({ length: 900 }, (_, i) => [`u${i}`, 1] as [string, number]));
    const d = decideGroupField(new Map([['section', section], ['uid', uid], ['pmid', pmid]]), 900);
    expect(d.field).toBe('pmid');
  });
  it('finds nothing on a corpus of categories (GO namespace)', () => {
    const ns = counts([['BP', 20000], ['MF', 10000], ['CC', 5000]]);
    expect(decideGroupField(new Map([['namespace', ns]]), 35000).field).toBeNull();
  });
});
