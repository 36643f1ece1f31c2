import type Database from 'better-sqlite3';

import type { ChunkRow, DocumentInput, UpsertResult } from '../types.js';
import { ftsWriteSql, requireFts } from './fts.js';

// A document upsert, for both of its runners: the writer thread (./document-writer.ts), so a large batch does not
// hold the event loop for its whole transaction, and the store's own connection (an in-memory database, or when
// that thread is gone). Plain prepared statements compiled once, one IMMEDIATE transaction per batch: drizzle
// rebuilt and re-prepared each query, which cost seconds per 1000-document batch.

type Upsert = (collectionId: number, docs: DocumentInput[]) => UpsertResult;

export function documentUpserter(db: Database.Database): Upsert {
  const tombstone = db.prepare<[number, number, string], { label: number; text: string }>(
    'UPDATE chunks SET deleted_seq = ? WHERE collection_id = ? AND doc_id = ? AND deleted_seq IS NULL RETURNING label, text',
  );
  const upsertDoc = db.prepare<[number, string, string, string, number, number]>(
    `INSERT INTO documents (collection_id, id, text, metadata, seq, updated_at) VALUES (?, ?, ?, ?, ?, ?)
     ON CONFLICT (collection_id, id) DO UPDATE SET text = excluded.text, metadata = excluded.metadata, seq = excluded.seq, updated_at = excluded.updated_at`,
  );
  const insertChunk = db.prepare<[number, string, number, string, number], { label: number }>(
    'INSERT INTO chunks (collection_id, doc_id, n, text, seq) VALUES (?, ?, ?, ?, ?) RETURNING label',
  );
  const nextSeq = db.prepare<[], { value: number }>(
    "INSERT INTO counters (name, value) VALUES ('seq', 1) ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value",
  );
  const ftsStmts = new Map<number, { insert: Database.Statement<[number, string]>; remove: Database.Statement<[number, string]> }>();

  // Checked on every batch: another connection may have dropped the table since its statements were prepared.
  const ftsFor = (collectionId: number) => {
    try {
      requireFts(db, collectionId);
    } catch (err) {
      ftsStmts.delete(collectionId);
      throw err;
    }
    let st = ftsStmts.get(collectionId);
    if (!st) {
      const sql = ftsWriteSql(collectionId);
      st = { insert: db.prepare(sql.insert), remove: db.prepare(sql.remove) };
      ftsStmts.set(collectionId, st);
    }
    return st;
  };

  const run = db.transaction((collectionId: number, docs: DocumentInput[]): UpsertResult => {
    const fts = ftsFor(collectionId);
    const seq = nextSeq.get()!.value;
    const removed: number[] = [];
    const added: ChunkRow[] = [];
    const now = Date.now();
    for (const d of docs) {
      for (const o of tombstone.all(seq, collectionId, d.id)) {
        fts.remove.run(o.label, o.text);
        removed.push(o.label);
      }
      upsertDoc.run(collectionId, d.id, d.text, JSON.stringify(d.metadata), seq, now);
      d.chunks.forEach((text, n) => {
        const r = insertChunk.get(collectionId, d.id, n, text, seq)!;
        fts.insert.run(r.label, text);
        added.push({ label: r.label, docId: d.id, n, text });
      });
    }
    return { seq, added, removed };
  });
  return (collectionId, docs) => run.immediate(collectionId, docs);
}
