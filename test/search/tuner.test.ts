// The strategy tuner over a real SQLite store: which evidence it uses, what it stores, and when it re-decides.
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { createMetrics } from '../../src/metrics.js';
import { StrategyBook, StrategyTuner } from '../../src/search/tuner.js';
import { openStore } from '../../src/store/index.js';
import type { Collection, Store } from '../../src/store/types.js';
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
    for (const r of rows)
      await store.insertFeedback({ queryId: r.id, documentId: `d${Number(r.query!.split(' ').at(-1))}`, relevant: true });
  };

  beforeAll(async () => {
    dir = tempDir('tuner-');
    store = await openStore({ dataDir: dir });
    col = await store.createCollection({
      name: 'docs',
      hnsw: { M: 16, efConstruction: 100, efSearch: 50 },
      chunk: { size: 1000, overlap: 0 },
    });
    await store.upsertDocuments(
      col.id,
      Array.from({ length: 50 }, (_, i) => ({
        id: `d${i}`,
        text: `Topic ${i} is described here. It has a second sentence about topic ${i}.`,
        metadata: {},
        chunks: [`Topic ${i} is described here. It has a second sentence about topic ${i}.`],
      })),
    );
    const config = loadConfig({}, { STRATEGY_MIN_DOCUMENTS: 20, STRATEGY_EVAL_QUERIES: 30, STRATEGY_MIN_FEEDBACK_QUERIES: 10 });
    book = new StrategyBook({ store, metrics: createMetrics() });
    tuner = new StrategyTuner({
      store,
      config,
      log: createLogger('silent'),
      book,
      servingVersion: () => version,
      // A stand-in ranker: the "encoder" finds the topic's document, keyword finds nothing.
      rank: async (_c, q) => {
        const m = /topic (\d+)/i.exec(q);
        return {
          dense: m
            ? [
                { key: `d${m[1]}`, score: 0.9 },
                { key: 'd49', score: 0.1 },
              ]
            : [],
          sparse: [{ key: 'd0', score: 3 }],
        };
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
});
