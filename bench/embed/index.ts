// Bulk embed throughput: the pool (workers + batching queue) vs a bare onnxruntime-node loop over the same
// model, batch size, tokenizer and session options, in one run so the ratio is not polluted by machine noise.
//
//   npx tsx bench/embed/index.ts [--model DIR] [--n 2000] [--batch 32] [--workers 1,2] [--reps 5] [--chunk 256]
//
// The pool length-sorts each request before cutting it into batches, which cuts padding. A bare loop in
// corpus order does not, so the bare loop is timed both ways and the ratio is printed against both:
// "vs sorted" isolates the pool's own overhead, "vs corpus order" is what a naive caller would get.
import { createReadStream } from 'node:fs';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { AutoTokenizer, env, LogLevel, type PreTrainedTokenizer } from '@huggingface/transformers';
import * as ort from 'onnxruntime-node';
import type { EmbedPool } from '../../src/embed/pool.js';
import { loadEmbedder, resolveModelSpec } from '../../src/embed/registry.js';
import { cpuSessionOptions, meanPoolNormalize, tokenize } from '../../src/embed/transformers.js';

const REPO = resolve(import.meta.dirname, '../..');
const { values: args } = parseArgs({
  options: {
    model: { type: 'string', default: resolve(REPO, 'test/fixtures/models/tiny') },
    n: { type: 'string', default: '2000' },
    batch: { type: 'string', default: '32' },
    workers: { type: 'string', default: '1,2' },
    reps: { type: 'string', default: '5' },
    corpus: { type: 'string', default: resolve(REPO, '../shared/data/go/corpus.jsonl') },
    queries: { type: 'string', default: resolve(REPO, '../shared/data/go/queries.dev.jsonl') },
    chunk: { type: 'string', default: '256' },
  },
});
const N = Number(args.n);
const BATCH = Number(args.batch);
const REPS = Number(args.reps);
const WORKERS = args.workers.split(',').map(Number);
const CHUNK = Number(args.chunk);
/** The server's default EMBED_MAX_WAIT_MS; bulk calls never wait on it (full batches go at once). */
const QUERY_WAIT_MS = 2;
const cores = availableParallelism();

/** Every `stride`-th record's `field`, up to n (the dev queries file is alphabetical; striding mixes it). */
async function readTexts(file: string, n: number, field = 'text', stride = 1): Promise<string[]> {
  const out: string[] = [];
  const rl = createInterface({ input: createReadStream(file), crlfDelay: Infinity });
  let i = 0;
  for await (const line of rl) {
    if (!line.trim() || i++ % stride !== 0) continue;
    out.push(String((JSON.parse(line) as Record<string, unknown>)[field]));
    if (out.length >= n) break;
  }
  rl.close();
  return out;
}

class BareLoop {
  private constructor(
    private readonly tokenizer: PreTrainedTokenizer,
    private readonly session: ort.InferenceSession,
    private readonly maxTokens: number,
  ) {}

  static async create(dir: string, weights: string, maxTokens: number): Promise<BareLoop> {
    env.logLevel = LogLevel.ERROR;
    env.allowRemoteModels = false;
    env.localModelPath = resolve(dir, '..') + '/';
    const tokenizer = await AutoTokenizer.from_pretrained(resolve(dir).split('/').pop()!, { local_files_only: true });
    // A single session on the main thread gets every core, the best a bare loop can do.
    const session = await ort.InferenceSession.create(
      resolve(dir, weights),
      cpuSessionOptions(cores) as ort.InferenceSession.SessionOptions,
    );
    return new BareLoop(tokenizer, session, maxTokens);
  }

