import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { rng } from './helpers.js';

/**
 * The GO data the tests use, in the repository: the scenarios below, precomputed from the full data set
 * (../shared/data/go) by `npx tsx scripts/make-go-fixtures.ts`, and the passages they hold.
 */
export const GO_FIXTURE = resolve(import.meta.dirname, '../fixtures/go');

type ScenarioOptions = { split: 'train' | 'dev'; bp: number; shift: number; corpusSize: number; seed: number };

/** Every scenario a test asks for; add one here and rerun scripts/make-go-fixtures.ts. */
export const GO_SCENARIOS: ScenarioOptions[] = [
  { split: 'dev', bp: 160, shift: 240, corpusSize: 2500, seed: 5 }, // test/loop/e2e.test.ts
  { split: 'dev', bp: 60, shift: 60, corpusSize: 600, seed: 11 }, // test/loop/crash.test.ts, test/objects/server.test.ts
  { split: 'dev', bp: 100, shift: 60, corpusSize: 500, seed: 7 }, // test/console/console.test.ts
];

export const scenarioKey = (o: ScenarioOptions) => `${o.split}-${o.bp}-${o.shift}-${o.corpusSize}-${o.seed}`;

export interface GoDoc {
  id: string;
  text: string;
  namespace: string;
}
export interface GoQuery {
  query: string;
  relevant: string[];
  namespace: string;
}

function jsonl<T>(file: string): T[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as T);
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
export function goScenario(dataDir: string, opts: ScenarioOptions, { fixtures = true } = {}) {
  const pre = join(dataDir, 'scenarios.json');
  if (fixtures && existsSync(pre)) {
    const s = (JSON.parse(readFileSync(pre, 'utf8')) as Record<string, { bp: GoQuery[]; shift: GoQuery[]; docs: string[] }>)[
      scenarioKey(opts)
    ];
    if (!s) throw new Error(`no GO scenario ${scenarioKey(opts)} in ${pre}: add it to GO_SCENARIOS and run scripts/make-go-fixtures.ts`);
    const byId = new Map(jsonl<GoDoc>(join(dataDir, 'corpus.jsonl')).map((d) => [d.id, d]));
    return { bp: s.bp, shift: s.shift, docs: s.docs.map((id) => byId.get(id)!) };
  }
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
