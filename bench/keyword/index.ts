// Keyword search (BM25) latency, SQLite FTS5 vs Postgres tsvector, same corpus and queries, one run.
//   TEST_DATABASE_URL=postgres://… npx tsx bench/keyword/index.ts [--docs 35140] [--queries 300]
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { openStore } from '../../src/store/index.js';
import type { Store } from '../../src/store/types.js';
import { freshPostgres, tempDir } from '../../test/helpers.js';

const { values: a } = parseArgs({
  options: {
    docs: { type: 'string', default: '35140' },
    queries: { type: 'string', default: '300' },
    data: { type: 'string', default: '../shared/data/go' },
  },
});
const docs = readFileSync(`${a.data}/corpus.jsonl`, 'utf8')
  .trim()
  .split('\n')
  .slice(0, Number(a.docs))
  .map((l) => JSON.parse(l) as { id: string; text: string });
const queries = readFileSync(`${a.data}/queries.dev.jsonl`, 'utf8')
  .trim()
  .split('\n')
  .slice(0, Number(a.queries))
  .map((l) => (JSON.parse(l) as { query: string }).query);

const tops: Record<string, string[]> = {};

async function run(name: string, store: Store): Promise<number[]> {
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
  const ms: number[] = [];
  tops[name] = [];
  for (const q of queries) {
    const t = performance.now();
    const hits = await store.keywordSearch(c.id, q, 10);
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

const dir = tempDir('kw-');
const sqlite = await openStore({ dataDir: dir });
const s = await run('sqlite', sqlite);
await sqlite.close();
rmSync(dir, { recursive: true, force: true });
if (process.env.TEST_DATABASE_URL) {
  const db = await freshPostgres('bench_kw');
  const pg = await openStore({ databaseUrl: db.url, dataDir: tempDir('kwpg-') });
  const p = await run('postgres', pg);
  await pg.close();
  await db.drop();
  const med = (x: number[]) => x[Math.floor(x.length / 2)]!;
  console.log(`postgres / sqlite p50: ${(med(p) / med(s)).toFixed(1)}x  (${docs.length} docs, ${queries.length} GO dev queries, k=10)`);
  // Same BM25 in both dialects: the top-10 (ids and scores to 4 decimals) should agree query for query.
  const same = queries.filter((_, i) => tops.sqlite![i] === tops.postgres![i]).length;
  console.log(`identical top-10 (ids + scores): ${same}/${queries.length}`);
  if (process.env.BENCH_KEYWORD_DUMP) writeFileSync(process.env.BENCH_KEYWORD_DUMP, JSON.stringify(tops, null, 1));
}
