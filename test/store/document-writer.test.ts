// SQLite writes document upserts through a writer thread with its own connection: the batch is readable from the
// store's connection as soon as the upsert resolves, the event loop keeps turning while a large batch is written (and
// while a write on the store's own connection waits for it), a deleted collection is still "gone", and a writer
// thread that is gone never costs a batch.
import { rmSync } from 'node:fs';
import { afterAll, expect, it } from 'vitest';
import { isCollectionGone } from '../../src/store/errors.js';
import { openStore } from '../../src/store/index.js';
import type { DocumentInput, Store } from '../../src/store/types.js';
import { tempDir } from '../helpers.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const hnsw = { M: 16, efConstruction: 200, efSearch: 64 };
const chunk = { size: 1000, overlap: 0 };
const doc = (id: string, text: string): DocumentInput => ({ id, text, metadata: { id }, chunks: [text, `${text} (2)`] });

async function fileStore(): Promise<Store> {
  const dir = tempDir('document-writer-');
  dirs.push(dir);
  return openStore({ dataDir: dir });
}

/** 3000 documents, 6000 chunks: ~150 ms of SQLite work in one transaction. */
const bigBatch = () => Array.from({ length: 3000 }, (_, i) => doc(`d${i}`, `passage ${i} about membrane transport and ion channels`));

/** Counts turns of the event loop until stop(), which returns the count. */
function countTurns(): { stop: () => number } {
  let turns = 0;
  let done = false;
  const spin = () => {
    if (done) return;
    turns++;
    setImmediate(spin);
  };
  setImmediate(spin);
  return {
    stop: () => {
      done = true;
      return turns;
    },
  };
}

const writer = (store: Store) => (store as unknown as { docWriter?: { worker: { terminate(): Promise<number> } } }).docWriter;

it('a batch written by the thread is visible to the store at once, keyword index included', async () => {
  const store = await fileStore();
  const c = await store.createCollection({ name: 'docs', hnsw, chunk });
  const r1 = await store.upsertDocuments(c.id, [doc('a', 'alpha mitochondria'), doc('b', 'beta ribosome')]);
  expect(writer(store)).toBeDefined();
  expect(r1.added.map((x) => [x.docId, x.n])).toEqual([
    ['a', 0],
    ['a', 1],
    ['b', 0],
    ['b', 1],
  ]);
  expect(await store.getDocument(c.id, 'a')).toEqual({ id: 'a', text: 'alpha mitochondria', metadata: { id: 'a' } });
  expect((await store.hydrate(r1.added.map((x) => x.label))).size).toBe(4);
  expect((await store.keywordSearch(c.id, 'ribosome', 5)).map((h) => h.label)).toContain(r1.added[2]!.label);
  const r2 = await store.upsertDocuments(c.id, [doc('a', 'alpha chloroplast')]);
  expect(r2.seq).toBeGreaterThan(r1.seq);
  expect(r2.removed).toEqual(r1.added.slice(0, 2).map((x) => x.label));
  expect(await store.keywordSearch(c.id, 'mitochondria', 5)).toEqual([]);
  expect(await store.countLiveChunks(c.id)).toBe(4);
  await store.close();
});

it('the event loop keeps turning while a large batch is written', async () => {
  const store = await fileStore();
  const c = await store.createCollection({ name: 'big', hnsw, chunk });
  await store.upsertDocuments(c.id, [doc('warm', 'start the thread')]);
  const turns = countTurns();
  const r = await store.upsertDocuments(c.id, bigBatch());
  expect(r.added).toHaveLength(6000);
  // On the store's own connection the whole transaction runs in one synchronous call: no turn at all in it.
  expect(turns.stop()).toBeGreaterThan(20);
  await store.close();
});

it("a write on the store's own connection during a large batch waits its turn without stopping the event loop", async () => {
  const store = await fileStore();
  const c = await store.createCollection({ name: 'big', hnsw, chunk });
  await store.upsertDocuments(c.id, [doc('warm', 'start the thread')]);
  const order: string[] = [];
  const batch = store.upsertDocuments(c.id, bigBatch()).then(() => order.push('batch'));
  // Issued while the batch is in flight. Before, it ran at once on the store's connection: where the thread already
  // held its transaction, it waited out SQLite's busy_timeout synchronously (the rest of the batch, ~150 ms here,
  // with no event-loop turn), and either way it finished before the batch did.
  const turns = countTurns();
  const other = await store.createCollection({ name: 'meanwhile', hnsw, chunk });
  order.push('write');
  const turned = turns.stop();
  await batch;
  expect(order).toEqual(['batch', 'write']);
  expect(turned).toBeGreaterThan(20);
  expect((await store.getCollection('meanwhile'))?.id).toBe(other.id);
  expect(await store.countLiveChunks(c.id)).toBe(6002);
  await store.close();
});

it('an upsert into a deleted collection is "collection gone", through the thread too', async () => {
  const store = await fileStore();
  const c = await store.createCollection({ name: 'doomed', hnsw, chunk });
  await store.upsertDocuments(c.id, [doc('a', 'first')]);
  expect(await store.deleteCollection('doomed')).toBe(true);
  const err = await store.upsertDocuments(c.id, [doc('b', 'second')]).catch((e: unknown) => e);
  expect(isCollectionGone(err)).toBe(true);
  await store.close();
});

it('when the writer thread is gone, batches are written by the main thread', async () => {
  const store = await fileStore();
  const c = await store.createCollection({ name: 'fallback', hnsw, chunk });
  await store.upsertDocuments(c.id, [doc('first', 'one')]);
  await writer(store)!.worker.terminate();
  const r = await store.upsertDocuments(c.id, [doc('after', 'two'), doc('first', 'one again')]);
  expect(r.removed).toHaveLength(2);
  expect(await store.getDocument(c.id, 'after')).toBeDefined();
  expect(await store.countLiveChunks(c.id)).toBe(4);
  await store.close();
});
