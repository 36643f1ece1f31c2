import { describe, expect, it } from 'vitest';
import { Bm25Index, bm25Tokenize } from '../../src/eval/bm25.js';

describe('Bm25Index', () => {
  const docs = [
    { id: 'd1', text: 'The mitochondrion is the powerhouse of the cell.' },
    { id: 'd2', text: 'DNA binding proteins regulate transcription of genes.' },
    { id: 'd3', text: 'Mitochondrial DNA is inherited from the mother; mitochondrial genome maintenance.' },
  ];
  const idx = new Bm25Index(docs);

  it('tokenizes to lower-cased alphanumeric tokens', () => {
    expect(bm25Tokenize("De-novo CTP, 'biosynthetic' 2x")).toEqual(['de', 'novo', 'ctp', 'biosynthetic', '2x']);
  });

  it('ranks by term overlap with idf and length normalisation', () => {
    const r = idx.search('mitochondrial genome', 10);
    expect(r[0]?.id).toBe('d3');
    expect(r.map((h) => h.id)).toEqual(['d3']);
    expect(
      idx
        .search('dna', 10)
        .map((h) => h.id)
        .sort(),
    ).toEqual(['d2', 'd3']);
  });

  it('matches a hand computation (k1 1.2, b 0.75, Lucene idf)', () => {
    const n = 3;
    const df = 1;
    const idf = Math.log(1 + (n - df + 0.5) / (df + 0.5));
    const lens = docs.map((d) => bm25Tokenize(d.text).length);
    const avg = lens.reduce((a, b) => a + b, 0) / n;
    const dl = lens[1] ?? 0;
    const expected = (idf * (1 * 2.2)) / (1 + 1.2 * (1 - 0.75 + (0.75 * dl) / avg));
    expect(idx.search('transcription', 1)[0]?.score).toBeCloseTo(expected, 12);
  });

  it('repeated searches are independent (scratch buffers reset)', () => {
    const a = idx.search('dna mitochondrion', 10);
    idx.search('genes', 10);
    expect(idx.search('dna mitochondrion', 10)).toEqual(a);
    expect(idx.search('zzz', 10)).toEqual([]);
  });
});
