// Per-collection serving strategy: the book that `mode: "auto"` reads on every search, and the tuner that
// fills it by measurement (./strategy.ts).
//
// Evidence, strongest first:
//   1. held-out logged queries with feedback (the same held-out split the retrain job's gate uses, so the
//      trainer never sees them), once there are STRATEGY_MIN_FEEDBACK_QUERIES of them;
//   2. LLM-written questions for sampled passages, when an LLM is configured;
//   3. pseudo-queries: a sentence cut from a sampled passage, relevant = that passage's document.
// Pseudo-queries favour exact term matches (the sentence is in the document), so they only move a collection
// off keyword when the encoder wins by STRATEGY_COLD_MARGIN: a cold start never serves worse than BM25 on
// account of weak evidence. A decision is re-made when the collection grows by STRATEGY_REDECIDE_GROWTH, when
// feedback first becomes enough evidence (and when it grows by the same fraction), and at every gate.

import type { Config } from '../config.js';
import type { Metrics } from '../metrics.js';
import type { Collection, CollectionStore, DocumentStore, Metadata, QueryLogStore, StrategyStore } from '../store/types.js';
import type { Logger } from '../util/log.js';
import { seededRandom, shuffleInPlace } from '../util/random.js';
import { HELD_OUT, feedbackByQuery, heldOutKeys, heldOutSize, normalizeQuery, pseudoQuery } from '../train/mining.js';
import type { Scored } from './fusion.js';
import { chooseStrategy, evaluateStrategies, type EvidenceSource, type QueryRankings, type Strategy } from './strategy.js';

/** Document-level dense and keyword rankings of one query with the serving model (the engine provides it). */
type RankBoth = (c: Collection, query: string, depth: number) => Promise<{ dense: Scored<string>[]; sparse: Scored<string>[] }>;

export interface EvalQuerySet {
  source: EvidenceSource;
  queries: { query: string; relevant: string[] }[];
  /** Held-out feedback queries there were when the set was made (whatever the set is made of). */
  heldOut: number;
}

/** What `auto` serves for (collection, model): the cached strategy rows of the store. */
export class StrategyBook {
  private readonly cache = new Map<string, Strategy | null>();

  constructor(private readonly deps: { store: StrategyStore; metrics: Metrics }) {}

  private key(collectionId: number, version: string): string {
    return `${collectionId}\u0000${version}`;
  }

  /** Loads a collection's row for `version` into the cache (start, follow, after a swap). */
  async load(c: Collection, version: string): Promise<Strategy | undefined> {
    const row = await this.deps.store.getStrategy(c.id, version);
    const s = row ? (row as unknown as Strategy) : null;
    this.cache.set(this.key(c.id, version), s);
    if (s) this.export(c.name, s);
    return s ?? undefined;
  }

  /** Synchronous lookup on the search path; undefined = not decided (or not loaded yet). */
  peek(collectionId: number, version: string): Strategy | undefined {
    return this.cache.get(this.key(collectionId, version)) ?? undefined;
  }

  async get(c: Collection, version: string): Promise<Strategy | undefined> {
    const k = this.key(c.id, version);
    return this.cache.has(k) ? (this.cache.get(k) ?? undefined) : this.load(c, version);
  }

  async save(c: Collection, s: Strategy): Promise<void> {
    await this.deps.store.saveStrategy(c.id, s.modelVersion, s as unknown as Metadata);
    this.cache.set(this.key(c.id, s.modelVersion), s);
    this.export(c.name, s);
  }

  forget(c: Collection): void {
    for (const k of [...this.cache.keys()]) if (k.startsWith(`${c.id}\u0000`)) this.cache.delete(k);
    for (const mode of ['vector', 'keyword', 'hybrid'] as const) {
      this.deps.metrics.strategyMode.remove({ collection: c.name, mode });
      this.deps.metrics.strategyScore.remove({ collection: c.name, mode });
    }
    this.deps.metrics.strategyWeight.remove({ collection: c.name });
  }

  private export(collection: string, s: Strategy): void {
    const m = this.deps.metrics;
    for (const mode of ['vector', 'keyword', 'hybrid'] as const) {
      m.strategyMode.set({ collection, mode }, s.mode === mode ? 1 : 0);
      const v = s.scores[mode];
      if (typeof v === 'number') m.strategyScore.set({ collection, mode }, v);
    }
    m.strategyWeight.set({ collection }, s.mode === 'hybrid' ? (s.weight ?? 0.5) : s.mode === 'vector' ? 1 : 0);
  }
}

