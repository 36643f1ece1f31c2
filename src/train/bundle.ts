import { createHash } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { cp } from 'node:fs/promises';
import { once } from 'node:events';
import { join } from 'node:path';
import type { Store } from '../store/types.js';
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
  collection: string;
}

export interface BundleInfo {
  dir: string;
  pairs: number;
  evalQueries: number;
  corpus: number;
  /** sha256 of pairs.jsonl: the model card's training-data hash. */
  dataHash: string;
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

/** Every live document of the collection, chunks re-joined in order: the trainer's retrieval corpus. */
export async function* corpusRows(store: Store, collectionId: number): AsyncGenerator<{ id: string; text: string }> {
  let after = 0;
  let curId: string | undefined;
  let parts: string[] = [];
  for (;;) {
    const rows = await store.liveChunks(collectionId, after, 2000);
    if (rows.length === 0) break;
    for (const r of rows) {
      // Chunks of one document are written together, so their labels are consecutive.
      if (r.docId !== curId) {
        if (curId !== undefined) yield { id: curId, text: parts.join(' ') };
        curId = r.docId;
        parts = [];
      }
      parts.push(r.text);
    }
    after = rows[rows.length - 1]!.label;
  }
  if (curId !== undefined) yield { id: curId, text: parts.join(' ') };
}

/**
 * Writes the training bundle (DESIGN.md contract) to a temp dir and renames it into place, so a crash
 * never leaves a bundle the trainer could half-read: pairs.jsonl, eval.jsonl, corpus.jsonl, base/, job.json.
 */
export async function writeBundle(dir: string, input: {
  store: Store; collectionId: number; pairs: TrainPair[]; eval: EvalQuery[]; baseModelDir: string; job: JobSpec;
}): Promise<BundleInfo> {
  const tmp = `${dir}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const dataHash = await writeJsonl(join(tmp, 'pairs.jsonl'), input.pairs.map((p) => ({ anchor: p.anchor, positive: p.positive })));
  await writeJsonl(join(tmp, 'eval.jsonl'), input.eval.map((e) => ({ query: e.query, relevant: e.relevant })));
  let corpus = 0;
  const rows: { id: string; text: string }[] = [];
  for await (const r of corpusRows(input.store, input.collectionId)) { rows.push(r); corpus++; }
  await writeJsonl(join(tmp, 'corpus.jsonl'), rows);
  if (!existsSync(input.baseModelDir)) throw new Error(`parent model directory ${input.baseModelDir} does not exist`);
  // A copy, not a link: a `command` backend may ship the bundle to another machine. Async: a base model is
  // tens of MB and the event loop is serving searches meanwhile.
  await cp(input.baseModelDir, join(tmp, 'base'), { recursive: true, dereference: true });
  writeFileSync(join(tmp, 'job.json'), JSON.stringify({ ...input.job, data_hash: dataHash }, null, 2));
  renameSync(tmp, dir);
  return { dir, pairs: input.pairs.length, evalQueries: input.eval.length, corpus, dataHash };
}
