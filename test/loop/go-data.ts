import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { rng } from './helpers.js';

export interface GoDoc { id: string; text: string; namespace: string }
export interface GoQuery { query: string; relevant: string[]; namespace: string }

function jsonl<T>(file: string): T[] {
  return readFileSync(file, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as T);
}

function shuffled<T>(xs: T[], seed: number): T[] {
  const r = rng(seed);
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

/**
 * A slice of the GO data set for a drift scenario: `bp` biological-process queries, then `shift`
 * molecular-function/cellular-component queries, and a corpus of `corpusSize` passages holding every
 * relevant passage of those queries plus random others.
 */
export function goScenario(dataDir: string, opts: { split: 'train' | 'dev'; bp: number; shift: number; corpusSize: number; seed: number }) {
  const queries = jsonl<GoQuery>(join(dataDir, `queries.${opts.split}.jsonl`));
  const corpus = jsonl<GoDoc>(join(dataDir, 'corpus.jsonl'));
  const q = shuffled(queries, opts.seed);
  const bp = q.filter((x) => x.namespace === 'BP').slice(0, opts.bp);
  const shift = q.filter((x) => x.namespace !== 'BP').slice(0, opts.shift);
  const need = new Set([...bp, ...shift].flatMap((x) => x.relevant));
  const docs = corpus.filter((d) => need.has(d.id));
  for (const d of shuffled(corpus, opts.seed + 1)) {
    if (docs.length >= Math.max(opts.corpusSize, need.size)) break;
    if (!need.has(d.id)) docs.push(d);
  }
  return { bp, shift, docs };
}
