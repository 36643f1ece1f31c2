import { createHash } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { cp } from 'node:fs/promises';
import { once } from 'node:events';
import { join } from 'node:path';
import type { DocumentStore } from '../store/types.js';
import type { EvalQuery, TrainPair } from './mining.js';

export interface JobSpec {
  /** The model version the server will register the result under. */
  version: string;
  parent_version: string;
  loss: 'mnrl' | 'cached_mnrl';
  batch_size: number;
  epochs: number;
  lr: number;
  seed: number;
  /**
   * Learning rate × epochs tried side by side and picked on a validation split carved from pairs.jsonl (never
   * eval.jsonl); the members are weight-averaged greedily (trainer/README.md). Absent: `lr` and `epochs` as given.
   */
  sweep?: { lr: number[]; epochs: number[] | 'auto'; select: 'greedy_soup' | 'best' };
  collection: string;
  /**
   * Self-supervised pairs the trainer builds from corpus.jsonl (trainer/README.md): `group` pairs per
   * passage with another passage of its group, `ict` inverse-cloze pairs per passage.
   */
  corpus_pairs?: { group: number; ict: number };
  /** Members trained with seeds seed…seed+N−1 and weight-averaged into one model (trainer/README.md). */
  soup?: number;
  /** The trainer's training loop: its own pre-tokenized `fast` loop or sentence-transformers' Trainer (`st`). */
  engine?: 'st' | 'fast';
  /** In-batch hardness weighting of the MNRL loss. */
  hardness?: { mode: 'in_batch_negatives'; strength: number };
  /** A hub id (or path) the trainer loads the base weights from, when base/ has none (trainer/README.md). */
  base_model?: string;
  /** Token limit for training and for the candidate's tokenizer (the trainer's default is 128). */
  max_seq_length?: number;
  /** After training, embed every embed.jsonl row (the live chunks) with the candidate into the artifact's embeddings/. */
  embed_corpus?: boolean;
}

export interface BundleInfo {
  dir: string;
  pairs: number;
  evalQueries: number;
  corpus: number;
  /** Distinct groups among corpus rows (0 when nothing is grouped). */
  groups: number;
  /** sha256 of pairs.jsonl: the model card's training-data hash. */
  dataHash: string;
  /** Rows of embed.jsonl (live chunks), 0 when the bundle has none. */
  embedRows: number;
  /** Store seq read before the chunks were read: writes after it are not (all) in embed.jsonl. */
  seq: number;
}

