import Database from 'better-sqlite3';
import { workerData } from 'node:worker_threads';

import { ftsSearchSql, isNoSuchTable } from './fts.js';
import { serveSqliteThread } from './thread.js';

// Worker entry: BM25 searches of the keyword tables (./fts.ts) through a connection of its own. An FTS5
// OR-query over a 35k-passage collection takes milliseconds of CPU; on the event loop that serialized every
// keyword and hybrid search of the process behind one core. A few of these threads (KEYWORD_THREADS) run
// them side by side, and WAL gives each the latest committed state while the main connection writes.

export interface FtsRequest {
  collectionId: number;
  match: string;
  limit: number;
}

/** The ranked rows; null when the collection's keyword table does not exist (the collection was deleted). */
export type FtsResponse = { label: number; score: number }[] | null;

const db = new Database((workerData as { file: string }).file);
db.pragma('busy_timeout = 5000');
db.pragma('query_only = ON');
const statements = new Map<number, Database.Statement<[string, number], { label: number; score: number }>>();

serveSqliteThread<FtsRequest, FtsResponse>(({ collectionId, match, limit }) => {
  try {
    let st = statements.get(collectionId);
    if (!st) {
      st = db.prepare(ftsSearchSql(collectionId));
      statements.set(collectionId, st);
    }
    return st.all(match, limit);
  } catch (err) {
    if (isNoSuchTable(err)) {
      statements.delete(collectionId);
      return null;
    }
    throw err;
  }
});
