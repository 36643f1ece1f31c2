// One behavioural suite for the Store contract, run against every dialect: SQLite (temp file),
// Postgres in-process (PGlite) and, when TEST_DATABASE_URL is set, a real Postgres server
// (test/store/start-postgres.sh prints one). Each test uses its own collection names so the
// backends' shared, global state (seq counter, serving pointer, api keys) is only compared relatively.
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError } from '../../src/errors.js';
import { MIGRATIONS_ROOT, openStore, resolveStoreTarget } from '../../src/store/index.js';
import { PgStore } from '../../src/store/pg/store.js';
import { freshPostgres } from '../helpers.js';
import type { DocumentInput, QueryLogRow, Store, TrainJobRow } from '../../src/store/types.js';
import { tempDir } from '../helpers.js';

interface Backend {
  name: string;
  open(): Promise<{ store: Store; cleanup(): Promise<void> }>;
}

const backends: Backend[] = [
  {
    name: 'sqlite',
    async open() {
      const dir = tempDir('store-sqlite-');
      const store = await openStore({ dataDir: dir });
      return {
        store,
        cleanup: async () => {
          await store.close();
          rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  },
  {
    name: 'pglite',
    async open() {
      const store = await openStore({ dataDir: '/nonexistent', databaseUrl: 'pglite://memory' });
      return { store, cleanup: () => store.close() };
    },
  },
];

const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL;
if (TEST_DATABASE_URL) {
  backends.push({
    name: 'postgres',
    async open() {
      // A fresh database per run: migrations start from zero and nothing leaks between runs.
      const db = await freshPostgres('rt_store');
      const store = await openStore({ dataDir: '/nonexistent', databaseUrl: db.url });
      return {
        store,
        cleanup: async () => {
          await store.close();
          await db.drop();
        },
      };
    },
  });
}

const doc = (id: string, text: string, metadata: Record<string, unknown> = {}, chunks = [text]): DocumentInput => ({
  id,
  text,
  metadata,
  chunks,
});
const hnsw = { M: 16, efConstruction: 100, efSearch: 50 };
const chunk = { size: 1000, overlap: 100 };
let nameCounter = 0;
const uniqueName = (p: string) => `${p}-${++nameCounter}`;

async function expectAppError(p: Promise<unknown>, code: string): Promise<AppError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AppError);
  expect((err as AppError).code).toBe(code);
  return err as AppError;
}

describe.each(backends)('Store contract: $name', (backend) => {
  let store: Store;
  let cleanup: () => Promise<void>;
  const newCollection = async (p = 'c') => store.createCollection({ name: uniqueName(p), hnsw, chunk });

  beforeAll(async () => {
    ({ store, cleanup } = await backend.open());
  });
  afterAll(async () => {
    await cleanup?.();
  });

  it('reports its dialect', () => {
    expect(store.dialect).toBe(backend.name === 'sqlite' ? 'sqlite' : 'postgres');
  });

  it('creates, reads, lists and rejects duplicate collections', async () => {
    const b = await store.createCollection({
      name: 'zz-b',
      hnsw: { M: 8, efConstruction: 64, efSearch: 32 },
      chunk: { size: 500, overlap: 50 },
    });
    const a = await store.createCollection({ name: 'ZZ-a', hnsw, chunk });
    expect(b).toMatchObject({ name: 'zz-b', hnsw: { M: 8, efConstruction: 64, efSearch: 32 }, chunk: { size: 500, overlap: 50 } });
    expect(typeof b.id).toBe('number');
    expect(Math.abs(b.createdAt - Date.now())).toBeLessThan(60_000);
    expect(await store.getCollection('zz-b')).toEqual(b);
    expect(await store.getCollectionById(a.id)).toEqual(a);
    expect(await store.getCollection('nope')).toBeUndefined();
    expect(await store.getCollectionById(987654)).toBeUndefined();
    await expectAppError(store.createCollection({ name: 'zz-b', hnsw, chunk }), 'collection_exists');
    // Byte order ('Z' < 'z') on both dialects, whatever the database locale.
    const names = (await store.listCollections()).map((c) => c.name);
    expect(names.indexOf('ZZ-a')).toBeLessThan(names.indexOf('zz-b'));
    expect([...names].sort()).toEqual(names);
  });

  it('a large upsert with unusual text arrives whole: labels in document and chunk order, old chunks tombstoned', async () => {
    const c = await newCollection('big');
    const texts = ['plain', 'quotes " and \\ backslash \\u0000 literally', 'ünïcödé 🧬', "it's", 'tab\tnewline\n'];
    const docs = Array.from({ length: 700 }, (_, i) =>
      doc(
        i % 3 ? `d${i}` : `d"${i}\\x`,
        texts[i % texts.length]!,
        { i, tag: texts[(i + 1) % texts.length]!, nested: { ok: i % 2 === 0 } },
        [`c0 ${i}`, `c1 ${i}`, `c2 ${i}`],
      ),
    );
    const r1 = await store.upsertDocuments(c.id, docs);
    expect(r1.added.map((a) => [a.docId, a.n, a.text])).toEqual(docs.flatMap((d) => d.chunks.map((t, n) => [d.id, n, t])));
    expect(r1.added.every((a, i) => i === 0 || a.label > r1.added[i - 1]!.label)).toBe(true);
    expect(await store.getDocument(c.id, 'd1')).toMatchObject({ text: texts[1], metadata: { i: 1, tag: texts[2], nested: { ok: false } } });
    const r2 = await store.upsertDocuments(c.id, docs.slice(0, 300));
    expect(r2.removed).toEqual(r1.added.slice(0, 900).map((a) => a.label));
    expect(await store.countLiveChunks(c.id)).toBe(2100);
    // NUL and a lone surrogate: SQLite keeps them; Postgres text holds neither (NUL dropped, U+FFFD instead).
    const odd = doc('odd\u0000id\ud800', 'nul \u0000 lone \ud800', { k: 'v\u0000\udfff' }, ['chunk \u0000 \ud800']);
    await store.upsertDocuments(c.id, [odd]);
    const again = await store.upsertDocuments(c.id, [odd]);
    expect(again.removed).toHaveLength(1); // the id Postgres stored is the one its tombstoning looks for
    expect(await store.countLiveChunks(c.id)).toBe(2101);
    const back = await store.getDocument(c.id, odd.id.replace('\u0000', '').replace('\ud800', '\ufffd'));
    expect((back ?? (await store.getDocument(c.id, odd.id)))?.text.replace('\u0000', '')).toMatch(/^nul {2}lone \ufffd+$/);
  });

  it('upsert inserts, then a re-upsert replaces the document and tombstones its old chunks', async () => {
    const c = await newCollection();
    const seq0 = await store.currentSeq();
    const r1 = await store.upsertDocuments(c.id, [
      doc('a', 'alpha text', { lang: 'en' }, ['alpha', 'text']),
      doc('b', 'beta', { lang: 'de' }),
    ]);
    expect(r1.seq).toBeGreaterThan(seq0);
    expect(await store.currentSeq()).toBe(r1.seq);
    expect(r1.removed).toEqual([]);
    expect(r1.added.map((x) => [x.docId, x.n, x.text])).toEqual([
      ['a', 0, 'alpha'],
      ['a', 1, 'text'],
      ['b', 0, 'beta'],
    ]);
    const labels1 = r1.added.map((x) => x.label);
    expect([...labels1].sort((x, y) => x - y)).toEqual(labels1);
    expect(await store.countDocuments(c.id)).toBe(2);
    expect(await store.countLiveChunks(c.id)).toBe(3);

    const r2 = await store.upsertDocuments(c.id, [doc('a', 'alpha v2', { lang: 'fr', v: 2 }, ['alpha v2'])]);
    expect(r2.seq).toBeGreaterThan(r1.seq);
    expect(r2.removed).toEqual(labels1.slice(0, 2));
    expect(r2.added).toHaveLength(1);
    expect(r2.added[0]!.label).toBeGreaterThan(Math.max(...labels1));
    expect(await store.getDocument(c.id, 'a')).toEqual({ id: 'a', text: 'alpha v2', metadata: { lang: 'fr', v: 2 } });
    expect(await store.getDocument(c.id, 'zzz')).toBeUndefined();
    expect(await store.countDocuments(c.id)).toBe(2);
    expect(await store.countLiveChunks(c.id)).toBe(2);

    const h = await store.hydrate([...labels1, r2.added[0]!.label, 999_999_999]);
    // Tombstoned and unknown labels do not hydrate.
    expect([...h.keys()].sort((x, y) => x - y)).toEqual([labels1[2]!, r2.added[0]!.label]);
    expect(h.get(r2.added[0]!.label)).toEqual({
      label: r2.added[0]!.label,
      docId: 'a',
      n: 0,
      text: 'alpha v2',
      metadata: { lang: 'fr', v: 2 },
    });
    expect(h.get(labels1[2]!)?.metadata).toEqual({ lang: 'de' });
    expect((await store.hydrate([])).size).toBe(0);
  });

  it('a repeated id inside one batch leaves the last occurrence', async () => {
    const c = await newCollection();
    await store.upsertDocuments(c.id, [doc('x', 'first'), doc('x', 'second')]);
    expect((await store.getDocument(c.id, 'x'))?.text).toBe('second');
    expect(await store.countLiveChunks(c.id)).toBe(1);
    expect((await store.liveChunks(c.id, 0, 10)).map((r) => r.text)).toEqual(['second']);
  });

  it('deleteDocument tombstones chunks and removes the document', async () => {
    const c = await newCollection();
    const r1 = await store.upsertDocuments(c.id, [doc('a', 'aa', {}, ['a1', 'a2']), doc('b', 'bb')]);
    const del = await store.deleteDocument(c.id, 'a');
    expect(del).toBeDefined();
    expect(del!.seq).toBeGreaterThan(r1.seq);
    expect(del!.added).toEqual([]);
    expect(del!.removed).toEqual(r1.added.filter((x) => x.docId === 'a').map((x) => x.label));
    expect(await store.getDocument(c.id, 'a')).toBeUndefined();
    expect(await store.deleteDocument(c.id, 'a')).toBeUndefined();
    expect(await store.countDocuments(c.id)).toBe(1);
    expect(await store.countLiveChunks(c.id)).toBe(1);
  });

  it('changesSince replays exactly what a snapshot taken at seq S is missing', async () => {
    const c = await newCollection();
    const other = await newCollection();
    const ra = await store.upsertDocuments(c.id, [doc('a', 'a1')]);
    const S = ra.seq; // snapshot point: contains a1
    const rb = await store.upsertDocuments(c.id, [doc('b', 'b1')]); // born after S …
    const ra2 = await store.upsertDocuments(c.id, [doc('a', 'a2')]); // replaces a1 (in snapshot)
    await store.deleteDocument(c.id, 'b'); // … and dead before replay: never seen by the snapshot
    const rc = await store.upsertDocuments(c.id, [doc('c', 'c1')]);
    await store.upsertDocuments(other.id, [doc('o', 'other collection')]);

    const ch = await store.changesSince(c.id, S);
    expect(ch.seq).toBe(await store.currentSeq());
    expect(ch.added.map((x) => x.text)).toEqual(['a2', 'c1']);
    expect(ch.added.map((x) => x.label)).toEqual([ra2.added[0]!.label, rc.added[0]!.label]);
    expect(ch.removed).toEqual([ra.added[0]!.label]);
    expect(ch.removed).not.toContain(rb.added[0]!.label);

    const none = await store.changesSince(c.id, ch.seq);
    expect(none).toEqual({ added: [], removed: [], seq: ch.seq });
    const all = await store.changesSince(c.id, 0);
    expect(all.added.map((x) => x.text)).toEqual(['a2', 'c1']);
    expect(all.removed).toEqual([]);
  });

  it('liveChunks pages in label order and sampleChunks only returns live chunks', async () => {
    const c = await newCollection();
    const docs = Array.from({ length: 25 }, (_, i) => doc(`d${i}`, `text ${i}`));
    const r = await store.upsertDocuments(c.id, docs);
    await store.upsertDocuments(c.id, [doc('d0', 'replaced')]);
    const seen: number[] = [];
    let after = 0;
    for (;;) {
      const page = await store.liveChunks(c.id, after, 10);
      if (page.length === 0) break;
      expect(page.length).toBeLessThanOrEqual(10);
      seen.push(...page.map((p) => p.label));
      after = page[page.length - 1]!.label;
    }
    expect(seen).toHaveLength(25);
    expect([...seen].sort((a, b) => a - b)).toEqual(seen);
    expect(seen).not.toContain(r.added[0]!.label);
    const sample = await store.sampleChunks(c.id, 10);
    expect(sample).toHaveLength(10);
    expect(new Set(sample.map((x) => x.label)).size).toBe(10);
    for (const x of sample) expect(seen).toContain(x.label);
    expect(await store.sampleChunks(c.id, 100)).toHaveLength(25);
  });

  it('deleteCollection cascades to documents, chunks and index records', async () => {
    const c = await newCollection();
    const r = await store.upsertDocuments(c.id, [doc('a', 'cascade me please')]);
    await store.saveIndexRecord({
      collectionId: c.id,
      modelVersion: 'm-cascade',
      path: '/x',
      snapshotSeq: r.seq,
      count: 1,
      status: 'ready',
    });
    expect(await store.deleteCollection(c.name)).toBe(true);
    expect(await store.deleteCollection(c.name)).toBe(false);
    expect(await store.getCollection(c.name)).toBeUndefined();
    expect(await store.countDocuments(c.id)).toBe(0);
    expect(await store.countLiveChunks(c.id)).toBe(0);
    expect(await store.liveChunks(c.id, 0, 10)).toEqual([]);
    expect((await store.hydrate(r.added.map((x) => x.label))).size).toBe(0);
    expect(await store.listIndexRecords({ collectionId: c.id })).toEqual([]);
    expect(await store.keywordSearch(c.id, 'cascade', 10)).toEqual([]);
    // The name is free again.
    await store.createCollection({ name: c.name, hnsw, chunk });
  });

  it('labelsMatching compares metadata values by JSON type', async () => {
    const c = await newCollection();
    const r = await store.upsertDocuments(c.id, [
      doc('s', 's', { kind: 'x', n: 1, flag: true, z: null, 'a.b': 'dot' }),
      doc('str1', 'str1', { kind: 'y', n: '1', flag: 'true' }),
      doc('num', 'num', { kind: 'x', n: 1.0, f: 2.5, flag: 1 }, ['num0', 'num1']),
      doc('missing', 'missing', {}),
    ]);
    const byDoc = (id: string) => r.added.filter((x) => x.docId === id).map((x) => x.label);
    const match = async (f: Parameters<Store['labelsMatching']>[1]) => (await store.labelsMatching(c.id, f)).sort((a, b) => a - b);
    expect(await match({ kind: 'x' })).toEqual([...byDoc('s'), ...byDoc('num')]);
    expect(await match({ n: 1 })).toEqual([...byDoc('s'), ...byDoc('num')]);
    expect(await match({ n: '1' })).toEqual(byDoc('str1'));
    expect(await match({ f: 2.5 })).toEqual(byDoc('num'));
    expect(await match({ flag: true })).toEqual(byDoc('s'));
    expect(await match({ flag: 'true' })).toEqual(byDoc('str1'));
    expect(await match({ z: null })).toEqual(byDoc('s')); // a missing key is not null
    expect(await match({ 'a.b': 'dot' })).toEqual(byDoc('s'));
    expect(await match({ kind: 'x', flag: true })).toEqual(byDoc('s'));
    expect(await match({ kind: 'nope' })).toEqual([]);
    // Tombstoned chunks never match.
    await store.upsertDocuments(c.id, [doc('s', 's2', { kind: 'q' })]);
    expect(await match({ kind: 'x' })).toEqual(byDoc('num'));
    await expectAppError(store.labelsMatching(c.id, { "bad'key": 1 }), 'invalid_request');
  });

  it('keywordSearch ranks by BM25 (rare terms weigh more), skips tombstones and honours filters', async () => {
    const c = await newCollection();
    const filler = Array.from({ length: 30 }, (_, i) => doc(`f${i}`, `the protein binds the receptor in cell ${i}`, { group: 'filler' }));
    await store.upsertDocuments(c.id, [
      ...filler,
      doc('rare', 'mitochondrial ribosome assembly', { group: 'a' }),
      doc('both', 'the mitochondrial protein', { group: 'b' }),
      doc('old', 'zygote gastrulation', { group: 'a' }),
    ]);
    const ids = async (q: string, k = 10, f?: Record<string, string>) => {
      const res = await store.keywordSearch(c.id, q, k, f);
      const h = await store.hydrate(res.map((x) => x.label));
      return { res, ids: res.map((x) => h.get(x.label)?.docId) };
    };
    const { res, ids: top } = await ids('mitochondrial protein');
    // "mitochondrial" is in 2 of 33 chunks, "protein" in 31: having the rare term is what counts.
    expect(top.slice(0, 2)).toEqual(['both', 'rare']);
    expect(res.length).toBe(10);
    for (const x of res) expect(x.score).toBeGreaterThan(0);
    for (let i = 1; i < res.length; i++) expect(res[i - 1]!.score).toBeGreaterThanOrEqual(res[i]!.score);
    expect((await ids('MITOCHONDRIAL')).ids.sort()).toEqual(['both', 'rare']);
    expect((await ids('ribosome', 1)).ids).toEqual(['rare']);
    expect((await ids('mitochondrial protein', 10, { group: 'a' })).ids).toEqual(['rare']);
    expect((await ids('protein', 100, { group: 'filler' })).ids).toHaveLength(30);
    // Words in most chunks (near-zero idf) still return results, and fill up a list after rarer hits.
    expect((await ids('the', 5)).ids).toHaveLength(5);
    const fill = await ids('ribosome the', 10);
    expect(fill.ids[0]).toBe('rare');
    expect(fill.ids).toHaveLength(10);

    // A replaced document's old text is no longer searchable; its new text is.
    await store.upsertDocuments(c.id, [doc('old', 'neurulation', { group: 'a' })]);
    expect((await ids('gastrulation')).ids).toEqual([]);
    expect((await ids('neurulation')).ids).toEqual(['old']);
    await store.deleteDocument(c.id, 'rare');
    expect((await ids('ribosome')).ids).toEqual([]);

    // Term statistics must follow writes: a word first searched while absent is found once added.
    expect((await ids('zeta')).ids).toEqual([]);
    await store.upsertDocuments(c.id, [doc('z1', 'zeta function'), doc('z2', 'zeta zeta potential')]);
    expect((await ids('zeta')).ids).toEqual(['z2', 'z1']);
    await store.deleteDocument(c.id, 'z2');
    expect((await ids('zeta')).ids).toEqual(['z1']);
  });

  it('keywordSearch treats every token as a plain word (no query syntax, no injection)', async () => {
    const c = await newCollection();
    await store.upsertDocuments(c.id, [doc('d', 'near and or not title body'), doc('e', "o'brien's café naïve 東京")]);
    const hostile = [
      '"AND OR NEAR(',
      'AND',
      'NEAR(a b)',
      'title:foo*',
      '-x',
      '^body',
      "'; DROP TABLE chunks; --",
      '\\',
      "'",
      '""',
      '(((',
      'a & b | !c <-> d',
      ':*',
      '*',
      '{}',
      '\u0000',
      'x'.repeat(5000),
      'w '.repeat(500),
    ];
    for (const q of hostile) await expect(store.keywordSearch(c.id, q, 5)).resolves.toBeInstanceOf(Array);
    expect((await store.keywordSearch(c.id, '"AND OR NEAR(', 5)).length).toBe(1);
    expect(await store.keywordSearch(c.id, '!!! ...', 5)).toEqual([]);
    expect(await store.keywordSearch(c.id, '', 5)).toEqual([]);
    expect((await store.keywordSearch(c.id, 'brien', 5)).length).toBe(1);
    expect(await store.countLiveChunks(c.id)).toBe(2);
    // SQL-ish words are plain terms too (an unquoted array element "null" would be SQL NULL).
    await store.upsertDocuments(c.id, [doc('nul', 'a null allele and a true mutant')]);
    for (const w of ['null', 'NULL allele', 'true']) expect((await store.keywordSearch(c.id, w, 5)).length).toBe(1);
  });

  it('model versions and promote: atomic, generation + 1, exactly one champion', async () => {
    const base = { parentVersion: null, source: 'models/base', dim: 384, card: { pooling: 'mean', nested: { a: [1, 2] } } };
    const v = [uniqueName('m'), uniqueName('m'), uniqueName('m')];
    for (const version of v) await store.upsertModelVersion({ ...base, version, status: 'candidate' });
    const before = await store.getServing();
    const p1 = await store.promote(v[0]!);
    expect(p1.modelVersion).toBe(v[0]);
    expect(p1.generation).toBe((before?.generation ?? 0) + 1);
    expect(await store.getServing()).toEqual(p1);
    expect(await store.getModelVersion(v[0]!)).toMatchObject({ status: 'champion', card: base.card, dim: 384, parentVersion: null });
    expect((await store.getModelVersion(v[0]!))?.promotedAt).toBe(p1.changedAt);

    const p2 = await store.promote(v[1]!);
    expect(p2.generation).toBe(p1.generation + 1);
    expect((await store.getModelVersion(v[0]!))?.status).toBe('retired');
    expect((await store.getModelVersion(v[1]!))?.status).toBe('champion');

    // Concurrent promotions serialise: distinct consecutive generations, one champion at the end.
    const results = await Promise.all([v[0]!, v[2]!, v[1]!, v[2]!, v[0]!].map((x) => store.promote(x)));
    expect(results.map((r) => r.generation).sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5].map((i) => p2.generation + i));
    const final = await store.getServing();
    expect(final?.generation).toBe(p2.generation + 5);
    const champions = (await store.listModelVersions()).filter((m) => m.status === 'champion');
    expect(champions.map((m) => m.version)).toEqual([final!.modelVersion]);

    await store.setModelStatus(v[2]!, 'purged');
    expect((await store.getModelVersion(v[2]!))?.status).toBe('purged');
    await store.upsertModelVersion({ ...base, version: v[2]!, status: 'rejected', dim: 768, card: { x: 1 } });
    expect(await store.getModelVersion(v[2]!)).toMatchObject({ status: 'rejected', dim: 768, card: { x: 1 } });
    expect(await store.getModelVersion('no-such-model')).toBeUndefined();
    const listed = (await store.listModelVersions()).map((m) => m.version);
    for (const x of v) expect(listed).toContain(x);
  });

  it('index records upsert by (collection, model) and filter', async () => {
    const c = await newCollection();
    const c2 = await newCollection();
    const r1 = await store.saveIndexRecord({
      collectionId: c.id,
      modelVersion: 'm1',
      path: null,
      snapshotSeq: 0,
      count: 0,
      status: 'building',
    });
    expect(r1).toMatchObject({ collectionId: c.id, modelVersion: 'm1', path: null, snapshotSeq: 0, count: 0, status: 'building' });
    const r2 = await store.saveIndexRecord({
      collectionId: c.id,
      modelVersion: 'm1',
      path: '/snap',
      snapshotSeq: 42,
      count: 7,
      status: 'ready',
    });
    expect(r2.id).toBe(r1.id);
    expect(await store.getIndexRecord(c.id, 'm1')).toEqual(r2);
    await store.saveIndexRecord({ collectionId: c.id, modelVersion: 'm2', path: null, snapshotSeq: 0, count: 0, status: 'building' });
    await store.saveIndexRecord({ collectionId: c2.id, modelVersion: 'm1', path: null, snapshotSeq: 0, count: 0, status: 'retired' });
    expect((await store.listIndexRecords({ collectionId: c.id })).map((r) => r.modelVersion).sort()).toEqual(['m1', 'm2']);
    expect((await store.listIndexRecords({ modelVersion: 'm1', collectionId: c2.id })).map((r) => r.status)).toEqual(['retired']);
    expect((await store.listIndexRecords()).length).toBeGreaterThanOrEqual(3);
    await store.deleteIndexRecord(c.id, 'm1');
    expect(await store.getIndexRecord(c.id, 'm1')).toBeUndefined();
  });

  it('query log: idempotent inserts, inclusive time window, ordering, limit and counts', async () => {
    const coll = uniqueName('ql');
    const t0 = 1_700_000_000_000;
    const row = (i: number, over: Partial<QueryLogRow> = {}): QueryLogRow => ({
      id: `${coll}-q${i}`,
      collection: coll,
      query: `query ${i}`,
      mode: 'vector',
      k: 10,
      resultIds: [`d${i}`, 'x'],
      scores: [0.91 - i / 100, 0.5],
      modelVersion: 'm1',
      latencyMs: 1.25 + i,
      createdAt: t0 + i * 1000,
      ...over,
    });
    await store.insertQueryLogs(Array.from({ length: 10 }, (_, i) => row(i)));
    await store.insertQueryLogs([row(3, { query: 'duplicate id is ignored' }), row(10, { collection: 'elsewhere' })]);
    await store.insertQueryLogs([]);
    expect(await store.getQueryLog(`${coll}-q3`)).toEqual(row(3));
    expect(await store.getQueryLog('nope')).toBeUndefined();
    const w = await store.queryLogWindow(coll, { since: t0 + 2000, until: t0 + 5000, limit: 100 });
    expect(w.map((r) => r.id)).toEqual([2, 3, 4, 5].map((i) => `${coll}-q${i}`));
    const newest = await store.queryLogWindow(coll, { limit: 3, newestFirst: true });
    expect(newest.map((r) => r.createdAt)).toEqual([t0 + 9000, t0 + 8000, t0 + 7000]);
    expect((await store.queryLogWindow(coll, { limit: 2 })).map((r) => r.createdAt)).toEqual([t0, t0 + 1000]);
    expect(await store.countQueryLog(coll)).toBe(10);
    expect(await store.countQueryLog(coll, t0 + 8000)).toBe(2);
    await store.insertQueryLogs([row(11, { id: `${coll}-nullq`, query: null, mode: 'vector' })]);
    expect((await store.getQueryLog(`${coll}-nullq`))?.query).toBeNull();
  });

  it('query log: a batch of several encoding slices, unusual text and numbers round-trip; text Postgres cannot hold is made safe', async () => {
    const coll = uniqueName('qb');
    const t0 = 1_700_000_100_000;
    const texts = ['plain', 'quotes " and \\ backslash', 'ünïcödé 🧬 emoji', "it's", '', '   ', 'tab\tnewline\n'];
    const rows: QueryLogRow[] = Array.from({ length: 150 }, (_, i) => ({
      id: `${coll}-${String(i).padStart(3, '0')}`,
      collection: coll,
      query: i % 9 === 8 ? null : texts[i % texts.length]!,
      mode: i % 2 ? 'hybrid' : 'vector',
      k: 1 + (i % 50),
      resultIds: i % 5 === 0 ? [] : [`d"${i}`, `ü${i}`],
      scores: i % 5 === 0 ? [] : [0.1 + i / 1000, -1e-7],
      modelVersion: 'm1',
      latencyMs: i / 3,
      createdAt: t0 + i,
    }));
    await store.insertQueryLogs(rows);
    expect(await store.queryLogWindow(coll, { limit: 1000 })).toEqual(rows);
    const odd = { ...rows[0]!, id: `${coll}-odd`, query: 'nul \u0000 here, lone \ud800 surrogate', createdAt: t0 + 500 };
    await store.insertQueryLogs([odd, { ...rows[1]!, id: `${coll}-after`, createdAt: t0 + 501 }]);
    const got = await store.getQueryLog(`${coll}-odd`);
    // A lone surrogate comes back as U+FFFD (SQLite: one per byte of its encoding); SQLite keeps the NUL,
    // Postgres text cannot hold one.
    expect(got?.query?.replace('\u0000', '')).toMatch(/^nul {2}here, lone \ufffd+ surrogate$/);
    expect(await store.getQueryLog(`${coll}-after`)).toBeDefined();
  });

  it('query log text slices: bounded scans, text rows only, timestamp ties, both directions', async () => {
    const coll = uniqueName('qs');
    const t0 = 1_700_000_000_000;
    // 60 rows, three per millisecond; every fourth has text, some blank or whitespace-only.
    const rows: QueryLogRow[] = Array.from({ length: 60 }, (_, i) => ({
      id: `${coll}-${String(i).padStart(3, '0')}`,
      collection: coll,
      query: i % 4 === 0 ? `q ${i}` : i % 4 === 1 ? null : i % 4 === 2 ? '' : '   ',
      mode: 'vector',
      k: 10,
      resultIds: ['d'],
      scores: [0.5],
      modelVersion: 'm1',
      latencyMs: 1,
      createdAt: t0 + Math.floor(i / 3),
    }));
    // ... plus 10 rows at one timestamp, more than a slice covers.
    for (let i = 0; i < 10; i++) rows.push({ ...rows[0]!, id: `${coll}-tie${i}`, query: `tie ${i}`, createdAt: t0 + 100 });
    await store.insertQueryLogs(rows);
    const scan = async (newestFirst: boolean, floor?: number) => {
      const seen: string[] = [];
      let from: number | undefined = newestFirst ? Number.MAX_SAFE_INTEGER : t0 - 5;
      let slices = 0;
      while (from !== undefined) {
        const sl = await store.queryLogTextSlice(coll, { from, newestFirst, floor, scanRows: 7 });
        seen.push(...sl.rows.map((r) => r.id));
        from = sl.next;
        if (++slices > 100) throw new Error('scan does not end');
      }
      return { seen, slices };
    };
    const text = rows
      .filter((r) => r.query !== null && r.query.trim() !== '')
      .sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : 1));
    const up = await scan(false);
    expect(up.seen).toEqual(text.map((r) => r.id));
    expect(up.slices).toBeGreaterThanOrEqual(9);
    const down = await scan(true);
    expect(down.seen).toEqual(text.map((r) => r.id).reverse());
    const floored = await scan(true, t0 + 10);
    expect(floored.seen).toEqual(
      text
        .filter((r) => r.createdAt >= t0 + 10)
        .map((r) => r.id)
        .reverse(),
    );
    const one = await store.queryLogTextSlice(coll, { from: t0, scanRows: 6 });
    expect(one.rows.map((r) => r.id)).toEqual([`${coll}-000`, `${coll}-004`]);
    expect(one.next).toBe(t0 + 2);
    expect(await store.queryLogTextSlice('no-such-collection', { from: 0, scanRows: 10 })).toEqual({ rows: [], next: undefined });
  });

  it('feedback pairs: relevant only, joined to the query text of that collection', async () => {
    const coll = uniqueName('fb');
    const t = Date.now();
    const q = (id: string, query: string | null, collection = coll): QueryLogRow => ({
      id,
      collection,
      query,
      mode: 'vector',
      k: 5,
      resultIds: [],
      scores: [],
      modelVersion: 'm',
      latencyMs: 1,
      createdAt: t,
    });
    await store.insertQueryLogs([
      q(`${coll}-1`, 'what is atp'),
      q(`${coll}-2`, 'krebs cycle'),
      q(`${coll}-3`, null),
      q(`${coll}-4`, 'other', 'other-coll'),
    ]);
    const f1 = await store.insertFeedback({ queryId: `${coll}-1`, documentId: 'doc-atp', relevant: true });
    expect(f1).toMatchObject({ queryId: `${coll}-1`, documentId: 'doc-atp', relevant: true });
    expect(typeof f1.id).toBe('number');
    const f2 = await store.insertFeedback({ queryId: `${coll}-2`, documentId: 'doc-no', relevant: false });
    expect(f2.relevant).toBe(false);
    await store.insertFeedback({ queryId: `${coll}-2`, documentId: 'doc-krebs', relevant: true });
    await store.insertFeedback({ queryId: `${coll}-3`, documentId: 'doc-null', relevant: true });
    await store.insertFeedback({ queryId: `${coll}-4`, documentId: 'doc-other', relevant: true });
    const pairs = await store.feedbackPairs(coll);
    expect(pairs.map((p) => [p.query, p.documentId])).toEqual([
      ['what is atp', 'doc-atp'],
      ['krebs cycle', 'doc-krebs'],
    ]);
    expect(await store.feedbackPairs(coll, { limit: 1 })).toHaveLength(1);
    // afterId reads only the rows after it
    expect((await store.feedbackPairs(coll, { afterId: pairs[0]!.id })).map((p) => p.query)).toEqual(['krebs cycle']);
    expect(await store.feedbackPairs(coll, { afterId: pairs[1]!.id })).toEqual([]);
  });

  it('one running job per collection, enforced inside the write transaction', async () => {
    const coll = uniqueName('jobs');
    const job = (id: string, collection = coll): Omit<TrainJobRow, 'createdAt' | 'updatedAt'> => ({
      id,
      collection,
      trigger: 'manual',
      state: 'queued',
      progress: { phase: 'start' },
      timings: {},
      parentVersion: 'm1',
      candidateVersion: null,
      error: null,
    });
    const j1 = await store.insertJob(job(`${coll}-1`));
    expect(j1).toMatchObject({
      id: `${coll}-1`,
      state: 'queued',
      progress: { phase: 'start' },
      timings: {},
      candidateVersion: null,
      error: null,
    });
    const err = await expectAppError(store.insertJob(job(`${coll}-2`)), 'job_running');
    expect(err.details).toEqual({ jobId: `${coll}-1` });
    await store.insertJob(job(`${coll}-other`, `${coll}-b`));

    const u = await store.updateJob(j1.id, {
      state: 'training',
      progress: { step: 3, of: 10 },
      timings: { mining: 1.5 },
      candidateVersion: 'm2',
    });
    expect(u).toMatchObject({ state: 'training', progress: { step: 3, of: 10 }, timings: { mining: 1.5 }, candidateVersion: 'm2' });
    expect(u.updatedAt).toBeGreaterThanOrEqual(j1.updatedAt);
    await expectAppError(store.insertJob(job(`${coll}-3`)), 'job_running');
    await store.updateJob(j1.id, { state: 'failed', error: 'trainer exited 1' });
    expect((await store.getJob(j1.id))?.error).toBe('trainer exited 1');
    await expectAppError(store.updateJob('no-such-job', { state: 'done' }), 'job_not_found');
    expect(await store.getJob('no-such-job')).toBeUndefined();

    // Racing creators (N replicas, or N requests on one): exactly one wins.
    const racers = await Promise.allSettled(Array.from({ length: 6 }, (_, i) => store.insertJob(job(`${coll}-race-${i}`))));
    expect(racers.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of racers) if (r.status === 'rejected') expect((r.reason as AppError).code).toBe('job_running');

    const active = await store.listJobs({ collection: coll, states: ['queued', 'training'] });
    expect(active).toHaveLength(1);
    expect((await store.listJobs({ collection: coll, states: ['failed'] })).map((j) => j.id)).toEqual([j1.id]);
    expect(await store.listJobs({ collection: coll, limit: 1 })).toHaveLength(1);
    expect((await store.listJobs({ collection: coll })).length).toBe(2);
  });

  it('job claims: one holder at a time, free again once released', async () => {
    const a = await store.claimJob('job-1');
    expect(a).toBeDefined();
    expect(await store.claimJob('job-1')).toBeUndefined();
    const b = await store.claimJob('job-2');
    expect(b).toBeDefined();
    await a!.release();
    const again = await store.claimJob('job-1');
    expect(again).toBeDefined();
    await again!.release();
    await b!.release();
  });

  it('drift and eval reports round-trip JSON and booleans, newest first', async () => {
    const coll = uniqueName('drift');
    const d1 = await store.insertDriftReport({
      collection: coll,
      modelVersion: 'm1',
      metrics: { auc: 0.5, mmd: { stat: 0.01, p: 0.7 } },
      drifted: false,
      jobId: null,
    });
    const d2 = await store.insertDriftReport({ collection: coll, modelVersion: 'm1', metrics: { auc: 0.93 }, drifted: true, jobId: 'j1' });
    expect(d1).toMatchObject({ collection: coll, drifted: false, jobId: null, metrics: { auc: 0.5, mmd: { stat: 0.01, p: 0.7 } } });
    expect((await store.listDriftReports(coll, 10)).map((r) => r.id)).toEqual([d2.id, d1.id]);
    expect(await store.listDriftReports(coll, 1)).toEqual([d2]);

    const cand = uniqueName('cand');
    const e1 = await store.insertEvalReport({
      jobId: 'j1',
      candidateVersion: cand,
      championVersion: 'm1',
      metrics: { ndcg10: 0.71 },
      decision: { reason: 'margin' },
      passed: true,
    });
    await store.insertEvalReport({
      jobId: 'j2',
      candidateVersion: cand,
      championVersion: 'm1',
      metrics: { ndcg10: 0.6 },
      decision: {},
      passed: false,
    });
    expect(e1).toMatchObject({ passed: true, metrics: { ndcg10: 0.71 }, decision: { reason: 'margin' } });
    expect((await store.listEvalReports({ candidateVersion: cand })).map((r) => r.passed)).toEqual([false, true]);
    expect(await store.listEvalReports({ jobId: 'j1', candidateVersion: cand })).toEqual([e1]);
  });

  it('api keys: stored by hash, unique, counted', async () => {
    const n0 = await store.countApiKeys();
    const hash = randomUUID().replace(/-/g, '').repeat(2);
    await store.insertApiKey({ id: uniqueName('key'), hash, role: 'admin', name: 'ops' });
    await store.insertApiKey({ id: uniqueName('key'), hash: hash.split('').reverse().join(''), role: 'read', name: null });
    expect(await store.countApiKeys()).toBe(n0 + 2);
    expect(await store.findApiKeyByHash(hash)).toMatchObject({ hash, role: 'admin', name: 'ops' });
    expect(await store.findApiKeyByHash('0'.repeat(64))).toBeUndefined();
    await expect(store.insertApiKey({ id: uniqueName('key'), hash, role: 'read', name: null })).rejects.toThrow();
  });
});

