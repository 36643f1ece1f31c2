import type { ServedMode, Strategy } from '../strategy.js';
import { hybridMode } from './hybrid.js';
import { keywordMode } from './keyword.js';
import type { ModeQuery, Ranked, Retrieval, Served } from './types.js';
import { queryVector, vectorMode } from './vector.js';

/** The mode `auto` serves right now for a collection (and the fusion weight when hybrid). */
export function resolveAuto(s: Strategy | undefined, hasText: boolean): { mode: ServedMode; weight?: number } {
  if (!hasText) return { mode: 'vector' };
  if (!s) return { mode: 'keyword' };
  return s.mode === 'hybrid' ? { mode: 'hybrid', weight: s.weight ?? 0.5 } : { mode: s.mode };
}

/**
 * Auto mode: the collection's measured strategy (../tuner.ts fills the book; keyword until measured, vector
 * for a query given as a vector), as `resolveAuto` read it for this query.
 */
export async function autoMode(r: Retrieval, q: ModeQuery, resolved: ReturnType<typeof resolveAuto>): Promise<Served> {
  const { mode, weight } = resolved;
  if (mode === 'vector') return { mode, weight, hits: await vectorMode(r, q) };
  if (mode === 'hybrid') return { mode, weight, hits: await hybridMode(r, q, weight) };
  const hits = await keywordMode(r, q);
  // `auto` answers every query: when fewer than k documents share a term with it (the keyword search came
  // back short), the encoder's nearest neighbours follow the keyword hits, below them, so the keyword ranking
  // is untouched. Only then is the query embedded.
  return hits.length < q.depth ? { mode, weight, hits, more: () => backfill(r, q, hits) } : { mode, weight, hits };
}

async function backfill(r: Retrieval, q: ModeQuery, keyword: readonly Ranked[]): Promise<Ranked[]> {
  const have = new Set(keyword.map((h) => h.label));
  const floor = keyword.length ? Math.min(...keyword.map((h) => h.score)) : 0;
  const dense = await r.vectorSearch(q.collection, await queryVector(r, q), q.depth, { efSearch: q.efSearch, filter: q.filter });
  return dense.filter((h) => !have.has(h.label)).map((h) => ({ label: h.label, score: floor - 1 + h.score / 2 }));
}
