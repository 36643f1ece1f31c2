// Pair mining over a real SQLite store, and LLM mining against a real OpenAI-compatible HTTP server
// started here (the `openai` client talks to it over a socket; nothing in the client is mocked).
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore } from '../../src/store/index.js';
import type { Store } from '../../src/store/types.js';
import { writeBundle } from '../../src/train/bundle.js';
import { LlmMiner, limiter, parseLines } from '../../src/train/llm.js';
import { MiningError, minePairs, normalizeQuery, pseudoQuery } from '../../src/train/mining.js';
import { tempDir, TINY_MODEL } from '../helpers.js';
import { logRow } from './helpers.js';
import { startLlm } from './llm-server.js';

const DOCS = Array.from({ length: 60 }, (_, i) => ({
  id: `GO:${String(i).padStart(7, '0')}`,
  text: `Term number ${i} describes process ${i} in cells. It involves protein ${i} and the pathway of molecule ${i}.`,
}));

describe('pair mining', () => {
  let dir: string;
  let store: Store;
  let cid: number;

  beforeAll(async () => {
    dir = tempDir('mining-');
    store = await openStore({ dataDir: dir });
    const c = await store.createCollection({
      name: 'go',
      hnsw: { M: 8, efConstruction: 50, efSearch: 20 },
      chunk: { size: 1000, overlap: 0 },
    });
    cid = c.id;
    await store.upsertDocuments(
      cid,
      DOCS.map((d) => ({ ...d, metadata: {}, chunks: [d.text] })),
    );
    // 50 distinct queries with feedback; "process 3" is asked twice with different casing (one group).
    const rows = Array.from({ length: 50 }, (_, i) => logRow('go', `what is process ${i}`, 1000 + i, 'v1'));
    rows.push(logRow('go', 'What is  PROCESS 3', 2000, 'v1'));
    rows.push(logRow('go', 'query about a deleted doc', 2001, 'v1'));
    await store.insertQueryLogs(rows);
    for (let i = 0; i < 50; i++) await store.insertFeedback({ queryId: rows[i]!.id, documentId: DOCS[i]!.id, relevant: true });
    await store.insertFeedback({ queryId: rows[50]!.id, documentId: DOCS[3]!.id, relevant: true });
    await store.insertFeedback({ queryId: rows[50]!.id, documentId: DOCS[4]!.id, relevant: true });
    await store.insertFeedback({ queryId: rows[51]!.id, documentId: DOCS[59]!.id, relevant: true });
    await store.insertFeedback({ queryId: rows[10]!.id, documentId: DOCS[11]!.id, relevant: false });
    await store.deleteDocument(cid, DOCS[59]!.id);
  });

  afterAll(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('pseudo-queries are inverse-cloze spans and normalization merges spellings', () => {
    expect(pseudoQuery('A short one.')).toBeUndefined();
    expect(pseudoQuery('The first sentence names it. The rest explains what it does in detail.')).toEqual({
      anchor: 'The first sentence names it.',
      positive: 'The rest explains what it does in detail.',
    });
    expect(normalizeQuery('  What is\tPROCESS 3 ')).toBe('what is process 3');
  });

  it('splits feedback by query (seeded), keeps held-out queries out of training, drops missing positives', async () => {
    const r = await minePairs(store, cid, 'go', { seed: 1, evalFraction: 0.2, maxEvalQueries: 100, minEvalQueries: 5, pseudoQueries: 40 });
    expect(r.stats.feedbackQueries).toBe(50);
    expect(r.eval).toHaveLength(10);
    expect(r.stats.droppedNotInCorpus).toBe(1);
    const evalQs = new Set(r.eval.map((e) => normalizeQuery(e.query)));
    for (const p of r.pairs) expect(evalQs.has(normalizeQuery(p.anchor))).toBe(false);
    // The twice-asked query is one group with both relevant documents.
    const g3 = r.pairs.filter((p) => p.source === 'feedback' && normalizeQuery(p.anchor) === 'what is process 3');
    const e3 = r.eval.find((e) => normalizeQuery(e.query) === 'what is process 3');
    if (e3) expect(e3.relevant).toEqual([DOCS[3]!.id, DOCS[4]!.id]);
    else expect(g3.map((p) => p.docId).sort()).toEqual([DOCS[3]!.id, DOCS[4]!.id]);
    // Negative feedback is not a positive pair.
    expect(r.pairs.some((p) => p.anchor === 'what is process 10' && p.docId === DOCS[11]!.id)).toBe(false);
    expect(r.stats.bySource.pseudo_query).toBeGreaterThan(0);
    expect(r.pairs.every((p) => p.docId !== DOCS[59]!.id)).toBe(true);
    // Same seed → same split; another seed → another split.
    const again = await minePairs(store, cid, 'go', {
      seed: 1,
      evalFraction: 0.2,
      maxEvalQueries: 100,
      minEvalQueries: 5,
      pseudoQueries: 0,
    });
    expect(again.eval).toEqual(r.eval);
    const other = await minePairs(store, cid, 'go', {
      seed: 2,
      evalFraction: 0.2,
      maxEvalQueries: 100,
      minEvalQueries: 5,
      pseudoQueries: 0,
    });
    expect(other.eval).not.toEqual(r.eval);
  });

  it('refuses to produce a gate set too small to mean anything', async () => {
    await expect(
      minePairs(store, cid, 'go', { seed: 1, evalFraction: 0.2, maxEvalQueries: 100, minEvalQueries: 30, pseudoQueries: 0 }),
    ).rejects.toBeInstanceOf(MiningError);
  });

  it('mines questions and paraphrases through a local OpenAI-compatible server, with retries and a concurrency cap', async () => {
    const fake = await startLlm(2);
    try {
      const llm = new LlmMiner({
        baseURL: fake.url,
        model: 'test-model',
        apiKey: 'k',
        concurrency: 3,
        backoffMs: 5,
        pricePerMTokIn: 1,
        pricePerMTokOut: 2,
      });
      const r = await minePairs(store, cid, 'go', {
        seed: 1,
        evalFraction: 0.2,
        maxEvalQueries: 100,
        minEvalQueries: 5,
        pseudoQueries: 0,
        llm,
        llmPassages: 8,
        llmParaphraseQueries: 6,
      });
      expect(r.stats.bySource.llm_question).toBe(16);
      expect(r.stats.bySource.llm_paraphrase).toBeGreaterThanOrEqual(12);
      expect(fake.maxInFlight).toBeLessThanOrEqual(3);
      expect(fake.maxInFlight).toBeGreaterThan(1);
      const u = r.stats.llm!;
      expect(u.retries).toBe(2);
      expect(u.failures).toBe(0);
      expect(u.promptTokens).toBe(40 * 14);
      expect(u.completionTokens).toBe(12 * 14);
      expect(u.costUsd).toBeCloseTo((40 * 14 * 1 + 12 * 14 * 2) / 1e6, 12);
      // Questions pair with the passage they were asked about.
      const q = r.pairs.find((p) => p.source === 'llm_question')!;
      expect(q.anchor).toMatch(/^what is Term number \d+/);
      expect(q.positive).toContain(q.anchor.replace(/^what is (.*)\?$/, '$1'));
    } finally {
      fake.server.close();
    }
  });

  it('gives up on a dead endpoint without failing the whole mining step', async () => {
    const llm = new LlmMiner({
      baseURL: 'http://127.0.0.1:9/v1',
      model: 'm',
      concurrency: 2,
      maxAttempts: 2,
      backoffMs: 1,
      timeoutMs: 2000,
    });
    const out = await llm.questionsFor([{ id: '1', text: 'some passage text' }]);
    expect(out).toEqual([[]]);
    expect(llm.usage.failures).toBe(1);
    expect(llm.usage.retries).toBe(1);
  });

  it('parses list-style answers and limits concurrency', async () => {
    expect(parseLines('1. first one\n- second one\n\n"third one"\nx', 5)).toEqual(['first one', 'second one', 'third one']);
    const run = limiter(2);
    let active = 0;
    let peak = 0;
    await Promise.all(
      Array.from({ length: 6 }, () =>
        run(async () => {
          active++;
          peak = Math.max(peak, active);
          await new Promise((r) => setTimeout(r, 5));
          active--;
        }),
      ),
    );
    expect(peak).toBe(2);
  });

  it('writes the training bundle atomically with the parent model as base/', async () => {
    const r = await minePairs(store, cid, 'go', { seed: 1, evalFraction: 0.2, maxEvalQueries: 100, minEvalQueries: 5, pseudoQueries: 10 });
    const out = join(dir, 'bundle');
    const info = await writeBundle(out, {
      store,
      collectionId: cid,
      pairs: r.pairs,
      eval: r.eval,
      baseModelDir: TINY_MODEL,
      job: { version: 'v2', parent_version: 'v1', loss: 'mnrl', batch_size: 16, epochs: 1, lr: 5e-5, seed: 1, collection: 'go' },
    });
    expect(existsSync(`${out}.tmp`)).toBe(false);
    const pairs = readFileSync(join(out, 'pairs.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(pairs).toHaveLength(r.pairs.length);
    expect(Object.keys(pairs[0]!).sort()).toEqual(['anchor', 'positive', 'positive_id']);
    const ev = readFileSync(join(out, 'eval.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { query: string; relevant: string[] });
    expect(ev).toHaveLength(r.eval.length);
    const corpus = readFileSync(join(out, 'corpus.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { id: string });
    expect(corpus).toHaveLength(59);
    expect(info.corpus).toBe(59);
    expect(existsSync(join(out, 'base/onnx/model.onnx'))).toBe(true);
    expect(existsSync(join(out, 'base/pytorch/model.safetensors'))).toBe(true);
    const job = JSON.parse(readFileSync(join(out, 'job.json'), 'utf8')) as Record<string, unknown>;
    expect(job).toMatchObject({ loss: 'mnrl', batch_size: 16, epochs: 1, seed: 1, data_hash: info.dataHash });
  });
});