describe('openStore', () => {
  it('selects the store from DATABASE_URL', () => {
    expect(resolveStoreTarget({ dataDir: '/d' })).toEqual({ kind: 'sqlite', file: '/d/retrieval.db' });
    expect(resolveStoreTarget({ dataDir: '/d', databaseUrl: '' })).toEqual({ kind: 'sqlite', file: '/d/retrieval.db' });
    expect(resolveStoreTarget({ dataDir: '/d', databaseUrl: 'postgres://u:p@h:5432/db' })).toEqual({
      kind: 'postgres',
      url: 'postgres://u:p@h:5432/db',
    });
    expect(resolveStoreTarget({ dataDir: '/d', databaseUrl: 'postgresql://h/db' }).kind).toBe('postgres');
    expect(resolveStoreTarget({ dataDir: '/d', databaseUrl: 'pglite://memory' })).toEqual({ kind: 'pglite', dataDir: undefined });
    expect(resolveStoreTarget({ dataDir: '/d', databaseUrl: 'pglite:///var/lib/rt' })).toEqual({ kind: 'pglite', dataDir: '/var/lib/rt' });
    expect(() => resolveStoreTarget({ dataDir: '/d', databaseUrl: 'mysql://x' })).toThrow(/DATABASE_URL/);
  });

  it('finds migrations relative to the package, not the working directory', async () => {
    const cwd = process.cwd();
    const dir = tempDir('store-cwd-');
    try {
      process.chdir(dir);
      expect(MIGRATIONS_ROOT).toMatch(/migrations$/);
      const store = await openStore({ dataDir: join(dir, 'data') });
      expect(await store.listCollections()).toEqual([]);
      await store.close();
    } finally {
      process.chdir(cwd);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('PGlite on disk keeps data across reopen (migrations are not re-run destructively)', async () => {
    const dir = tempDir('store-pglite-');
    try {
      const a = await openStore({ dataDir: dir, databaseUrl: `pglite://${join(dir, 'pg')}` });
      await a.createCollection({ name: 'persisted', hnsw, chunk });
      await a.close();
      const b = await PgStore.pglite(join(dir, 'pg'), { migrationsFolder: join(MIGRATIONS_ROOT, 'pg') });
      expect((await b.getCollection('persisted'))?.name).toBe('persisted');
      await b.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
