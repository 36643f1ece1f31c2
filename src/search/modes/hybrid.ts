import { AppError } from '../../errors.js';
import { convexFusion, reciprocalRankFusion } from '../fusion.js';
import type { ModeQuery, Ranked, Retrieval } from './types.js';
import { vectorMode } from './vector.js';

/**
 * Hybrid mode: the vector and keyword rankings fused, by the convex fusion with the dense side's `weight`
 * (fitted per collection) or, without one, by reciprocal-rank fusion (../fusion.ts says why both).
 */
export async function hybridMode(r: Retrieval, q: ModeQuery, weight: number | undefined): Promise<Ranked[]> {
  const dense = await vectorMode(r, q);
  if (q.query === undefined) throw new AppError('invalid_request', 'mode "hybrid" needs a text "query"');
  const sparse = await r.keywordSearch(q.collection, q.query, q.depth, q.filter);
  const d = dense.map((h) => ({ key: h.label, score: h.score }));
  const sp = sparse.map((h) => ({ key: h.label, score: h.score }));
  return (weight === undefined ? reciprocalRankFusion([d, sp]) : convexFusion(d, sp, weight)).map((h) => ({
    label: h.key,
    score: h.score,
  }));
}
