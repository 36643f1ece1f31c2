// A hub-id champion, end to end and offline: EMBED_MODEL=fixture-org/st-bge-tiny served from a Hugging Face
// hub cache in DATA_DIR/models/cache (CLS pooling, a query prompt) → /v1/models and /v1/embeddings through
// the `openai` client → retrain job whose bundle carries the champion's PyTorch weights (sentence-transformers
// layout in base/) → `command` trainer backend returning an artifact the real trainer code wrote
// (st-bge-tiny-ft: transformers.js layout + pytorch/) → gate → shadow re-embed → swap → the new champion
// serves with the same pooling and prompts, equal to sentence-transformers' own vectors for it.
//
// The gate is forced open here: both models are random-init fixtures, so a quality comparison between them
// means nothing; the real gate is covered by test/loop/e2e.test.ts.
import { cpSync, existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { trainerFromConfig } from '../../src/train/backends.js';
import { JobRunner } from '../../src/train/jobs.js';
import { Swapper } from '../../src/swap/swap.js';
import { startTestServer, tempDir, type TestServer } from '../helpers.js';
import { ST_FIXTURES } from './st-fixtures.js';

interface RefCase {
  case: string;
  texts: string[];
  vectors: number[][];
}
const REFS = JSON.parse(readFileSync(join(ST_FIXTURES, 'references.json'), 'utf8')) as { models: Record<string, { cases: RefCase[] }> };
const refCase = (model: string, name: string) => REFS.models[model]!.cases.find((c) => c.case === name)!;

function maxDiffToUnit(got: number[][], want: number[][]): number {
  let m = 0;
  want.forEach((row, i) => {
    const n = Math.sqrt(row.reduce((s, x) => s + x * x, 0));
    row.forEach((x, k) => (m = Math.max(m, Math.abs(x / n - got[i]![k]!))));
  });
  return m;
}

const TOPICS = ['kinase', 'membrane', 'ribosome', 'mitochondrion', 'apoptosis', 'transport', 'receptor', 'chromatin', 'cilium', 'synapse'];
const docs = Array.from({ length: 80 }, (_, i) => ({
  id: `doc-${i}`,
  text: `Passage ${i} about ${TOPICS[i % 10]} number ${i}. It explains the role of ${TOPICS[(i + 3) % 10]} in cell ${i}.`,
}));

describe('hub-id sentence-transformers champion → retrain → swap, offline', () => {
  let dir: string;
  let s: TestServer;
  let openai: OpenAI;

  beforeAll(async () => {
    dir = tempDir('st-e2e-');
    // The hub cache a first start would have downloaded (models--fixture-org--st-bge-tiny/snapshots/<rev>/…).
    cpSync(join(ST_FIXTURES, 'hub'), join(dir, 'models/cache'), { recursive: true, verbatimSymlinks: true });
    s = await startTestServer(
      { DATA_DIR: dir, MODEL_DIR: undefined, EMBED_MODEL: 'fixture-org/st-bge-tiny', TRAINER_TIMEOUT_SECONDS: 60 },
      { listen: true },
    );
    openai = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'unused' });
    expect((await s.req('POST', '/collections', { name: 'c' })).status).toBe(201);
    expect((await s.req('POST', '/collections/c/documents', { documents: docs })).status).toBe(200);
    for (let i = 0; i < 40; i++) {
      const r = await s.req('POST', '/search', { collection: 'c', query: `what does ${TOPICS[i % 10]} ${i} do`, k: 5 });
      expect(r.status).toBe(200);
      expect((await s.req('POST', '/feedback', { queryId: r.body.queryId, documentId: `doc-${i}` })).status).toBe(201);
    }
  }, 120_000);

  afterAll(async () => {
    await s?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /**
   * /v1/embeddings of `model` for a reference case's texts as `inputType`, against sentence-transformers' vectors
   * for `fixture` (`float` or the client's default, base64): the largest difference per dimension.
   */
  async function diffToReference(model: string, fixture: string, inputType: 'query' | 'document', encoding?: 'float'): Promise<number> {
    const ref = refCase(fixture, inputType === 'query' ? 'encode_query' : 'encode_document');
    const r = await openai.embeddings.create({
      model,
      input: ref.texts,
      ...(encoding ? { encoding_format: encoding } : {}),
      input_type: inputType,
    } as OpenAI.EmbeddingCreateParams);
    return maxDiffToUnit(
      r.data.map((x) => x.embedding),
      ref.vectors,
    );
  }

  it('serves the hub model with its pooling and prompts: /v1/models and /v1/embeddings via the openai client', async () => {
    const list = await openai.models.list();
    expect(list.data).toHaveLength(1);
    const m = list.data[0]! as unknown as Record<string, any>;
    expect(m).toMatchObject({
      id: 'fixture-org__st-bge-tiny',
      object: 'model',
      owned_by: 'tuned-retrieval',
      dimensions: 64,
      pooling: 'cls',
      normalize: true,
      max_tokens: 64,
      dtype: 'fp32',
      file: 'onnx/model.onnx',
    });
    expect(m.input_types).toEqual({ query: 'query', document: 'document' });
    expect((await openai.models.retrieve('fixture-org__st-bge-tiny')).id).toBe('fixture-org__st-bge-tiny');

    expect(await diffToReference(m.id, 'st-bge-tiny', 'query', 'float')).toBeLessThanOrEqual(1e-4);
    // base64 (the client's default) and a document input_type (no prompt for bge documents)
    expect(await diffToReference(m.id, 'st-bge-tiny', 'document')).toBeLessThanOrEqual(1e-4);
    const bad = await s.req('POST', '/v1/embeddings', { input: 'x', input_type: 'classification' });
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toMatch(/input_type must be "query", "document" or one of the model's prompt names \(document, query\)/);
  }, 60_000);

  it('retrains from the hub champion (its PyTorch weights in the bundle) and the new champion keeps CLS pooling and the query prompt', async () => {
    const FT = join(ST_FIXTURES, 'st-bge-tiny-ft');
    const seen = join(dir, 'seen');
    const trainer = trainerFromConfig({
      ...s.config,
      TRAINER_BACKEND: 'command',
      TRAINER_COMMAND: `mkdir -p ${seen} && cp {bundle}/job.json ${seen}/ && ls -R {bundle}/base > ${seen}/base.txt && mkdir -p {out} && cp -R '${FT}'/. {out}/`,
    });
    const jobs = new JobRunner({
      engine: s.engine,
      catalog: s.catalog,
      strategies: s.strategies,
      store: s.store,
      indexes: s.indexes,
      config: s.config,
      metrics: s.metrics,
      log: s.log,
      trainer,
      swapper: new Swapper({ engine: s.engine, store: s.store, indexes: s.indexes, config: s.config, metrics: s.metrics, log: s.log }),
      irMetrics: () => ({ 'ndcg@10': 0 }),
      gate: () => ({ passed: true, forced: 'random-init fixtures' }),
      mining: { minEvalQueries: 5, pseudoQueries: 20 },
    });
    try {
      const created = await jobs.create('c', 'manual');
      const job = (await jobs.wait(created.id))!;
      expect(job.error).toBeNull();
      expect(job.state).toBe('done');

      // The bundle's base/ was the hub snapshot with its PyTorch weights: the trainer loads it as a plain ST dir.
      const base = readFileSync(join(seen, 'base.txt'), 'utf8');
      for (const f of ['model.safetensors', 'modules.json', 'config_sentence_transformers.json', '1_Pooling']) expect(base).toContain(f);
      const jobJson = JSON.parse(readFileSync(join(seen, 'job.json'), 'utf8')) as Record<string, unknown>;
      expect(jobJson.base_model).toBeUndefined();
      expect(jobJson.max_seq_length).toBe(64); // the champion's own token limit (its tokenizer's model_max_length)
      expect(existsSync(join(dir, 'models/cache/models--fixture-org--st-bge-tiny'))).toBe(true);

      // Swapped: the candidate serves, described by its pytorch/ sentence-transformers files.
      const version = job.candidateVersion!;
      expect(s.engine.serving.version).toBe(version);
      const list = await openai.models.list();
      expect(list.data[0]).toMatchObject({
        id: version,
        pooling: 'cls',
        normalize: true,
        max_tokens: 64,
        config: 'sentence-transformers (pytorch/)',
        input_types: { query: 'query', document: 'document' },
      });
      expect(await diffToReference(version, 'st-bge-tiny-ft', 'query', 'float')).toBeLessThanOrEqual(1e-4);
      expect(await diffToReference(version, 'st-bge-tiny-ft', 'document', 'float')).toBeLessThanOrEqual(1e-4);
      // Searches are answered by the new champion, with the query prompt applied.
      const r = await s.req('POST', '/search', { collection: 'c', query: 'what does kinase 0 do', k: 3, mode: 'vector' });
      expect(r.status).toBe(200);
      expect(r.body.model).toBe(version);
      expect(r.body.results).toHaveLength(3);
      // The model card (GET /models) says how it serves and which file.
      const row = await s.store.getModelVersion(version);
      expect((row!.card as Record<string, any>).serving).toMatchObject({ pooling: 'cls', queryPrompt: 'query', file: 'onnx/model.onnx' });
      expect(((await s.store.getModelVersion('fixture-org__st-bge-tiny'))!.card as Record<string, any>).serving).toMatchObject({
        pooling: 'cls',
        configSource: 'sentence-transformers',
      });
    } finally {
      await jobs.stop();
    }
  }, 180_000);
});
