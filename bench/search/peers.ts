// The serving path against raw hnswlib-node on the same index and against the peers that install from npm
// here (usearch, LanceDB), at matched recall, on real embeddings: 100k GO passages and training queries
// embedded with models/base (256-d), 1000 GO dev queries, M 16, efConstruction 200.
//
//   npm run bench:peers                       # BENCH_N=100000 BENCH_SECONDS=5 BENCH_ROUNDS=3 BENCH_CONCURRENCY=16
//   BENCH_ONLY=raw,server,base64,usearch,lancedb,text,rss,floor npm run bench:peers
//
// Every round measures every system (1 client, then BENCH_CONCURRENCY clients), in an order that
// alternates between rounds; medians over rounds are printed with each round's ratio, because on a
// shared 2-core box the ratio measured side by side is the number to read, not the absolute QPS.
// - raw hnswlib / usearch: in-process searchKnn loops, one query at a time, in worker threads: 1 thread
//   for 1 client, one per core for "16 clients" (each thread its own copy of the index);
// - this server: a child process (`startServer`, models/base, SQLite) over HTTP, the load generator in a
//   worker thread here (raw keep-alive sockets); /search by vector, or by text for the text row;
// - LanceDB: in-process async API, 1 or 16 concurrent awaiting callers (its own thread pool);
// - text: /search by text vs a bare in-process loop with the same model (transformers.js tokenizer,
//   one onnxruntime-node session, hnswlib searchKnn), 16 concurrent callers.
// ef (or ef / nprobes / refine for LanceDB) is the smallest whose recall@10 against exact search reaches
// BENCH_RECALL (0.98); the server uses the raw hnswlib ef on the same snapshot. Inputs and indexes are
// cached in $TMPDIR/tuned-retrieval-bench-peers (first run: ~10 min to embed and build).
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { createRequire } from 'node:module';

import { spawnWorker } from '../../src/util/worker.js';
import type { ClientJob, ClientResult } from './http-client.js';
import type { PeerJob } from './peer-worker.js';
import { usearchIndex } from './usearch-index.js';

const env = (name: string, dflt: number): number => (process.env[name] ? Number(process.env[name]) : dflt);
const N = env('BENCH_N', 100_000);
const NQ = env('BENCH_NQ', 1000);
const K = 10;
const SECONDS = env('BENCH_SECONDS', 5);
const ROUNDS = env('BENCH_ROUNDS', 3);
const CONC = env('BENCH_CONCURRENCY', 16);
const RECALL = env('BENCH_RECALL', 0.98);
const CORES = availableParallelism();
const REPO = resolve(import.meta.dirname, '../..');
const MODEL = process.env.BENCH_MODEL_DIR ?? join(REPO, 'models/base');
const DATA = process.env.BENCH_DATA_DIR ?? resolve(REPO, '../shared/data/go');
const CACHE = join(tmpdir(), 'tuned-retrieval-bench-peers', `n${N}-q${NQ}`);
const ONLY = process.env.BENCH_ONLY?.split(',');
const want = (s: string) => !ONLY || ONLY.includes(s);
/** RSS is read 3 s after the server is ready, and again once it has been idle this long (V8 shrinks its heaps). */
const SETTLE_S = env('BENCH_RSS_SETTLE_SECONDS', 45);
const require = createRequire(import.meta.url);

interface Inputs {
  texts: string[];
  queries: string[];
  dim: number;
  vectors: Float32Array;
  qvecs: Float32Array;
  truth: number[][];
}

