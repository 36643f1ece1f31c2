// Information-retrieval metrics with exactly the definitions of sentence-transformers'
// InformationRetrievalEvaluator (sentence_transformers/sentence_transformer/evaluation/information_retrieval.py,
// v6.0.1): per query the hits are sorted by (score desc, corpus id asc) and cut to the largest k; then
//   accuracy@k  = 1 if any relevant doc in the top k
//   precision@k = (#relevant in top k) / k
//   recall@k    = (#relevant in top k) / |relevant|
//   mrr@k       = 1 / rank of the first relevant doc in the top k (0 if none)
//   ndcg@k      = DCG(binary gains of the top k) / DCG(|relevant| ones, cut to k), DCG = sum rel_i / log2(i + 2)
//   map@k       = (sum over relevant hits in the top k of precision at that rank) / min(k, |relevant|)
// averaged over the queries that have at least one relevant doc (as ST does; a query with no ranking
// counts as an empty result list).

export interface RankedHit {
  id: string;
  score: number;
}

const DEFAULT_K = [1, 3, 5, 10] as const;

type AtK = 1 | 3 | 5 | 10;
type IrMetricName = `accuracy@${AtK}` | `precision@${AtK}` | `recall@${AtK}` | 'mrr@10' | 'ndcg@10' | 'map@100';

/** Flat metric record: "recall@1", "ndcg@10", ... (extra keys appear when non-default k are asked for). */
export type IrMetrics = Record<IrMetricName, number> & Record<string, number>;

export interface IrMetricOptions {
  /** k values for accuracy, precision and recall (default 1, 3, 5, 10). */
  kValues?: readonly number[];
  mrrAtK?: number;
  ndcgAtK?: number;
  mapAtK?: number;
}

function dcgAtK(relevances: readonly number[], k: number): number {
  let dcg = 0;
  const n = Math.min(relevances.length, k);
  for (let i = 0; i < n; i++) dcg += (relevances[i] ?? 0) / Math.log2(i + 2);
  return dcg;
}

/** Sort hits like ST: score descending, ties broken by ascending corpus id; drop repeated ids. */
export function sortHits(hits: readonly RankedHit[], maxK: number): RankedHit[] {
  const sorted = [...hits].sort((a, b) => b.score - a.score || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const seen = new Set<string>();
  const out: RankedHit[] = [];
  for (const h of sorted) {
    if (seen.has(h.id)) continue;
    seen.add(h.id);
    out.push(h);
    if (out.length >= maxK) break;
  }
  return out;
}

/** numpy.mean-compatible enough: plain left-to-right sum / n (differences are ~1e-16). */
function mean(xs: readonly number[]): number {
  if (xs.length === 0) return 0;
  let s = 0;
  for (const x of xs) s += x;
  return s / xs.length;
}

export function computeIrMetrics(
  relevant: Map<string, Set<string>>,
  rankings: Map<string, readonly RankedHit[]>,
  opts: IrMetricOptions = {},
): IrMetrics {
  const kValues = [...(opts.kValues ?? DEFAULT_K)];
  const mrrK = opts.mrrAtK ?? 10;
  const ndcgK = opts.ndcgAtK ?? 10;
  const mapK = opts.mapAtK ?? 100;
  const maxK = Math.max(mrrK, ndcgK, mapK, ...kValues);

  const queryIds = [...relevant.keys()].filter((q) => (relevant.get(q)?.size ?? 0) > 0);
  const hitsAtK = new Map<number, number>(kValues.map((k) => [k, 0]));
  const precisions = new Map<number, number[]>(kValues.map((k) => [k, []]));
  const recalls = new Map<number, number[]>(kValues.map((k) => [k, []]));
  let mrrSum = 0;
  const ndcgs: number[] = [];
  const aps: number[] = [];

  for (const q of queryIds) {
    const rel = relevant.get(q) ?? new Set<string>();
    const top = sortHits(rankings.get(q) ?? [], maxK);
    const isRel = top.map((h) => (rel.has(h.id) ? 1 : 0));

    for (const k of kValues) {
      let correct = 0;
      for (let i = 0; i < Math.min(k, isRel.length); i++) correct += isRel[i] ?? 0;
      if (correct > 0) hitsAtK.set(k, (hitsAtK.get(k) ?? 0) + 1);
      precisions.get(k)?.push(correct / k);
      recalls.get(k)?.push(correct / rel.size);
    }

    for (let i = 0; i < Math.min(mrrK, isRel.length); i++) {
      if (isRel[i] === 1) {
        mrrSum += 1 / (i + 1);
        break;
      }
    }

    const ideal = new Array<number>(rel.size).fill(1);
    ndcgs.push(dcgAtK(isRel.slice(0, ndcgK), ndcgK) / dcgAtK(ideal, ndcgK));

    let numCorrect = 0;
    let sumPrecisions = 0;
    for (let i = 0; i < Math.min(mapK, isRel.length); i++) {
      if (isRel[i] === 1) {
        numCorrect += 1;
        sumPrecisions += numCorrect / (i + 1);
      }
    }
    aps.push(sumPrecisions / Math.min(mapK, rel.size));
  }

  const n = queryIds.length;
  const out: Record<string, number> = {};
  for (const k of kValues) out[`accuracy@${k}`] = n ? (hitsAtK.get(k) ?? 0) / n : 0;
  for (const k of kValues) out[`precision@${k}`] = mean(precisions.get(k) ?? []);
  for (const k of kValues) out[`recall@${k}`] = mean(recalls.get(k) ?? []);
  out[`mrr@${mrrK}`] = n ? mrrSum / n : 0;
  out[`ndcg@${ndcgK}`] = mean(ndcgs);
  out[`map@${mapK}`] = mean(aps);
  return out as IrMetrics;
}
