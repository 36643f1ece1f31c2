// The strategy tuner over a real SQLite store: which evidence it uses, what it stores, and when it re-decides.
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { createMetrics } from '../../src/metrics.js';
import { StrategyBook, StrategyTuner } from '../../src/search/tuner.js';
import { maskQueryText } from '../../src/train/evaluate.js';
import { openStore } from '../../src/store/index.js';
import type { ChunkRow, Collection, Store } from '../../src/store/types.js';
import { createLogger } from '../../src/util/log.js';
import { tempDir } from '../helpers.js';
import { logRow } from '../loop/helpers.js';

describe('StrategyTuner', () => {
  let dir: string;
  let store: Store;
  let col: Collection;
  let tuner: StrategyTuner;
  let book: StrategyBook;
  const version = 'enc-1';
  let n = 0;

  /** Logged queries with feedback: query i is about document d<i % 50>. */
  const feedback = async (count: number) => {
    const rows = Array.from({ length: count }, () => {
      const i = n++;
      return { ...logRow(col.name, `question number ${i} about topic ${i % 50}`, Date.now() + i, version), id: `fq-${i}` };
    });
    await store.insertQueryLogs(rows);
    for (const r of rows) await store.insertFeedback({ queryId: r.id, documentId: `d${Number(r.query!.split(' ').at(-1))}`, relevant: true });
  };

  beforeAll(async () => {
    dir = tempDir('tuner-');
    store = await openStore({ dataDir: dir });
    col = await store.createCollection({ name: 'docs', hnsw: { M: 16, efConstruction: 100, efSearch: 50 }, chunk: { size: 1000, overlap: 0 } });
    await store.upsertDocuments(col.id, Array.from({ length: 50 }, (_, i) => ({
      id: `d${i}`, text: `Topic ${i} is described here. It has a second sentence about topic ${i}.`, metadata: {},
      chunks: [`Topic ${i} is described here. It has a second sentence about topic ${i}.`],
    })));
    const config = loadConfig({}, { STRATEGY_MIN_DOCUMENTS: 20, STRATEGY_EVAL_QUERIES: 30, STRATEGY_MIN_FEEDBACK_QUERIES: 10 });
    book = new StrategyBook({ store, metrics: createMetrics() });
    tuner = new StrategyTuner({
      store, config, log: createLogger('silent'), book, servingVersion: () => version,
      // A stand-in ranker: the "encoder" finds the topic's document, keyword finds nothing.
      // The same stand-in as an embedder for the in-memory (masked) pseudo-query measurement: one axis per topic.
      servingEmbedder: () => ({
        version, dim: 64, queueDepth: () => 0, close: async () => undefined,
        embed: async (texts) => texts.map((t) => {
          const v = new Float32Array(64);
          const m = /topic (\d+)|\bw(\d+)x\b|\bs(\d+)\b/i.exec(t);
          v[m ? Number(m[1] ?? m[2] ?? m[3]) : 63] = 1;
          return v;
        }),
      }),
      rank: async (_c, q) => {
        const m = /topic (\d+)/i.exec(q);
        return { dense: m ? [{ key: `d${m[1]}`, score: 0.9 }, { key: 'd49', score: 0.1 }] : [], sparse: [{ key: 'd0', score: 3 }] };
      },
    });
  });

  afterAll(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('decides on pseudo-queries at a cold start, then on held-out feedback once there is enough', async () => {
    expect(await tuner.due(col)).toMatch(/first decision/);
    const cold = (await tuner.maybeDecide(col))!;
    expect(cold.source).toBe('pseudo_queries');
    expect(cold.modelVersion).toBe(version);
    expect(book.peek(col.id, version)).toEqual(cold);
    await feedback(100); // 20 held out (0.2), more than STRATEGY_MIN_FEEDBACK_QUERIES
    expect(await tuner.due(col)).toMatch(/held-out queries with feedback/);
    const warm = (await tuner.maybeDecide(col))!;
    expect(warm).toMatchObject({ source: 'feedback', mode: 'vector', queries: 20, heldOut: 20 });
    expect(warm.scores.vector).toBeGreaterThan(warm.scores.keyword!);
  });

  it('re-decides when held-out feedback grows by the configured fraction, not on every check (the evaluation set is capped)', async () => {
    await feedback(200); // 60 held out: the evaluation set is capped at 30
    const s = (await tuner.maybeDecide(col))!;
    expect(s).toMatchObject({ queries: 30, heldOut: 60 });
    expect(await tuner.due(col)).toBeUndefined();
    expect(await tuner.maybeDecide(col)).toBeUndefined();
    await feedback(160); // 92 held out ≥ 1.5 × 60
    expect(await tuner.due(col)).toMatch(/grew from 60 to 92/);
  });

  it('measures pseudo-queries with their sentence cut out of the passage, so BM25 cannot win by matching it', async () => {
    // Each passage: a first sentence with a code word only it holds, then what it is about in other words.
    // An encoder that knows w<i>x and s<i> mean the same finds the passage without the sentence; BM25 cannot.
    const other = await store.createCollection({ name: 'coded', hnsw: { M: 16, efConstruction: 100, efSearch: 50 }, chunk: { size: 1000, overlap: 0 } });
    const text = (i: number) => `Code word w${i}x appears here. The passage is about subject s${i} alone.`;
    await store.upsertDocuments(other.id, Array.from({ length: 40 }, (_, i) => ({ id: `c${i}`, text: text(i), metadata: {}, chunks: [text(i)] })));
    const s = (await tuner.decide(other, 'test'))!;
    expect(s.source).toBe('pseudo_queries');
    expect(s.scores.keyword!).toBeLessThan(0.5); // unmasked, the code word alone finds every passage (1.0)
    expect(s.scores.vector!).toBeGreaterThan(0.95);
    expect(s.mode).toBe('vector');
  });
});

describe('maskQueryText', () => {
  it("removes a query's text from its relevant documents' chunks only", () => {
    const row = (docId: string, text: string, label: number) => ({ label, docId, n: 0, text } as ChunkRow);
    const chunks = [row('a', 'First sentence. Second one.', 1), row('b', 'First sentence. Other text.', 2), row('a', 'No match here.', 3)];
    const out = maskQueryText(chunks, [{ query: 'First sentence.', relevant: ['a'] }]);
    expect(out.map((c) => c.text)).toEqual(['Second one.', 'First sentence. Other text.', 'No match here.']);
    expect(chunks[0]!.text).toBe('First sentence. Second one.'); // the input is not modified
  });
});
