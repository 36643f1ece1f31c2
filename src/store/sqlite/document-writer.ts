import Database from 'better-sqlite3';
import { workerData } from 'node:worker_threads';

import { isCollectionGone } from '../errors.js';
import type { DocumentInput, UpsertResult } from '../types.js';
import { serveSqliteThread } from './thread.js';
import { documentUpserter } from './upsert.js';

// Worker entry: document upserts through its own connection to the store's file. A 1000-document batch is
// ~150 ms of SQLite work (rows, keyword index) in one transaction; on the main connection that was 150 ms in
// which no search could be answered. WAL lets the main connection read meanwhile; busy_timeout waits out its writes.

export interface UpsertRequest {
  collectionId: number;
  docs: DocumentInput[];
}

/** The batch's result, or `gone` when its collection was deleted (the store raises CollectionGoneError). */
export type UpsertReply = { result: UpsertResult } | { gone: string };

const db = new Database((workerData as { file: string }).file);
db.pragma('synchronous = NORMAL');
db.pragma('foreign_keys = ON');
db.pragma('busy_timeout = 5000');
const upsert = documentUpserter(db);

serveSqliteThread<UpsertRequest, UpsertReply>(({ collectionId, docs }) => {
  try {
    return { result: upsert(collectionId, docs) };
  } catch (err) {
    if (isCollectionGone(err)) return { gone: (err as Error).message };
    throw err;
  }
});
