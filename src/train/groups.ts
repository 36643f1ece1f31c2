// Finding the metadata field that names a document's source (e.g. `pmid` across the sections of one
// abstract), so a retrain job adds group pairs (passage → another passage of the same source) without a
// setting. A source id has many distinct values, each shared by a few documents; a category (`namespace`,
// `section`, `lang`) has few values shared by many documents, and a per-document id is never shared.

import type { DocumentStore } from '../store/types.js';

export interface GroupDetection {
  field: string | null;
  /** Documents sampled. */
  sampled: number;
  /** Every scalar field looked at, with the numbers the decision used. */
  candidates: { field: string; coverage: number; distinct: number; grouped: number; medianSize: number; accepted: boolean }[];
  reason: string;
}

const MAX_MEDIAN_GROUP = 50;

/** Looks at up to `sample` documents (label order) and names the source-id field, if one qualifies. */
export async function detectGroupField(store: DocumentStore, collectionId: number, sample = 5000): Promise<GroupDetection> {
  const values = new Map<string, Map<string, number>>();
  let docs = 0;
  let after = 0;
  while (docs < sample) {
    const rows = await store.liveChunks(collectionId, after, 2000);
    if (rows.length === 0) break;
    after = rows[rows.length - 1]!.label;
    const firsts = rows.filter((r) => r.n === 0).slice(0, sample - docs);
    const meta = await store.hydrate(firsts.map((r) => r.label));
    for (const r of firsts) {
      docs++;
      const md = meta.get(r.label)?.metadata ?? {};
      for (const [k, v] of Object.entries(md)) {
        if ((typeof v !== 'string' && typeof v !== 'number') || v === '') continue;
        let m = values.get(k);
        if (!m) values.set(k, (m = new Map()));
        const key = String(v);
        m.set(key, (m.get(key) ?? 0) + 1);
      }
    }
  }
  return decideGroupField(values, docs);
}

/** The decision on value counts per field (exported for tests). */
export function decideGroupField(values: Map<string, Map<string, number>>, docs: number): GroupDetection {
  const candidates: GroupDetection['candidates'] = [];
  for (const [field, counts] of values) {
    const sizes = [...counts.values()].sort((a, b) => a - b);
    const having = sizes.reduce((a, b) => a + b, 0);
    const grouped = sizes.filter((s) => s >= 2).reduce((a, b) => a + b, 0);
    // Median group size over documents (a document's view of how big its group is).
    let acc = 0;
    let medianSize = 0;
    for (const s of sizes) {
      acc += s;
      if (acc >= having / 2) {
        medianSize = s;
        break;
      }
    }
    const coverage = docs ? having / docs : 0;
    const accepted =
      coverage >= 0.5 &&
      having > 0 &&
      grouped / having >= 0.5 &&
      medianSize >= 2 &&
      medianSize <= MAX_MEDIAN_GROUP &&
      counts.size >= Math.max(5, having / (MAX_MEDIAN_GROUP * 2));
    candidates.push({
      field,
      coverage: round(coverage),
      distinct: counts.size,
      grouped: round(having ? grouped / having : 0),
      medianSize,
      accepted,
    });
  }
  const ok = candidates
    .filter((c) => c.accepted)
    .sort((a, b) => b.coverage * b.grouped - a.coverage * a.grouped || b.distinct - a.distinct);
  const best = ok[0];
  return {
    field: best?.field ?? null,
    sampled: docs,
    candidates,
    reason: best
      ? `"${best.field}": ${best.distinct} values over ${Math.round(best.coverage * 100)}% of documents, ${Math.round(best.grouped * 100)}% of them share one with another document (median group ${best.medianSize})`
      : 'no metadata field names a source shared by a few documents each',
  };
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}
