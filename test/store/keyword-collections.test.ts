// Keyword search ranks a collection as if it were alone in the database: BM25's idf and average length are
// the collection's own, whatever other collections hold (on SQLite each collection has its own FTS5 table;
// on Postgres the statistics are counted per collection). And a SQLite database made while one FTS5 table
// served every collection is migrated with all its documents still searchable.
import Database from 'better-sqlite3';
import { drizzle } from 'drizzle-orm/better-sqlite3';
import { migrate } from 'drizzle-orm/better-sqlite3/migrator';
import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MIGRATIONS_ROOT, openStore } from '../../src/store/index.js';
import type { DocumentInput, Store } from '../../src/store/types.js';
import { tempDir } from '../helpers.js';

const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

const hnsw = { M: 8, efConstruction: 50, efSearch: 20 };
const chunk = { size: 10_000, overlap: 0 };
const doc = (id: string, text: string): DocumentInput => ({ id, text, metadata: {}, chunks: [text] });

// In A "protein" is rare and "kinase" common; B is the opposite and much larger, with longer texts. Pooled
// statistics would floor protein's idf and raise kinase's: "protein kinase" would rank a7 first, not a1.
const A = [
  doc('a1', 'protein folding chaperone'),
  ...Array.from({ length: 5 }, (_, i) => doc(`a${i + 2}`, `kinase activity in cell signalling pathway ${i}`)),
  doc('a7', 'kinase kinase cascade'),
  ...Array.from({ length: 5 }, (_, i) => doc(`a${i + 8}`, `membrane transport of ions ${i}`)),
];
const B = Array.from({ length: 120 }, (_, i) =>
  doc(`b${i}`, `the protein binds the receptor and the membrane protein complex in tissue ${i} of the organism under study`),
);
const QUERIES = ['protein kinase', 'kinase', 'membrane transport', 'protein chaperone cascade', 'ions 3', 'the'];

type Ranked = [docId: string, score: number][];

async function ranked(store: Store, collectionId: number, q: string, k = 10): Promise<Ranked> {
  const hits = await store.keywordSearch(collectionId, q, k);
  const docs = await store.hydrate(hits.map((h) => h.label));
  return hits.map((h) => [docs.get(h.label)!.docId, h.score]);
}

const allQueries = async (store: Store, collectionId: number) => Promise.all(QUERIES.map((q) => ranked(store, collectionId, q)));

