// How many chunks a vector search asks the index for. Chunks of one document compete for the k slots, so a
// search must fetch more than k chunks when documents have several; the fixed allowance (3k + 10) costs an
// index search with a deeper candidate list than asked for — at k = 10 and efSearch 24, 40 candidates instead
// of 24, about twice the distance computations — on every query of a collection whose documents are one chunk
// each. The planner learns, per collection, how many ranked chunks a query read to fill its k documents and
// asks for about that many; a query that comes back short is searched again at the full allowance, so a low
// estimate costs a second search, never a missing result.

/** Learned depth per collection; the engine owns one, for the process's lifetime. */
export class DepthPlanner {
  private readonly perDoc = new Map<number, number>();

  /** At most `maxCollections` collections are remembered (the oldest are forgotten). */
  constructor(private readonly opts: { maxCollections: number } = { maxCollections: 10_000 }) {}

  /**
   * The depth to ask the index for `k` documents: `full` until the collection has been observed, then
   * k × (chunks read per document, smoothed) with 20 % and two chunks of slack, never above `full`.
   */
  depth(collectionId: number, k: number, full: number): number {
    const r = this.perDoc.get(collectionId);
    if (r === undefined) return full;
    return Math.min(full, Math.ceil(k * r * 1.2) + 2);
  }

  /** A finished query: it read `examined` ranked chunks to fill `docs` documents. */
  observe(collectionId: number, examined: number, docs: number): void {
    if (docs === 0) return;
    const ratio = Math.max(1, examined / docs);
    const prev = this.perDoc.get(collectionId);
    if (prev === undefined && this.perDoc.size >= this.opts.maxCollections) {
      const oldest = this.perDoc.keys().next().value;
      if (oldest !== undefined) this.perDoc.delete(oldest);
    }
    // Exponential smoothing: one query with many chunks of one document moves the estimate a little.
    this.perDoc.set(collectionId, prev === undefined ? ratio : prev + 0.1 * (ratio - prev));
  }
}
