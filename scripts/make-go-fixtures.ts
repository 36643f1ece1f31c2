// Writes test/fixtures/go/ from the full GO data set (DATA, default ../shared/data/go): the exact
// drift scenarios the loop, crash, object-store and console tests use (goScenario in test/loop/go-data.ts
// reads them back from scenarios.json), and corpus.jsonl = every passage those scenarios hold.
//   npx tsx scripts/make-go-fixtures.ts
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { GO_SCENARIOS, goScenario, scenarioKey } from '../test/loop/go-data.js';

const root = resolve(import.meta.dirname, '..');
const data = resolve(process.env.DATA ?? join(root, '../shared/data/go'));
const out = join(root, 'test/fixtures/go');
mkdirSync(out, { recursive: true });

const scenarios: Record<string, { bp: unknown[]; shift: unknown[]; docs: string[] }> = {};
const corpus = new Map<string, unknown>();
for (const opts of GO_SCENARIOS) {
  const s = goScenario(data, opts, { fixtures: false });
  scenarios[scenarioKey(opts)] = { bp: s.bp, shift: s.shift, docs: s.docs.map((d) => d.id) };
  for (const d of s.docs) corpus.set(d.id, d);
}
writeFileSync(join(out, 'scenarios.json'), `${JSON.stringify(scenarios)}\n`);
writeFileSync(join(out, 'corpus.jsonl'), [...corpus.values()].map((d) => JSON.stringify(d)).join('\n') + '\n');
console.log(`${Object.keys(scenarios).length} scenarios, ${corpus.size} passages → ${out}`);
