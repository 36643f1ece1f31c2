import { describe, expect, it } from 'vitest';

import { LabelSlots } from '../../src/index/label-slots.js';

describe('LabelSlots', () => {
  it('agrees with a Map for dense, decreasing, far-off and repeated labels', () => {
    const slots = new LabelSlots();
    const ref = new Map<number, number>();
    const put = (label: number) => {
      const slot = ref.get(label) ?? ref.size;
      ref.set(label, slot);
      slots.set(label, slot);
    };
    // A collection created late: rowids start high, mostly increase, with stragglers below the base,
    // far-off outliers, and re-upserts of existing labels.
    for (let l = 10_000_000; l < 10_050_000; l += 1 + (l % 3)) put(l);
    for (const l of [5, 9_999_999, 2 ** 32 - 1, 10_000_000, 10_000_003, 123_456_789]) put(l);
    for (let l = 10_049_000; l < 10_060_000; l++) put(l);
    for (let l = 20_000_000; l < 20_200_000; l += 7) put(l);
    expect(slots.size).toBe(ref.size);
    for (const [l, s] of ref) expect(slots.get(l)).toBe(s);
    for (const l of [0, 4, 6, 10_000_001, 10_060_000, 2 ** 31]) {
      expect(slots.has(l)).toBe(ref.has(l));
    }
  });

  it('keeps labels that overflowed to the Map findable after the window grows over them', () => {
    // Stride 5 from the first label: the window (≤ 8 entries per label) lags behind, parks labels in
    // the Map, then grows over them.
    const slots = new LabelSlots();
    const labels = Array.from({ length: 5000 }, (_, i) => 7 + i * 5);
    labels.forEach((l, i) => slots.set(l, i));
    labels.forEach((l, i) => expect(slots.get(l)).toBe(i));
    expect(slots.size).toBe(5000);
    expect(slots.has(8)).toBe(false);
  });
});
