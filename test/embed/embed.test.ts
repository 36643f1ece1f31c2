// Embedding room against a real ONNX model (test/fixtures/models/tiny; EMBED_TEST_MODEL overrides it).
// No timing assertions: batching is checked by counting batches, never by measuring time.
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError } from '../../src/errors.js';
import { type EmbedPool, EmbedWorkerError } from '../../src/embed/pool.js';
import { loadEmbedder, ModelLoadError, resolveModelSpec } from '../../src/embed/registry.js';
import type { Embedder, EmbedderOptions, ModelSpec } from '../../src/embed/types.js';

const REPO = resolve(import.meta.dirname, '../..');
const MODEL = process.env.EMBED_TEST_MODEL ?? join(REPO, 'test/fixtures/models/tiny');
const tmp = mkdtempSync(join(tmpdir(), 'embed-test-'));

const TEXTS = [
  'mitochondrion inheritance',
  'The distribution of mitochondria, including the mitochondrial genome, into daughter cells after mitosis or meiosis.',
  'DNA binding',
  'Any process that modulates the frequency, rate or extent of cell proliferation in response to an external stimulus, a very long definition that pads the batch.',
  'membrane',
  '',
  'protein kinase activity',
];

function options(over: Partial<EmbedderOptions> = {}): EmbedderOptions {
  return { cacheDir: join(tmp, 'cache'), workers: 1, maxBatch: 16, maxWaitMs: 2, maxQueue: 1000, ...over };
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('embedder on a real ONNX model', { timeout: 120_000 }, () => {
  let spec: ModelSpec;
  let embedder: Embedder;
  let batches: number[] = [];

  beforeAll(async () => {
    spec = resolveModelSpec({ MODEL_DIR: MODEL, defaultDir: '/nonexistent' });
    embedder = await loadEmbedder(spec, options({ workers: 2, observer: { onBatch: (size) => batches.push(size) } }));
  });
  afterAll(() => embedder?.close());

  it('reports a dimension and a stable version', () => {
    expect(embedder.dim).toBeGreaterThan(0);
    expect(embedder.version).toBe(spec.version);
    expect(resolveModelSpec({ MODEL_DIR: MODEL, defaultDir: '/nonexistent' }).version).toBe(spec.version);
    expect(spec.version).toMatch(/^[A-Za-z0-9._-]+$/);
  });

  it('returns one L2-normalized vector of length dim per text, in order', async () => {
    const vecs = await embedder.embed(TEXTS);
    expect(vecs).toHaveLength(TEXTS.length);
    for (const v of vecs) {
      expect(v).toBeInstanceOf(Float32Array);
      expect(v.length).toBe(embedder.dim);
      expect(Math.hypot(...v)).toBeCloseTo(1, 4);
    }
    // Different texts, different vectors (guards against rows routed to the wrong request).
    expect(maxAbsDiff(vecs[0]!, vecs[2]!)).toBeGreaterThan(1e-3);
  });

  it("matches transformers.js's own feature-extraction pipeline (mean pooling, normalize)", async () => {
    // Reference computed in this thread by the library's pipeline; our worker path must agree with it.
    const { env, pipeline } = await import('@huggingface/transformers');
    env.allowRemoteModels = false;
    env.localModelPath = resolve(MODEL, '..') + '/';
    const fe = await pipeline('feature-extraction', basename(MODEL), { dtype: 'fp32', local_files_only: true });
    try {
      const ref = await fe(TEXTS, { pooling: 'mean', normalize: true });
      const ours = await embedder.embed(TEXTS);
      const [, dim] = ref.dims as [number, number];
      expect(dim).toBe(embedder.dim);
      const refData = ref.data as Float32Array;
      for (let i = 0; i < TEXTS.length; i++) expect(maxAbsDiff(ours[i]!, refData.subarray(i * dim, (i + 1) * dim))).toBeLessThan(1e-5);
    } finally {
      await fe.dispose();
    }
  });

  it('gives the same vector for a text whatever batch it rides in', async () => {
    const batch = await embedder.embed(TEXTS);
    const reversed = await embedder.embed([...TEXTS].reverse());
    for (let i = 0; i < TEXTS.length; i++) {
      const [single] = await embedder.embed([TEXTS[i]!]);
      expect(maxAbsDiff(single!, batch[i]!)).toBeLessThan(1e-5);
      expect(maxAbsDiff(single!, reversed[TEXTS.length - 1 - i]!)).toBeLessThan(1e-5);
    }
  });

  it('merges concurrent calls into fewer batches and routes every row back to its caller', async () => {
    const texts = Array.from({ length: 48 }, (_, i) => `${TEXTS[i % TEXTS.length]} #${i}`);
    const singles = await Promise.all(texts.map((t) => embedder.embed([t])));
    batches = [];
    const concurrent = await Promise.all(texts.map((t) => embedder.embed([t])));
    expect(batches.reduce((a, b) => a + b, 0)).toBe(texts.length);
    expect(batches.length).toBeLessThan(texts.length);
    expect(Math.max(...batches)).toBeGreaterThan(1);
    for (let i = 0; i < texts.length; i++) expect(maxAbsDiff(concurrent[i]![0]!, singles[i]![0]!)).toBeLessThan(1e-5);
  });

  it('splits a bulk call larger than maxBatch and keeps its order', async () => {
    const texts = Array.from({ length: 53 }, (_, i) => `${'word '.repeat(i % 11)}${TEXTS[i % TEXTS.length]}`);
    batches = [];
    const vecs = await embedder.embed(texts);
    expect(vecs).toHaveLength(texts.length);
    expect(Math.max(...batches)).toBeLessThanOrEqual(16);
    for (const i of [0, 17, 52]) {
      const [single] = await embedder.embed([texts[i]!]);
      expect(maxAbsDiff(single!, vecs[i]!)).toBeLessThan(1e-5);
    }
  });
});

describe('truncation', { timeout: 120_000 }, () => {
  it('truncates at maxTokens: texts that differ only after the limit embed identically', async () => {
    const prefix = 'regulation of cell proliferation in response to external stimulus '.repeat(6);
    const a = `${prefix} mitochondrial membrane`;
    const b = `${prefix} nuclear envelope`;
    const tokens: number[] = [];
    const short = (await loadEmbedder(
      resolveModelSpec({ MODEL_DIR: MODEL, defaultDir: '/x' }),
      options({ maxTokens: 16, observer: { onBatch: (_n, _ms, t) => tokens.push(t ?? -1) } }),
    )) as EmbedPool;
    const full = (await loadEmbedder(resolveModelSpec({ MODEL_DIR: MODEL, defaultDir: '/x' }), options())) as EmbedPool;
    try {
      expect(short.maxTokens).toBe(16);
      expect(full.maxTokens).toBeGreaterThan(16);
      const [sa, sb] = await short.embed([a, b]);
      expect(maxAbsDiff(sa!, sb!)).toBe(0);
      expect(tokens).toEqual([32]); // two texts × 16 tokens, special tokens included
      const [fa, fb] = await full.embed([a, b]);
      expect(maxAbsDiff(fa!, fb!)).toBeGreaterThan(1e-3);
      // Far past the model's position limit: truncated, not an ONNX error.
      const [huge] = await full.embed(['cell '.repeat(5000)]);
      expect(Math.hypot(...huge!)).toBeCloseTo(1, 4);
    } finally {
      await Promise.all([short.close(), full.close()]);
    }
  });
});

describe('tokenization parity with Python', { timeout: 120_000 }, () => {
  it('truncated texts keep their final [SEP], as sentence-transformers tokenizes them (fixture from Python tokenizers)', async () => {
    const { readFileSync } = await import('node:fs');
    const { AutoTokenizer, env } = await import('@huggingface/transformers');
    const { tokenize } = await import('../../src/embed/transformers.js');
    const fx = JSON.parse(readFileSync(join(REPO, 'test/fixtures/tokenizer/tiny_truncation.json'), 'utf8')) as {
      max_length: number;
      texts: string[];
      ids: number[][];
    };
    env.allowRemoteModels = false;
    env.localModelPath = dirname(MODEL) + '/';
    const tok = await AutoTokenizer.from_pretrained(basename(MODEL), { local_files_only: true });
    expect(fx.ids.filter((x) => x.length === fx.max_length).length).toBeGreaterThan(10);
    // One at a time, and as one padded batch.
    fx.texts.forEach((t, i) => {
      expect(Array.from(tokenize(tok, [t], fx.max_length).input_ids.data as BigInt64Array, Number)).toEqual(fx.ids[i]);
    });
    const batch = tokenize(tok, fx.texts, fx.max_length);
    const [rows, cols] = batch.input_ids.dims as [number, number];
    for (let r = 0; r < rows; r++) {
      const n = fx.ids[r]!.length;
      expect(Array.from((batch.input_ids.data as BigInt64Array).slice(r * cols, r * cols + n), Number)).toEqual(fx.ids[r]);
      expect(
        Array.from((batch.attention_mask.data as BigInt64Array).slice(r * cols, (r + 1) * cols), Number).reduce((a, b) => a + b, 0),
      ).toBe(n);
    }
  });
});

describe('backpressure and failures', { timeout: 120_000 }, () => {
  let spec: ModelSpec;
  beforeAll(() => {
    spec = resolveModelSpec({ MODEL_DIR: MODEL, defaultDir: '/nonexistent' });
  });

  it("rejects with AppError 'overloaded' (429, Retry-After) when the queue is full", async () => {
    // The idle worker takes the first call at once; with the worker busy, a long maxWaitMs keeps the
    // second call waiting in the queue, so the third one finds it full.
    const pool = await loadEmbedder(spec, options({ maxBatch: 8, maxQueue: 4, maxWaitMs: 60_000 }));
    try {
      const running = pool.embed(['occupies the only worker']);
      expect(pool.queueDepth()).toBe(0);
      const first = pool.embed(['a', 'b', 'c']);
      expect(pool.queueDepth()).toBe(3);
      const err = await pool.embed(['d', 'e']).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(AppError);
      expect((err as AppError).code).toBe('overloaded');
      expect((err as AppError).status).toBe(429);
      expect((err as AppError).headers).toEqual({ 'Retry-After': '1' });
      // close() drains what was accepted instead of dropping it.
      const closing = pool.close();
      expect(await running).toHaveLength(1);
      expect(await first).toHaveLength(3);
      await closing;
      await expect(pool.embed(['late'])).rejects.toMatchObject({ code: 'not_ready' });
    } finally {
      await pool.close();
    }
  });

  it("serves 'query' before queued 'bulk' work, with a separate queue bound per lane", async () => {
    const pool = await loadEmbedder(spec, options({ maxBatch: 4, maxQueue: 8 }));
    try {
      let bulkDone = false;
      const bulk = pool.embed(
        Array.from({ length: 40 }, (_, i) => `bulk document ${i}`),
        { priority: 'bulk' },
      );
      void bulk.then(() => (bulkDone = true));
      // The bulk lane is far over maxQueue (admitted because it was empty) yet queries still get in...
      const query = pool.embed(['a query', 'another query']);
      // ...while more bulk work is refused.
      await expect(pool.embed(['more'], { priority: 'bulk' })).rejects.toMatchObject({ code: 'overloaded' });
      expect(await query).toHaveLength(2);
      expect(bulkDone).toBe(false);
      expect(await bulk).toHaveLength(40);
    } finally {
      await pool.close();
    }
  });

  it('survives a crashed worker: its requests fail clearly, a replacement takes over', async () => {
    const pool = (await loadEmbedder(spec, options({ workers: 2, maxBatch: 4 }))) as EmbedPool;
    try {
      const before = await pool.embed(['membrane']);
      const doomed = pool.embed(Array.from({ length: 32 }, (_, i) => `text ${i}`)).then(
        () => undefined,
        (e: unknown) => e,
      );
      await pool.terminateWorker(0);
      const err = await doomed;
      expect(err).toBeInstanceOf(EmbedWorkerError);
      expect((err as Error).message).toMatch(/embed worker 0 exited.*in-flight texts were not embedded/);
      // Worker 1 keeps serving while 0 restarts.
      const during = await pool.embed(['membrane']);
      expect(maxAbsDiff(during[0]!, before[0]!)).toBeLessThan(1e-5);
      while (pool.stats().workers < 2) await new Promise((r) => setTimeout(r, 50));
      expect(pool.stats().restarts).toBe(1);
      const after = await pool.embed(Array.from({ length: 12 }, () => 'membrane'));
      for (const v of after) expect(maxAbsDiff(v, before[0]!)).toBeLessThan(1e-5);
    } finally {
      await pool.close();
    }
  });

  it('a worker killed in the middle of ONNX runs, again and again, never takes the process down', async () => {
    // worker.terminate() landing inside session.run aborted the whole process from the addon (an uncatchable
    // `Napi::Error`) within a few tries; the pool must end a worker between native calls instead.
    const pool = (await loadEmbedder(spec, options({ workers: 2, maxBatch: 8 }))) as EmbedPool;
    const long = 'a long definition that pads every batch with many tokens about membranes and kinases '.repeat(6);
    try {
      for (let i = 0; i < 10; i++) {
        const doomed = pool.embed(Array.from({ length: 64 }, (_, j) => `${long} ${i} ${j}`)).then(
          () => undefined,
          (e: unknown) => e,
        );
        await new Promise((r) => setTimeout(r, 2 + ((i * 7) % 11)));
        await pool.terminateWorker(0);
        expect(await doomed).toBeInstanceOf(EmbedWorkerError);
        while (pool.stats().workers < 2) await new Promise((r) => setTimeout(r, 20));
      }
      expect(pool.stats().restarts).toBe(10);
      expect(await pool.embed(['membrane'])).toHaveLength(1);
    } finally {
      await pool.close();
    }
  });

  it('lazy: one worker while calls come one at a time, the next starts when texts wait for a busy worker', async () => {
    const pool = (await loadEmbedder(spec, options({ workers: 2, maxBatch: 2, lazy: true }))) as EmbedPool;
    try {
      const one = await pool.embed(['membrane']);
      for (let i = 0; i < 5; i++) await pool.embed([`text ${i}`]);
      expect(pool.stats().workers).toBe(1);
      // 16 concurrent calls of 4 texts: batches of 2 queue up behind the busy worker
      const burst = await Promise.all(Array.from({ length: 16 }, (_, i) => pool.embed(['membrane', `a ${i}`, `b ${i}`, `c ${i}`])));
      for (const r of burst) expect(maxAbsDiff(r[0]!, one[0]!)).toBeLessThan(1e-5);
      while (pool.stats().workers < 2) await new Promise((r) => setTimeout(r, 50));
      expect(pool.stats().restarts).toBe(0);
      // both serve now: the same vectors whichever worker a text lands on
      const after = await Promise.all(Array.from({ length: 8 }, () => pool.embed(['membrane', 'membrane'])));
      for (const r of after) for (const v of r) expect(maxAbsDiff(v, one[0]!)).toBeLessThan(1e-5);
    } finally {
      await pool.close();
    }
  });

  it('loads a model directory whose name is not a valid hub id (spaces, "--")', async () => {
    const dir = join(tmp, 'odd name--v1');
    cpSync(MODEL, dir, { recursive: true });
    const odd = await loadEmbedder(resolveModelSpec({ MODEL_DIR: dir, defaultDir: '/nonexistent' }), options());
    try {
      const [v] = await odd.embed(['membrane']);
      expect(Math.hypot(...v!)).toBeCloseTo(1, 4);
    } finally {
      await odd.close();
    }
  });

  it('names MODEL_DIR in a one-line ModelLoadError for a missing directory', () => {
    const err = captureSync(() => resolveModelSpec({ MODEL_DIR: join(tmp, 'no-such-model'), defaultDir: '/nonexistent' }));
    expect(err).toBeInstanceOf(ModelLoadError);
    expect(err.message).not.toContain('\n');
    expect(err.message).toMatch(/^cannot load model ".*no-such-model" \(MODEL_DIR\): no such directory — set MODEL_DIR/);
  });

  it('names MODEL_DIR when the default model is missing', () => {
    const err = captureSync(() => resolveModelSpec({ defaultDir: join(tmp, 'no-default') }));
    expect(err).toBeInstanceOf(ModelLoadError);
    expect(err.message).toContain('MODEL_DIR');
    expect(err.message).not.toContain('\n');
  });

  it('names the missing files of an incomplete model directory', async () => {
    const dir = join(tmp, 'incomplete');
    mkdirSync(dir, { recursive: true });
    copyFileSync(join(MODEL, 'config.json'), join(dir, 'config.json'));
    const err = await loadEmbedder(
      { version: 'x', dtype: 'fp32', source: { kind: 'dir', path: dir }, origin: 'MODEL_DIR' },
      options(),
    ).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ModelLoadError);
    expect((err as Error).message).toMatch(/\(MODEL_DIR\): missing tokenizer\.json, tokenizer_config\.json, onnx\/model\.onnx — /);
  });

  it('turns a corrupt ONNX file into a one-line ModelLoadError, not a stack trace', async () => {
    const dir = join(tmp, 'corrupt');
    cpSync(MODEL, dir, { recursive: true });
    writeFileSync(join(dir, 'onnx/model.onnx'), 'this is not a protobuf');
    const err = await loadEmbedder(
      { version: 'x', dtype: 'fp32', source: { kind: 'dir', path: dir }, origin: 'MODEL_DIR' },
      options(),
    ).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ModelLoadError);
    expect((err as Error).message).not.toContain('\n');
    expect((err as Error).message).toMatch(/^cannot load model ".*corrupt" \(MODEL_DIR\): .+ — set MODEL_DIR/);
  });

  it('loads a hub id from the download cache without the network', async () => {
    // transformers.js's file cache keys hub files as CACHE_DIR/<org>/<name>/<file>; seed it as a download would.
    const cacheDir = join(tmp, 'hub-cache');
    cpSync(MODEL, join(cacheDir, 'fixture-org/tiny'), { recursive: true });
    const spec = resolveModelSpec({ EMBED_MODEL: 'fixture-org/tiny', defaultDir: '/nonexistent' });
    const hub = await loadEmbedder(spec, options({ cacheDir }));
    const local = await loadEmbedder(resolveModelSpec({ MODEL_DIR: MODEL, defaultDir: '/nonexistent' }), options());
    try {
      expect(hub.version).toBe('fixture-org__tiny');
      const [a] = await hub.embed(['cell cycle']);
      const [b] = await local.embed(['cell cycle']);
      expect(maxAbsDiff(a!, b!)).toBeLessThan(1e-6);
    } finally {
      await Promise.all([hub.close(), local.close()]);
    }
  });

  it('names EMBED_MODEL for a hub id that cannot be fetched', async () => {
    const spec = resolveModelSpec({ EMBED_MODEL: 'no-such-org-r7/no-such-model-r7', defaultDir: '/nonexistent' });
    expect(spec.source).toEqual({ kind: 'hub', id: 'no-such-org-r7/no-such-model-r7' });
    const err = await loadEmbedder(spec, options()).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ModelLoadError);
    expect((err as Error).message).toMatch(/^cannot load model "no-such-org-r7\/no-such-model-r7" \(EMBED_MODEL\): not found/);
    expect((err as Error).message).not.toContain('\n');
  });
});

