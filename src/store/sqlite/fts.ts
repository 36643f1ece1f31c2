// Keyword search on SQLite: one FTS5 table per collection, `chunks_fts_<collection id>`, holding that
// collection's live chunks. FTS5's bm25() takes the row count, the average length and each term's document
// frequency from the whole table it ranks, so a table shared by all collections would score a collection's
// chunks with every other collection's statistics (Postgres computes them per collection; both must rank a
// collection as if it were alone in the database).
//
// The tables are contentless (content=''): the text stays in `chunks`, the index stores only what BM25
// needs, and nothing can `rebuild` one from a content table holding every collection. The store writes
// them next to its own chunk writes (an insert per new chunk, a 'delete' with the indexed text per
// tombstone); per-collection triggers on `chunks` would cost each chunk write one trigger per collection.
// Collection ids come from AUTOINCREMENT and are never reused, so a table name never outlives its collection.
import Database from 'better-sqlite3';

import { CollectionGoneError } from '../errors.js';

const ftsTable = (collectionId: number): string => {
  if (!Number.isSafeInteger(collectionId) || collectionId < 1) throw new Error(`bad collection id ${collectionId}`);
  return `chunks_fts_${collectionId}`;
};

/**
 * The BM25 search of a collection's keyword table: rank is bm25() ("lower is better"), negated so that higher is
 * better like cosine scores; ties by label, as on Postgres. Shared by the store's connection and the reader
 * threads (./fts-reader.ts), which must rank alike.
 */
export const ftsSearchSql = (collectionId: number): string => {
  const t = `"${ftsTable(collectionId)}"`;
  return `SELECT rowid AS label, -rank AS score FROM ${t} WHERE ${t} MATCH ? ORDER BY rank, rowid LIMIT ?`;
};

/**
 * A keyword table's writes, for every connection that writes chunks: a new chunk's text under its label; a
 * tombstone gives back the text the chunk indexed (a contentless table forgets a row only that way).
 */
export const ftsWriteSql = (collectionId: number): { insert: string; remove: string } => {
  const t = `"${ftsTable(collectionId)}"`;
  return { insert: `INSERT INTO ${t} (rowid, text) VALUES (?, ?)`, remove: `INSERT INTO ${t} (${t}, rowid, text) VALUES ('delete', ?, ?)` };
};

/** Whether a collection's keyword table exists: it goes with its collection, possibly dropped by another connection. */
const hasFts = (db: Database.Database, collectionId: number): boolean =>
  db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(ftsTable(collectionId)) !== undefined;

/**
 * Before a connection writes a collection's keyword table: a write racing DELETE /collections/:name finds the
 * table gone, which is the same "collection not found" as the foreign key's.
 */
export function requireFts(db: Database.Database, collectionId: number): void {
  if (!hasFts(db, collectionId)) throw new CollectionGoneError(`collection ${collectionId} has no keyword table: it was deleted`);
}

/** A statement on a keyword table that is gone (its collection was deleted, possibly by another connection). */
export const isNoSuchTable = (err: unknown): boolean => err instanceof Database.SqliteError && /no such table/.test(err.message);

export function createFts(db: Database.Database, collectionId: number): void {
  db.exec(`CREATE VIRTUAL TABLE "${ftsTable(collectionId)}" USING fts5(text, content='', tokenize='unicode61 remove_diacritics 2')`);
}

export function dropFts(db: Database.Database, collectionId: number): void {
  db.exec(`DROP TABLE IF EXISTS "${ftsTable(collectionId)}"`);
}

/**
 * Gives every collection without a keyword table one, indexed from its live chunks: databases made before
 * the tables were per collection (migration 0004 drops the shared one) and an open interrupted half-way.
 * Each table is created and filled in one transaction, so a table that exists is complete.
 */
export function ensureCollectionFts(db: Database.Database): void {
  const missing = db
    .prepare(
      `SELECT id FROM collections c WHERE NOT EXISTS (SELECT 1 FROM sqlite_master m WHERE m.type = 'table' AND m.name = 'chunks_fts_' || c.id) ORDER BY id`,
    )
    .pluck();
  for (const id of missing.all() as number[]) {
    const build = db.transaction(() => {
      // Re-checked under the write lock: another process opening the same file may have built it meanwhile.
      if (hasFts(db, id)) return;
      createFts(db, id);
      db.prepare(
        `INSERT INTO "${ftsTable(id)}" (rowid, text) SELECT label, text FROM chunks WHERE collection_id = ? AND deleted_seq IS NULL`,
      ).run(id);
    });
    build.immediate();
  }
}
