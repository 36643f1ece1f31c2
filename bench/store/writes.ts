// What the store's batch writes cost the main thread, where every search of the process waits on it: a query-log
// flush (~600 rows at full /search load: 200 ms of ~3,000 searches a second) and a 1000-document upsert. On Postgres
// the store's writes (jsonb parameters expanded by jsonb_to_recordset) against drizzle multi-row INSERTs of the same
// rows on the same database; on SQLite the store's upsert (writer thread) against the same statements on the main
// thread's own connection, and a one-row write made while the writer thread holds its transaction (the store's turn
// against the same write straight on a connection of the main thread, which waits in SQLite's busy_timeout); side by
// side in one run.
//
//   npm run bench:store-writes                              # SQLite (temp file) and a local Postgres
//   DATABASE_URL=postgres://… npm run bench:store-writes    # that Postgres instead of starting one
//   BENCH_FLUSHES=20 BENCH_ROWS=600 BENCH_UPSERTS=5 BENCH_DOCS=1000 BENCH_ROUNDS=3
//
// Per variant: main-thread CPU per row or document (/proc/thread-self, Linux), wall time, and the longest the event
// loop went without a turn while the writes ran (a 1 ms ticker's longest gap: how long a request arriving meanwhile
// could wait). Each batch is followed by a turn of the loop, as separate requests would be.
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { and, eq, inArray, isNull, sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import Database from 'better-sqlite3';
import { openStore } from '../../src/store/index.js';
import { documentUpserter } from '../../src/store/sqlite/upsert.js';
import * as schema from '../../src/store/schema/pg.js';
import type { DocumentInput, QueryLogRow, Store } from '../../src/store/types.js';
import { tempDir } from '../../test/helpers.js';
import { threadCpuMs } from '../cpu.js';

const env = (name: string, dflt: number): number => (process.env[name] ? Number(process.env[name]) : dflt);
const FLUSHES = env('BENCH_FLUSHES', 20);
const ROWS = env('BENCH_ROWS', 600);
const UPSERTS = env('BENCH_UPSERTS', 5);
const DOCS = env('BENCH_DOCS', 1000);
const ROUNDS = env('BENCH_ROUNDS', 3);

let batchNo = 0;
const run = Date.now().toString(36);
function logRows(): QueryLogRow[] {
  const b = batchNo++;
  return Array.from({ length: ROWS }, (_, i) => ({
    id: `${run}-${b}-${i}`,
    collection: 'bench-store-writes',
    query: i % 2 ? null : `what regulates the transport of ions across membrane ${i}`,
    mode: 'vector',
    k: 10,
    resultIds: Array.from({ length: 10 }, (_, j) => `GO:${String(1000 + i + j).padStart(7, '0')}`),
    scores: Array.from({ length: 10 }, (_, j) => 0.8123456789 - j / 97),
    modelVersion: 'base-1',
    latencyMs: 2.345,
    createdAt: Date.now(),
  }));
}
const PASSAGE = 'The chemical reactions and pathways involving a protein, the transport of ions across a membrane. '.repeat(10);
function documents(): DocumentInput[] {
  // Half of each batch replaces documents of the one before, so tombstoning has work to do.
  const b = batchNo++;
  return Array.from({ length: DOCS }, (_, i) => ({
    id: `doc-${b * (DOCS / 2) + i}`,
    text: PASSAGE,
    metadata: { n: i, source: 'bench' },
    chunks: [PASSAGE.slice(0, 500), PASSAGE.slice(500)],
  }));
}

interface Result {
  cpuUsPerUnit: number;
  wallMsPerBatch: number;
  stallMs: number;
}

async function measure<B>(make: () => B, n: number, units: number, write: (b: B) => Promise<void>): Promise<Result> {
  const batches = Array.from({ length: n }, make);
  await write(make()); // warm: connections, the writer thread, JIT
  // A synchronous write (better-sqlite3) never lets the loop turn, so monitorEventLoopDelay records nothing for it;
  // a ticker's gap counts it.
  let last = performance.now();
  let stallMs = 0;
  const ticker = setInterval(() => {
    const now = performance.now();
    stallMs = Math.max(stallMs, now - last);
    last = now;
  }, 1);
  const cpu0 = threadCpuMs();
  let wall = 0;
  for (const b of batches) {
    const t0 = performance.now();
    await write(b);
    wall += performance.now() - t0;
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  const cpu = threadCpuMs() - cpu0;
  clearInterval(ticker);
  return { cpuUsPerUnit: (cpu * 1000) / (n * units), wallMsPerBatch: wall / n, stallMs };
}

function localPostgres(): string {
  return execFileSync('bash', [join(import.meta.dirname, '../../test/store/start-postgres.sh')], { encoding: 'utf8' }).trim();
}

const url = process.env.DATABASE_URL ?? localPostgres();
const dir = tempDir('bench-store-writes-');
const sqlite = await openStore({ dataDir: dir });
const postgres = await openStore({ dataDir: dir, databaseUrl: url });
const pool = new pg.Pool({ connectionString: url, max: 2 });
const orm = drizzle(pool, { schema });
const hnsw = { M: 16, efConstruction: 200, efSearch: 64 };
const chunk = { size: 1000, overlap: 0 };
const collName = `bench-store-writes-${run}`;
const collection = async (store: Store) => (await store.createCollection({ name: collName, hnsw, chunk })).id;
const pgColl = await collection(postgres);
// What the SQLite store did before its writer thread: the same upsert on a connection of the main thread.
const here = new Database(join(dir, 'retrieval.db'));
here.pragma('foreign_keys = ON');
here.pragma('busy_timeout = 5000');
const upsertHere = documentUpserter(here);
// A one-row write on a connection of this thread, as the store's small writes (feedback, jobs, strategies) are.
const touchHere = here.prepare('UPDATE collections SET name = name WHERE id = ?');
/** An upsert on the writer thread, and a one-row write issued once the thread is inside its transaction. */
async function upsertWithSmallWrite(docs: DocumentInput[], small: () => Promise<unknown>): Promise<void> {
  const batch = sqlite.upsertDocuments(sqliteColl, docs);
  await new Promise((resolve) => setTimeout(resolve, 20));
  await small();
  await batch;
}
const sqliteColl = await collection(sqlite);

/** The drizzle writes of a document upsert the Postgres store made before it sent jsonb parameters. */
async function drizzleUpsert(collectionId: number, docs: DocumentInput[]): Promise<void> {
  await orm.transaction(async (tx) => {
    const seq = 1; // the store also takes its change sequence number: one small statement, not what is measured
    await tx
      .update(schema.chunks)
      .set({ deletedSeq: seq })
      .where(
        and(
          eq(schema.chunks.collectionId, collectionId),
          inArray(
            schema.chunks.docId,
            docs.map((d) => d.id),
          ),
          isNull(schema.chunks.deletedSeq),
        ),
      )
      .returning({ label: schema.chunks.label });
    const now = Date.now();
    await tx
      .insert(schema.documents)
      .values(docs.map((d) => ({ collectionId, id: d.id, text: d.text, metadata: d.metadata, seq, updatedAt: now })))
      .onConflictDoUpdate({
        target: [schema.documents.collectionId, schema.documents.id],
        set: { text: sql`excluded.text`, metadata: sql`excluded.metadata`, seq, updatedAt: now },
      });
    await tx
      .insert(schema.chunks)
      .values(docs.flatMap((d) => d.chunks.map((text, n) => ({ collectionId, docId: d.id, n, text, seq }))))
      .returning({ label: schema.chunks.label, docId: schema.chunks.docId, n: schema.chunks.n, text: schema.chunks.text });
  });
}

interface Variant {
  name: string;
  run: () => Promise<Result>;
}
const variants: Variant[] = [
  {
    name: `Postgres: query-log flush, store (${ROWS} rows, one jsonb parameter)`,
    run: () => measure(logRows, FLUSHES, ROWS, (rows) => postgres.insertQueryLogs(rows)),
  },
  {
    name: `Postgres: query-log flush, drizzle multi-row INSERT`,
    run: () =>
      measure(logRows, FLUSHES, ROWS, async (rows) => {
        await orm.insert(schema.queryLog).values(rows).onConflictDoNothing();
      }),
  },
  {
    name: `SQLite: query-log flush, store (writer thread)`,
    run: () => measure(logRows, FLUSHES, ROWS, (rows) => sqlite.insertQueryLogs(rows)),
  },
  {
    name: `Postgres: ${DOCS}-document upsert, store (jsonb parameters)`,
    run: () => measure(documents, UPSERTS, DOCS, async (docs) => void (await postgres.upsertDocuments(pgColl, docs))),
  },
  {
    name: `Postgres: ${DOCS}-document upsert, drizzle multi-row statements`,
    run: () => measure(documents, UPSERTS, DOCS, (docs) => drizzleUpsert(pgColl, docs)),
  },
  {
    name: `SQLite: ${DOCS}-document upsert, store (writer thread)`,
    run: () => measure(documents, UPSERTS, DOCS, async (docs) => void (await sqlite.upsertDocuments(sqliteColl, docs))),
  },
  {
    name: `SQLite: ${DOCS}-document upsert, the same statements on this thread`,
    run: () => measure(documents, UPSERTS, DOCS, async (docs) => void upsertHere(sqliteColl, docs)),
  },
  {
    name: `SQLite: a one-row write during a ${DOCS}-document upsert, store (waits its turn)`,
    run: () =>
      measure(documents, UPSERTS, DOCS, (docs) => upsertWithSmallWrite(docs, () => sqlite.saveStrategy(sqliteColl, 'bench', { n: 1 }))),
  },
  {
    name: `SQLite: a one-row write during a ${DOCS}-document upsert, on this thread's connection (busy_timeout)`,
    run: () => measure(documents, UPSERTS, DOCS, (docs) => upsertWithSmallWrite(docs, async () => touchHere.run(sqliteColl))),
  },
];

console.log(
  `store writes: ${FLUSHES} query-log flushes of ${ROWS} rows, ${UPSERTS} upserts of ${DOCS} documents (2 chunks each), ${ROUNDS} rounds; Postgres at ${url.replace(/:[^:@/]+@/, ':…@')}`,
);
const results = new Map<string, Result[]>(variants.map((v) => [v.name, []]));
for (let r = 0; r < ROUNDS; r++) {
  for (const v of r % 2 ? [...variants].reverse() : variants) {
    const res = await v.run();
    results.get(v.name)!.push(res);
    console.log(
      `  round ${r + 1}: ${v.name}: ${res.cpuUsPerUnit.toFixed(1)} µs main thread per row, longest stall ${res.stallMs.toFixed(1)} ms`,
    );
  }
}
const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const w = Math.max(...variants.map((v) => v.name.length));
console.log(`\n${'variant'.padEnd(w)}  main-thread µs/row  wall ms/batch  longest stall ms`);
for (const [name, rs] of results) {
  console.log(
    `${name.padEnd(w)}  ${med(rs.map((x) => x.cpuUsPerUnit))
      .toFixed(1)
      .padStart(17)}  ${med(rs.map((x) => x.wallMsPerBatch))
      .toFixed(1)
      .padStart(13)}  ${med(rs.map((x) => x.stallMs))
      .toFixed(1)
      .padStart(16)}`,
  );
}
console.log('');
for (const [store, before, what] of [
  [variants[0]!, variants[1]!, 'Postgres query-log flush'],
  [variants[3]!, variants[4]!, 'Postgres document upsert'],
  [variants[5]!, variants[6]!, 'SQLite document upsert'],
  [variants[7]!, variants[8]!, 'SQLite one-row write during an upsert'],
] as const) {
  const a = results.get(before.name)!;
  const b = results.get(store.name)!;
  const cpu = a.map((x, i) => x.cpuUsPerUnit / b[i]!.cpuUsPerUnit);
  const stall = a.map((x, i) => x.stallMs / Math.max(b[i]!.stallMs, 1));
  console.log(
    `${what}, ${before.name.split(', ').at(-1)} / store: main-thread CPU ${med(cpu).toFixed(2)}x (rounds ${cpu.map((p) => p.toFixed(2)).join(' ')}), longest stall ${med(stall).toFixed(2)}x (rounds ${stall.map((p) => p.toFixed(2)).join(' ')})`,
  );
}

await pool.query(`DELETE FROM query_log WHERE collection = 'bench-store-writes'`);
await postgres.deleteCollection(collName);
here.close();
await Promise.all([pool.end(), sqlite.close(), postgres.close()]);
rmSync(dir, { recursive: true, force: true });
