// Drift statistics on synthetic vectors: same distribution → no signal; a shifted one → a clear signal.
import { describe, expect, it } from 'vitest';
import {
  centroidCosineDistance,
  domainClassifierAuc,
  kolmogorovQ,
  ksTwoSample,
  mmdPermutationTest,
  rocAuc,
  seededRandom,
} from '../../src/monitor/stats.js';

function gaussian(rand: () => number): number {
  // Box–Muller.
  const u = Math.max(rand(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
}

/** n unit vectors around `center` (dim d) with isotropic noise `spread`. */
function cloud(n: number, center: number[], spread: number, seed: number): Float32Array[] {
  const rand = seededRandom(seed);
  return Array.from({ length: n }, () => {
    const v = Float32Array.from(center, (c) => c + spread * gaussian(rand));
    const norm = Math.hypot(...v);
    return v.map((x) => x / norm);
  });
}

const D = 32;
const centerA = Array.from({ length: D }, (_, i) => (i < 4 ? 1 : 0));
const centerB = Array.from({ length: D }, (_, i) => (i >= 2 && i < 6 ? 1 : 0));

describe('rocAuc', () => {
  it('is 1 for perfect separation, 0.5 for ties, and counts ties as ½', () => {
    expect(rocAuc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1])).toBe(1);
    expect(rocAuc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1])).toBe(0);
    expect(rocAuc([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1])).toBe(0.5);
    // Positives {0.5, 0.9} vs negatives {0.1, 0.5}: 3 wins + 1 tie over 4 pairs = 0.875.
    expect(rocAuc([0.1, 0.5, 0.5, 0.9], [0, 0, 1, 1])).toBeCloseTo(0.875, 10);
  });
});

describe('two-sample KS', () => {
  it('matches hand-computed D and the Kolmogorov tail', () => {
    const r = ksTwoSample([1, 2, 3, 4], [3, 4, 5, 6]);
    expect(r.statistic).toBeCloseTo(0.5, 10);
    expect(kolmogorovQ(0)).toBe(1);
    // Q(1.36) ≈ 0.049 (the classic 5 % critical value).
    expect(kolmogorovQ(1.36)).toBeCloseTo(0.0494, 3);
  });

  it('finds no shift between samples of one distribution and a clear one after a shift', () => {
    const rand = seededRandom(3);
    const a = Array.from({ length: 400 }, () => gaussian(rand));
    const b = Array.from({ length: 400 }, () => gaussian(rand));
    const c = Array.from({ length: 400 }, () => gaussian(rand) + 0.5);
    expect(ksTwoSample(a, b).pValue).toBeGreaterThan(0.05);
    const shifted = ksTwoSample(a, c);
    expect(shifted.statistic).toBeGreaterThan(0.15);
    expect(shifted.pValue).toBeLessThan(1e-4);
  });
});

describe('embedding drift', () => {
  const ref = cloud(200, centerA, 0.6, 1);
  const same = cloud(200, centerA, 0.6, 2);
  const shifted = cloud(200, centerB, 0.6, 3);

  it('centroid distance is ~0 for the same distribution and large after a shift', () => {
    expect(centroidCosineDistance(ref, same)).toBeLessThan(0.02);
    expect(centroidCosineDistance(ref, shifted)).toBeGreaterThan(0.2);
  });

  it('domain-classifier AUC is ≈0.5 without drift and near 1 with drift', () => {
    const none = domainClassifierAuc(ref, same, { seed: 5 });
    const drift = domainClassifierAuc(ref, shifted, { seed: 5 });
    expect(Math.abs(none - 0.5)).toBeLessThan(0.1);
    expect(drift).toBeGreaterThan(0.9);
  });

  it('MMD permutation p-value is large without drift and minimal with drift', () => {
    const none = mmdPermutationTest(ref.slice(0, 120), same.slice(0, 120), { permutations: 100, seed: 1 });
    const drift = mmdPermutationTest(ref.slice(0, 120), shifted.slice(0, 120), { permutations: 100, seed: 1 });
    expect(none.pValue).toBeGreaterThan(0.05);
    expect(drift.pValue).toBeCloseTo(1 / 101, 10);
    expect(drift.mmd2).toBeGreaterThan(none.mmd2);
    expect(drift.sigma).toBeGreaterThan(0);
  });
});