  async run(texts: string[], batch: number): Promise<Float32Array[]> {
    const out: Float32Array[] = [];
    for (let i = 0; i < texts.length; i += batch) {
      const enc = tokenize(this.tokenizer, texts.slice(i, i + batch), this.maxTokens);
      const ids = enc.input_ids;
      const feeds: Record<string, ort.Tensor> = {
        input_ids: new ort.Tensor('int64', ids.data as BigInt64Array, ids.dims),
        attention_mask: new ort.Tensor('int64', enc.attention_mask.data as BigInt64Array, ids.dims),
      };
      if (this.session.inputNames.includes('token_type_ids')) {
        feeds.token_type_ids = new ort.Tensor('int64', new BigInt64Array(ids.data.length), ids.dims);
      }
      const res = await this.session.run(feeds);
      const hidden = res[this.session.outputNames.includes('last_hidden_state') ? 'last_hidden_state' : this.session.outputNames[0]!]!;
      const { data, dim } = meanPoolNormalize(
        hidden.data as Float32Array,
        enc.attention_mask.data as BigInt64Array,
        hidden.dims as [number, number, number],
      );
      for (let r = 0; r * dim < data.length; r++) out.push(data.slice(r * dim, (r + 1) * dim));
    }
    return out;
  }
}

interface Contender {
  label: string;
  run(): Promise<unknown>;
  ms: number[];
  /** Process CPU time (all threads: main, workers, ORT pools) per round. */
  cpuMs: number[];
}

/** Rounds run every contender once, in turn, so load from other processes hits all of them alike. */
async function race(contenders: Contender[]): Promise<void> {
  for (let r = 0; r < REPS; r++) {
    for (const c of contenders) {
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      await c.run();
      c.ms.push(performance.now() - t0);
      const cpu = process.cpuUsage(cpu0);
      c.cpuMs.push((cpu.user + cpu.system) / 1000);
    }
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const rate = (c: Contender) => (N / median(c.ms)) * 1000;
/** Texts per CPU-second: insensitive to other processes' load, and shows the pool's own overhead. */
const cpuRate = (c: Contender) => (N / median(c.cpuMs)) * 1000;

async function chunked(pool: EmbedPool, all: string[], size: number, parallel: number): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < all.length) {
      const start = next;
      next += size;
      await pool.embed(all.slice(start, start + size));
    }
  };
  await Promise.all(Array.from({ length: parallel }, lane));
}

/** Query-style load: `clients` callers each embedding one text at a time, back to back. */
async function queryLatency(pool: EmbedPool, queries: string[], clients: number): Promise<{ qps: number; p50: number; p99: number }> {
  const lat: number[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (next < queries.length) {
        const q = queries[next++]!;
        const s = performance.now();
        await pool.embed([q]);
        lat.push(performance.now() - s);
      }
    }),
  );
  const wall = performance.now() - t0;
  lat.sort((a, b) => a - b);
  const pct = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))]!;
  return { qps: (queries.length / wall) * 1000, p50: pct(0.5), p99: pct(0.99) };
}

function maxDiff(a: Float32Array[], b: Float32Array[]): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) for (let k = 0; k < a[i]!.length; k++) m = Math.max(m, Math.abs(a[i]![k]! - b[i]![k]!));
  return m;
}

const spec = resolveModelSpec({ MODEL_DIR: args.model, defaultDir: args.model });
const texts = await readTexts(args.corpus, N);
const weights = spec.dtype === 'q8' ? 'onnx/model_quantized.onnx' : 'onnx/model.onnx';
console.log(
  `model ${spec.version} (${args.model}, ${spec.dtype}) · ${texts.length} GO passages · batch ${BATCH} · ${cores} cores · node ${process.version}`,
);

const pools = new Map<number, EmbedPool>();
for (const w of WORKERS) {
  // reproducible: false so the pool runs the same ONNX batch size as the bare loop (q8 would default to per-text runs).
  const opts = { cacheDir: '/tmp', workers: w, maxBatch: BATCH, maxWaitMs: QUERY_WAIT_MS, maxQueue: N, reproducible: false };
  pools.set(w, (await loadEmbedder(spec, opts)) as EmbedPool);
}
const maxTokens = pools.values().next().value!.maxTokens;
const bare = await BareLoop.create(args.model, weights, maxTokens);
const byLength = texts
  .map((t, i) => [t, i] as const)
  .sort((a, b) => a[0].length - b[0].length)
  .map(([t]) => t);
console.log(`dim ${pools.values().next().value!.dim} · maxTokens ${maxTokens}`);

