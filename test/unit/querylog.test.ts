// flush() must cover every row pushed before it was called, even while an earlier write is in flight
// (/feedback flushes, then looks the search up). A store double that holds its first write open.
import { expect, it } from 'vitest';
import { createMetrics } from '../../src/metrics.js';
import { QueryLogBuffer } from '../../src/serving/querylog.js';
import type { QueryLogRow, Store } from '../../src/store/types.js';
import { createLogger } from '../../src/util/log.js';

const row = (id: string): QueryLogRow =>
  ({
    id,
    collection: 'c',
    query: id,
    k: 1,
    mode: 'vector',
    resultIds: [],
    scores: [],
    modelVersion: 'v',
    latencyMs: 1,
    createdAt: 0,
  }) as unknown as QueryLogRow;

it('a flush called during an in-flight write also writes the rows pushed since', async () => {
  const written: string[] = [];
  let releaseFirst: () => void = () => undefined;
  let calls = 0;
  const store = {
    async insertQueryLogs(rows: QueryLogRow[]) {
      calls++;
      if (calls === 1)
        await new Promise<void>((r) => {
          releaseFirst = r;
        });
      written.push(...rows.map((r) => r.id));
    },
  } as unknown as Store;
  const buf = new QueryLogBuffer(store, createMetrics(), createLogger('silent'), { flushMs: 1000, maxBuffer: 100 });
  buf.push(row('a'));
  const first = buf.flush();
  buf.push(row('b'));
  const second = buf.flush();
  const third = buf.flush();
  releaseFirst();
  await Promise.all([first, second, third]);
  expect(written).toEqual(['a', 'b']);
  expect(calls).toBe(2);
});

it('writes a pushed row one tick later without a flush call, and arms no tick while nothing waits', async () => {
  const batches: string[][] = [];
  const store = {
    async insertQueryLogs(rows: QueryLogRow[]) {
      batches.push(rows.map((r) => r.id));
    },
  } as unknown as Store;
  const buf = new QueryLogBuffer(store, createMetrics(), createLogger('silent'), { flushMs: 5, maxBuffer: 100 });
  buf.start();
  const armed = () => (buf as unknown as { timer: unknown }).timer !== undefined;
  expect(armed()).toBe(false);
  buf.push(row('a'));
  buf.push(row('b'));
  expect(armed()).toBe(true);
  await expect.poll(() => batches.length, { timeout: 2000 }).toBe(1);
  expect(batches).toEqual([['a', 'b']]);
  expect(armed()).toBe(false);
  buf.push(row('c'));
  await expect.poll(() => batches.length, { timeout: 2000 }).toBe(2);
  expect(batches[1]).toEqual(['c']);
  await buf.stop();
  buf.push(row('d'));
  expect(armed()).toBe(false);
});
