// Choosing a collection's serving strategy by measurement.
//
// Input: for each evaluation query, the document-level dense ranking and BM25 ranking of one encoder, and
// the relevant documents. Output: NDCG@10 (and the other IR metrics) of vector, keyword, RRF hybrid and the
// convex fusion at every weight of a grid, and the strategy to serve. The same code decides at cold start
// (pseudo-queries over the live index), after ingest grows, and at the gate (held-out logged queries,
// candidate vs champion), so what /search serves and what the gate promoted are the same thing.

import { computeIrMetrics, type RankedHit } from '../eval/metrics.js';
import { convexFusion, reciprocalRankFusion, type Scored } from './fusion.js';

export type ServedMode = 'vector' | 'keyword' | 'hybrid';

/** Where the evaluation queries came from, strongest evidence first. */
export type EvidenceSource = 'feedback' | 'gate' | 'llm_questions' | 'pseudo_queries' | 'none';

export interface Strategy {
  mode: ServedMode;
  /** Convex-fusion weight of the dense side served by `auto` (hybrid only). */
  weight?: number;
  /** The fitted fusion weight, whatever was chosen: an explicit `mode: "hybrid"` uses it. */
  fusionWeight: number;
  /** The encoder the numbers were measured with: a strategy is only served with that model. */
  modelVersion: string;
  source: EvidenceSource;
  /** Evaluation queries behind the numbers. */
  queries: number;
  /** Held-out feedback queries available when decided (the re-decision trigger compares with this). */
  heldOut?: number;
  /** NDCG@10 of each strategy on those queries (hybrid = the fitted fusion; hybridRrf = RRF k=60). */
  scores: { vector: number | null; keyword: number | null; hybrid: number | null; hybridRrf: number | null };
  /** Documents in the collection when this was decided (re-decided when it grows by STRATEGY_REDECIDE_GROWTH). */
  documents: number;
  decidedAt: string;
  reason: string;
}

export interface QueryRankings {
  relevant: ReadonlySet<string>;
  dense: readonly Scored<string>[];
  sparse: readonly Scored<string>[];
}

const FUSION_GRID = Array.from({ length: 21 }, (_, i) => Math.round(i * 5) / 100);

export interface StrategyEvaluation {
  queries: number;
  vector: Record<string, number>;
  keyword: Record<string, number>;
  hybridRrf: Record<string, number>;
  /** The fitted convex fusion: its weight and metrics. */
  hybrid: Record<string, number> & { weight: number };
  /** NDCG@10 at each grid weight (for reports and the console). */
  curve: { weight: number; ndcg: number }[];
}

/** Ranks → hits whose scores keep the order (the metrics sort by score, then id). */
function asHits(list: readonly Scored<string>[]): RankedHit[] {
  return list.map((h, i) => ({ id: h.key, score: list.length - i }));
}

function metricsOf(qs: readonly QueryRankings[], rank: (q: QueryRankings) => readonly Scored<string>[]): Record<string, number> {
  const relevant = new Map<string, Set<string>>();
  const rankings = new Map<string, RankedHit[]>();
  qs.forEach((q, i) => {
    relevant.set(String(i), new Set(q.relevant));
    rankings.set(String(i), asHits(rank(q)));
  });
  return { ...computeIrMetrics(relevant, rankings) };
}

/** IR metrics of the convex fusion at one weight. */
export function fusionMetrics(qs: readonly QueryRankings[], weight: number): Record<string, number> {
  return metricsOf(qs, (q) => convexFusion(q.dense, q.sparse, weight));
}

