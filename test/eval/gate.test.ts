import { describe, expect, it } from 'vitest';
import { decideGate } from '../../src/eval/gate.js';

const champ = { 'ndcg@10': 0.5, 'recall@1': 0.3, 'recall@5': 0.6, 'recall@10': 0.7, 'mrr@10': 0.45, 'map@100': 0.4 };

describe('decideGate', () => {
  it('passes when NDCG@10 rises by >= margin and nothing guarded drops', () => {
    const d = decideGate({ ...champ, 'ndcg@10': 0.52, 'recall@10': 0.71 }, champ);
    expect(d.pass).toBe(true);
    expect(d.passed).toBe(true);
    expect(d.deltas['ndcg@10']).toBeCloseTo(0.02, 12);
    expect(d.deltas['recall@10']).toBeCloseTo(0.01, 12);
    expect(d.margin).toBe(0.01);
    expect(d.tolerance).toBe(0.005);
    expect(d.candidate['ndcg@10']).toBe(0.52);
    expect(d.champion['ndcg@10']).toBe(0.5);
    expect(d.reasons.join('\n')).toMatch(/ndcg@10 \+0\.0200 >= margin/);
  });

  it('exactly the margin passes (float noise tolerated)', () => {
    expect(decideGate({ ...champ, 'ndcg@10': 0.51 }, champ).pass).toBe(true);
  });

  it('rejects when the NDCG@10 gain is below the margin', () => {
    const d = decideGate({ ...champ, 'ndcg@10': 0.505 }, champ);
    expect(d.pass).toBe(false);
    expect(d.reasons.some((r) => r.includes('< margin'))).toBe(true);
  });

  it('rejects when a guarded metric drops by more than the tolerance', () => {
    for (const k of ['recall@1', 'recall@5', 'recall@10', 'mrr@10'] as const) {
      const d = decideGate({ ...champ, 'ndcg@10': 0.6, [k]: champ[k] - 0.0051 }, champ);
      expect(d.pass, k).toBe(false);
      expect(
        d.reasons.some((r) => r.startsWith(`${k} dropped`)),
        k,
      ).toBe(true);
    }
  });

  it('allows guarded drops within the tolerance and ignores unguarded metrics', () => {
    const d = decideGate({ ...champ, 'ndcg@10': 0.6, 'recall@1': 0.296, 'map@100': 0.1 }, champ);
    expect(d.pass).toBe(true);
  });

  it('custom margin / tolerance', () => {
    expect(decideGate({ ...champ, 'ndcg@10': 0.52 }, champ, { margin: 0.05 }).pass).toBe(false);
    expect(decideGate({ ...champ, 'ndcg@10': 0.52, 'recall@1': 0.28 }, champ, { tolerance: 0.05 }).pass).toBe(true);
    expect(() => decideGate(champ, champ, { margin: -1 })).toThrow(RangeError);
  });

  it('rejects when a required metric is missing or NaN', () => {
    const { 'mrr@10': _omit, ...noMrr } = champ;
    expect(decideGate({ ...noMrr, 'ndcg@10': 0.9 }, champ).pass).toBe(false);
    expect(decideGate({ ...champ, 'ndcg@10': Number.NaN }, champ).pass).toBe(false);
  });

  it('identical models are rejected (no gain)', () => {
    expect(decideGate(champ, champ).pass).toBe(false);
  });
});
