// label → slot map for a shard. Filtered searches look up every allowed label per query, and a
// Map<number, number> costs ~100 ns a lookup (5 ms for a 50k-label filter). Chunk rowids are dense
// and mostly increasing within a collection, so a typed array over a window [base, base + length)
// answers almost all lookups; labels outside the window (older or far-off rowids) go to a Map.
const MIN_WINDOW = 1 << 12;

export class LabelSlots {
  private base = -1;
  /** slot + 1 per label in the window; 0 = absent (so growth needs no fill). */
  private dense = new Int32Array(0);
  private readonly sparse = new Map<number, number>();
  private count = 0;

  get size(): number {
    return this.count;
  }

  get(label: number): number | undefined {
    const i = label - this.base;
    if (i >= 0 && i < this.dense.length) {
      const v = this.dense[i] as number;
      return v === 0 ? undefined : v - 1;
    }
    return this.sparse.get(label);
  }

  has(label: number): boolean {
    return this.get(label) !== undefined;
  }

  set(label: number, slot: number): void {
    if (this.base < 0) this.base = label;
    let i = label - this.base;
    // Grow the window to cover the label if that keeps it at most ~8 entries per stored label.
    if (i >= this.dense.length && i >= 0) {
      const want = Math.max(MIN_WINDOW, 2 ** Math.ceil(Math.log2(i + 1)));
      if (want <= Math.max(MIN_WINDOW, 8 * (this.count + 1))) {
        const next = new Int32Array(want);
        next.set(this.dense);
        this.dense = next;
        // Labels that overflowed into the Map before this growth now belong to the window; a zero
        // in the window must mean "absent", so move them over.
        for (const [l, s] of this.sparse) {
          const j = l - this.base;
          if (j >= 0 && j < want) {
            next[j] = s + 1;
            this.sparse.delete(l);
          }
        }
      }
    }
    i = label - this.base;
    if (i >= 0 && i < this.dense.length) {
      if (this.dense[i] === 0 && !this.sparse.has(label)) this.count++;
      this.dense[i] = slot + 1;
      return;
    }
    if (!this.sparse.has(label)) this.count++;
    this.sparse.set(label, slot);
  }

  delete(label: number): boolean {
    const i = label - this.base;
    if (i >= 0 && i < this.dense.length && this.dense[i] !== 0) {
      this.dense[i] = 0;
      this.count--;
      return true;
    }
    if (this.sparse.delete(label)) {
      this.count--;
      return true;
    }
    return false;
  }
}