function readJsonl(path: string): Record<string, unknown>[] {
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

async function inputs(): Promise<Inputs> {
  mkdirSync(CACHE, { recursive: true });
  const corpus = readJsonl(join(DATA, 'corpus.jsonl')).map((r) => String(r.text));
  const train = readJsonl(join(DATA, 'queries.train.jsonl')).map((r) => String(r.query));
  const texts = [...corpus, ...train].slice(0, N);
  if (texts.length < N) throw new Error(`only ${texts.length} texts in ${DATA}; lower BENCH_N`);
  const queries = readJsonl(join(DATA, 'queries.dev.jsonl'))
    .map((r) => String(r.query))
    .slice(0, NQ);
  const vf = join(CACHE, 'vectors.f32');
  const qf = join(CACHE, 'queries.f32');
  if (!existsSync(vf) || !existsSync(qf)) {
    const { loadEmbedder, resolveModelSpec } = await import('../../src/embed/registry.js');
    const emb = await loadEmbedder(resolveModelSpec({ MODEL_DIR: MODEL, defaultDir: MODEL }), {
      cacheDir: join(CACHE, 'models'),
      workers: Math.min(2, CORES),
      maxBatch: 32,
      maxWaitMs: 2,
      maxQueue: 1_000_000,
    });
    const embedAll = async (ts: string[], file: string, kind: 'query' | 'document') => {
      const out = new Float32Array(ts.length * emb.dim);
      const t0 = performance.now();
      for (let s = 0; s < ts.length; s += 1000) {
        const vs = await emb.embed(ts.slice(s, s + 1000), { priority: 'bulk', kind });
        vs.forEach((v, i) => out.set(v, (s + i) * emb.dim));
        process.stdout.write(
          `\rembedding ${file}: ${Math.min(s + 1000, ts.length)}/${ts.length} (${((s + 1000) / ((performance.now() - t0) / 1000)).toFixed(0)}/s)`,
        );
      }
      process.stdout.write('\n');
      writeFileSync(join(CACHE, file), Buffer.from(out.buffer));
    };
    await embedAll(texts, 'vectors.f32', 'document');
    await embedAll(queries, 'queries.f32', 'query');
    await emb.close();
  }
  const vectors = new Float32Array(readFileSync(vf).buffer.slice(0));
  const qvecs = new Float32Array(readFileSync(qf).buffer.slice(0));
  const dim = vectors.length / N;
  const usearch = require('usearch') as typeof import('usearch');
  const exact = usearch.exactSearch(vectors, qvecs, dim, K, usearch.MetricKind.IP, 0) as import('usearch').BatchMatches;
  const truth = Array.from({ length: NQ }, (_, i) => Array.from(exact.keys.subarray(i * K, (i + 1) * K), Number));
  return { texts, queries, dim, vectors, qvecs, truth };
}

function recallOf(got: number[][], truth: number[][]): number {
  let hit = 0;
  truth.forEach((t, i) => {
    const g = new Set(got[i]);
    for (const x of t) if (g.has(x)) hit++;
  });
  return hit / (truth.length * K);
}

const EFS = [16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512];

// ---------------------------------------------------------------- the server, in a child process
interface ServerChild {
  url: string;
  pid: number;
  proc: ChildProcess;
  snapshot?: string;
  labelBase?: number;
  close(): Promise<void>;
}

// BENCH_CHILD_NODE_ARGS: node flags for the children, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" to profile the
// server under load (NODE_OPTIONS does not accept --cpu-prof)
const childNodeArgs = (name = 'BENCH_CHILD_NODE_ARGS'): string[] => process.env[name]?.split(' ').filter(Boolean) ?? [];

async function startChild(dataDir: string, seed: boolean, repo = REPO, nodeArgs = childNodeArgs()): Promise<ServerChild> {
  return spawnChild(['serve', dataDir, seed ? 'seed' : ''], repo, nodeArgs);
}

/** A child running this file with `args`; resolves when it prints its JSON line ({url, ...}). */
async function spawnChild(args: string[], repo = REPO, nodeArgs = childNodeArgs()): Promise<ServerChild> {
  const proc = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', join(repo, 'bench/search/peers.ts'), ...args], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env },
    cwd: repo,
  });
  const rl = createInterface({ input: proc.stdout! });
  const ready = await new Promise<{ url: string; snapshot?: string; labelBase?: number }>((res, rej) => {
    rl.on('line', (l) => {
      if (l.startsWith('{')) res(JSON.parse(l) as { url: string });
      else process.stdout.write(`  [server] ${l}\n`);
    });
    proc.once('exit', (code) => rej(new Error(`server child exited with ${code}`)));
  });
  return {
    ...ready,
    pid: proc.pid!,
    proc,
    close: () =>
      new Promise<void>((res) => {
        proc.once('exit', () => res());
        proc.stdin!.end();
      }),
  };
}

