// What a query-log flush costs the main thread: the store's insertQueryLogs against a drizzle multi-row INSERT of the
// same rows on the same Postgres, side by side in one run; and the SQLite store (writer thread) for reference.
// A flush at full /search load holds ~600 rows (200 ms of ~3,000 searches a second).
//
//   npm run bench:querylog                                  # SQLite (temp file) and a local Postgres
//   DATABASE_URL=postgres://… npm run bench:querylog        # that Postgres instead of starting one
//   BENCH_FLUSHES=20 BENCH_ROWS=600 BENCH_ROUNDS=3
//
// Per variant: main-thread CPU per row (/proc/thread-self, Linux), wall time, and the event loop's delay while the
// flushes run (monitorEventLoopDelay at 1 ms resolution: how long a request arriving meanwhile could wait).
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { drizzle } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import { openStore } from '../../src/store/index.js';
import * as schema from '../../src/store/schema/pg.js';
import type { QueryLogRow } from '../../src/store/types.js';
import { tempDir } from '../../test/helpers.js';

const env = (name: string, dflt: number): number => (process.env[name] ? Number(process.env[name]) : dflt);
const FLUSHES = env('BENCH_FLUSHES', 20);
const ROWS = env('BENCH_ROWS', 600);
const ROUNDS = env('BENCH_ROUNDS', 3);

function threadCpuMs(): number {
  const stat = readFileSync('/proc/thread-self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

let batchNo = 0;
const run = Date.now().toString(36);
function batch(): QueryLogRow[] {
  const b = batchNo++;
  return Array.from({ length: ROWS }, (_, i) => ({
    id: `${run}-${b}-${i}`,
    collection: 'bench-querylog',
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

interface Result {
  cpuUsPerRow: number;
  wallMs: number;
  delayMaxMs: number;
  delayP99Ms: number;
}

async function measure(flush: (rows: QueryLogRow[]) => Promise<void>): Promise<Result> {
  const batches = Array.from({ length: FLUSHES }, batch);
  await flush(batch()); // warm: connections, prepared paths, the writer thread
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  const cpu0 = threadCpuMs();
  const t0 = performance.now();
  for (const rows of batches) await flush(rows);
  const wallMs = performance.now() - t0;
  const cpu = threadCpuMs() - cpu0;
  h.disable();
  return { cpuUsPerRow: (cpu * 1000) / (FLUSHES * ROWS), wallMs, delayMaxMs: h.max / 1e6, delayP99Ms: h.percentile(99) / 1e6 };
}

function localPostgres(): string {
  return execFileSync('bash', [join(import.meta.dirname, '../../test/store/start-postgres.sh')], { encoding: 'utf8' }).trim();
}

const url = process.env.DATABASE_URL ?? localPostgres();
const dir = tempDir('bench-querylog-');
const sqlite = await openStore({ dataDir: dir });
const postgres = await openStore({ dataDir: dir, databaseUrl: url });
const pool = new pg.Pool({ connectionString: url, max: 2 });
const orm = drizzle(pool, { schema });
const variants: [string, (rows: QueryLogRow[]) => Promise<void>][] = [
  ['Postgres: store.insertQueryLogs (one JSON parameter)', (rows) => postgres.insertQueryLogs(rows)],
  [
    'Postgres: drizzle multi-row INSERT, 500 rows a statement',
    async (rows) => {
      await orm.transaction(async (tx) => {
        for (let i = 0; i < rows.length; i += 500)
          await tx
            .insert(schema.queryLog)
            .values(rows.slice(i, i + 500))
            .onConflictDoNothing();
      });
    },
  ],
  ['SQLite: store.insertQueryLogs (writer thread)', (rows) => sqlite.insertQueryLogs(rows)],
];

console.log(`query-log flushes: ${FLUSHES} × ${ROWS} rows per variant, ${ROUNDS} rounds, Postgres at ${url.replace(/:[^:@/]+@/, ':…@')}`);
const results = new Map<string, Result[]>(variants.map(([name]) => [name, []]));
for (let r = 0; r < ROUNDS; r++) {
  for (const [name, flush] of r % 2 ? [...variants].reverse() : variants) {
    const res = await measure(flush);
    results.get(name)!.push(res);
    console.log(
      `  round ${r + 1}: ${name}: ${res.cpuUsPerRow.toFixed(1)} µs/row main thread, loop delay max ${res.delayMaxMs.toFixed(1)} ms`,
    );
  }
}
const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const w = Math.max(...variants.map(([n]) => n.length));
console.log(`\n${'variant'.padEnd(w)}  main-thread µs/row  wall ms/flush  loop delay p99 / max ms`);
for (const [name, rs] of results) {
  console.log(
    `${name.padEnd(w)}  ${med(rs.map((x) => x.cpuUsPerRow))
      .toFixed(1)
      .padStart(17)}  ${med(rs.map((x) => x.wallMs / FLUSHES))
      .toFixed(1)
      .padStart(13)}  ${med(rs.map((x) => x.delayP99Ms)).toFixed(1)} / ${med(rs.map((x) => x.delayMaxMs)).toFixed(1)}`,
  );
}
const a = results.get(variants[1]![0])!;
const b = results.get(variants[0]![0])!;
const per = a.map((x, i) => x.cpuUsPerRow / b[i]!.cpuUsPerRow);
console.log(
  `\ndrizzle INSERT / store, main-thread CPU per row: ${med(per).toFixed(2)}x (rounds ${per.map((p) => p.toFixed(2)).join(' ')})`,
);
const dmax = a.map((x, i) => x.delayMaxMs / Math.max(b[i]!.delayMaxMs, 1));
console.log(
  `drizzle INSERT / store, longest event-loop delay: ${med(dmax).toFixed(2)}x (rounds ${dmax.map((p) => p.toFixed(2)).join(' ')})`,
);

await pool.query(`DELETE FROM query_log WHERE collection = 'bench-querylog'`);
await Promise.all([pool.end(), sqlite.close(), postgres.close()]);
rmSync(dir, { recursive: true, force: true });
