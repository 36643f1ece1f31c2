// Serving equals sentence-transformers: the fixtures in test/fixtures/models/st were built and embedded by
// sentence-transformers 6.0.1 itself (scripts/gpu/st_fixtures.py; references.json holds its vectors). The
// server must give the same vectors for queries and documents, each with the model's prompt for it.
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadEmbedder, ModelLoadError, resolveModelSpec } from '../../src/embed/registry.js';
import { promptFor, readStConfig } from '../../src/embed/st.js';
import type { Embedder, EmbedderOptions, EmbedOptions, ModelSpec } from '../../src/embed/types.js';
import { ST_FIXTURES } from './st-fixtures.js';

const tmp = mkdtempSync(join(tmpdir(), 'st-test-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface RefCase {
  case: string;
  texts: string[];
  prompt_name: string | null;
  prompt: string | null;
  vectors: number[][];
}
interface RefModel {
  dir: string;
  hub_id?: string;
  config: { default_prompt_name: string | null };
  cases: RefCase[];
}
const REFS = JSON.parse(readFileSync(join(ST_FIXTURES, 'references.json'), 'utf8')) as { models: Record<string, RefModel> };

function options(over: Partial<EmbedderOptions> = {}): EmbedderOptions {
  return { cacheDir: join(tmp, 'cache'), workers: 1, maxBatch: 16, maxWaitMs: 2, maxQueue: 1000, ...over };
}

function unit(v: ArrayLike<number>): Float64Array {
  let n = 0;
  for (let i = 0; i < v.length; i++) n += v[i]! * v[i]!;
  const out = new Float64Array(v.length);
  for (let i = 0; i < v.length; i++) out[i] = v[i]! / Math.sqrt(n);
  return out;
}

/** The embed options that ask for what sentence-transformers did in this reference case. */
function optionsFor(c: RefCase): EmbedOptions | undefined {
  if (c.case === 'encode_query') return { kind: 'query' };
  if (c.case === 'encode_document') return { kind: 'document' };
  if (c.case.startsWith('prompt_name:')) return { promptName: c.case.split(':')[1]! };
  if (c.case === 'plain') return {};
  return undefined; // no_prompt: plain encode() with prompt="" — only equal to ours when there is no default prompt
}

/** Max abs diff and min cosine of the server's vectors vs sentence-transformers' (its vectors normalized: the
 *  server always returns unit vectors; a model without Normalize is compared by direction). */
async function compare(embedder: Embedder, ref: RefModel): Promise<{ maxAbs: number; minCos: number; cases: number }> {
  let maxAbs = 0;
  let minCos = 1;
  let cases = 0;
  for (const c of ref.cases) {
    let opts = optionsFor(c);
    if (opts === undefined && ref.config.default_prompt_name === null) opts = {};
    if (opts === undefined) continue;
    const got = await embedder.embed(c.texts, opts);
    cases++;
    c.vectors.forEach((row, i) => {
      const want = unit(row);
      const v = got[i]!;
      let dot = 0;
      for (let k = 0; k < want.length; k++) {
        maxAbs = Math.max(maxAbs, Math.abs(want[k]! - v[k]!));
        dot += want[k]! * v[k]!;
      }
      minCos = Math.min(minCos, dot);
    });
  }
  return { maxAbs, minCos, cases };
}

const dirSpec = (name: string, dtype?: string): ModelSpec =>
  resolveModelSpec({ MODEL_DIR: join(ST_FIXTURES, REFS.models[name]!.dir), EMBED_DTYPE: dtype, defaultDir: '/nonexistent' });

describe('sentence-transformers parity (fixtures built by sentence-transformers 6.0.1)', { timeout: 180_000 }, () => {
  for (const name of ['st-bge-tiny', 'st-e5-tiny', 'st-max-noprompt', 'st-bge-tiny-ft']) {
    it(`${name}: fp32 vectors equal sentence-transformers' (max abs diff ≤ 1e-4), queries and documents with their prompts`, async () => {
      const embedder = await loadEmbedder(dirSpec(name), options());
      try {
        const r = await compare(embedder, REFS.models[name]!);
        expect(r.cases).toBeGreaterThanOrEqual(4);
        expect(r.maxAbs).toBeLessThanOrEqual(1e-4);
      } finally {
        await embedder.close();
      }
    });
  }

  for (const [name, dtype] of [
    ['st-bge-tiny', 'q8'],
    ['st-e5-tiny', 'q8'],
    ['st-bge-tiny', 'fp16'],
    ['st-bge-tiny-ft', 'q8'],
  ] as const) {
    it(`${name}: ${dtype} vectors have cosine ≥ 0.999 with sentence-transformers'`, async () => {
      const spec = dirSpec(name, dtype);
      expect(spec.dtype).toBe(dtype);
      const embedder = await loadEmbedder(spec, options());
      try {
        expect(embedder.model?.file).toBe(dtype === 'q8' ? 'onnx/model_quantized.onnx' : 'onnx/model_fp16.onnx');
        const r = await compare(embedder, REFS.models[name]!);
        expect(r.minCos).toBeGreaterThanOrEqual(0.999);
      } finally {
        await embedder.close();
      }
    });
  }

  it('a hub id is served from a Hugging Face hub cache without the network, same vectors and prompts', async () => {
    const ref = REFS.models['st-bge-tiny']!;
    const spec = resolveModelSpec({ EMBED_MODEL: ref.hub_id!, defaultDir: '/nonexistent' });
    expect(spec.source).toEqual({ kind: 'hub', id: 'fixture-org/st-bge-tiny' });
    const embedder = await loadEmbedder(spec, options({ cacheDir: join(ST_FIXTURES, 'hub') }));
    try {
      expect(embedder.model).toMatchObject({ pooling: 'cls', normalize: true, queryPrompt: 'query', maxTokens: 64 });
      expect(embedder.model!.dir).toContain('models--fixture-org--st-bge-tiny/snapshots/');
      const r = await compare(embedder, ref);
      expect(r.maxAbs).toBeLessThanOrEqual(1e-4);
    } finally {
      await embedder.close();
    }
  });

  it('describes each model: pooling, normalization, truncation and the prompts used for queries and documents', async () => {
    const e5 = await loadEmbedder(dirSpec('st-e5-tiny'), options());
    try {
      expect(e5.model).toMatchObject({
        pooling: 'mean',
        normalize: false,
        maxTokens: 128,
        queryPrompt: 'query',
        documentPrompt: 'document',
        configSource: 'sentence-transformers',
      });
      // a prompt name the model lacks is refused, not silently ignored
      await expect(e5.embed(['x'], { promptName: 'nope' })).rejects.toThrow(/no prompt named "nope"/);
    } finally {
      await e5.close();
    }
    expect(readStConfig(join(ST_FIXTURES, 'st-bge-tiny-ft'))).toMatchObject({
      source: 'sentence-transformers (pytorch/)',
      pooling: 'cls',
      normalize: true,
    });
    expect(readStConfig(join(ST_FIXTURES, 'st-max-noprompt'))).toMatchObject({
      pooling: 'max',
      includePrompt: false,
      defaultPromptName: 'query',
    });
  });
});

describe('prompt resolution mirrors encode_query / encode_document / encode', () => {
  it('queries use "query", documents the first of document/passage/corpus, otherwise the default prompt', () => {
    const e5 = { prompts: { query: 'query: ', passage: 'passage: ' }, defaultPromptName: null };
    expect(promptFor(e5, { kind: 'query' })).toEqual({ name: 'query', text: 'query: ' });
    expect(promptFor(e5, { kind: 'document' })).toEqual({ name: 'passage', text: 'passage: ' });
    expect(promptFor(e5, {})).toEqual({ name: null, text: '' });
    const inst = { prompts: { query: 'Q: ', classify: 'C: ' }, defaultPromptName: 'classify' };
    expect(promptFor(inst, { kind: 'document' })).toEqual({ name: 'classify', text: 'C: ' });
    expect(promptFor(inst, { kind: 'query', promptName: 'classify' })).toEqual({ name: 'classify', text: 'C: ' });
    expect(() => promptFor(inst, { promptName: 'x' })).toThrow(RangeError);
  });

  it('a model whose documents prompt is named "passage" embeds documents like sentence-transformers with prompt_name="document"', async () => {
    // st-e5-tiny with its "document" prompt renamed "passage" (the e5 convention): same text, same vectors.
    const dir = join(tmp, 'e5-passage');
    cpSync(join(ST_FIXTURES, 'st-e5-tiny'), dir, { recursive: true });
    const file = join(dir, 'config_sentence_transformers.json');
    const cfg = JSON.parse(readFileSync(file, 'utf8')) as { prompts: Record<string, string> };
    cfg.prompts = { query: cfg.prompts.query!, passage: cfg.prompts.document! };
    writeFileSync(file, JSON.stringify(cfg));
    const embedder = await loadEmbedder(resolveModelSpec({ MODEL_DIR: dir, defaultDir: '/x' }), options());
    try {
      const ref = REFS.models['st-e5-tiny']!.cases.find((c) => c.case === 'encode_document')!;
      const got = await embedder.embed(ref.texts, { kind: 'document' });
      ref.vectors.forEach((row, i) => {
        const want = unit(row);
        for (let k = 0; k < want.length; k++) expect(Math.abs(want[k]! - got[i]![k]!)).toBeLessThanOrEqual(1e-4);
      });
    } finally {
      await embedder.close();
    }
  }, 60_000);
});

describe('bad input fails at start with one line naming the file and the fix', () => {
  function broken(name: string, edit: (dir: string) => void): string {
    const dir = join(tmp, name);
    cpSync(join(ST_FIXTURES, 'st-e5-tiny'), dir, { recursive: true });
    edit(dir);
    return dir;
  }
  function startError(dir: string): Error {
    try {
      resolveModelSpec({ MODEL_DIR: dir, defaultDir: '/x' });
    } catch (err) {
      return err as Error;
    }
    throw new Error('resolveModelSpec accepted a bad model');
  }

  it('a pooling mode we cannot serve', () => {
    const dir = broken('concat-pool', (d) =>
      writeFileSync(join(d, '1_Pooling/config.json'), JSON.stringify({ embedding_dimension: 64, pooling_mode: ['cls', 'mean'] })),
    );
    const err = startError(dir);
    expect(err).toBeInstanceOf(ModelLoadError);
    expect(err.message).not.toContain('\n');
    expect(err.message).toMatch(/1_Pooling\/config\.json: concatenated pooling \(cls \+ mean\) cannot be served; fix: /);
    const dir2 = broken('odd-pool', (d) => writeFileSync(join(d, '1_Pooling/config.json'), JSON.stringify({ pooling_mode: 'attention' })));
    expect(startError(dir2).message).toMatch(/1_Pooling\/config\.json: pooling mode "attention" is unknown .*; fix: set "pooling_mode"/);
  });

  it('legacy (sentence-transformers ≤ 5) pooling booleans are read', () => {
    const dir = broken('legacy-pool', (d) =>
      writeFileSync(
        join(d, '1_Pooling/config.json'),
        JSON.stringify({ word_embedding_dimension: 64, pooling_mode_cls_token: true, pooling_mode_mean_tokens: false }),
      ),
    );
    expect(readStConfig(dir).pooling).toBe('cls');
  });

  it('prompts that are not strings', () => {
    const dir = broken('bad-prompts', (d) => {
      const f = join(d, 'config_sentence_transformers.json');
      writeFileSync(f, JSON.stringify({ ...JSON.parse(readFileSync(f, 'utf8')), prompts: { query: 3 } }));
    });
    const err = startError(dir);
    expect(err.message).not.toContain('\n');
    expect(err.message).toMatch(
      /config_sentence_transformers\.json: prompt "query" is 3, not a string; fix: make every value of "prompts" a string/,
    );
    const dir2 = broken('bad-default', (d) => {
      const f = join(d, 'config_sentence_transformers.json');
      writeFileSync(f, JSON.stringify({ ...JSON.parse(readFileSync(f, 'utf8')), default_prompt_name: 'classification' }));
    });
    expect(startError(dir2).message).toMatch(/default_prompt_name "classification" is not one of the prompts/);
  });

  it('a module the server cannot run, and a dot-product model without Normalize', () => {
    const dir = broken('dense', (d) => {
      const f = join(d, 'modules.json');
      const mods = JSON.parse(readFileSync(f, 'utf8')) as unknown[];
      writeFileSync(f, JSON.stringify([...mods, { idx: 2, name: '2', path: '2_Dense', type: 'sentence_transformers.models.Dense' }]));
    });
    expect(startError(dir).message).toMatch(
      /modules\.json: module sentence_transformers\.models\.Dense \(2_Dense\) cannot be served.*; fix: /,
    );
    const dot = broken('dot', (d) => {
      const f = join(d, 'config_sentence_transformers.json');
      writeFileSync(f, JSON.stringify({ ...JSON.parse(readFileSync(f, 'utf8')), similarity_fn_name: 'dot' }));
    });
    expect(startError(dot).message).toMatch(/similarity_fn_name "dot" without a Normalize module/);
  });

  it('a directory with neither ONNX nor a known layout; PyTorch-only weights get the export command', () => {
    const junk = join(tmp, 'junk');
    mkdirSync(junk);
    writeFileSync(join(junk, 'notes.txt'), 'not a model');
    const err = startError(junk);
    expect(err.message).toMatch(
      /not a model directory: neither ONNX weights \(onnx\/model\.onnx\) nor a sentence-transformers \(modules\.json\) or transformers\.js layout/,
    );
    expect(err.message).not.toContain('\n');
    const pt = broken('pytorch-only', (d) => rmSync(join(d, 'onnx'), { recursive: true }));
    expect(startError(pt).message).toMatch(
      /PyTorch weights only, no ONNX export; export it: optimum-cli export onnx --model .* --task feature-extraction .*onnx/,
    );
    // a dtype the directory does not ship names the ones it has
    const q = (() => {
      try {
        resolveModelSpec({ MODEL_DIR: join(ST_FIXTURES, 'st-max-noprompt'), EMBED_DTYPE: 'q8', defaultDir: '/x' });
      } catch (e) {
        return e as Error;
      }
      return undefined;
    })();
    expect(q?.message).toMatch(
      /missing onnx\/model_quantized\.onnx \(EMBED_DTYPE q8\); the directory has onnx\/model\.onnx \(fp32\): set EMBED_DTYPE=fp32/,
    );
  });
});