describe("dtype 'q8' loads onnx/model_quantized.onnx", { timeout: 120_000 }, () => {
  it('picks the quantized file when it is the only weights file, and says which file is missing otherwise', async () => {
    // The fp32 weights under the quantized name: same vectors prove which file the worker opened.
    const dir = join(tmp, 'q8only');
    cpSync(MODEL, dir, { recursive: true, filter: (src) => !src.endsWith('.onnx') && !src.endsWith('model_card.json') });
    mkdirSync(join(dir, 'onnx'), { recursive: true });
    copyFileSync(join(MODEL, 'onnx/model.onnx'), join(dir, 'onnx/model_quantized.onnx'));
    const spec = resolveModelSpec({ MODEL_DIR: dir, defaultDir: '/nonexistent' });
    expect(spec.dtype).toBe('q8');
    // No model card: name + dtype + weights hash. With a card, its version gets the same -q8 suffix.
    expect(spec.version).toMatch(/^q8only-q8-[0-9a-f]{8}$/);
    writeFileSync(join(dir, 'model_card.json'), JSON.stringify({ version: 'go-ft-7' }));
    expect(resolveModelSpec({ MODEL_DIR: dir, defaultDir: '/nonexistent' }).version).toBe('go-ft-7-q8');
    const fp32 = await loadEmbedder(resolveModelSpec({ MODEL_DIR: MODEL, defaultDir: '/nonexistent' }), options());
    const q8 = await loadEmbedder(spec, options());
    try {
      const [a] = await fp32.embed(['protein kinase activity']);
      const [b] = await q8.embed(['protein kinase activity']);
      expect(maxAbsDiff(a!, b!)).toBeLessThan(1e-6);
    } finally {
      await Promise.all([fp32.close(), q8.close()]);
    }
    const err = captureSync(() => resolveModelSpec({ MODEL_DIR: dir, EMBED_DTYPE: 'fp32', defaultDir: '/nonexistent' }));
    expect(err).toBeInstanceOf(ModelLoadError);
    expect(err.message).toContain('missing onnx/model.onnx');
  });
});