/** Every strategy's metrics on one encoder's rankings, with the fusion weight fitted on the same queries. */
export function evaluateStrategies(qs: readonly QueryRankings[], grid: readonly number[] = FUSION_GRID): StrategyEvaluation {
  const curve = grid.map((weight) => ({ weight, ndcg: fusionMetrics(qs, weight)['ndcg@10'] ?? 0 }));
  // Best weight; among near-ties (1e-9) the one nearest the middle, which generalises better than an edge.
  let best = curve[0]!;
  for (const c of curve) {
    if (c.ndcg > best.ndcg + 1e-9 || (Math.abs(c.ndcg - best.ndcg) <= 1e-9 && Math.abs(c.weight - 0.5) < Math.abs(best.weight - 0.5)))
      best = c;
  }
  return {
    queries: qs.length,
    vector: metricsOf(qs, (q) => q.dense),
    keyword: metricsOf(qs, (q) => q.sparse),
    hybridRrf: metricsOf(qs, (q) => reciprocalRankFusion([q.dense, q.sparse])),
    hybrid: { ...fusionMetrics(qs, best.weight), weight: best.weight },
    curve,
  };
}

export interface ChooseOptions {
  /**
   * How much a strategy that uses the encoder must beat keyword by to be chosen. Weak evidence (pseudo-queries
   * cut from the documents, which favour exact term matches) gets a margin, so a cold start serves keyword
   * unless the encoder is clearly useful; real held-out queries get none.
   */
  margin: number;
  /** Hybrid must beat the better single mode by this much; otherwise the single mode is served (cheaper). */
  hybridMargin?: number;
}

/** The strategy to serve given one encoder's evaluation. */
export function chooseStrategy(ev: StrategyEvaluation, opts: ChooseOptions): { mode: ServedMode; weight?: number; reason: string } {
  const kw = ev.keyword['ndcg@10'] ?? 0;
  const vec = ev.vector['ndcg@10'] ?? 0;
  const hyb = ev.hybrid['ndcg@10'] ?? 0;
  const hm = opts.hybridMargin ?? 0.002;
  const f = (x: number) => x.toFixed(4);
  if (ev.queries === 0) return { mode: 'keyword', reason: 'no evaluation queries: keyword until there is evidence' };
  const bestSingle = vec > kw ? 'vector' : 'keyword';
  const bestSingleScore = Math.max(vec, kw);
  // Hybrid's weight was fitted on these queries, so it never scores below its inputs here: ask it to win by a
  // little to be worth the second search.
  if (hyb >= bestSingleScore + hm && hyb >= kw + opts.margin) {
    return {
      mode: 'hybrid',
      weight: ev.hybrid.weight,
      reason: `hybrid (w=${ev.hybrid.weight}) ${f(hyb)} beats vector ${f(vec)} and keyword ${f(kw)}`,
    };
  }
  if (bestSingle === 'vector' && vec >= kw + opts.margin) {
    return { mode: 'vector', reason: `vector ${f(vec)} beats keyword ${f(kw)}${hyb > vec ? ` (hybrid ${f(hyb)} adds < ${hm})` : ''}` };
  }
  return { mode: 'keyword', reason: `keyword ${f(kw)}: vector ${f(vec)} and hybrid ${f(hyb)} do not beat it by the margin ${opts.margin}` };
}

/** NDCG@10 of the chosen strategy in an evaluation. */
export function scoreOf(ev: StrategyEvaluation, mode: ServedMode): number {
  return (mode === 'vector' ? ev.vector : mode === 'keyword' ? ev.keyword : ev.hybrid)['ndcg@10'] ?? 0;
}

/** The metric record of a strategy (for the gate's guarded metrics). */
function metricsFor(ev: StrategyEvaluation, mode: ServedMode): Record<string, number> {
  const m = mode === 'vector' ? ev.vector : mode === 'keyword' ? ev.keyword : ev.hybrid;
  const { weight: _w, ...rest } = m as Record<string, number>;
  return rest;
}

export interface GateOption {
  mode: 'vector' | 'hybrid';
  weight?: number;
  metrics: Record<string, number>;
}

/** What the candidate encoder could serve: vector, and the fusion at every weight of the grid above 0. */
export function candidateOptions(qs: readonly QueryRankings[], grid: readonly number[] = FUSION_GRID): GateOption[] {
  return [
    { mode: 'vector', metrics: metricsOf(qs, (q) => q.dense) },
    ...grid.filter((w) => w > 0 && w < 1).map((weight) => ({ mode: 'hybrid' as const, weight, metrics: fusionMetrics(qs, weight) })),
  ];
}