/** RSS 3 s after the server is ready, and after SETTLE_S seconds without a request. */
async function rssOverIdle(pid: number): Promise<{ early: number; settled: number }> {
  await new Promise((r) => setTimeout(r, 3000));
  const early = rssMiB(pid);
  await new Promise((r) => setTimeout(r, Math.max(0, SETTLE_S - 3) * 1000));
  return { early, settled: rssMiB(pid) };
}

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** Child: start the server on `dataDir` (seeding the bench collection first if asked), print its URL. */
async function serveChild(dataDir: string, seed: boolean): Promise<void> {
  const { startServer } = await import('../../src/server.js');
  const { indexFile } = await import('../../src/serving/lifecycle.js');
  const server = await startServer({
    env: {},
    listen: true,
    config: {
      DATA_DIR: dataDir,
      MODEL_DIR: MODEL,
      LOG_LEVEL: 'error',
      PORT: 0,
      HOST: '127.0.0.1',
      AUTH: 'off',
      SNAPSHOT_EVERY_SECONDS: 3600,
      DRIFT_INTERVAL_SECONDS: 0,
      // BENCH_SERVER_CONFIG: settings for the server under test, as JSON (e.g. {"EMBED_WORKERS":2}).
      ...(process.env.BENCH_SERVER_CONFIG ? (JSON.parse(process.env.BENCH_SERVER_CONFIG) as Record<string, unknown>) : {}),
    },
  });
  let snapshot: string | undefined;
  let labelBase: number | undefined;
  if (seed) {
    const inp = await inputs();
    const c = await server.collections.create('bench', { M: 16, efConstruction: 200, efSearch: 64 });
    const idx = server.engine.serving.indexes.get(c.id)!;
    const t0 = performance.now();
    for (let s = 0; s < N; s += 2000) {
      const n = Math.min(2000, N - s);
      const docs = Array.from({ length: n }, (_, i) => ({
        id: `d${s + i}`,
        text: inp.texts[s + i]!,
        metadata: { n: s + i },
        chunks: [inp.texts[s + i]!],
      }));
      const r = await server.store.upsertDocuments(c.id, docs);
      await idx.add(
        r.added.map((a) => a.label),
        r.added.map((_, i) => inp.vectors.slice((s + i) * inp.dim, (s + i + 1) * inp.dim)),
      );
      console.log(`seeded ${s + n}/${N} (${((s + n) / ((performance.now() - t0) / 1000)).toFixed(0)}/s)`);
    }
    snapshot = indexFile(server.config.DATA_DIR, c.id, server.engine.serving.version);
  }
  // Index labels are the store's chunk rowids: document i (inserted i-th) has label labelBase + i.
  const c = await server.store.getCollection('bench');
  if (c) {
    snapshot = indexFile(server.config.DATA_DIR, c.id, server.engine.serving.version);
    labelBase = (await server.store.liveChunks(c.id, 0, 1))[0]?.label;
  }
  console.log(JSON.stringify({ url: server.url, snapshot, labelBase }));
  process.stdin.resume();
  process.stdin.once('end', () => void server.close().then(() => process.exit(0)));
}

/**
 * Child: an HTTP server that does no search at all. It reads and parses each request's JSON body and answers a
 * fixed /search response (one the real server gave for the same query, so the bytes on the wire match). Its QPS
 * is the most any server on this HTTP stack can answer on this box with this load generator: the floor under
 * "this server", so the ratio to raw hnswlib shows how much of the gap is the HTTP stack itself.
 * `kind`: node-http (node:http alone) or hono (hono on @hono/node-server, as the server runs).
 */
async function floorChild(kind: string, responseFile: string): Promise<void> {
  const body = readFileSync(responseFile);
  let url: string;
  let close: () => void;
  if (kind === 'hono') {
    const { Hono } = await import('hono');
    const { serve } = await import('@hono/node-server');
    const app = new Hono();
    app.post('/search', async (c) => {
      await c.req.json();
      return c.body(body, 200, { 'content-type': 'application/json' });
    });
    const srv = await new Promise<ReturnType<typeof serve>>((res) => {
      const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => res(s));
    });
    url = `http://127.0.0.1:${(srv.address() as { port: number }).port}`;
    close = () => srv.close();
  } else {
    const { createServer } = await import('node:http');
    const srv = createServer((req, res) => {
      const parts: Buffer[] = [];
      req.on('data', (d: Buffer) => parts.push(d));
      req.on('end', () => {
        JSON.parse(Buffer.concat(parts).toString('utf8'));
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
        res.end(body);
      });
    });
    await new Promise<void>((res) => srv.listen(0, '127.0.0.1', res));
    url = `http://127.0.0.1:${(srv.address() as { port: number }).port}`;
    close = () => srv.close();
  }
  console.log(JSON.stringify({ url }));
  process.stdin.resume();
  process.stdin.once('end', () => {
    close();
    process.exit(0);
  });
}

// ---------------------------------------------------------------- measurement
interface Run {
  qps: number;
  p50: number;
  p99: number;
  /** HTTP servers in a child: CPU µs per answered request, the whole process, its main thread, and the load generator's thread here. */
  cpuUs?: { all: number; main: number; client: number };
}

