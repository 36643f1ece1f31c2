// BM25 baseline for reports (pure TS, in memory): k1 1.2, b 0.75, lower-cased ASCII alphanumeric tokens ([a-z0-9]+),
// Lucene's idf = ln(1 + (N - df + 0.5) / (df + 0.5)). Query terms count once per occurrence.

import type { RankedHit } from './metrics.js';

export interface Bm25Options {
  k1?: number;
  b?: number;
}

const TOKEN_RE = /[a-z0-9]+/g;

export function bm25Tokenize(text: string): string[] {
  return text.toLowerCase().match(TOKEN_RE) ?? [];
}

export class Bm25Index {
  readonly k1: number;
  readonly b: number;
  private readonly ids: string[] = [];
  private readonly docLen: number[] = [];
  private readonly postings = new Map<string, { doc: number[]; tf: number[] }>();
  private avgdl = 0;
  private acc = new Float64Array(0);
  private touchedMark = new Uint8Array(0);

  constructor(docs: Iterable<{ id: string; text: string }>, opts: Bm25Options = {}) {
    this.k1 = opts.k1 ?? 1.2;
    this.b = opts.b ?? 0.75;
    let total = 0;
    for (const d of docs) {
      const n = this.ids.length;
      this.ids.push(d.id);
      const toks = bm25Tokenize(d.text);
      this.docLen.push(toks.length);
      total += toks.length;
      const tf = new Map<string, number>();
      for (const t of toks) tf.set(t, (tf.get(t) ?? 0) + 1);
      for (const [t, c] of tf) {
        let p = this.postings.get(t);
        if (!p) {
          p = { doc: [], tf: [] };
          this.postings.set(t, p);
        }
        p.doc.push(n);
        p.tf.push(c);
      }
    }
    this.avgdl = this.ids.length ? total / this.ids.length : 0;
  }

  get size(): number {
    return this.ids.length;
  }

  idf(term: string): number {
    const df = this.postings.get(term)?.doc.length ?? 0;
    const n = this.ids.length;
    return Math.log(1 + (n - df + 0.5) / (df + 0.5));
  }

  /** Top-k documents by BM25 score (documents sharing no term with the query are not returned). */
  search(query: string, k = 100): RankedHit[] {
    const n = this.ids.length;
    if (this.acc.length !== n) {
      this.acc = new Float64Array(n);
      this.touchedMark = new Uint8Array(n);
    }
    const acc = this.acc;
    const mark = this.touchedMark;
    const touched: number[] = [];
    for (const t of bm25Tokenize(query)) {
      const p = this.postings.get(t);
      if (!p) continue;
      const idf = this.idf(t);
      for (let i = 0; i < p.doc.length; i++) {
        const d = p.doc[i] ?? 0;
        const f = p.tf[i] ?? 0;
        const dl = this.docLen[d] ?? 0;
        acc[d] = (acc[d] ?? 0) + (idf * (f * (this.k1 + 1))) / (f + this.k1 * (1 - this.b + (this.b * dl) / (this.avgdl || 1)));
        if (mark[d] === 0) {
          mark[d] = 1;
          touched.push(d);
        }
      }
    }
    // keep only the top k (sorted by score desc, id asc) without sorting every touched document
    const better = (a: RankedHit, b: RankedHit): boolean => a.score > b.score || (a.score === b.score && a.id < b.id);
    const top: RankedHit[] = [];
    for (const d of touched) {
      const h: RankedHit = { id: this.ids[d] ?? '', score: acc[d] ?? 0 };
      acc[d] = 0;
      mark[d] = 0;
      if (k <= 0) continue;
      const last = top[top.length - 1];
      if (top.length >= k && last !== undefined && !better(h, last)) continue;
      let lo = 0;
      let hi = top.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        const m = top[mid];
        if (m !== undefined && better(m, h)) lo = mid + 1;
        else hi = mid;
      }
      top.splice(lo, 0, h);
      if (top.length > k) top.pop();
    }
    return top;
  }
}
