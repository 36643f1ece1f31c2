// Rank fusion of a dense (vector) and a sparse (BM25 keyword) result list.
//
// Two fusions are offered: reciprocal-rank fusion (Cormack et al. 2009; parameter-free, what `hybrid` served
// before strategies were tuned) and a convex combination of min-max normalised scores with a weight
// (Weaviate's relativeScoreFusion). RRF ignores how far apart scores are and weighs both lists equally, so on
// a collection where one side is much better it lands below that side; the convex fusion's weight is fitted
// per collection on its evaluation set (./strategy.ts), and w = 0 / w = 1 reproduce keyword / vector, so the
// fitted fusion can only tie or beat the better input on the set it was fitted on.

export interface Scored<K> {
  key: K;
  score: number;
}

const RRF_K = 60;

/** Reciprocal-rank fusion: score = Σ 1/(k + rank). */
export function reciprocalRankFusion<K>(lists: readonly (readonly Scored<K>[])[], k = RRF_K): Scored<K>[] {
  const acc = new Map<K, number>();
  for (const list of lists) list.forEach((h, i) => acc.set(h.key, (acc.get(h.key) ?? 0) + 1 / (k + i + 1)));
  return sortDesc(acc);
}

/** Min-max normalised scores of one list (best = 1, worst = 0; a list of equal scores is all 1). */
export function minMaxNormalize<K>(list: readonly Scored<K>[]): Map<K, number> {
  const out = new Map<K, number>();
  if (list.length === 0) return out;
  let lo = Infinity;
  let hi = -Infinity;
  for (const h of list) {
    if (h.score < lo) lo = h.score;
    if (h.score > hi) hi = h.score;
  }
  const span = hi - lo;
  for (const h of list) out.set(h.key, span > 0 ? (h.score - lo) / span : 1);
  return out;
}

/**
 * Convex fusion: w · dense' + (1 − w) · sparse', each list min-max normalised over its own hits; a hit
 * missing from a list scores 0 there. Ties are broken by the dense rank, then the sparse rank, so w = 1
 * returns the vector order and w = 0 the keyword order (followed by the other list's remaining hits).
 */
export function convexFusion<K>(dense: readonly Scored<K>[], sparse: readonly Scored<K>[], weight: number): Scored<K>[] {
  const w = Math.min(1, Math.max(0, weight));
  const d = minMaxNormalize(dense);
  const s = minMaxNormalize(sparse);
  const dRank = new Map<K, number>();
  dense.forEach((h, i) => {
    if (!dRank.has(h.key)) dRank.set(h.key, i);
  });
  const sRank = new Map<K, number>();
  sparse.forEach((h, i) => {
    if (!sRank.has(h.key)) sRank.set(h.key, i);
  });
  const keys = new Set<K>([...d.keys(), ...s.keys()]);
  const out: (Scored<K> & { dr: number; sr: number })[] = [];
  for (const key of keys) {
    out.push({
      key,
      score: w * (d.get(key) ?? 0) + (1 - w) * (s.get(key) ?? 0),
      dr: dRank.get(key) ?? Infinity,
      sr: sRank.get(key) ?? Infinity,
    });
  }
  const denseFirst = w >= 0.5;
  out.sort((a, b) => b.score - a.score || (denseFirst ? a.dr - b.dr || a.sr - b.sr : a.sr - b.sr || a.dr - b.dr));
  return out.map(({ key, score }) => ({ key, score }));
}

function sortDesc<K>(acc: Map<K, number>): Scored<K>[] {
  return [...acc.entries()].map(([key, score]) => ({ key, score })).sort((a, b) => b.score - a.score);
}

/**
 * Chunk hits (best first) collapsed to documents: each document scores with its best chunk, in that order,
 * until `depth` documents. Hits whose document is unknown (tombstoned since) are skipped.
 */
export function bestPerDocument<K>(hits: Iterable<Scored<K>>, docOf: (key: K) => string | undefined, depth: number): Scored<string>[] {
  const out: Scored<string>[] = [];
  const seen = new Set<string>();
  for (const h of hits) {
    const doc = docOf(h.key);
    if (doc === undefined || seen.has(doc)) continue;
    seen.add(doc);
    out.push({ key: doc, score: h.score });
    if (out.length >= depth) break;
  }
  return out;
}