export interface TunerDeps {
  store: CollectionStore & DocumentStore & QueryLogStore;
  config: Config;
  log: Logger;
  book: StrategyBook;
  rank: RankBoth;
  servingVersion: () => string;
  /** LLM questions for passages, when LLM_BASE_URL/LLM_MODEL are set. */
  llmQuestions?: (passages: { id: string; text: string }[]) => Promise<string[][]>;
}

export class StrategyTuner {
  private readonly running = new Map<number, Promise<Strategy | undefined>>();
  /** Distinct normalized feedback queries per collection, read incrementally (see heldOutCount). */
  private readonly feedbackSeen = new Map<number, { keys: Set<string>; afterId: number }>();
  /** Document counts per collection and the store's change sequence they were read at (see documents()). */
  private readonly counted = new Map<number, { seq: number; documents: number }>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly deps: TunerDeps) {}

  /** Checks every collection now and then (counts only; a decision runs in the background when due). */
  start(listCollections: () => Promise<Collection[]>, everyMs = 30_000): void {
    const tick = async () => {
      for (const c of await listCollections())
        await this.maybeDecide(c).catch((err: unknown) =>
          this.deps.log.warn('strategy check failed', { collection: c.name, err: String(err) }),
        );
    };
    this.timer = setInterval(() => void tick(), everyMs);
    this.timer.unref();
    void tick();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await Promise.allSettled([...this.running.values()]);
  }

  /** Starts a decision when one is due; returns it (or undefined when none was due). */
  async maybeDecide(c: Collection): Promise<Strategy | undefined> {
    if (this.running.has(c.id)) return this.running.get(c.id);
    const due = await this.due(c);
    if (!due) return undefined;
    return this.decide(c, due);
  }

  /** Why a decision is due now, or undefined. */
  async due(c: Collection): Promise<string | undefined> {
    const { config, book } = this.deps;
    const docs = await this.documents(c);
    if (docs < config.STRATEGY_MIN_DOCUMENTS) return undefined;
    const cur = await book.get(c, this.deps.servingVersion());
    if (!cur) return 'first decision for this model';
    if (docs >= cur.documents * (1 + config.STRATEGY_REDECIDE_GROWTH))
      return `the collection grew from ${cur.documents} to ${docs} documents`;
    // Feedback becomes the evidence once there is enough of it, and is re-read as it grows (compared with the
    // held-out count at the last decision, not the evaluation set, which is capped at STRATEGY_EVAL_QUERIES).
    const held = await this.heldOutCount(c);
    if (held >= config.STRATEGY_MIN_FEEDBACK_QUERIES) {
      if (cur.source !== 'feedback' && cur.source !== 'gate') return `${held} held-out queries with feedback`;
      const before = cur.heldOut ?? cur.queries;
      if (held >= before * (1 + config.STRATEGY_REDECIDE_GROWTH)) return `held-out feedback grew from ${before} to ${held} queries`;
    }
    return undefined;
  }

  /**
   * The collection's document count, read again only when the store's change sequence moved: counting walks the
   * collection's key range on the main thread (23 ms at 100k documents on SQLite), and this runs every 30 s.
   */
  private async documents(c: Collection): Promise<number> {
    const { store } = this.deps;
    const seq = await store.currentSeq();
    const known = this.counted.get(c.id);
    if (known?.seq === seq) return known.documents;
    // A write between the two reads leaves an older seq with a newer count: the next check counts again.
    const documents = await store.countDocuments(c.id);
    this.counted.set(c.id, { seq, documents });
    return documents;
  }

  /**
   * The held-out size, from the distinct feedback queries seen so far: each check reads only the feedback
   * rows since the last one (the periodic check must not re-read a whole large log every 30 s).
   */
  private async heldOutCount(c: Collection): Promise<number> {
    let seen = this.feedbackSeen.get(c.id);
    if (!seen) this.feedbackSeen.set(c.id, (seen = { keys: new Set(), afterId: 0 }));
    for (const f of await this.deps.store.feedbackPairs(c.name, { afterId: seen.afterId })) {
      const k = normalizeQuery(f.query);
      if (k) seen.keys.add(k);
      if (f.id > seen.afterId) seen.afterId = f.id;
    }
    return heldOutSize(seen.keys.size);
  }

  /**
   * Measures and stores the strategy for the serving model (one decision per collection at a time). With
   * `fresh`, a decision already running is waited out and a new one made: its corpus may be outdated.
   */
  async decide(c: Collection, why: string, opts: { fresh?: boolean } = {}): Promise<Strategy | undefined> {
    let p = this.running.get(c.id);
    if (p && !opts.fresh) return p;
    if (p) await p.catch(() => undefined);
    p = this.running.get(c.id);
    if (p) return p;
    p = this.measure(c, why).finally(() => this.running.delete(c.id));
    this.running.set(c.id, p);
    return p;
  }

  private async measure(c: Collection, why: string): Promise<Strategy | undefined> {
    const { store, config, log, book } = this.deps;
    const version = this.deps.servingVersion();
    const t0 = performance.now();
    const set = await this.evaluationSet(c);
    const documents = await store.countDocuments(c.id);
    if (set.queries.length === 0) {
      log.info('serving strategy: no evaluation queries yet; keyword', { collection: c.name });
      return undefined;
    }
    const rankings: QueryRankings[] = [];
    for (const q of set.queries) {
      const r = await this.deps.rank(c, q.query, 50);
      rankings.push({ relevant: new Set(q.relevant), dense: r.dense, sparse: r.sparse });
    }
    // The serving model may have changed while we measured: a decision belongs to the model it measured.
    if (this.deps.servingVersion() !== version) return undefined;
    const ev = evaluateStrategies(rankings);
    const weak = set.source !== 'feedback';
    const choice = chooseStrategy(ev, { margin: weak ? config.STRATEGY_COLD_MARGIN : 0 });
    const s: Strategy = {
      mode: choice.mode,
      ...(choice.weight !== undefined ? { weight: choice.weight } : {}),
      fusionWeight: ev.hybrid.weight,
      modelVersion: version,
      source: set.source,
      queries: set.queries.length,
      heldOut: set.heldOut,
      documents,
      decidedAt: new Date().toISOString(),
      reason: `${choice.reason}; measured because ${why}`,
      scores: {
        vector: ev.vector['ndcg@10'] ?? null,
        keyword: ev.keyword['ndcg@10'] ?? null,
        hybrid: ev.hybrid['ndcg@10'] ?? null,
        hybridRrf: ev.hybridRrf['ndcg@10'] ?? null,
      },
    };
    await book.save(c, s);
    log.info('serving strategy decided', {
      collection: c.name,
      mode: s.mode,
      weight: s.weight,
      source: s.source,
      queries: s.queries,
      scores: s.scores,
      ms: Math.round(performance.now() - t0),
    });
    return s;
  }

  /** Held-out feedback queries when there are enough; else LLM questions; else pseudo-queries. */
  async evaluationSet(c: Collection): Promise<EvalQuerySet> {
    const { store, config } = this.deps;
    const max = config.STRATEGY_EVAL_QUERIES;
    const byQuery = await feedbackByQuery(store, c.name);
    // The same held-out queries as the job's (same seed), so the strategy is never decided on training queries.
    const seed = config.TRAIN_SEED;
    const { held } = heldOutKeys(byQuery.keys(), { ...HELD_OUT, seed });
    if (held.size >= config.STRATEGY_MIN_FEEDBACK_QUERIES) {
      const keys = [...held].slice(0, max);
      return {
        source: 'feedback',
        heldOut: held.size,
        queries: keys.map((k) => ({ query: byQuery.get(k)!.query, relevant: [...byQuery.get(k)!.docs] })),
      };
    }
    const sample = await store.sampleChunks(c.id, Math.min(max * 2, 2000));
    // sampleChunks is random: sort + seeded shuffle makes the set reproducible for a given corpus.
    sample.sort((a, b) => a.label - b.label);
    shuffleInPlace(sample, seededRandom(seed));
    if (this.deps.llmQuestions) {
      try {
        const passages = sample.slice(0, Math.min(max, 100));
        const qs = await this.deps.llmQuestions(passages.map((p) => ({ id: String(p.label), text: p.text })));
        const queries = qs.flatMap((list, i) => list.slice(0, 1).map((q) => ({ query: q, relevant: [passages[i]!.docId] })));
        if (queries.length >= 10) return { source: 'llm_questions', heldOut: held.size, queries };
      } catch (err) {
        this.deps.log.warn('LLM questions for the strategy evaluation failed; using pseudo-queries', {
          collection: c.name,
          err: String(err),
        });
      }
    }
    const queries: { query: string; relevant: string[] }[] = [];
    const seen = new Set<string>();
    for (const ch of sample) {
      if (queries.length >= max) break;
      if (seen.has(ch.docId)) continue;
      const pq = pseudoQuery(ch.text);
      if (!pq) continue;
      seen.add(ch.docId);
      queries.push({ query: pq.anchor, relevant: [ch.docId] });
    }
    return { source: queries.length > 0 ? 'pseudo_queries' : 'none', heldOut: held.size, queries };
  }
}