describe('real int8 weights (q8)', { timeout: 120_000 }, () => {
  it('are batch-invariant by default: each text runs as its own ONNX batch', async () => {
    const spec = resolveModelSpec({ MODEL_DIR: MODEL, EMBED_DTYPE: 'q8', defaultDir: '/nonexistent' });
    expect(spec.version).toMatch(/-q8$/);
    const q8 = await loadEmbedder(spec, options({ workers: 1 }));
    try {
      const batch = await q8.embed(TEXTS);
      for (let i = 0; i < TEXTS.length; i++) {
        const [single] = await q8.embed([TEXTS[i]!]);
        expect(maxAbsDiff(single!, batch[i]!)).toBeLessThan(1e-6);
        expect(Math.hypot(...single!)).toBeCloseTo(1, 4);
      }
    } finally {
      await q8.close();
    }
  });
});

describe('resolveModelSpec', () => {
  it('takes the version from model_card.json when present', () => {
    const dir = join(tmp, 'carded');
    cpSync(MODEL, dir, { recursive: true });
    writeFileSync(join(dir, 'model_card.json'), JSON.stringify({ version: 'go-ft-0003', parent_version: 'base' }));
    expect(resolveModelSpec({ MODEL_DIR: dir, defaultDir: '/nonexistent' })).toMatchObject({
      version: 'go-ft-0003',
      dtype: 'fp32',
      origin: 'MODEL_DIR',
    });
  });

  it('derives a file-name-safe version from a hub id and treats path-like EMBED_MODEL as a directory', () => {
    expect(resolveModelSpec({ EMBED_MODEL: 'Xenova/all-MiniLM-L6-v2', defaultDir: '/x' })).toEqual({
      version: 'Xenova__all-MiniLM-L6-v2',
      source: { kind: 'hub', id: 'Xenova/all-MiniLM-L6-v2' },
      dtype: 'fp32',
      origin: 'EMBED_MODEL',
    });
    expect(resolveModelSpec({ EMBED_MODEL: 'Xenova/all-MiniLM-L6-v2', EMBED_DTYPE: 'q8', defaultDir: '/x' }).version).toBe(
      'Xenova__all-MiniLM-L6-v2-q8',
    );
    expect(resolveModelSpec({ EMBED_MODEL: MODEL, defaultDir: '/x' }).source).toEqual({ kind: 'dir', path: MODEL });
    // MODEL_DIR wins over EMBED_MODEL; the default is used only when neither is set.
    expect(resolveModelSpec({ EMBED_MODEL: 'a/b', MODEL_DIR: MODEL, defaultDir: '/x' }).origin).toBe('MODEL_DIR');
    expect(resolveModelSpec({ defaultDir: MODEL }).origin).toBe('default');
  });
});

function captureSync(fn: () => unknown): Error {
  try {
    fn();
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a throw');
}
