// SQLite writes query-log batches through a writer thread with its own connection; a batch is readable
// from the store's own connection once insertQueryLogs resolves (POST /feedback relies on that), and
// a writer thread that is gone never costs a batch.
import { rmSync } from 'node:fs';
import { afterAll, expect, it } from 'vitest';
import { openStore } from '../../src/store/index.js';
import type { QueryLogRow, Store } from '../../src/store/types.js';
import { tempDir } from '../helpers.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const row = (id: string): QueryLogRow => ({
  id,
  collection: 'c',
  query: `q ${id}`,
  mode: 'vector',
  k: 10,
  resultIds: ['a', 'b'],
  scores: [0.9, 0.8],
  modelVersion: 'v1',
  latencyMs: 1.5,
  createdAt: 1_700_000_000_000,
});

async function fileStore(): Promise<Store> {
  const dir = tempDir('querylog-writer-');
  dirs.push(dir);
  return openStore({ dataDir: dir });
}

it('a batch is visible to the store as soon as insertQueryLogs resolves, and survives a reopen', async () => {
  const dir = tempDir('querylog-writer-');
  dirs.push(dir);
  let store = await openStore({ dataDir: dir });
  for (let b = 0; b < 5; b++) {
    const rows = Array.from({ length: 50 }, (_, i) => row(`b${b}-${i}`));
    await store.insertQueryLogs(rows);
    expect(await store.getQueryLog(`b${b}-49`)).toEqual(rows[49]);
  }
  await store.close();
  store = await openStore({ dataDir: dir });
  expect((await store.queryLogWindow('c', { limit: 1000 })).length).toBe(250);
  await store.close();
});

it('a batch larger than one encoding slice (64 rows) arrives whole and in order', async () => {
  const store = await fileStore();
  for (const n of [65, 128, 200]) {
    const rows = Array.from({ length: n }, (_, i) => ({
      ...row(`s${n}-${i}`),
      query: i % 3 === 0 ? null : `q "${i}" — ünïcode ${n}`,
      createdAt: 1_700_000_000_000 + n * 1000 + i,
    }));
    await store.insertQueryLogs(rows);
    const got = await store.queryLogWindow('c', {
      since: 1_700_000_000_000 + n * 1000,
      until: 1_700_000_000_000 + n * 1000 + n,
      limit: 1000,
    });
    expect(got).toEqual(rows);
  }
  await store.close();
});

it('when the writer thread is gone, batches are written by the main thread', async () => {
  const store = await fileStore();
  await store.insertQueryLogs([row('first')]);
  const writer = (store as unknown as { logWriter: { worker: { terminate(): Promise<number> } } }).logWriter;
  await writer.worker.terminate();
  await store.insertQueryLogs([row('after')]);
  expect(await store.getQueryLog('after')).toEqual(row('after'));
  expect(await store.getQueryLog('first')).toEqual(row('first'));
  await store.close();
});

it('an in-memory database writes the query log on its own connection', async () => {
  const store = await openStore({ dataDir: '/nonexistent', databaseUrl: 'sqlite::memory:' });
  await store.insertQueryLogs([row('m')]);
  expect(await store.getQueryLog('m')).toEqual(row('m'));
  await store.close();
});