/** A SQLite store in a fresh directory, removed after the suite. */
async function sqliteStore(keywordThreads = 0): Promise<Store> {
  const dir = tempDir('kw-coll-');
  const store = await openStore({ dataDir: dir, keywordThreads });
  cleanups.push(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return store;
}

const backends: { name: string; open(): Promise<Store> }[] = [
  { name: 'sqlite', open: () => sqliteStore() },
  // The same statements on reader threads with connections of their own (KEYWORD_THREADS): each search sees
  // every write the store committed before it, and a deleted collection's table is gone for them too.
  { name: 'sqlite, keyword threads', open: () => sqliteStore(2) },
  {
    name: 'pglite',
    async open() {
      const store = await openStore({ dataDir: '/nonexistent', databaseUrl: 'pglite://memory' });
      cleanups.push(() => store.close());
      return store;
    },
  },
];

describe.each(backends)('keyword search per collection ($name)', (backend) => {
  it('scores and orders a collection exactly as when it is alone in the database', async () => {
    const alone = await backend.open();
    const a0 = await alone.createCollection({ name: 'a', hnsw, chunk });
    await alone.upsertDocuments(a0.id, A);
    const want = await allQueries(alone, a0.id);
    expect(want[0]!.map(([id]) => id).slice(0, 2)).toEqual(['a1', 'a7']);

    const shared = await backend.open();
    const b = await shared.createCollection({ name: 'b', hnsw, chunk });
    await shared.upsertDocuments(b.id, B.slice(0, 60));
    const a = await shared.createCollection({ name: 'a', hnsw, chunk });
    await shared.upsertDocuments(a.id, A);
    // Writes to B after A's (interleaved labels), including replacements and deletions.
    await shared.upsertDocuments(b.id, B.slice(60));
    await shared.upsertDocuments(b.id, [doc('b0', 'kinase kinase kinase protein'), doc('b1', 'protein')]);
    await shared.deleteDocument(b.id, 'b2');
    expect(await allQueries(shared, a.id)).toEqual(want);
    // B ranks by its own statistics too: "protein" is in nearly all of B, so its idf is at the floor there.
    expect((await ranked(shared, b.id, 'protein kinase'))[0]![0]).toBe('b0');

    // Writes to A keep matching a store where A is alone, and deleting B changes nothing in A.
    for (const s of [
      { store: alone, id: a0.id },
      { store: shared, id: a.id },
    ]) {
      await s.store.upsertDocuments(s.id, [doc('a1', 'protein folding chaperone protein'), doc('a13', 'a kinase cascade')]);
      await s.store.deleteDocument(s.id, 'a8');
    }
    const wantAfter = await allQueries(alone, a0.id);
    expect(wantAfter).not.toEqual(want);
    expect(await allQueries(shared, a.id)).toEqual(wantAfter);
    expect(await shared.deleteCollection('b')).toBe(true);
    expect(await allQueries(shared, a.id)).toEqual(wantAfter);
    expect(await shared.keywordSearch(b.id, 'protein', 10)).toEqual([]);
  }, 60_000);
});

describe('SQLite keyword threads', () => {
  it('start as concurrency needs them, answer searches as the store connection does, filters included, and a dead thread falls back to it', async () => {
    const dir = tempDir('kw-threads-');
    const threaded = await openStore({ dataDir: dir, keywordThreads: 2 });
    const c = await threaded.createCollection({ name: 'a', hnsw, chunk });
    await threaded.upsertDocuments(c.id, [...A, { ...doc('m1', 'kinase protein membrane'), metadata: { kind: 'x' } }]);
    const own = await openStore({ dataDir: dir });
    cleanups.push(async () => {
      await own.close();
      await threaded.close();
      rmSync(dir, { recursive: true, force: true });
    });
    const want = await allQueries(own, c.id);
    const readers = (threaded as unknown as { ftsReaders: { close(): Promise<void> }[] }).ftsReaders;
    // one search at a time keeps one thread
    for (const q of QUERIES) expect(await ranked(threaded, c.id, q)).toEqual(await ranked(own, c.id, q));
    expect(readers).toHaveLength(1);
    // all at once: spread over both threads, answered in any order, each its own query's ranking
    expect(await Promise.all([...QUERIES, ...QUERIES].map((q) => ranked(threaded, c.id, q)))).toEqual([...want, ...want]);
    const filtered = await threaded.keywordSearch(c.id, 'kinase', 5, { kind: 'x' });
    expect(filtered).toEqual(await own.keywordSearch(c.id, 'kinase', 5, { kind: 'x' }));
    expect(filtered).toHaveLength(1);

    expect(readers).toHaveLength(2);
    for (const r of readers) await r.close();
    expect(await allQueries(threaded, c.id)).toEqual(want);
  }, 60_000);
});

describe('SQLite keyword index migration', () => {
  /** The migrations folder as it was before keyword tables were per collection (0000–0003). */
  function previousMigrations(dir: string): string {
    const folder = join(dir, 'migrations-0003');
    cpSync(join(MIGRATIONS_ROOT, 'sqlite'), folder, { recursive: true });
    const journalFile = join(folder, 'meta', '_journal.json');
    const journal = JSON.parse(readFileSync(journalFile, 'utf8')) as { entries: { idx: number; tag: string }[] };
    journal.entries = journal.entries.filter((e) => e.idx <= 3);
    expect(journal.entries.at(-1)?.tag).toBe('0003_strategies');
    writeFileSync(journalFile, JSON.stringify(journal));
    return folder;
  }

  it('a database with the shared FTS5 table opens with every collection searchable, scored per collection', async () => {
    const dir = tempDir('kw-migrate-');
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'retrieval.db');

    // Written the way the previous store wrote: rows in documents and chunks, the shared chunks_fts kept by
    // triggers, a replaced document's old chunk tombstoned.
    const old = new Database(file);
    migrate(drizzle(old), { migrationsFolder: previousMigrations(dir) });
    const addCollection = old
      .prepare(
        'INSERT INTO collections (name, hnsw_m, ef_construction, ef_search, chunk_size, chunk_overlap) VALUES (?, 8, 50, 20, 10000, 0) RETURNING id',
      )
      .pluck();
    const addDoc = old.prepare("INSERT INTO documents (collection_id, id, text, metadata, seq) VALUES (?, ?, ?, '{}', 1)");
    const addChunk = old.prepare('INSERT INTO chunks (collection_id, doc_id, n, text, seq) VALUES (?, ?, 0, ?, 1)');
    const write = (collectionId: number, docs: DocumentInput[]) => {
      for (const d of docs) {
        addDoc.run(collectionId, d.id, d.text);
        addChunk.run(collectionId, d.id, d.text);
      }
    };
    const oldA = addCollection.get('a') as number;
    const oldB = addCollection.get('b') as number;
    write(oldB, B);
    write(
      oldA,
      A.map((d) => (d.id === 'a3' ? doc('a3', 'obsolete gastrulation text') : d)),
    );
    old.prepare("UPDATE chunks SET deleted_seq = 2 WHERE collection_id = ? AND doc_id = 'a3'").run(oldA);
    old.prepare("UPDATE documents SET text = ? WHERE collection_id = ? AND id = 'a3'").run(A[2]!.text, oldA);
    addChunk.run(oldA, 'a3', A[2]!.text);
    old.prepare("INSERT INTO counters (name, value) VALUES ('seq', 2)").run();
    expect(old.prepare("SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH 'protein'").pluck().get()).toBe(B.length + 1);
    old.close();

    const store = await openStore({ dataDir: dir });
    const reference = await backends[0]!.open();
    const ref = await reference.createCollection({ name: 'a', hnsw, chunk });
    await reference.upsertDocuments(ref.id, A);
    // Replaced last, as in the old database: equal scores are ordered by label.
    await reference.upsertDocuments(ref.id, [A[2]!]);

    const a = (await store.getCollection('a'))!;
    expect(a.id).toBe(oldA);
    expect(await allQueries(store, a.id)).toEqual(await allQueries(reference, ref.id));
    expect(await store.keywordSearch(a.id, 'gastrulation', 10)).toEqual([]);
    expect((await ranked(store, oldB, 'tissue 7')).map(([id]) => id)[0]).toBe('b7');
    expect(await store.keywordSearch(oldB, 'protein', 1000)).toHaveLength(B.length);

    // The rebuilt index takes the store's own writes: a replaced migrated chunk leaves it exactly.
    for (const s of [
      { store, id: a.id },
      { store: reference, id: ref.id },
    ]) {
      await s.store.upsertDocuments(s.id, [doc('a1', 'heat shock chaperone')]);
      await s.store.deleteDocument(s.id, 'a7');
    }
    expect(await store.keywordSearch(a.id, 'protein', 10)).toEqual([]);
    expect(await allQueries(store, a.id)).toEqual(await allQueries(reference, ref.id));
    await store.close();

    const db = new Database(file, { readonly: true });
    // The shared table (and its shadow tables) and triggers are gone; each collection has its own table.
    const tables = db
      .prepare(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name GLOB 'chunks_fts*' AND name NOT GLOB 'chunks_fts_*_*' ORDER BY name",
      )
      .pluck()
      .all();
    const triggers = db.prepare("SELECT name FROM sqlite_master WHERE type = 'trigger'").pluck().all();
    db.close();
    expect(tables).toEqual([`chunks_fts_${oldA}`, `chunks_fts_${oldB}`]);
    expect(triggers).toEqual([]);

    // Opening again finds the same.
    const again = await openStore({ dataDir: dir });
    cleanups.push(() => again.close());
    expect(await allQueries(again, a.id)).toEqual(await allQueries(reference, ref.id));
  }, 60_000);
});
