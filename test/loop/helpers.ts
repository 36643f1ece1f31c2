import { createHash } from 'node:crypto';
import type { QueryLogRow } from '../../src/store/types.js';

/**
 * Hashed bag-of-words vectors: a real, deterministic text → vector map for tests of the loop's logic that
 * must not depend on an ONNX model (queries sharing words land close together, disjoint vocabularies apart).
 */
export function hashEmbed(texts: string[], dim = 64): Float32Array[] {
  return texts.map((t) => {
    const v = new Float32Array(dim);
    for (const w of t.toLowerCase().match(/[a-z0-9]+/g) ?? []) {
      const h = createHash('md5').update(w).digest();
      v[h.readUInt32LE(0) % dim]! += h[4]! & 1 ? 1 : -1;
    }
    const n = Math.hypot(...v) || 1;
    return v.map((x) => x / n);
  });
}

let n = 0;
export function logRow(collection: string, query: string, createdAt: number, modelVersion: string, scores = [0.8, 0.6]): QueryLogRow {
  return {
    id: `q-${++n}-${createdAt}`,
    collection,
    query,
    mode: 'vector',
    k: 10,
    resultIds: scores.map((_, i) => `d${i}`),
    scores,
    modelVersion,
    latencyMs: 1,
    createdAt,
  };
}

export { seededRandom as rng } from '../../src/util/random.js';
