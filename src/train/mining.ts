import { createHash } from 'node:crypto';
import type { DocumentStore, QueryLogStore } from '../store/types.js';
import { seededRandom, shuffleInPlace } from '../util/random.js';
import type { LlmMiner, LlmUsage } from './llm.js';

type PairSource = 'feedback' | 'llm_question' | 'llm_paraphrase' | 'pseudo_query';

export interface TrainPair {
  anchor: string;
  positive: string;
  /** Parent document of the positive (kept for dedupe and the corpus check; not sent to the trainer). */
  docId: string;
  source: PairSource;
}

export interface EvalQuery {
  query: string;
  relevant: string[];
}

export interface MiningOptions {
  seed: number;
  /** Share of distinct feedback queries held out for the gate (never trained on). */
  evalFraction: number;
  maxEvalQueries: number;
  /** Fewer held-out queries than this and the gate's numbers would be noise: the job fails instead. */
  minEvalQueries: number;
  /** Pseudo-queries mined from documents (inverse-cloze spans), 0 = none. */
  pseudoQueries: number;
  llm?: LlmMiner;
  llmPassages?: number;
  llmParaphraseQueries?: number;
  /** Positives longer than this are cut (the trainer truncates by tokens anyway; this bounds the bundle). */
  maxPositiveChars?: number;
  /**
   * Cold start: with fewer held-out feedback queries than minEvalQueries, hold out this many pseudo-queries
   * (a sentence of a sampled passage → its document) as the gate's set instead of failing. 0 = fail.
   */
  coldStartEval?: number;
}

export interface MiningResult {
  pairs: TrainPair[];
  eval: EvalQuery[];
  stats: {
    feedbackQueries: number;
    feedbackPairs: number;
    droppedNotInCorpus: number;
    droppedEvalLeak: number;
    duplicates: number;
    bySource: Record<PairSource, number>;
    evalQueries: number;
    /** What the gate's held-out set is made of. */
    evalSource: 'feedback' | 'pseudo_queries';
    llm?: LlmUsage;
  };
}

export class MiningError extends Error {}

/** Lower-cased, whitespace-collapsed: two spellings of one query must land on the same side of the split. */
export function normalizeQuery(q: string): string {
  return q.toLowerCase().replace(/\s+/g, ' ').trim();
}

/**
 * Inverse-cloze pseudo-query (Lee et al., ACL 2019): a sentence of the passage is the query, the rest of
 * the passage the positive. The first sentence of a definition or abstract usually names its topic.
 */
export function pseudoQuery(text: string): { anchor: string; positive: string } | undefined {
  const sentences =
    text
      .match(/[^.!?]+[.!?]+(?=\s|$)|[^.!?]+$/g)
      ?.map((s) => s.trim())
      .filter((s) => s.length > 0) ?? [];
  if (sentences.length < 2) return undefined;
  const anchor = sentences[0]!;
  const positive = sentences.slice(1).join(' ');
  if (anchor.split(/\s+/).length < 3 || positive.length < 20) return undefined;
  return { anchor, positive };
}

/** Deterministic split by query text: stable across runs with the same seed and feedback. */
function splitKey(seed: number, q: string): string {
  return createHash('sha256').update(`${seed}\u0000${q}`).digest('hex');
}

/** The split every part of the loop shares: the job's gate and the serving-strategy choice score on these. */
export const HELD_OUT = { seed: 13, evalFraction: 0.2, maxEvalQueries: 1000, minEvalQueries: 20 } as const;

/**
 * Held-out queries among distinct (normalized) feedback queries: the first `evalFraction` (at most
 * `maxEvalQueries`) in the order of sha256(seed, query). Training never sees them.
 */
export function heldOutKeys(
  keys: Iterable<string>,
  opts: { seed: number; evalFraction: number; maxEvalQueries: number },
): { ordered: string[]; held: Set<string> } {
  const ordered = [...keys].sort((a, b) => (splitKey(opts.seed, a) < splitKey(opts.seed, b) ? -1 : 1));
  return { ordered, held: new Set(ordered.slice(0, heldOutSize(ordered.length, opts))) };
}

/** How many of `distinct` feedback queries heldOutKeys holds out. */
export function heldOutSize(distinct: number, opts: { evalFraction: number; maxEvalQueries: number } = HELD_OUT): number {
  return Math.min(opts.maxEvalQueries, Math.round(distinct * opts.evalFraction));
}

/** Logged queries with feedback, grouped by normalized text (the shape mining and strategy choice share). */
export async function feedbackByQuery(
  store: QueryLogStore,
  collection: string,
): Promise<Map<string, { query: string; docs: Set<string> }>> {
  const byQuery = new Map<string, { query: string; docs: Set<string> }>();
  for (const f of await store.feedbackPairs(collection)) {
    const key = normalizeQuery(f.query);
    if (!key) continue;
    const g = byQuery.get(key) ?? { query: f.query.trim(), docs: new Set<string>() };
    g.docs.add(f.documentId);
    byQuery.set(key, g);
  }
  return byQuery;
}

