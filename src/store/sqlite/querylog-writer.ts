import Database from 'better-sqlite3';
import { parentPort, workerData } from 'node:worker_threads';

import type { QueryLogRow } from '../types.js';
import { queryLogInserter } from './querylog-insert.js';

// Worker entry: writes query-log batches through its own connection to the store's file, so the
// per-search log rows (a JSON encode and a B-tree insert each, ~10 % of the main thread's CPU at full
// /search load) cost the main thread one JSON.stringify per batch. WAL lets the main connection read
// meanwhile; busy_timeout waits out its writes.
export interface WriterRequest {
  id: number;
  /** JSON of QueryLogRow[]: one string is far cheaper to pass than structured-cloning the rows. */
  rows: string;
}

export type WriterResponse = { id: number; ok: true } | { id: number; ok: false; error: string };

const port = parentPort;
if (!port) throw new Error('querylog-writer must run as a worker thread');

const db = new Database((workerData as { file: string }).file);
db.pragma('synchronous = NORMAL');
db.pragma('busy_timeout = 5000');
const insert = queryLogInserter(db);

port.on('message', (m: WriterRequest) => {
  try {
    insert(JSON.parse(m.rows) as QueryLogRow[]);
    port.postMessage({ id: m.id, ok: true } satisfies WriterResponse);
  } catch (err) {
    port.postMessage({ id: m.id, ok: false, error: String(err) } satisfies WriterResponse);
  }
});
