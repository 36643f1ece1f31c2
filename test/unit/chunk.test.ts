import { expect, test } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { reciprocalRankFusion } from '../../src/search/fusion.js';
import { chunkText } from '../../src/util/chunk.js';

test('short text is one chunk', () => {
  expect(chunkText('hello world', 100, 10)).toEqual(['hello world']);
});

test('chunks cover the text, respect the size, overlap, and break on spaces', () => {
  const words = Array.from({ length: 500 }, (_, i) => `word${i}`);
  const text = words.join(' ');
  const chunks = chunkText(text, 200, 50);
  expect(chunks.length).toBeGreaterThan(10);
  for (const c of chunks) {
    expect(c.length).toBeLessThanOrEqual(200);
    // No word is cut in half.
    for (const w of c.split(' ')) expect(w).toMatch(/^word\d+$/);
  }
  const seen = new Set(chunks.flatMap((c) => c.split(' ')));
  for (const w of words) expect(seen.has(w)).toBe(true);
  // Consecutive chunks share some words (overlap).
  for (let i = 1; i < chunks.length; i++) {
    const prev = new Set(chunks[i - 1]!.split(' '));
    expect(chunks[i]!.split(' ').some((w) => prev.has(w))).toBe(true);
  }
});

test('text without spaces is still split', () => {
  const chunks = chunkText('x'.repeat(1000), 300, 0);
  expect(chunks.join('')).toBe('x'.repeat(1000));
});

test('reciprocal-rank fusion rewards agreement', () => {
  const fused = reciprocalRankFusion([
    [
      { key: 1, score: 9 },
      { key: 2, score: 8 },
    ],
    [
      { key: 2, score: 5 },
      { key: 3, score: 4 },
    ],
  ]).map((h) => ({ label: h.key, score: h.score }));
  expect(fused.map((h) => h.label)).toEqual([2, 1, 3]);
  expect(fused[0]!.score).toBeCloseTo(1 / 62 + 1 / 61, 10);
});

test('config: defaults, coercion and one-line errors', () => {
  const c = loadConfig({ PORT: '9000', AUTO_RETRAIN: 'false' });
  expect(c.PORT).toBe(9000);
  expect(c.AUTO_RETRAIN).toBe(false);
  expect(c.MAX_K).toBe(1000);
  expect(() => loadConfig({ PORT: 'abc' })).toThrow(/invalid configuration: PORT/);
  expect(() => loadConfig({ CHUNK_SIZE: '100', CHUNK_OVERLAP: '100' })).toThrow(/CHUNK_OVERLAP/);
});
