// The two index backends side by side on the same vectors: build time, recall@10 against exact search,
// queries per second through the VectorIndex interface (what the engine calls), and the process's memory.
// One backend per process, so memory figures do not mix:
//
//   npm run bench:pgvector                                  # both backends, one child process each
//   BENCH_N=100000 BENCH_DIM=64 BENCH_M=16 BENCH_EFC=64 npm run bench:pgvector
//
// pgvector runs on PGlite here (Postgres compiled to WebAssembly, in this process, one query at a time), so its
// memory is the database's, and its speed is a lower bound for a native Postgres server. With a Postgres server,
// a replica on this backend holds no vectors at all.
import { execFileSync } from 'node:child_process';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';

import { IndexManager } from '../../src/index/manager.js';
import { PgVectorIndexes } from '../../src/index/pgvector.js';
import type { HnswParams, IndexBackend, VectorIndex } from '../../src/index/types.js';
import { MIGRATIONS_ROOT } from '../../src/store/index.js';
import { PgStore } from '../../src/store/pg/store.js';
import { randomUnitVector, seededRandom } from '../../src/util/random.js';

const env = (name: string, dflt: number): number => (process.env[name] ? Number(process.env[name]) : dflt);
const N = env('BENCH_N', 100_000);
const DIM = env('BENCH_DIM', 64);
const K = 10;
const NQ = env('BENCH_QUERIES', 200);
const SECONDS = env('BENCH_SECONDS', 5);
const EFS = (process.env.BENCH_EFS ?? '64,200').split(',').map(Number);
const PARAMS: HnswParams = { M: env('BENCH_M', 16), efConstruction: env('BENCH_EFC', 64), efSearch: 64 };
const BATCH = 2000;

const mib = (b: number) => Math.round(b / 2 ** 20);

function data() {
  const rand = seededRandom(2024);
  const vectors = Array.from({ length: N }, () => randomUnitVector(DIM, rand));
  const queries = Array.from({ length: NQ }, () => randomUnitVector(DIM, rand));
  return { vectors, queries };
}

function exactTop(q: Float32Array, vectors: Float32Array[]): Set<number> {
  const best: [number, number][] = [];
  for (let i = 0; i < vectors.length; i++) {
    const v = vectors[i] as Float32Array;
    let s = 0;
    for (let d = 0; d < DIM; d++) s += (q[d] as number) * (v[d] as number);
    if (best.length < K || s > (best[best.length - 1] as [number, number])[1]) {
      best.push([i + 1, s]);
      best.sort((a, b) => b[1] - a[1]);
      if (best.length > K) best.pop();
    }
  }
  return new Set(best.map(([l]) => l));
}

async function runOne(kind: 'hnswlib' | 'pgvector') {
  const { vectors, queries } = data();
  const truth = queries.map((q) => exactTop(q, vectors));
  global.gc?.();
  const rssBefore = process.memoryUsage().rss;
  let backend: IndexBackend;
  let store: PgStore | undefined;
  let collectionId = 1;
  if (kind === 'pgvector') {
    store = await PgStore.pglite(undefined, { migrationsFolder: `${MIGRATIONS_ROOT}/pg`, vectors: true });
    collectionId = (await store.createCollection({ name: 'bench', hnsw: PARAMS, chunk: { size: 100, overlap: 10 } })).id;
    backend = await PgVectorIndexes.open(store.sql);
  } else {
    backend = new IndexManager({ workers: 1 });
  }
  const rssOpen = process.memoryUsage().rss;
  let t0 = performance.now();
  const idx: VectorIndex = await backend.create({ collectionId, modelVersion: 'bench' }, DIM, PARAMS, N);
  for (let i = 0; i < N; i += BATCH) {
    await idx.add(
      Array.from({ length: Math.min(BATCH, N - i) }, (_, j) => i + j + 1),
      vectors.slice(i, i + BATCH),
    );
  }
  const loadS = (performance.now() - t0) / 1000;
  t0 = performance.now();
  await idx.seal?.();
  const sealS = (performance.now() - t0) / 1000;
  global.gc?.();
  const rssBuilt = process.memoryUsage().rss;
  const rows = [];
  for (const ef of EFS) {
    let hit = 0;
    for (let i = 0; i < NQ; i++) {
      for (const h of await idx.search(queries[i] as Float32Array, K, { efSearch: ef })) if ((truth[i] as Set<number>).has(h.label)) hit++;
    }
    // One client: one query at a time, as long as SECONDS allows.
    let n = 0;
    const lat: number[] = [];
    const until = performance.now() + SECONDS * 1000;
    while (performance.now() < until) {
      const a = performance.now();
      await idx.search(queries[n % NQ] as Float32Array, K, { efSearch: ef });
      lat.push(performance.now() - a);
      n++;
    }
    // 16 clients: queries in flight together.
    let m = 0;
    const until16 = performance.now() + SECONDS * 1000;
    await Promise.all(
      Array.from({ length: 16 }, async (_, w) => {
        for (let i = w; performance.now() < until16; i += 16, m++) await idx.search(queries[i % NQ] as Float32Array, K, { efSearch: ef });
      }),
    );
    lat.sort((a, b) => a - b);
    rows.push({
      ef,
      recall10: Math.round((hit / (NQ * K)) * 1000) / 1000,
      qps1: Math.round(n / SECONDS),
      p50ms: Math.round((lat[Math.floor(lat.length / 2)] as number) * 100) / 100,
      qps16: Math.round(m / SECONDS),
    });
  }
  const out = {
    backend: kind,
    n: N,
    dim: DIM,
    M: PARAMS.M,
    efConstruction: PARAMS.efConstruction,
    loadSeconds: Math.round(loadS * 10) / 10,
    indexSeconds: Math.round(sealS * 10) / 10,
    rssMiB: { start: mib(rssBefore), backendOpen: mib(rssOpen), built: mib(rssBuilt), delta: mib(rssBuilt - rssOpen) },
    rows,
  };
  await backend.close();
  await store?.close();
  console.log(JSON.stringify(out));
}

const only = process.env.BENCH_BACKEND as 'hnswlib' | 'pgvector' | undefined;
if (only) {
  await runOne(only);
} else {
  console.error(
    `${N} × ${DIM}-d random unit vectors, M ${PARAMS.M}, efConstruction ${PARAMS.efConstruction}, k ${K}; ${cpus().length} cores (${cpus()[0]?.model ?? '?'})`,
  );
  for (const kind of ['hnswlib', 'pgvector']) {
    const res = execFileSync(process.execPath, ['--expose-gc', '--import', 'tsx', fileURLToPath(import.meta.url)], {
      env: { ...process.env, BENCH_BACKEND: kind },
      stdio: ['ignore', 'pipe', 'inherit'],
      maxBuffer: 1 << 24,
    });
    process.stdout.write(res);
  }
}
