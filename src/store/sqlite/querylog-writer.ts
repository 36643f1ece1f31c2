import Database from 'better-sqlite3';
import { parentPort, workerData } from 'node:worker_threads';

import type { QueryLogRow } from '../types.js';

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
const st = db.prepare(
  `INSERT INTO query_log (id, collection, query, mode, k, result_ids, scores, model_version, latency_ms, created_at)
   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
);
const insert = db.transaction((rows: QueryLogRow[]) => {
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

port.on('message', (m: WriterRequest) => {
  try {
    insert(JSON.parse(m.rows) as QueryLogRow[]);
    port.postMessage({ id: m.id, ok: true } satisfies WriterResponse);
  } catch (err) {
    port.postMessage({ id: m.id, ok: false, error: String(err) } satisfies WriterResponse);
  }
});