export async function minePairs(
  store: DocumentStore & QueryLogStore,
  collectionId: number,
  collection: string,
  opts: MiningOptions,
): Promise<MiningResult> {
  const maxPos = opts.maxPositiveChars ?? 4000;
  const docText = new Map<string, string | null>();
  const getDoc = async (id: string) => {
    if (!docText.has(id)) docText.set(id, (await store.getDocument(collectionId, id))?.text ?? null);
    return docText.get(id) ?? null;
  };

  // (b1) feedback: real queries with the documents users found relevant.
  const fb = await store.feedbackPairs(collection);
  const byQuery = new Map<string, { query: string; docs: Set<string> }>();
  let droppedNotInCorpus = 0;
  for (const f of fb) {
    if ((await getDoc(f.documentId)) === null) {
      droppedNotInCorpus++;
      continue;
    }
    const key = normalizeQuery(f.query);
    if (!key) continue;
    const g = byQuery.get(key) ?? { query: f.query.trim(), docs: new Set<string>() };
    g.docs.add(f.documentId);
    byQuery.set(key, g);
  }

  const { ordered: keys, held: evalKeys } = heldOutKeys(byQuery.keys(), opts);
  let evalSet: EvalQuery[] = [...evalKeys].map((k) => ({ query: byQuery.get(k)!.query, relevant: [...byQuery.get(k)!.docs].sort() }));
  let evalSource: 'feedback' | 'pseudo_queries' = 'feedback';
  const pseudoEvalDocs = new Set<string>();
  if (evalSet.length < opts.minEvalQueries && (opts.coldStartEval ?? 0) > 0) {
    // Not enough real queries: every feedback query trains, and pseudo-queries from passages gate. Their
    // documents give no pseudo-query pairs below, so the sentence held out is never a training anchor here.
    const sample = await store.sampleChunks(collectionId, Math.min(opts.coldStartEval! * 3, 5000));
    sample.sort((a, b) => a.label - b.label);
    shuffleInPlace(sample, seededRandom(opts.seed + 1));
    const cold: EvalQuery[] = [];
    for (const c of sample) {
      if (cold.length >= opts.coldStartEval!) break;
      if (pseudoEvalDocs.has(c.docId)) continue;
      const pq = pseudoQuery(c.text);
      if (!pq) continue;
      pseudoEvalDocs.add(c.docId);
      cold.push({ query: pq.anchor, relevant: [c.docId] });
    }
    evalKeys.clear();
    for (const q of cold) evalKeys.add(normalizeQuery(q.query));
    evalSet = cold;
    evalSource = 'pseudo_queries';
  }

  const pairs: TrainPair[] = [];
  const clip = (t: string) => (t.length > maxPos ? t.slice(0, maxPos) : t);
  for (const k of keys) {
    if (evalKeys.has(k)) continue;
    const g = byQuery.get(k)!;
    for (const d of g.docs) pairs.push({ anchor: g.query, positive: clip((await getDoc(d))!), docId: d, source: 'feedback' });
  }
  const feedbackPairs = pairs.length;

  // (a) LLM: questions for sampled passages and paraphrases of the training queries.
  if (opts.llm) {
    const passages = await store.sampleChunks(collectionId, opts.llmPassages ?? 200);
    const qs = await opts.llm.questionsFor(passages.map((p) => ({ id: String(p.label), text: p.text })));
    qs.forEach((list, i) => {
      const p = passages[i]!;
      for (const q of list) pairs.push({ anchor: q.question, positive: clip(p.text), docId: p.docId, source: 'llm_question' });
    });
    const trainQueries = keys.filter((k) => !evalKeys.has(k)).slice(0, opts.llmParaphraseQueries ?? 200);
    const paras = await opts.llm.paraphrases(trainQueries.map((k) => byQuery.get(k)!.query));
    paras.forEach((list, i) => {
      const g = byQuery.get(trainQueries[i]!)!;
      for (const p of list)
        for (const d of g.docs) pairs.push({ anchor: p.paraphrase, positive: clip(docText.get(d)!), docId: d, source: 'llm_paraphrase' });
    });
  }

  // (b2) pseudo-queries from the documents themselves.
  if (opts.pseudoQueries > 0) {
    const sample = await store.sampleChunks(collectionId, opts.pseudoQueries);
    // sampleChunks is random(); sort + seeded shuffle keeps the bundle reproducible for a given seed.
    sample.sort((a, b) => a.label - b.label);
    shuffleInPlace(sample, seededRandom(opts.seed));
    for (const c of sample) {
      if (pseudoEvalDocs.has(c.docId)) continue;
      const pq = pseudoQuery(c.text);
      if (pq) pairs.push({ anchor: pq.anchor, positive: clip(pq.positive), docId: c.docId, source: 'pseudo_query' });
    }
  }

  // Held-out queries never reach training, whatever source produced the anchor; positives must still exist.
  let droppedEvalLeak = 0;
  let duplicates = 0;
  const seen = new Set<string>();
  const out: TrainPair[] = [];
  for (const p of pairs) {
    const a = normalizeQuery(p.anchor);
    if (evalKeys.has(a)) {
      droppedEvalLeak++;
      continue;
    }
    if ((await getDoc(p.docId)) === null) {
      droppedNotInCorpus++;
      continue;
    }
    const key = `${a}\u0000${p.docId}\u0000${p.positive.length}`;
    if (seen.has(key)) {
      duplicates++;
      continue;
    }
    seen.add(key);
    out.push(p);
  }
  const bySource: Record<PairSource, number> = { feedback: 0, llm_question: 0, llm_paraphrase: 0, pseudo_query: 0 };
  for (const p of out) bySource[p.source]++;

  if (evalSet.length < opts.minEvalQueries) {
    throw new MiningError(
      `only ${evalSet.length} held-out queries from ${keys.length} distinct feedback queries; the gate needs at least ${opts.minEvalQueries} (post more feedback)`,
    );
  }
  // An empty pairs.jsonl is fine: the trainer then learns from corpus pairs alone (a cold start).
  return {
    pairs: out,
    eval: evalSet,
    stats: {
      feedbackQueries: keys.length,
      feedbackPairs,
      droppedNotInCorpus,
      droppedEvalLeak,
      duplicates,
      bySource,
      evalQueries: evalSet.length,
      evalSource,
      llm: opts.llm ? { ...opts.llm.usage } : undefined,
    },
  };
}