export interface StrategyGate<D extends { passed: boolean }> {
  passed: boolean;
  /** Which rule decided: the best strategy with the candidate vs the best without it, or (weak evidence) the encoders. */
  rule: 'best_strategy' | 'encoder_on_weak_evidence' | 'none';
  /** The strategy the candidate would be served with. */
  pick: { mode: ServedMode; weight?: number; reason: string };
  decision: D;
}

/**
 * The gate across strategies. Every option the candidate offers (vector; hybrid at each weight) is held
 * against the champion's best strategy (whatever it is, keyword included) with `gate` (margin on NDCG@10,
 * tolerance on the guarded metrics); the best passing option wins, so a candidate is not rejected because
 * the one weight that maximises NDCG@10 gives up a little MRR when a slightly different mix would not.
 *
 * Weak evidence (pseudo-queries cut from the documents, a cold start): BM25 finds a sentence of its own
 * document almost always, so nothing can beat keyword there by a margin. The encoder is then promoted when
 * it beats the champion's encoder (vector vs vector, by the gate) and its best strategy is not worse than the
 * champion's best beyond the tolerance; it is served with what that weak evidence supports (the cold margin).
 */
export function gateStrategies<D extends { passed: boolean }>(
  options: readonly GateOption[],
  candEv: StrategyEvaluation,
  champEv: StrategyEvaluation,
  gate: (cand: Record<string, number>, champ: Record<string, number>) => D,
  opts: { weakEvidence: boolean; coldMargin: number; tolerance: number },
): StrategyGate<D> {
  const champChoice = chooseStrategy(champEv, { margin: 0 });
  const champBest = metricsFor(champEv, champChoice.mode);
  const f = (x: number) => x.toFixed(4);
  const judged = options
    .map((o) => ({ o, d: gate(o.metrics, champBest) }))
    .sort((a, b) => (b.o.metrics['ndcg@10'] ?? 0) - (a.o.metrics['ndcg@10'] ?? 0));
  const pass = judged.find((j) => j.d.passed);
  const label = (o: GateOption) => (o.mode === 'hybrid' ? `hybrid (w=${o.weight})` : 'vector');
  if (pass) {
    return {
      passed: true,
      rule: 'best_strategy',
      decision: pass.d,
      pick: {
        mode: pass.o.mode,
        ...(pass.o.weight !== undefined ? { weight: pass.o.weight } : {}),
        reason: `${label(pass.o)} ${f(pass.o.metrics['ndcg@10'] ?? 0)} vs the champion's ${champChoice.mode} ${f(champBest['ndcg@10'] ?? 0)}: passed the gate`,
      },
    };
  }
  if (opts.weakEvidence) {
    const enc = gate(metricsFor(candEv, 'vector'), metricsFor(champEv, 'vector'));
    const candChoice = chooseStrategy(candEv, { margin: opts.coldMargin });
    const bestWith = scoreOf(candEv, candChoice.mode);
    const bestWithout = champBest['ndcg@10'] ?? 0;
    if (enc.passed && bestWith + 1e-12 >= bestWithout - opts.tolerance) {
      return { passed: true, rule: 'encoder_on_weak_evidence', decision: enc, pick: candChoice };
    }
    return { passed: false, rule: 'encoder_on_weak_evidence', decision: enc, pick: candChoice };
  }
  const best = judged[0]!;
  return {
    passed: false,
    rule: 'none',
    decision: best.d,
    pick: {
      mode: best.o.mode,
      ...(best.o.weight !== undefined ? { weight: best.o.weight } : {}),
      reason: `no strategy with the candidate passed the gate (best: ${label(best.o)} ${f(best.o.metrics['ndcg@10'] ?? 0)})`,
    },
  };
}
