import type Database from 'better-sqlite3';

import type { QueryLogRow } from '../types.js';

/**
 * The query log's insert, for both of its writers: the writer thread (querylog-writer.ts) and the store's own
 * connection when that thread is gone. One transaction per batch; a row already logged (same id) is skipped.
 */
export function queryLogInserter(db: Database.Database): (rows: QueryLogRow[]) => void {
  const st = db.prepare<[string, string, string | null, string, number, string, string, string, number, number]>(
    `INSERT INTO query_log (id, collection, query, mode, k, result_ids, scores, model_version, latency_ms, created_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
  );
  return db.transaction((rows: QueryLogRow[]) => {
    for (const r of rows) {
      st.run(
        r.id,
        r.collection,
        r.query,
        r.mode,
        r.k,
        JSON.stringify(r.resultIds),
        JSON.stringify(r.scores),
        r.modelVersion,
        r.latencyMs,
        r.createdAt,
      );
    }
  });
}
