// Keyword search (BM25), same corpus and queries, one run:
// - latency, SQLite FTS5 vs Postgres tsvector (with TEST_DATABASE_URL), one search at a time;
// - throughput on SQLite with searches in flight (--concurrency): on the event loop (KEYWORD_THREADS=0) vs on
//   reader threads (--threads, default KEYWORD_THREADS's), and the longest event-loop stall during each.
//   TEST_DATABASE_URL=postgres://… npx tsx bench/keyword/index.ts [--docs 35140] [--queries 300]
//     [--concurrency 16] [--load-queries 3000] [--threads N]
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { loadConfig } from '../../src/config.js';
import { openStore } from '../../src/store/index.js';
import type { Store } from '../../src/store/types.js';
import { freshPostgres, tempDir } from '../../test/helpers.js';

const { values: a } = parseArgs({
  options: {
    docs: { type: 'string', default: '35140' },
    queries: { type: 'string', default: '300' },
    data: { type: 'string', default: '../shared/data/go' },
    concurrency: { type: 'string', default: '16' },
    'load-queries': { type: 'string', default: '3000' },
    threads: { type: 'string' },
  },
});
const docs = readFileSync(`${a.data}/corpus.jsonl`, 'utf8')
  .trim()
  .split('\n')
  .slice(0, Number(a.docs))
  .map((l) => JSON.parse(l) as { id: string; text: string });
const queryFile = (split: string, n: number) =>
  readFileSync(`${a.data}/queries.${split}.jsonl`, 'utf8')
    .trim()
    .split('\n')
    .slice(0, n)
    .map((l) => (JSON.parse(l) as { query: string }).query);
const queries = queryFile('dev', Number(a.queries));
const threads = Number(a.threads ?? loadConfig({}).KEYWORD_THREADS);

async function fill(store: Store) {
  const c = await store.createCollection({
    name: 'kw',
    hnsw: { M: 16, efConstruction: 100, efSearch: 50 },
    chunk: { size: 100000, overlap: 0 },
  });
  for (let i = 0; i < docs.length; i += 2000)
    await store.upsertDocuments(
      c.id,
      docs.slice(i, i + 2000).map((d) => ({ ...d, metadata: {}, chunks: [d.text] })),
    );
  for (const q of queries.slice(0, 20)) await store.keywordSearch(c.id, q, 10); // warm caches
  return c;
}

const tops: Record<string, string[]> = {};

async function run(name: string, store: Store, collectionId: number): Promise<number[]> {
  const ms: number[] = [];
  tops[name] = [];
  for (const q of queries) {
    const t = performance.now();
    const hits = await store.keywordSearch(collectionId, q, 10);
    ms.push(performance.now() - t);
    const docIds = await store.hydrate(hits.map((h) => h.label));
    tops[name]!.push(hits.map((h) => `${docIds.get(h.label)?.docId}:${h.score.toFixed(4)}`).join(' '));
  }
  ms.sort((x, y) => x - y);
  console.log(
    `${name.padEnd(8)} p50 ${ms[Math.floor(ms.length / 2)]!.toFixed(2)} ms  p90 ${ms[Math.floor(ms.length * 0.9)]!.toFixed(2)} ms  p99 ${ms[Math.floor(ms.length * 0.99)]!.toFixed(2)} ms`,
  );
  return ms;
}

/** Searches per second with `concurrency` in flight, and the longest gap of a 1 ms timer meanwhile. */
async function load(store: Store, collectionId: number, qs: string[], concurrency: number) {
  let stall = 0;
  let last = performance.now();
  const probe = setInterval(() => {
    const now = performance.now();
    stall = Math.max(stall, now - last);
    last = now;
  }, 1);
  let next = 0;
  const t = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < qs.length) await store.keywordSearch(collectionId, qs[next++]!, 10);
    }),
  );
  const end = performance.now();
  clearInterval(probe);
  // searches on the event loop never yield to the timer: the last gap is the whole run
  stall = Math.max(stall, end - last);
  const seconds = (end - t) / 1000;
  return { qps: qs.length / seconds, stall };
}

const dir = tempDir('kw-');
const sqlite = await openStore({ dataDir: dir });
const coll = await fill(sqlite);
const s = await run('sqlite', sqlite, coll.id);

// The same file through a store with reader threads: the event loop vs threads, interleaved twice.
const threaded = await openStore({ dataDir: dir, keywordThreads: threads });
const loadQs = queryFile('train', Number(a['load-queries']));
const c = Number(a.concurrency);
await load(threaded, coll.id, loadQs.slice(0, 200), c); // start the threads, warm their caches
const res: Record<'loop' | 'threads', { qps: number; stall: number }[]> = { loop: [], threads: [] };
for (let i = 0; i < 2; i++) {
  res.loop.push(await load(sqlite, coll.id, loadQs, c));
  res.threads.push(await load(threaded, coll.id, loadQs, c));
}
const best = (xs: { qps: number; stall: number }[]) => ({
  qps: Math.max(...xs.map((x) => x.qps)),
  stall: Math.min(...xs.map((x) => x.stall)),
});
const [l, th] = [best(res.loop), best(res.threads)];
console.log(
  `sqlite, ${c} in flight, ${loadQs.length} GO train queries (best of 2): event loop ${l.qps.toFixed(0)} q/s (longest stall ${l.stall.toFixed(0)} ms) · ` +
    `${threads} keyword thread(s) ${th.qps.toFixed(0)} q/s (longest stall ${th.stall.toFixed(0)} ms) = ${(th.qps / l.qps).toFixed(2)}x`,
);
await threaded.close();
await sqlite.close();
rmSync(dir, { recursive: true, force: true });

if (process.env.TEST_DATABASE_URL) {
  const db = await freshPostgres('bench_kw');
  const pg = await openStore({ databaseUrl: db.url, dataDir: tempDir('kwpg-') });
  const p = await run('postgres', pg, (await fill(pg)).id);
  await pg.close();
  await db.drop();
  const med = (x: number[]) => x[Math.floor(x.length / 2)]!;
  console.log(`postgres / sqlite p50: ${(med(p) / med(s)).toFixed(1)}x  (${docs.length} docs, ${queries.length} GO dev queries, k=10)`);
  // Same BM25 in both dialects: the top-10 (ids and scores to 4 decimals) should agree query for query.
  const same = queries.filter((_, i) => tops.sqlite![i] === tops.postgres![i]).length;
  console.log(`identical top-10 (ids + scores): ${same}/${queries.length}`);
  if (process.env.BENCH_KEYWORD_DUMP) writeFileSync(process.env.BENCH_KEYWORD_DUMP, JSON.stringify(tops, null, 1));
}
