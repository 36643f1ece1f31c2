import { AppError } from '../../errors.js';
import type { ModeQuery, Ranked, Retrieval } from './types.js';

/** Vector mode: the query's nearest chunks in the collection's HNSW index (cosine). */
export async function vectorMode(r: Retrieval, q: ModeQuery): Promise<Ranked[]> {
  return r.vectorSearch(q.collection, await queryVector(r, q), q.depth, { efSearch: q.efSearch, filter: q.filter });
}

/** The query as a unit vector: a given vector normalised (the index is inner-product), or the text embedded. */
export async function queryVector(r: Retrieval, q: Pick<ModeQuery, 'query' | 'vector'>): Promise<Float32Array> {
  if (q.vector) {
    if (q.vector.length !== r.model.dim) {
      throw new AppError('invalid_vector', `vector has ${q.vector.length} dimensions; model ${r.model.version} has ${r.model.dim}`);
    }
    const v = Float32Array.from(q.vector);
    let norm = 0;
    for (let i = 0; i < v.length; i++) norm += v[i]! * v[i]!;
    norm = Math.sqrt(norm);
    if (!(norm > 0)) throw new AppError('invalid_vector', 'vector must not be all zeros');
    const inv = 1 / norm;
    for (let i = 0; i < v.length; i++) v[i]! *= inv;
    return v;
  }
  if (q.query === undefined) throw new AppError('invalid_request', 'send "query" (text) or "vector"');
  return r.embedQuery(q.query);
}
