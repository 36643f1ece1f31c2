import Database from 'better-sqlite3';
import { workerData } from 'node:worker_threads';

import type { QueryLogRow } from '../types.js';
import { queryLogInserter } from './querylog-insert.js';
import { serveSqliteThread } from './thread.js';

// Worker entry: writes query-log batches through its own connection to the store's file, so the
// per-search log rows (a JSON encode and a B-tree insert each, ~10 % of the main thread's CPU at full
// /search load) cost the main thread one JSON.stringify per batch. WAL lets the main connection read
// meanwhile; busy_timeout waits out its writes.

/** JSON of QueryLogRow[]: one string is far cheaper to pass than structured-cloning the rows. */
export type WriterRequest = string;

const db = new Database((workerData as { file: string }).file);
db.pragma('synchronous = NORMAL');
db.pragma('busy_timeout = 5000');
const insert = queryLogInserter(db);

serveSqliteThread<WriterRequest, null>((rows) => {
  insert(JSON.parse(rows) as QueryLogRow[]);
  return null;
});
