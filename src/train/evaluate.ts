import type { Embedder } from '../embed/types.js';
import { bestPerDocument } from '../search/fusion.js';
import { seededRandom, shuffleInPlace } from '../util/random.js';
import type { ChunkRow, DocumentStore } from '../store/types.js';
import type { EvalQuery } from './mining.js';

export type Ranking = { id: string; score: number }[];

export interface EvalCorpus {
  chunks: ChunkRow[];
  /** True when the collection was larger than the cap and a seeded sample (plus every relevant doc) is used. */
  sampled: boolean;
  liveChunks: number;
}

/**
 * The corpus both models are ranked against: every live chunk, or — past `maxChunks` — every chunk of a
 * relevant document plus a seeded random sample of the rest. Champion and candidate see the same corpus,
 * so the comparison stays fair even when it is sampled.
 */
export async function evalCorpus(
  store: DocumentStore,
  collectionId: number,
  queries: EvalQuery[],
  maxChunks: number,
  seed: number,
): Promise<EvalCorpus> {
  const all: ChunkRow[] = [];
  let after = 0;
  for (;;) {
    const rows = await store.liveChunks(collectionId, after, 5000);
    if (rows.length === 0) break;
    all.push(...rows);
    after = rows[rows.length - 1]!.label;
  }
  if (all.length <= maxChunks) return { chunks: all, sampled: false, liveChunks: all.length };
  const relevant = new Set(queries.flatMap((q) => q.relevant));
  const must = all.filter((c) => relevant.has(c.docId));
  const rest = shuffleInPlace(
    all.filter((c) => !relevant.has(c.docId)),
    seededRandom(seed),
  );
  return { chunks: [...must, ...rest.slice(0, Math.max(0, maxChunks - must.length))], sampled: true, liveChunks: all.length };
}

const tick = () => new Promise<void>((r) => setImmediate(r));

/**
 * Exact (brute-force) cosine ranking of `queries` over `corpus` with one embedder, chunks collapsed to
 * their document's best score. Exact search keeps HNSW recall out of the model comparison. Yields to the
 * event loop between queries, and embeds in the 'bulk' lane, so live searches keep going first.
 */
export async function rankWith(embedder: Embedder, corpus: ChunkRow[], queries: EvalQuery[], depth = 100): Promise<Map<string, Ranking>> {
  const dim = embedder.dim;
  const mat = new Float32Array(corpus.length * dim);
  for (let i = 0; i < corpus.length; i += 256) {
    const vecs = await embedder.embed(
      corpus.slice(i, i + 256).map((c) => c.text),
      { priority: 'bulk', kind: 'document' },
    );
    vecs.forEach((v, j) => mat.set(v, (i + j) * dim));
  }
  const qv: Float32Array[] = [];
  for (let i = 0; i < queries.length; i += 256)
    qv.push(
      ...(await embedder.embed(
        queries.slice(i, i + 256).map((q) => q.query),
        { priority: 'bulk', kind: 'query' },
      )),
    );
  const out = new Map<string, Ranking>();
  const scores = new Float32Array(corpus.length);
  for (let q = 0; q < queries.length; q++) {
    const v = qv[q]!;
    for (let i = 0; i < corpus.length; i++) {
      let s = 0;
      const o = i * dim;
      for (let d = 0; d < dim; d++) s += mat[o + d]! * v[d]!;
      scores[i] = s;
    }
    // Chunks in score order until `depth` distinct documents: a partial sort is enough.
    const order = topIndices(scores, Math.min(corpus.length, depth * 4));
    const docs = bestPerDocument(
      order.map((i) => ({ key: i, score: scores[i]! })),
      (i) => corpus[i]?.docId,
      depth,
    );
    out.set(
      String(q),
      docs.map((d) => ({ id: d.key, score: d.score })),
    );
    if (q % 16 === 15) await tick();
  }
  return out;
}

/** Indices of the k largest values, best first (binary min-heap, O(n log k)). */
function topIndices(xs: Float32Array, k: number): number[] {
  const heap: number[] = [];
  const less = (a: number, b: number) => xs[a]! < xs[b]!;
  const down = (i: number) => {
    for (;;) {
      const l = 2 * i + 1,
        r = l + 1;
      let m = i;
      if (l < heap.length && less(heap[l]!, heap[m]!)) m = l;
      if (r < heap.length && less(heap[r]!, heap[m]!)) m = r;
      if (m === i) return;
      [heap[i], heap[m]] = [heap[m]!, heap[i]!];
      i = m;
    }
  };
  for (let i = 0; i < xs.length; i++) {
    if (heap.length < k) {
      heap.push(i);
      for (let j = heap.length - 1; j > 0; ) {
        const p = (j - 1) >> 1;
        if (!less(heap[j]!, heap[p]!)) break;
        [heap[j], heap[p]] = [heap[p]!, heap[j]!];
        j = p;
      }
    } else if (k > 0 && xs[i]! > xs[heap[0]!]!) {
      heap[0] = i;
      down(0);
    }
  }
  return heap.sort((a, b) => xs[b]! - xs[a]!);
}

export function relevantMap(queries: EvalQuery[]): Map<string, Set<string>> {
  return new Map(queries.map((q, i) => [String(i), new Set(q.relevant)]));
}
