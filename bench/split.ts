// The honest split. Every dev file (GO, PubMedQA) is cut in two halves by a hash of the query text:
//   tune — what recipes, thresholds, margins and base models may be chosen on;
//   test — reported beside tune, never used to choose anything.
// The hash is fixed (no seed option) so that no run can pick a "good" test half.
import { createHash } from 'node:crypto';
import { evaluateStrategies, fusionMetrics, type QueryRankings } from '../src/search/strategy.js';

export type Half = 'tune' | 'test';

export function halfOf(query: string): Half {
  const q = query.toLowerCase().replace(/\s+/g, ' ').trim();
  return (createHash('sha256').update(`tuned-retrieval/honest-split\u0000${q}`).digest()[0]! & 1) === 0 ? 'tune' : 'test';
}

/**
 * The fusion weight fitted on the tune half's queries (what the server does with held-out feedback), and the
 * metrics of that fusion, unchanged, on each half.
 */
export function fusionFittedOnTune(halves: Record<Half, QueryRankings[]>): {
  weight: number;
  metrics: Record<Half, Record<string, number>>;
} {
  const weight = evaluateStrategies(halves.tune).hybrid.weight;
  return { weight, metrics: { tune: fusionMetrics(halves.tune, weight), test: fusionMetrics(halves.test, weight) } };
}