function summarize(lat: ArrayLike<number>, ms: number): Run {
  const s = Array.from(lat).sort((a, b) => a - b);
  const at = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? NaN;
  return { qps: (s.length / ms) * 1000, p50: at(0.5), p99: at(0.99) };
}

async function peerRun(job: Omit<PeerJob, 'warmupMs' | 'ms'>, threads: number): Promise<Run> {
  const ws = Array.from({ length: threads }, () =>
    spawnWorker(new URL('./peer-worker.ts', import.meta.url), { workerData: { ...job, warmupMs: 500, ms: SECONDS * 1000 } }),
  );
  try {
    await Promise.all(
      ws.map(
        (w) =>
          new Promise((r, j) => {
            w.once('message', r);
            w.once('error', j);
          }),
      ),
    );
    const results = Promise.all(ws.map((w) => new Promise<{ latencies: Float64Array; ms: number }>((r) => w.once('message', r))));
    for (const w of ws) w.postMessage('go');
    const rs = await results;
    const all = rs.flatMap((r) => Array.from(r.latencies));
    return summarize(all, SECONDS * 1000);
  } finally {
    await Promise.all(ws.map((w) => w.terminate()));
  }
}

async function httpRun(url: string, bodies: string[], concurrency: number, serverPid?: number): Promise<Run> {
  const job: ClientJob = { url, bodies, concurrency, warmupMs: 500, durationMs: SECONDS * 1000, serverPid };
  const w = spawnWorker(new URL('./http-client.ts', import.meta.url), { workerData: job });
  try {
    const res = await new Promise<ClientResult>((r, j) => {
      w.on('message', (m: ClientResult | 'started') => {
        if (m !== 'started') r(m);
      });
      w.once('error', j);
    });
    if (res.errors) throw new Error(`${res.errors} HTTP errors, first: ${res.firstError}`);
    const cpu = res.serverCpuMs;
    const per = (ms: number) => (ms * 1000) / res.requests;
    return {
      ...summarize(res.latenciesMs, res.elapsedMs),
      ...(cpu ? { cpuUs: { all: per(cpu.all), main: per(cpu.main), client: per(res.clientCpuMs) } } : {}),
    };
  } finally {
    await w.terminate();
  }
}

async function asyncRun(search: (i: number) => Promise<unknown>, concurrency: number): Promise<Run> {
  let i = 0;
  let stop = false;
  let measuring = false;
  const lat: number[] = [];
  const loop = async () => {
    while (!stop) {
      const t = performance.now();
      await search(i++);
      if (measuring) lat.push(performance.now() - t);
    }
  };
  const loops = Array.from({ length: concurrency }, loop);
  await new Promise((r) => setTimeout(r, 500));
  measuring = true;
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  measuring = false;
  const ms = performance.now() - t0;
  stop = true;
  await Promise.all(loops);
  return summarize(lat, ms);
}

// ---------------------------------------------------------------- systems
type System = { name: string; note: string; one: () => Promise<Run>; many: () => Promise<Run>; rss?: () => number };

// Imported where used: the server's child process (this file too) must not carry the addon in its RSS.
const loadHnswlib = async () => (await import('hnswlib-node')).default;

async function hnswEf(path: string, inp: Inputs, labelBase: number): Promise<{ ef: number; recall: number }> {
  const hnswlib = await loadHnswlib();
  const idx = new hnswlib.HierarchicalNSW('ip', inp.dim);
  await idx.readIndex(path);
  for (const ef of EFS) {
    idx.setEf(ef);
    const got = inp.truth.map((_, i) =>
      idx.searchKnn(Array.from(inp.qvecs.subarray(i * inp.dim, (i + 1) * inp.dim)), K).neighbors.map((l) => l - labelBase),
    );
    const r = recallOf(got, inp.truth);
    if (r >= RECALL || ef === EFS[EFS.length - 1]) return { ef, recall: r };
  }
  throw new Error('unreachable');
}

