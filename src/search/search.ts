// The search pipeline: pick the mode (./modes/), rank chunks, hydrate them into the best k documents.
// The engine hands it a `Retrieval` bound to the serving pair the request started with; query logging,
// metrics and the response envelope stay with the engine (src/serving/engine.ts).

import type { Collection, HydratedChunk, Metadata, Scalar } from '../store/types.js';
import { bestPerDocument, type Scored } from './fusion.js';
import type { DepthPlanner } from './depth.js';
import { autoMode, resolveAuto } from './modes/auto.js';
import { hybridMode } from './modes/hybrid.js';
import { keywordMode } from './modes/keyword.js';
import type { ModeQuery, Ranked, Retrieval, Served } from './modes/types.js';
import { vectorMode } from './modes/vector.js';
import type { ServedMode } from './strategy.js';

export interface SearchRequest {
  collection: string;
  query?: string;
  /** A query vector: numbers from JSON, or float32 decoded from base64 (decodeVector, src/http/vector.ts). */
  vector?: ArrayLike<number>;
  k: number;
  filter?: Record<string, Scalar>;
  efSearch?: number;
  /** `auto` serves the collection's measured strategy (./tuner.ts); the others force a mode. */
  mode: 'auto' | ServedMode;
}

export interface SearchResultItem {
  id: string;
  score: number;
  text: string;
  metadata: Metadata;
  chunk: { id: string; n: number };
}

/** The best `k` documents for `req` in collection `c`, and the mode (and fusion weight) that ranked them. */
export async function runSearch(
  r: Retrieval,
  c: Collection,
  req: SearchRequest,
  maxK: number,
  planner?: DepthPlanner,
): Promise<{ results: SearchResultItem[]; mode: ServedMode; weight?: number }> {
  const q: ModeQuery = {
    collection: c,
    query: req.query,
    vector: req.vector,
    efSearch: req.efSearch,
    filter: req.filter && Object.keys(req.filter).length > 0 ? req.filter : undefined,
    // Chunks of one document compete for slots; fetch extra so k distinct documents come back.
    depth: Math.min(req.k * 3 + 10, maxK * 3),
  };
  const resolved = req.mode === 'auto' ? resolveAuto(r.strategy(c), req.query !== undefined) : { mode: req.mode };
  const { mode } = resolved;
  if (mode === 'vector' && planner) return { ...(await plannedVector(r, q, req.k, planner)), mode };
  const served = req.mode === 'auto' ? await autoMode(r, q, resolved) : await forcedMode(r, q, mode);
  const { results } = await topDocuments(r, served, req.k);
  return { results, mode: served.mode, weight: served.weight };
}

/**
 * Vector mode at the planner's depth (./depth.ts): when that ranking fills fewer than k documents although
 * the index had more to give, the query is searched again at the full depth.
 */
async function plannedVector(r: Retrieval, q: ModeQuery, k: number, planner: DepthPlanner): Promise<{ results: SearchResultItem[] }> {
  const depth = planner.depth(q.collection.id, k, q.depth);
  let top = await topDocuments(r, { mode: 'vector', hits: await vectorMode(r, { ...q, depth }) }, k);
  if (top.results.length < k && top.ranked >= depth && depth < q.depth) {
    top = await topDocuments(r, { mode: 'vector', hits: await vectorMode(r, q) }, k);
  }
  planner.observe(q.collection.id, top.examined, top.results.length);
  return { results: top.results };
}

async function forcedMode(r: Retrieval, q: ModeQuery, mode: ServedMode): Promise<Served> {
  if (mode === 'vector') return { mode, hits: await vectorMode(r, q) };
  if (mode === 'keyword') return { mode, hits: await keywordMode(r, q) };
  // An explicit hybrid uses the weight fitted for this collection when there is one, RRF otherwise.
  const weight = r.strategy(q.collection)?.fusionWeight;
  return { mode, weight, hits: await hybridMode(r, q, weight) };
}

/**
 * Hydrates only as far down the ranking as needed: usually k rows, more when chunks of one document (or hits
 * tombstoned since the search) take slots; the best chunk of each document stands for it. `examined` is how
 * many ranked chunks it took to fill the documents, `ranked` how many the ranking held.
 */
async function topDocuments(
  r: Retrieval,
  served: Served,
  k: number,
): Promise<{ results: SearchResultItem[]; examined: number; ranked: number }> {
  const ranked: Ranked[] = served.hits;
  let more = served.more;
  const results: SearchResultItem[] = [];
  const seen = new Set<string>();
  let from = 0;
  while (results.length < k) {
    if (from >= ranked.length) {
      if (!more) break;
      const extra = more;
      more = undefined;
      for (const h of await extra()) ranked.push(h);
      continue;
    }
    const part = ranked.slice(from, from + Math.max(k - results.length, 8));
    const chunks = await r.hydrate(part.map((h) => h.label));
    for (const h of part) {
      from++;
      const ch = chunks.get(h.label);
      if (!ch || seen.has(ch.docId)) continue;
      seen.add(ch.docId);
      results.push(toResult(ch, h.score));
      if (results.length === k) break;
    }
  }
  return { results, examined: from, ranked: ranked.length };
}

function toResult(ch: HydratedChunk, score: number): SearchResultItem {
  return { id: ch.docId, score, text: ch.text, metadata: ch.metadata, chunk: { id: `${ch.docId}#${ch.n}`, n: ch.n } };
}

/**
 * Document-level dense and keyword rankings of one query with the serving model: what the strategy tuner
 * measures (the live index and the live keyword search, as /search would use them), on the bulk lane.
 */
export async function rankBoth(
  r: Retrieval,
  c: Collection,
  query: string,
  depth: number,
): Promise<{ dense: Scored<string>[]; sparse: Scored<string>[] }> {
  const dense = await r.vectorSearch(c, await r.embedQuery(query, 'bulk'), depth * 3);
  const sparse = await r.keywordSearch(c, query, depth * 3);
  const chunks = await r.hydrate([...new Set([...dense, ...sparse].map((h) => h.label))]);
  const toDocs = (hits: Ranked[]) =>
    bestPerDocument(
      hits.map((h) => ({ key: h.label, score: h.score })),
      (label) => chunks.get(label)?.docId,
      depth,
    );
  return { dense: toDocs(dense), sparse: toDocs(sparse) };
}