// Warm-up: first runs pay for arena growth and lazy kernel setup.
await bare.run(texts.slice(0, BATCH * 4), BATCH);
for (const p of pools.values()) await p.embed(texts.slice(0, BATCH * 4));

const bareCorpus: Contender = { label: 'bare ORT loop, corpus order', run: () => bare.run(texts, BATCH), ms: [], cpuMs: [] };
const bareSorted: Contender = { label: 'bare ORT loop, length-sorted', run: () => bare.run(byLength, BATCH), ms: [], cpuMs: [] };
const poolRuns: Contender[] = [...pools].flatMap(([w, pool]) => [
  { label: `pool ${w}w × ${Math.max(1, Math.floor(cores / w))}t, one bulk call`, run: () => pool.embed(texts), ms: [], cpuMs: [] },
  // How the server re-embeds: REEMBED_BATCH-sized calls, two in flight, so sorting only helps within a call.
  {
    label: `pool ${w}w × ${Math.max(1, Math.floor(cores / w))}t, ${CHUNK}-text calls ×2 in flight`,
    run: () => chunked(pool, texts, CHUNK, 2),
    ms: [],
    cpuMs: [],
  },
]);
// q8 serves with per-text ONNX runs by default (EmbedderOptions.reproducible); time that default too.
const wMax = Math.max(...WORKERS);
const perText =
  spec.dtype === 'q8'
    ? ((await loadEmbedder(spec, { cacheDir: '/tmp', workers: wMax, maxBatch: BATCH, maxWaitMs: QUERY_WAIT_MS, maxQueue: N })) as EmbedPool)
    : undefined;
if (perText) {
  await perText.embed(texts.slice(0, BATCH * 4));
  poolRuns.push({ label: `pool ${wMax}w, q8 default: per-text ONNX runs`, run: () => perText.embed(texts), ms: [], cpuMs: [] });
}
await race([bareCorpus, bareSorted, ...poolRuns]);
console.log(`median of ${REPS} interleaved rounds: wall texts/s (min–max) · texts per CPU-second`);
for (const c of [bareCorpus, bareSorted, ...poolRuns]) {
  const lo = (N / Math.max(...c.ms)) * 1000;
  const hi = (N / Math.min(...c.ms)) * 1000;
  console.log(
    `  ${c.label.padEnd(50)} ${rate(c).toFixed(1).padStart(8)} (${lo.toFixed(0)}–${hi.toFixed(0)}) · ${cpuRate(c).toFixed(0).padStart(6)}/CPU-s`,
  );
}
console.log('ratios (pool ÷ bare), wall and per CPU-second:');
for (const c of poolRuns) {
  console.log(
    `  ${c.label.padEnd(50)} vs bare sorted ${(rate(c) / rate(bareSorted)).toFixed(2)}× wall, ${(cpuRate(c) / cpuRate(bareSorted)).toFixed(2)}× CPU` +
      ` · vs bare corpus order ${(rate(c) / rate(bareCorpus)).toFixed(2)}× wall, ${(cpuRate(c) / cpuRate(bareCorpus)).toFixed(2)}× CPU`,
  );
}
// Query path: GO dev label queries, 16 concurrent single-text callers (what /search does per request).
const queries = await readTexts(args.queries, 1000, 'query', 7);
for (const [w, pool] of pools) {
  const r = await queryLatency(pool, queries, 16);
  console.log(
    `queries, 16 concurrent callers, pool ${w}w: ${r.qps.toFixed(0)} q/s, p50 ${r.p50.toFixed(1)} ms, p99 ${r.p99.toFixed(1)} ms (maxWaitMs ${QUERY_WAIT_MS})`,
  );
}
// Correctness: same vectors from both paths.
const ref = await bare.run(texts.slice(0, 256), BATCH);
// fp32: ~0. q8: up to ~3e-3, because dynamic quantization makes a vector depend on its batch-mates and the
// pool's batches (length-sorted) differ from the bare loop's (see EmbedderOptions.reproducible).
for (const [w, pool] of pools)
  console.log(`max |pool(${w}) − bare| over 256 texts: ${maxDiff(await pool.embed(texts.slice(0, 256)), ref).toExponential(2)}`);
for (const p of pools.values()) await p.close();
await perText?.close();