async function writeJsonl(path: string, rows: Iterable<unknown>): Promise<string> {
  const hash = createHash('sha256');
  const out = createWriteStream(path);
  for (const r of rows) {
    const line = JSON.stringify(r) + '\n';
    hash.update(line);
    if (!out.write(line)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
  return hash.digest('hex');
}

interface CorpusRow {
  id: string;
  text: string;
  /** Documents sharing the `groupBy` metadata value (sections of one article, pages of one manual). */
  group?: string;
}

/**
 * Every live document of the collection, chunks re-joined in order: the trainer's retrieval corpus.
 * With `groupBy`, each row carries that metadata field's value as its group.
 */
async function* corpusRows(store: DocumentStore, collectionId: number, groupBy?: string): AsyncGenerator<CorpusRow> {
  let after = 0;
  let cur: CorpusRow | undefined;
  let parts: string[] = [];
  const finish = (row: CorpusRow): CorpusRow => ({ ...row, text: parts.join(' ') });
  for (;;) {
    const rows = await store.liveChunks(collectionId, after, 2000);
    if (rows.length === 0) break;
    const meta = groupBy ? await store.hydrate(rows.filter((r) => r.n === 0).map((r) => r.label)) : undefined;
    for (const r of rows) {
      // Chunks of one document are written together, so their labels are consecutive.
      if (r.docId !== cur?.id) {
        if (cur) yield finish(cur);
        const g = meta?.get(r.label)?.metadata[groupBy!];
        cur = { id: r.docId, text: '', ...(g !== undefined && g !== null && g !== '' ? { group: String(g) } : {}) };
        parts = [];
      }
      parts.push(r.text);
    }
    after = rows[rows.length - 1]!.label;
  }
  if (cur) yield finish(cur);
}

/**
 * Every live chunk of the collection, its text as stored (what the server embeds for a document; the trainer
 * prepends the model's document prompt itself, as the server does), id = the chunk's label: what the trainer
 * embeds with the candidate (embed.jsonl) so that the shadow re-embed can load the vectors.
 */
async function* embedRowsOf(store: DocumentStore, collectionId: number): AsyncGenerator<{ id: string; text: string }> {
  let after = 0;
  for (;;) {
    const rows = await store.liveChunks(collectionId, after, 2000);
    if (rows.length === 0) break;
    for (const r of rows) yield { id: String(r.label), text: r.text };
    after = rows[rows.length - 1]!.label;
  }
}

/**
 * Writes the training bundle (DESIGN.md contract) to a temp dir and renames it into place, so a crash
 * never leaves a bundle the trainer could half-read: pairs.jsonl, eval.jsonl, corpus.jsonl, base/, job.json,
 * and with `embedChunks` embed.jsonl (job.json `embed_corpus: true`).
 */
export async function writeBundle(
  dir: string,
  input: {
    store: DocumentStore;
    collectionId: number;
    pairs: TrainPair[];
    eval: EvalQuery[];
    baseModelDir: string;
    job: JobSpec;
    /** Metadata field whose value groups documents for corpus group pairs. */
    groupBy?: string;
    /** Write embed.jsonl (every live chunk) and ask the trainer to embed it with the candidate. */
    embedChunks?: boolean;
  },
): Promise<BundleInfo> {
  const tmp = `${dir}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  // positive_id: the trainer carves its recipe-validation queries from these pairs and scores them by document.
  const dataHash = await writeJsonl(
    join(tmp, 'pairs.jsonl'),
    input.pairs.map((p) => ({ anchor: p.anchor, positive: p.positive, positive_id: p.docId })),
  );
  await writeJsonl(
    join(tmp, 'eval.jsonl'),
    input.eval.map((e) => ({ query: e.query, relevant: e.relevant })),
  );
  // Before any chunk is read: the shadow re-embed catches up every write after it.
  const seq = await input.store.currentSeq();
  let embedRows = 0;
  if (input.embedChunks) {
    const buf: { id: string; text: string }[] = [];
    for await (const r of embedRowsOf(input.store, input.collectionId)) buf.push(r);
    embedRows = buf.length;
    await writeJsonl(join(tmp, 'embed.jsonl'), buf);
  }
  let corpus = 0;
  const rows: CorpusRow[] = [];
  const groups = new Set<string>();
  for await (const r of corpusRows(input.store, input.collectionId, input.groupBy)) {
    rows.push(r);
    if (r.group !== undefined) groups.add(r.group);
    corpus++;
  }
  await writeJsonl(join(tmp, 'corpus.jsonl'), rows);
  if (!existsSync(input.baseModelDir)) throw new Error(`parent model directory ${input.baseModelDir} does not exist`);
  // A copy, not a link: a `command` backend may ship the bundle to another machine. Async: a base model is
  // tens of MB and the event loop is serving searches meanwhile.
  await cp(input.baseModelDir, join(tmp, 'base'), { recursive: true, dereference: true });
  // The trainer refuses group pairs over a corpus without groups, and a corpus_pairs that asks for nothing.
  const { corpus_pairs: asked, embed_corpus: _embed, ...job } = input.job;
  const corpusPairs = asked ? { group: groups.size > 0 ? asked.group : 0, ict: asked.ict } : undefined;
  const withPairs = corpusPairs && corpusPairs.group + corpusPairs.ict > 0 ? { corpus_pairs: corpusPairs } : {};
  writeFileSync(
    join(tmp, 'job.json'),
    JSON.stringify({ ...job, ...withPairs, ...(embedRows > 0 ? { embed_corpus: true } : {}), data_hash: dataHash }, null, 2),
  );
  renameSync(tmp, dir);
  return { dir, pairs: input.pairs.length, evalQueries: input.eval.length, corpus, groups: groups.size, dataHash, embedRows, seq };
}
