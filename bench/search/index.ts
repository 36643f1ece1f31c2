// Search throughput: raw in-process hnswlib-node vs IndexManager (worker pool) vs HTTP /search, on
// the same snapshot, the same ef and k, in one run, so the ratios are comparable.
//
//   npx tsx bench/search/index.ts
//   BENCH_N=50000 BENCH_DIM=384 BENCH_EF=64 BENCH_K=10 BENCH_SECONDS=5 BENCH_CONCURRENCY=16 npx tsx bench/search/index.ts
//   BENCH_HTTP=real   also drives the real server (src/server.ts startServer) when it is available.
//
// The index is built once through IndexManager and cached as a snapshot in the OS temp dir (50k × 384
// takes about a minute to build on 2 cores); delete it or set BENCH_REBUILD=1 to rebuild.
import { existsSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';

import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import hnswlib from 'hnswlib-node';

import { IndexManager, type IndexManagerOptions } from '../../src/index/manager.js';
import type { HnswParams, VectorIndex } from '../../src/index/types.js';
import { spawnWorker } from '../../src/util/worker.js';
import type { ClientJob, ClientResult } from './http-client.js';
import { randomUnitVector, seededRandom } from '../../src/util/random.js';

const env = (name: string, dflt: number): number => (process.env[name] ? Number(process.env[name]) : dflt);
const N = env('BENCH_N', 50_000);
const DIM = env('BENCH_DIM', 384);
const EF = env('BENCH_EF', 64); // the server's default HNSW_EF_SEARCH
const K = env('BENCH_K', 10);
const SECONDS = env('BENCH_SECONDS', 5);
const CONC = env('BENCH_CONCURRENCY', 16);
const NQ = 2000;
const PARAMS: HnswParams = { M: env('BENCH_M', 16), efConstruction: env('BENCH_EFC', 200), efSearch: EF };
const KEY = { collectionId: 1, modelVersion: 'bench' };

interface Row {
  name: string;
  qps: number;
  p50: number;
  p99: number;
  note?: string;
  /** QPS over the raw run measured next to it. */
  ratio?: number;
  /** Process CPU time (all threads: main, index workers, load generator) per query, ms. */
  cpuMs?: number;
  /** Of cpuMs, the load generator's share (HTTP rows). */
  clientCpuMs?: number;
}

function cpuNow(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

function summarize(name: string, lat: number[], elapsedMs: number, cpuMs: number): Row {
  const s = [...lat].sort((a, b) => a - b);
  return { name, qps: (lat.length / elapsedMs) * 1000, p50: pct(s, 50), p99: pct(s, 99), cpuMs: cpuMs / lat.length };
}

async function buildOrLoadSnapshot(): Promise<string> {
  const dir = join(tmpdir(), 'tuned-retrieval-bench-search');
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `n${N}-d${DIM}-M${PARAMS.M}-efc${PARAMS.efConstruction}-seed1.hnsw`);
  if (existsSync(path) && !process.env.BENCH_REBUILD) return path;
  const rand = seededRandom(1);
  const m = new IndexManager({ workers: 1, addChunk: 1000 });
  const idx = await m.create(KEY, DIM, PARAMS, N);
  const t0 = performance.now();
  const batch = 5000;
  for (let start = 0; start < N; start += batch) {
    const n = Math.min(batch, N - start);
    await idx.add(
      Array.from({ length: n }, (_, i) => start + i),
      Array.from({ length: n }, () => randomUnitVector(DIM, rand)),
    );
    process.stdout.write(`\rbuilding ${start + n}/${N} (${((start + n) / ((performance.now() - t0) / 1000)).toFixed(0)} vec/s)`);
  }
  process.stdout.write('\n');
  await idx.snapshot(path);
  await m.close();
  return path;
}

type HnswlibModule = typeof hnswlib;

async function raw(
  path: string,
  queries: number[][],
  lib: HnswlibModule = hnswlib,
  label = 'raw searchKnn (1 thread, in-process)',
  dim = DIM,
): Promise<Row> {
  const idx = new lib.HierarchicalNSW('ip', dim);
  await idx.readIndex(path);
  idx.setEf(EF);
  for (let i = 0; i < 500; i++) idx.searchKnn(queries[i % queries.length] as number[], K);
  const lat: number[] = [];
  const c0 = cpuNow();
  const t0 = performance.now();
  const end = t0 + SECONDS * 1000;
  let i = 0;
  while (performance.now() < end) {
    const q = queries[i++ % queries.length] as number[];
    const s = performance.now();
    idx.searchKnn(q, K);
    lat.push(performance.now() - s);
  }
  return summarize(label, lat, performance.now() - t0, cpuNow() - c0);
}

/** `CONC` callers, each awaiting its previous search: a closed-loop load like 16 HTTP clients. */
async function closedLoop(
  search: (q: Float32Array) => Promise<unknown>,
  queries: Float32Array[],
): Promise<{ lat: number[]; elapsedMs: number; cpuMs: number }> {
  let i = 0;
  let measuring = false;
  let stop = false;
  const lat: number[] = [];
  const loop = async () => {
    while (!stop) {
      const q = queries[i++ % queries.length] as Float32Array;
      const s = performance.now();
      await search(q);
      if (measuring) lat.push(performance.now() - s);
    }
  };
  const loops = Array.from({ length: CONC }, loop);
  await new Promise((r) => setTimeout(r, 500));
  measuring = true;
  const c0 = cpuNow();
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  measuring = false;
  const elapsedMs = performance.now() - t0;
  const cpuMs = cpuNow() - c0;
  stop = true;
  await Promise.all(loops);
  return { lat, elapsedMs, cpuMs };
}

async function managerRun(path: string, queries: Float32Array[], opts: IndexManagerOptions, label: string): Promise<Row> {
  const m = new IndexManager(opts);
  try {
    const idx = await m.load(KEY, DIM, PARAMS, path);
    const { lat, elapsedMs, cpuMs } = await closedLoop((q) => idx.search(q, K), queries);
    return summarize(`IndexManager ${label}, ${CONC} callers`, lat, elapsedMs, cpuMs);
  } finally {
    await m.close();
  }
}

// Same shape as the product route minus the store lookup of text/metadata: JSON body in, zod-free
// validation, Float32Array to the index, JSON hits out.
function minimalApp(idx: VectorIndex): Hono {
  const app = new Hono();
  app.post('/search', async (c) => {
    const body = (await c.req.json()) as { vector?: unknown; k?: unknown };
    if (!Array.isArray(body.vector) || body.vector.length !== DIM)
      return c.json({ error: { code: 'invalid_vector', message: 'bad vector' } }, 400);
    const k = typeof body.k === 'number' ? body.k : 10;
    const t0 = performance.now();
    const hits = await idx.search(Float32Array.from(body.vector as number[]), k);
    return c.json({ results: hits.map((h) => ({ id: String(h.label), score: h.score })), tookMs: performance.now() - t0 });
  });
  return app;
}

// The product server (src/server.ts startServer): real routes, zod validation, auth middleware (off),
// metrics, store hydration of every hit, query log. Its index dimension is the serving model's: the
// committed test model (64-d) unless BENCH_SERVER_MODEL_DIR points at another, so this leg gets its own
// raw baseline on its own index, which is seeded straight through the store and the engine's live
// VectorIndex with random vectors (embedding 50k texts would measure the encoder, not search).
interface ServerLeg {
  url: string;
  dim: number;
  snapshot: string;
  close: () => Promise<void>;
}

async function startRealServer(): Promise<ServerLeg> {
  const { startServer } = await import('../../src/server.js');
  const { mkdtempSync, rmSync } = await import('node:fs');
  const dataDir = mkdtempSync(join(tmpdir(), 'bench-search-server-'));
  const modelDir = process.env.BENCH_SERVER_MODEL_DIR ?? join(import.meta.dirname, '../../test/fixtures/models/tiny');
  const server = await startServer({
    env: {},
    listen: true,
    config: {
      DATA_DIR: dataDir,
      MODEL_DIR: modelDir,
      LOG_LEVEL: 'silent',
      PORT: 0,
      HOST: '127.0.0.1',
      AUTH: 'off',
      SNAPSHOT_EVERY_SECONDS: 3600,
      DRIFT_INTERVAL_SECONDS: 0,
      ...(process.env.BENCH_INDEX_WORKERS ? { INDEX_WORKERS: Number(process.env.BENCH_INDEX_WORKERS) } : {}),
    },
  });
  const { engine, collections, store } = server;
  const c = await collections.create('bench', PARAMS);
  const idx = engine.serving.indexes.get(c.id);
  if (!idx) throw new Error('server created no index for the bench collection');
  const dim = idx.dim;
  const rand = seededRandom(3);
  process.stdout.write(`seeding the server: ${N} documents, ${dim}-d random vectors\n`);
  for (let start = 0; start < N; start += 5000) {
    const n = Math.min(5000, N - start);
    const docs = Array.from({ length: n }, (_, i) => {
      const text = `bench document ${start + i}`;
      return { id: `d${start + i}`, text, metadata: { shard: (start + i) % 10 }, chunks: [text] };
    });
    const r = await store.upsertDocuments(c.id, docs);
    await idx.add(
      r.added.map((a) => a.label),
      r.added.map(() => randomUnitVector(dim, rand)),
    );
  }
  const snapshot = join(dataDir, 'bench-raw.hnsw');
  await idx.snapshot(snapshot);
  return {
    url: `${server.url}/search`,
    dim,
    snapshot,
    close: async () => {
      await server.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

async function httpReal(leg: ServerLeg, queries: Float32Array[]): Promise<Row> {
  const bodies = queries.map((q) => JSON.stringify({ collection: 'bench', vector: Array.from(q), k: K }));
  const r = await httpLoad(leg.url, bodies);
  if (r.errors) throw new Error(`${r.errors} HTTP errors, first: ${r.firstError}`);
  const row = summarize(`HTTP /search (real server, ${leg.dim}-d index), ${CONC} clients`, r.latenciesMs, r.elapsedMs, r.cpuMs);
  return { ...row, clientCpuMs: r.clientCpuMs / r.requests };
}

async function httpLoad(url: string, bodies: string[]): Promise<ClientResult & { cpuMs: number }> {
  const job: ClientJob = { url, bodies, concurrency: CONC, warmupMs: 1000, durationMs: SECONDS * 1000 };
  const w = spawnWorker(new URL('./http-client.ts', import.meta.url), { workerData: job });
  try {
    // CPU is sampled on our own clock over (about) the client's measuring window; thread start-up is
    // excluded by starting the clock once the client reports in.
    let c0 = 0;
    let c1 = 0;
    const res = await new Promise<ClientResult>((resolve, reject) => {
      w.on('message', (m: ClientResult | 'started') => {
        if (m === 'started') {
          setTimeout(() => (c0 = cpuNow()), job.warmupMs);
          setTimeout(() => (c1 = cpuNow()), job.warmupMs + job.durationMs);
        } else resolve(m);
      });
      w.once('error', reject);
    });
    return { ...res, cpuMs: c1 - c0 };
  } finally {
    await w.terminate();
  }
}

async function httpMinimal(path: string, queries: Float32Array[], opts: IndexManagerOptions, label: string): Promise<Row> {
  const m = new IndexManager(opts);
  const idx = await m.load(KEY, DIM, PARAMS, path);
  const app = minimalApp(idx);
  const server = await new Promise<ReturnType<typeof serve>>((res) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => res(s));
  });
  try {
    const { port } = server.address() as AddressInfo;
    const bodies = queries.map((q) => JSON.stringify({ vector: Array.from(q), k: K }));
    const r = await httpLoad(`http://127.0.0.1:${port}/search`, bodies);
    if (r.errors) throw new Error(`${r.errors} HTTP errors, first: ${r.firstError}`);
    const row = summarize(`HTTP /search (minimal hono route) ${label}, ${CONC} clients`, r.latenciesMs, r.elapsedMs, r.cpuMs);
    return { ...row, clientCpuMs: r.clientCpuMs / r.requests };
  } finally {
    await new Promise<void>((res) => server.close(() => res()));
    await m.close();
  }
}

// Filtered search: exact brute force over the allowed labels vs hnswlib's in-graph filter callback,
// by filter selectivity, one caller, so the crossover that bruteForceMaxLabels/-Fraction encode is visible.
async function filterCrossover(path: string, queries: Float32Array[]): Promise<void> {
  const strategies: [string, IndexManagerOptions][] = [
    ['brute force', { bruteForceMaxLabels: Number.MAX_SAFE_INTEGER, bruteForceMaxFraction: 1 }],
    ['hnsw filter', { bruteForceMaxLabels: 0, bruteForceMaxFraction: 0, oversampleMaxK: 0 }],
    ['oversample', { bruteForceMaxLabels: 0, bruteForceMaxFraction: 0 }],
    ['default', {}],
  ];
  const managers = strategies.map(([, o]) => new IndexManager({ workers: 1, ...o }));
  try {
    const idxs = await Promise.all(managers.map((m) => m.load(KEY, DIM, PARAMS, path)));
    console.log(`\nfiltered search, k=${K}, ef=${EF}, 1 caller: mean ms/query (recall@${K} vs exact)`);
    for (const fraction of [0.005, 0.02, 0.05, 0.1, 0.3, 1]) {
      const step = Math.round(1 / fraction);
      const allow = Array.from({ length: Math.floor(N / step) }, (_, i) => i * step);
      const results: { ms: number; out: number[][] }[] = [];
      for (const idx of idxs) {
        const out: number[][] = [];
        const t0 = performance.now();
        for (const q of queries.slice(0, 100)) out.push((await idx.search(q, K, { allow })).map((h) => h.label));
        results.push({ ms: (performance.now() - t0) / 100, out });
      }
      const exact = (results[0] as { out: number[][] }).out.map((r) => new Set(r));
      const cells = results.map((r, s) => {
        let hit = 0;
        r.out.forEach((got, i) => {
          for (const l of got) if (exact[i]?.has(l)) hit++;
        });
        return `${strategies[s]![0]} ${r.ms.toFixed(2).padStart(6)} (${(hit / (100 * K)).toFixed(2)})`;
      });
      console.log(`  allow ${(fraction * 100).toFixed(1).padStart(5)}% (${String(allow.length).padStart(5)}): ${cells.join('  ')}`);
    }
  } finally {
    await Promise.all(managers.map((m) => m.close()));
  }
}

function print(rows: Row[], base: Row): void {
  const w = Math.max(...rows.map((r) => r.name.length));
  console.log(
    `\n${'variant'.padEnd(w)}  ${'QPS'.padStart(8)}  ${'p50 ms'.padStart(7)}  ${'p99 ms'.padStart(7)}  ${'× raw'.padStart(6)}  ${'CPU ms/q'.padStart(8)}`,
  );
  for (const r of rows) {
    console.log(
      `${r.name.padEnd(w)}  ${r.qps.toFixed(0).padStart(8)}  ${r.p50.toFixed(3).padStart(7)}  ${r.p99.toFixed(3).padStart(7)}  ${(r.ratio ?? r.qps / base.qps).toFixed(2).padStart(6)}  ${(r.cpuMs ?? NaN).toFixed(3).padStart(8)}${r.note ? `  ${r.note}` : ''}`,
    );
  }
}

async function main(): Promise<void> {
  console.log(
    `search bench: N=${N} dim=${DIM} M=${PARAMS.M} efC=${PARAMS.efConstruction} ef=${EF} k=${K} concurrency=${CONC} ${SECONDS}s per variant`,
  );
  console.log(`cpu: ${availableParallelism()} × ${cpus()[0]?.model ?? '?'}; node ${process.version}`);
  const path = await buildOrLoadSnapshot();
  const qrand = seededRandom(7);
  const queries = Array.from({ length: NQ }, () => randomUnitVector(DIM, qrand));
  const plain = queries.map((q) => Array.from(q));

  // The box may be shared (other test runs, builds): every variant is measured right after a fresh raw
  // run and reported against that neighbour, and each pair repeats BENCH_ROUNDS times (median kept).
  const ROUNDS = env('BENCH_ROUNDS', 3);
  const only = process.env.BENCH_ONLY?.split(',');
  const want = (name: string) => !only || only.includes(name);
  const variants: { name: string; run: () => Promise<Row> }[] = [];
  // Other hnswlib-node builds (e.g. -march=native, see README.md here) on the same file:
  // BENCH_ALT_HNSWLIB="label:/abs/path/to/hnswlib-node/lib/index.js,label2:/other/lib/index.js".
  for (const spec of (process.env.BENCH_ALT_HNSWLIB ?? '').split(',').filter(Boolean)) {
    const at = spec.lastIndexOf(':');
    const label = at > 0 ? spec.slice(0, at) : 'alternative build';
    const alt = createRequire(import.meta.url)(at > 0 ? spec.slice(at + 1) : spec) as HnswlibModule;
    variants.push({ name: 'alt', run: () => raw(path, plain, alt, `raw searchKnn, ${label} build`) });
  }
  if (want('manager')) {
    variants.push({ name: 'manager', run: () => managerRun(path, queries, { workers: 1 }, 'workers=1') });
    variants.push({
      name: 'manager',
      run: () => managerRun(path, queries, { workers: 1, maxSearchBatch: 1, searchPipeline: CONC }, 'workers=1 unbatched'),
    });
    variants.push({ name: 'manager', run: () => managerRun(path, queries, { workers: 2, replicas: 1 }, 'workers=2 replicas=1') });
    variants.push({ name: 'manager', run: () => managerRun(path, queries, { workers: 2, replicas: 2 }, 'workers=2 replicas=2') });
  }
  if (want('http')) {
    variants.push({ name: 'http', run: () => httpMinimal(path, queries, { workers: 1 }, 'workers=1') });
    variants.push({ name: 'http', run: () => httpMinimal(path, queries, { workers: 2, replicas: 2 }, 'workers=2 replicas=2') });
  }
  const rows: Row[] = [];
  const rawRows: Row[] = [];
  for (const v of variants) {
    const rounds: { raw: Row; row: Row }[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const rr = await raw(path, plain);
      rawRows.push(rr);
      rounds.push({ raw: rr, row: await v.run() });
    }
    rounds.sort((a, b) => a.row.qps / a.raw.qps - b.row.qps / b.raw.qps);
    const mid = rounds[Math.floor(rounds.length / 2)] as { raw: Row; row: Row };
    const client = mid.row.clientCpuMs !== undefined ? `load generator ${mid.row.clientCpuMs.toFixed(3)} ms/q of it; ` : '';
    rows.push({
      ...mid.row,
      note: `${client}raw beside it ${mid.raw.qps.toFixed(0)} QPS; ratios over ${ROUNDS} rounds ${rounds.map((x) => (x.row.qps / x.raw.qps).toFixed(2)).join(' ')}`,
      ratio: mid.row.qps / mid.raw.qps,
    });
    process.stdout.write(`  done: ${mid.row.name}\n`);
  }
  if (want('server')) {
    const leg = await startRealServer();
    try {
      const srand = seededRandom(11);
      const sq = Array.from({ length: NQ }, () => randomUnitVector(leg.dim, srand));
      const splain = sq.map((q) => Array.from(q));
      const rounds: { raw: Row; row: Row }[] = [];
      for (let r = 0; r < ROUNDS; r++) {
        const rr = await raw(leg.snapshot, splain, hnswlib, `raw searchKnn on the server's ${leg.dim}-d index`, leg.dim);
        rounds.push({ raw: rr, row: await httpReal(leg, sq) });
      }
      rounds.sort((a, b) => a.row.qps / a.raw.qps - b.row.qps / b.raw.qps);
      const mid = rounds[Math.floor(rounds.length / 2)] as { raw: Row; row: Row };
      rows.push({ ...mid.raw, note: 'baseline for the next row only', ratio: 1 });
      rows.push({
        ...mid.row,
        ratio: mid.row.qps / mid.raw.qps,
        note: `load generator ${(mid.row.clientCpuMs ?? NaN).toFixed(3)} ms/q of it; ratios over ${ROUNDS} rounds ${rounds.map((x) => (x.row.qps / x.raw.qps).toFixed(2)).join(' ')}`,
      });
      process.stdout.write(`  done: ${mid.row.name}\n`);
    } finally {
      await leg.close();
    }
  }
  if (rawRows.length === 0) rawRows.push(await raw(path, plain));
  rawRows.sort((a, b) => a.qps - b.qps);
  const base = {
    ...(rawRows[Math.floor(rawRows.length / 2)] as Row),
    name: `raw searchKnn (1 thread, in-process), median of ${rawRows.length} runs`,
    ratio: 1,
  };
  rows.unshift(base);
  print(rows, base);
  if (want('filter')) await filterCrossover(path, queries);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