async function usearchSystem(inp: Inputs): Promise<System> {
  const path = join(CACHE, 'usearch-M16-efc200.usearch');
  // The index as built (M 16, efC 200), with the search expansion the caller asks for.
  const open = (ef: number) => usearchIndex(inp.dim, ef);
  if (!existsSync(path)) {
    const idx = open(64);
    const t0 = performance.now();
    idx.add(
      BigUint64Array.from({ length: N }, (_, i) => BigInt(i)),
      inp.vectors,
      0,
    );
    console.log(`usearch: built ${N} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    idx.save(path);
  }
  let chosen = { ef: EFS[EFS.length - 1]!, recall: 0 };
  for (const ef of EFS) {
    const idx = open(ef);
    idx.load(path);
    const m = idx.search(inp.qvecs, K, 0) as import('usearch').BatchMatches;
    const got = inp.truth.map((_, i) => Array.from(m.keys.subarray(i * K, (i + 1) * K), Number));
    chosen = { ef, recall: recallOf(got, inp.truth) };
    if (chosen.recall >= RECALL) break;
  }
  const job = { system: 'usearch' as const, path, dim: inp.dim, ef: chosen.ef, k: K, queries: inp.qvecs };
  return {
    name: 'usearch (in-process)',
    note: `expansion_search ${chosen.ef}, recall@10 ${chosen.recall.toFixed(3)}`,
    one: () => peerRun(job, 1),
    many: () => peerRun(job, Math.min(CONC, CORES)),
  };
}

async function lancedbSystem(inp: Inputs): Promise<System> {
  const lancedb = await import('@lancedb/lancedb');
  const dir = join(CACHE, 'lance');
  const db = await lancedb.connect(dir);
  let table: Awaited<ReturnType<typeof db.openTable>>;
  if ((await db.tableNames()).includes('v')) table = await db.openTable('v');
  else {
    const rows = Array.from({ length: N }, (_, i) => ({ id: i, vector: Array.from(inp.vectors.subarray(i * inp.dim, (i + 1) * inp.dim)) }));
    table = await db.createTable('v', rows);
    const t0 = performance.now();
    await table.createIndex('vector', { config: lancedb.Index.hnswSq({ distanceType: 'dot', m: 16, efConstruction: 200 }) });
    console.log(`lancedb: IVF_HNSW_SQ over ${N} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  const qs = Array.from({ length: NQ }, (_, i) => Array.from(inp.qvecs.subarray(i * inp.dim, (i + 1) * inp.dim)));
  const t = table;
  const query = (q: number[], ef: number, refine: number | undefined) => {
    let v = t.vectorSearch(q).distanceType('dot').limit(K).ef(ef).select(['id', '_distance']);
    if (refine) v = v.refineFactor(refine);
    return v.toArray() as Promise<{ id: number }[]>;
  };
  let chosen = { ef: 0, refine: undefined as number | undefined, recall: 0 };
  search: for (const refine of [undefined, 2, 5]) {
    for (const ef of EFS.filter((e) => e >= K * (refine ?? 1))) {
      const got: number[][] = [];
      for (const q of qs.slice(0, 300)) got.push((await query(q, ef, refine)).map((r) => r.id));
      chosen = { ef, refine, recall: recallOf(got, inp.truth.slice(0, 300)) };
      if (chosen.recall >= RECALL) break search;
    }
  }
  const c = chosen;
  return {
    name: 'LanceDB IVF_HNSW_SQ (in-process)',
    note: `ef ${c.ef}${c.refine ? `, refine ×${c.refine}` : ''}, recall@10 ${c.recall.toFixed(3)} (300 q)`,
    one: () => asyncRun((i) => query(qs[i % NQ]!, c.ef, c.refine), 1),
    many: () => asyncRun((i) => query(qs[i % NQ]!, c.ef, c.refine), CONC),
  };
}

/** A bare in-process embed + search: the model's tokenizer and one ORT session, mean pooling, hnswlib. */
async function bareTextSystem(inp: Inputs, snapshot: string, ef: number): Promise<System> {
  const { AutoTokenizer } = await import('@huggingface/transformers');
  const ort = await import('onnxruntime-node');
  const tok = await AutoTokenizer.from_pretrained(MODEL, { local_files_only: true });
  const session = await ort.InferenceSession.create(join(MODEL, 'onnx/model_quantized.onnx'), {
    intraOpNumThreads: CORES,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
  });
  const hnswlib = await loadHnswlib();
  const idx = new hnswlib.HierarchicalNSW('ip', inp.dim);
  await idx.readIndex(snapshot);
  idx.setEf(ef);
  const embedSearch = async (text: string) => {
    const enc = tok(text, { truncation: true, max_length: 256 }) as {
      input_ids: { data: BigInt64Array; dims: number[] };
      attention_mask: { data: BigInt64Array; dims: number[] };
      token_type_ids?: { data: BigInt64Array; dims: number[] };
    };
    const feeds: Record<string, InstanceType<typeof ort.Tensor>> = {};
    for (const name of session.inputNames) {
      const t = (enc as Record<string, { data: BigInt64Array; dims: number[] } | undefined>)[name] ?? {
        data: new BigInt64Array(enc.input_ids.data.length),
        dims: enc.input_ids.dims,
      };
      feeds[name] = new ort.Tensor('int64', t.data, t.dims);
    }
    const out = (await session.run(feeds))[session.outputNames[0]!]!;
    const [, len, d] = out.dims as number[];
    const h = out.data as Float32Array;
    const v = new Array<number>(d!).fill(0);
    for (let t = 0; t < len!; t++) for (let j = 0; j < d!; j++) v[j]! += h[t * d! + j]!;
    const n = Math.hypot(...v) || 1;
    return idx.searchKnn(
      v.map((x) => x / n),
      K,
    );
  };
  return {
    name: 'bare in-process embed + search (text)',
    note: `one ORT session, ${CORES} intra-op threads, hnswlib ef ${ef}`,
    one: () => asyncRun((i) => embedSearch(inp.queries[i % NQ]!), 1),
    many: () => asyncRun((i) => embedSearch(inp.queries[i % NQ]!), CONC),
  };
}

// ---------------------------------------------------------------- main
async function main(): Promise<void> {
  console.log(
    `peers bench: N=${N} (GO passages + train queries, ${MODEL.split('/').slice(-2).join('/')}), ${NQ} dev queries, k=${K}, recall target ${RECALL}, ${CONC} clients, ${SECONDS}s × ${ROUNDS} rounds`,
  );
  console.log(`cpu: ${CORES} × ${cpus()[0]?.model ?? '?'}; node ${process.version}`);
  const inp = await inputs();
  const serverDir = join(CACHE, 'server-data');
  let server: ServerChild;
  if (!existsSync(join(serverDir, 'retrieval.db'))) {
    rmSync(serverDir, { recursive: true, force: true });
    server = await startChild(serverDir, true);
    await server.close(); // the final snapshot is written on close; every later start loads it
  }
  const rows: { sys: System; one: Run[]; many: Run[] }[] = [];
  const rss: string[] = [];
  let rssIdle = { early: 0, settled: 0 };
  if (want('rss')) {
    const empty = join(CACHE, `server-empty-${process.pid}`);
    const idle = await startChild(empty, false);
    rssIdle = await rssOverIdle(idle.pid);
    rss.push(`idle, no collection: ${rssIdle.early.toFixed(0)} MiB 3 s after start, ${rssIdle.settled.toFixed(0)} MiB after ${SETTLE_S} s`);
    await idle.close();
    rmSync(empty, { recursive: true, force: true });
  }
  server = await startChild(serverDir, false);
  const snapshot = server.snapshot!;
  if (want('rss')) {
    const loaded = await rssOverIdle(server.pid);
    const perElement = inp.dim * 4 + 16 * 2 * 4 + 4 + 8; // vector + level-0 links (2M) + link count + label
    const own = (N * perElement) / 2 ** 20;
    const above = (at: 'early' | 'settled') =>
      `+${(loaded[at] - rssIdle[at]).toFixed(0)} MiB = ${((loaded[at] - rssIdle[at]) / own).toFixed(2)}× hnswlib's own`;
    rss.push(
      `with the ${N} × ${inp.dim}-d collection loaded: ${loaded.early.toFixed(0)} MiB 3 s after start (${above('early')}), ${loaded.settled.toFixed(0)} MiB after ${SETTLE_S} s (${above('settled')})`,
    );
  }
  const { ef, recall } = await hnswEf(snapshot, inp, server.labelBase ?? 0);
  const vbodies = Array.from({ length: NQ }, (_, i) =>
    JSON.stringify({
      collection: 'bench',
      vector: Array.from(inp.qvecs.subarray(i * inp.dim, (i + 1) * inp.dim)),
      k: K,
      efSearch: ef,
      mode: 'vector',
    }),
  );
  {
    // The server's answers at this ef, against exact search: same index, same ef, same recall expected.
    const got: number[][] = [];
    for (const b of vbodies.slice(0, 300)) {
      const r = (await (
        await fetch(`${server.url}/search`, { method: 'POST', body: b, headers: { 'content-type': 'application/json' } })
      ).json()) as { results: { id: string }[] };
      got.push(r.results.map((x) => Number(x.id.slice(1))));
    }
    console.log(
      `ef ${ef}: raw recall@10 ${recall.toFixed(3)}, server recall@10 ${recallOf(got, inp.truth.slice(0, 300)).toFixed(3)} (300 q)`,
    );
  }
  const rawJob = { system: 'hnswlib' as const, path: snapshot, dim: inp.dim, ef, k: K, queries: inp.qvecs };
  const systems: System[] = [];
  if (want('raw'))
    systems.push({
      name: 'raw hnswlib-node searchKnn (same snapshot)',
      note: `ef ${ef}, recall@10 ${recall.toFixed(3)}`,
      one: () => peerRun(rawJob, 1),
      many: () => peerRun(rawJob, Math.min(CONC, CORES)),
    });
  if (want('server'))
    systems.push({
      name: 'this server, HTTP /search by vector',
      note: `efSearch ${ef}`,
      one: () => httpRun(`${server.url}/search`, vbodies, 1),
      many: () => httpRun(`${server.url}/search`, vbodies, CONC, server.pid),
    });
  // BENCH_ONLY=…,base64: the same queries with `vector` as base64 float32 (what /v1/embeddings returns on request)
  if (want('base64')) {
    const b64bodies = Array.from({ length: NQ }, (_, i) =>
      JSON.stringify({
        collection: 'bench',
        vector: Buffer.from(inp.qvecs.buffer, inp.qvecs.byteOffset + i * inp.dim * 4, inp.dim * 4).toString('base64'),
        k: K,
        efSearch: ef,
        mode: 'vector',
      }),
    );
    systems.push({
      name: 'this server, HTTP /search by base64 vector',
      note: `efSearch ${ef}`,
      one: () => httpRun(`${server.url}/search`, b64bodies, 1),
      many: () => httpRun(`${server.url}/search`, b64bodies, CONC, server.pid),
    });
  }
  // BENCH_ONLY=…,floor: the HTTP stack alone, without any search (see floorChild)
  const floors: ServerChild[] = [];
  const sample = join(CACHE, `floor-response-${process.pid}.json`);
  if (want('floor')) {
    writeFileSync(
      sample,
      await (
        await fetch(`${server.url}/search`, { method: 'POST', body: vbodies[0], headers: { 'content-type': 'application/json' } })
      ).text(),
    );
    for (const [kind, name] of [
      ['node-http', 'floor: node:http alone, fixed answer, no search'],
      ['hono', 'floor: hono on @hono/node-server, fixed answer, no search'],
    ] as const) {
      const f = await spawnChild(['floor', kind, sample]);
      floors.push(f);
      systems.push({
        name,
        note: 'parses the body, answers one real /search response',
        one: () => httpRun(`${f.url}/search`, vbodies, 1),
        many: () => httpRun(`${f.url}/search`, vbodies, CONC, f.pid),
      });
    }
  }
  // BENCH_BASELINE_REPO: another checkout of this repo (e.g. a git worktree of an older commit, with this
  // file copied in) serving a copy of the same data dir, measured side by side as a before/after row.
  // BENCH_BASELINE_NODE_ARGS: the baseline's node flags instead of BENCH_CHILD_NODE_ARGS (with
  // BENCH_BASELINE_REPO=. it compares node flags on the same code).
  let baseline: ServerChild | undefined;
  if (process.env.BENCH_BASELINE_REPO) {
    const copy = join(CACHE, 'server-data-baseline');
    rmSync(copy, { recursive: true, force: true });
    cpSync(serverDir, copy, { recursive: true });
    const baseArgs = process.env.BENCH_BASELINE_NODE_ARGS !== undefined ? childNodeArgs('BENCH_BASELINE_NODE_ARGS') : childNodeArgs();
    baseline = await startChild(copy, false, resolve(process.env.BENCH_BASELINE_REPO), baseArgs);
    const b = baseline;
    systems.push({
      name: 'baseline server, HTTP /search by vector',
      note: [process.env.BENCH_BASELINE_REPO, ...baseArgs].join(' '),
      one: () => httpRun(`${b.url}/search`, vbodies, 1),
      many: () => httpRun(`${b.url}/search`, vbodies, CONC, b.pid),
    });
  }
  if (want('usearch')) systems.push(await usearchSystem(inp));
  if (want('lancedb')) systems.push(await lancedbSystem(inp));
  if (want('text')) {
    const tbodies = inp.queries.map((q) => JSON.stringify({ collection: 'bench', query: q, k: K, efSearch: ef, mode: 'vector' }));
    systems.push({
      name: 'this server, HTTP /search by text',
      note: `efSearch ${ef}`,
      one: () => httpRun(`${server.url}/search`, tbodies, 1),
      many: () => httpRun(`${server.url}/search`, tbodies, CONC, server.pid),
    });
    systems.push(await bareTextSystem(inp, snapshot, ef));
  }
  for (const sys of systems) rows.push({ sys, one: [], many: [] });
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? rows : [...rows].reverse();
    for (const row of order) {
      row.one.push(await row.sys.one());
      row.many.push(await row.sys.many());
      process.stdout.write(
        `  round ${r + 1}: ${row.sys.name} ${row.one.at(-1)!.qps.toFixed(0)} / ${row.many.at(-1)!.qps.toFixed(0)} QPS\n`,
      );
    }
  }
  if (want('rss')) rss.push(`after the runs: ${rssMiB(server.pid).toFixed(0)} MiB`);
  await server.close();
  await baseline?.close();
  await Promise.all(floors.map((f) => f.close()));
  rmSync(sample, { force: true });

  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const cpuCell = (runs: Run[]) => {
    const cpu = runs.flatMap((x) => (x.cpuUs ? [x.cpuUs] : []));
    return cpu.length
      ? `${med(cpu.map((c) => c.all)).toFixed(0)} / ${med(cpu.map((c) => c.main)).toFixed(0)} / ${med(cpu.map((c) => c.client)).toFixed(0)}`
      : '';
  };
  const w = Math.max(...rows.map((r) => r.sys.name.length));
  console.log(
    `\n${'system'.padEnd(w)}  ${'1 client QPS'.padStart(12)}  ${`${CONC} clients QPS`.padStart(15)}  ${'p50 ms'.padStart(7)}  ${'p99 ms'.padStart(7)}  ${'CPU µs/q'.padStart(16)}  notes`,
  );
  for (const r of rows) {
    console.log(
      `${r.sys.name.padEnd(w)}  ${med(r.one.map((x) => x.qps))
        .toFixed(0)
        .padStart(12)}  ${med(r.many.map((x) => x.qps))
        .toFixed(0)
        .padStart(15)}  ${med(r.many.map((x) => x.p50))
        .toFixed(2)
        .padStart(7)}  ${med(r.many.map((x) => x.p99))
        .toFixed(2)
        .padStart(7)}  ${cpuCell(r.many).padStart(16)}  ${r.sys.note}`,
    );
  }
  const find = (prefix: string) => rows.find((r) => r.sys.name.startsWith(prefix));
  console.log(
    `(CPU µs/q: CPU per answered request at ${CONC} clients: the server process's, all threads / its main thread / the load generator's thread; medians)`,
  );
  const ratio = (a: string, b: string, many = true) => {
    const x = find(a);
    const y = find(b);
    if (!x || !y) return;
    const per = x.many.map((m, i) => (many ? m.qps / y.many[i]!.qps : x.one[i]!.qps / y.one[i]!.qps));
    console.log(
      `${a} / ${b} (${many ? CONC : 1} client${many ? 's' : ''}): ${med(per).toFixed(2)}x (rounds ${per.map((p) => p.toFixed(2)).join(' ')})`,
    );
  };
  console.log('');
  ratio('this server, HTTP /search by vector', 'raw hnswlib');
  ratio('this server, HTTP /search by vector', 'raw hnswlib', false);
  ratio('this server, HTTP /search by vector', 'LanceDB');
  ratio('this server, HTTP /search by base64 vector', 'raw hnswlib');
  ratio('this server, HTTP /search by base64 vector', 'this server, HTTP /search by vector');
  ratio('baseline server', 'raw hnswlib');
  ratio('this server, HTTP /search by vector', 'baseline server');
  ratio('this server, HTTP /search by vector', 'usearch');
  ratio('floor: node:http', 'raw hnswlib');
  ratio('floor: hono', 'raw hnswlib');
  ratio('this server, HTTP /search by vector', 'floor: hono');
  ratio('this server, HTTP /search by text', 'bare in-process');
  for (const l of rss) console.log(`server RSS ${l}`);
  if (want('rss')) {
    const perElement = inp.dim * 4 + 16 * 2 * 4 + 4 + 8; // vector + level-0 links (2M) + link count + label
    console.log(`(hnswlib's own vectors + graph for ${N} × ${inp.dim}-d at M 16 ≈ ${((N * perElement) / 2 ** 20).toFixed(0)} MiB)`);
  }
}

if (process.argv[2] === 'serve') {
  await serveChild(process.argv[3]!, process.argv[4] === 'seed');
} else if (process.argv[2] === 'floor') {
  await floorChild(process.argv[3]!, process.argv[4]!);
} else {
  await main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
