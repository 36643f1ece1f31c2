import { describe, expect, it } from 'vitest';
import { convexFusion, minMaxNormalize, reciprocalRankFusion } from '../../src/search/fusion.js';
import { candidateOptions, chooseStrategy, evaluateStrategies, gateStrategies, type QueryRankings } from '../../src/search/strategy.js';
import { decideGate } from '../../src/eval/gate.js';
import { decideGroupField } from '../../src/train/groups.js';
import { resolveAuto } from '../../src/search/modes/auto.js';

const list = (...keys: string[]) => keys.map((key, i) => ({ key, score: 1 - i / 10 }));

describe('fusion', () => {
  it('min-max normalises each list to [0, 1]', () => {
    const m = minMaxNormalize([
      { key: 'a', score: 3 },
      { key: 'b', score: 2 },
      { key: 'c', score: 1 },
    ]);
    expect([...m.values()]).toEqual([1, 0.5, 0]);
  });
  it('convex fusion: w = 1 is the vector order, w = 0 the keyword order', () => {
    const dense = list('a', 'b', 'c');
    const sparse = list('c', 'd', 'a');
    expect(
      convexFusion(dense, sparse, 1)
        .slice(0, 3)
        .map((h) => h.key),
    ).toEqual(['a', 'b', 'c']);
    expect(
      convexFusion(dense, sparse, 0)
        .slice(0, 3)
        .map((h) => h.key),
    ).toEqual(['c', 'd', 'a']);
  });
  it('convex fusion rewards agreement at w = 0.5', () => {
    const fused = convexFusion(list('a', 'x', 'b'), list('b', 'y', 'a'), 0.5);
    // a and b are in both lists; each list alone ranks one of them last.
    expect(
      fused
        .slice(0, 2)
        .map((h) => h.key)
        .sort(),
    ).toEqual(['a', 'b']);
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
    for (const [d, s] of [
      [5, 30],
      [30, 5],
      [15, 15],
      [0, 0],
      [40, 40],
    ] as const) {
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
    const section = counts([
      ['BACKGROUND', 300],
      ['METHODS', 300],
      ['RESULTS', 300],
    ]);
    const uid = counts(Array.from({ length: 900 }, (_, i) => [`u${i}`, 1] as [string, number]));
    const d = decideGroupField(
      new Map([
        ['section', section],
        ['uid', uid],
        ['pmid', pmid],
      ]),
      900,
    );
    expect(d.field).toBe('pmid');
  });
  it('finds nothing on a corpus of categories (GO namespace)', () => {
    const ns = counts([
      ['BP', 20000],
      ['MF', 10000],
      ['CC', 5000],
    ]);
    expect(decideGroupField(new Map([['namespace', ns]]), 35000).field).toBeNull();
  });
});

describe('the gate across strategies', () => {
  const gate = (c: Record<string, number>, h: Record<string, number>) => decideGate(c, h, { margin: 0.01, tolerance: 0.005 });
  it('promotes with the best option that passes, not only the one that maximises NDCG@10', () => {
    // Each side has the relevant document first for half of the queries and third for the other half, so a
    // range of fusion weights puts it first everywhere; the champion's encoder finds nothing.
    const near = (n: number, denseUseless: boolean): QueryRankings[] =>
      Array.from({ length: n }, (_, i) => {
        const rel = `rel${i}`;
        const noise = Array.from({ length: 12 }, (_, j) => `n${i}-${j}`);
        const at = (k: number) => [...noise.slice(0, k), rel, ...noise.slice(k)];
        const dense = denseUseless ? noise : at(i < n / 2 ? 0 : 2);
        const sparse = at(i < n / 2 ? 2 : 0).map((x) => (x === rel ? x : `s${x}`)); // other noise than the dense side's
        return { relevant: new Set([rel]), dense: list(...dense), sparse: list(...sparse) };
      });
    const cand = near(40, false);
    const champ = near(40, true);
    const candEv = evaluateStrategies(cand);
    const champEv = evaluateStrategies(champ);
    const options = candidateOptions(cand);
    const top = Math.max(...options.map((o) => o.metrics['ndcg@10']!));
    // A gate that refuses the single best option (as a guarded metric would) must not sink the candidate.
    const best = options.find((o) => o.metrics['ndcg@10'] === top)!;
    const picky = (c: Record<string, number>, h: Record<string, number>) => {
      const d = gate(c, h);
      return c === best.metrics ? { ...d, passed: false } : d;
    };
    const sg = gateStrategies(options, candEv, champEv, picky, { weakEvidence: false, coldMargin: 0.02, tolerance: 0.005 });
    expect(sg.passed).toBe(true);
    expect(sg.rule).toBe('best_strategy');
    expect(sg.pick.mode).toBe('hybrid');
    expect(sg.pick.weight).not.toBe(best.weight);
    expect(sg.decision.candidate['ndcg@10']).toBeGreaterThan(champEv.keyword['ndcg@10']! + 0.01);
  });
  it('rejects a candidate no option of which beats the best strategy without it', () => {
    const same = fixture(40, 0, 30);
    const sg = gateStrategies(candidateOptions(same), evaluateStrategies(same), evaluateStrategies(same), gate, {
      weakEvidence: false,
      coldMargin: 0.02,
      tolerance: 0.005,
    });
    expect(sg.passed).toBe(false);
    expect(sg.rule).toBe('none');
  });
  it('on weak evidence (keyword near perfect on pseudo-queries) a better encoder is promoted and served with what that evidence supports', () => {
    const cand = fixture(40, 36, 40);
    const champ = fixture(40, 5, 40);
    const candEv = evaluateStrategies(cand);
    const champEv = evaluateStrategies(champ);
    const strict = gateStrategies(candidateOptions(cand), candEv, champEv, gate, {
      weakEvidence: false,
      coldMargin: 0.02,
      tolerance: 0.005,
    });
    expect(strict.passed).toBe(false); // nothing beats keyword by the margin
    const weak = gateStrategies(candidateOptions(cand), candEv, champEv, gate, { weakEvidence: true, coldMargin: 0.02, tolerance: 0.005 });
    expect(weak.passed).toBe(true);
    expect(weak.rule).toBe('encoder_on_weak_evidence');
    expect(weak.pick.mode).toBe('keyword');
  });
});
