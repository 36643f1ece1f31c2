import { AppError } from '../../errors.js';
import type { ModeQuery, Ranked, Retrieval } from './types.js';

/** Keyword mode: BM25 over the collection's chunks (FTS5 on SQLite, tsvector on Postgres; the same scores). */
export async function keywordMode(r: Retrieval, q: ModeQuery): Promise<Ranked[]> {
  if (q.query === undefined) throw new AppError('invalid_request', 'mode "keyword" needs a text "query"');
  return r.keywordSearch(q.collection, q.query, q.depth, q.filter);
}
