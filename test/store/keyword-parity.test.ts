// Keyword search is the same BM25 on every store: same tokens (punctuation splits words, as FTS5's
// unicode61 does), same document length (tokens), same idf, repeated query words counted once.
import { rmSync } from 'node:fs';
import { afterAll, expect, it } from 'vitest';
import { openStore } from '../../src/store/index.js';
import type { Store } from '../../src/store/types.js';
import { freshPostgres, tempDir } from '../helpers.js';

const DOCS = [
  'Catalysis of the reaction: androsta-1,4-diene-3,17-dione + reduced ferredoxin + O2 = 3-hydroxy-9,10-secoandrosta-1,3,5(10)-triene-9,17-dione + H2O.',
  "The binding of a protein to the protein-DNA complex, 3.5 times faster; see o'brien@example.org for details.",
  'Any process that activates or increases the frequency, rate or extent of DNA repair.',
  'The chemical reactions and pathways resulting in the breakdown of 1,2-dihydroxypropane.',
  'A naïve café—bistro serving 東京 style ramen (tokyo), 2 bowls for 3.50',
  'DNA repair DNA repair DNA repair: the process of restoring DNA after damage.',
  'Enables the transfer of a phosphate group; kinase activity, protein-kinase activity.',
];
const QUERIES = [
  'DNA repair',
  'protein-DNA complex',
  '1,2-dihydroxypropane breakdown',
  'repair repair DNA DNA',
  'kinase activity',
  '3.5',
  'tokyo ramen café',
  'process',
];

const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanups) await c();
});

async function results(store: Store): Promise<string[][]> {
  const c = await store.createCollection({
    name: 'kw',
    hnsw: { M: 8, efConstruction: 50, efSearch: 20 },
    chunk: { size: 10_000, overlap: 0 },
  });
  await store.upsertDocuments(
    c.id,
    DOCS.map((text, i) => ({ id: `d${i}`, text, metadata: {}, chunks: [text] })),
  );
  const out: string[][] = [];
  for (const q of QUERIES) {
    const hits = await store.keywordSearch(c.id, q, 5);
    const docs = await store.hydrate(hits.map((h) => h.label));
    out.push(hits.map((h) => `${docs.get(h.label)!.docId}:${h.score.toFixed(6)}`));
  }
  return out;
}

it('SQLite FTS5 and Postgres (PGlite, and a real server when TEST_DATABASE_URL is set) return the same ids and scores', async () => {
  const dir = tempDir('kw-parity-');
  const sqlite = await openStore({ dataDir: dir });
  cleanups.push(async () => {
    await sqlite.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const want = await results(sqlite);
  expect(want.every((r) => r.length > 0)).toBe(true);
  const pglite = await openStore({ dataDir: '/nonexistent', databaseUrl: 'pglite://memory' });
  cleanups.push(() => pglite.close());
  expect(await results(pglite)).toEqual(want);
  if (process.env.TEST_DATABASE_URL) {
    const db = await freshPostgres('rt_kw_parity');
    const pg = await openStore({ dataDir: '/nonexistent', databaseUrl: db.url });
    cleanups.push(async () => {
      await pg.close();
      await db.drop();
    });
    expect(await results(pg)).toEqual(want);
  }
}, 60_000);
