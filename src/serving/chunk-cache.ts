import { LRUCache } from 'lru-cache';
import type { DocumentStore, HydratedChunk } from '../store/types.js';

// Hydration on the search path without a store round trip for chunks already seen. A label names one
// chunk row for its whole life: an upsert tombstones the old rows and inserts new ones under new labels,
// and labels are never reused, so a cached (docId, n, text, metadata) never goes stale — a label only
// dies. The engine forgets labels as writes tombstone them (before the index drops them), so a search
// that raced a write misses here and the store's liveness check drops the hit as before.
// Bounded by an estimate of the bytes held; least recently used entries go first (lru-cache's maxSize).
export class ChunkCache {
  // undefined when caching is off (lru-cache refuses a maxSize of 0).
  private readonly entries: LRUCache<number, HydratedChunk> | undefined;

  constructor(maxBytes: number) {
    this.entries =
      maxBytes > 0
        ? new LRUCache<number, HydratedChunk>({
            maxSize: maxBytes,
            // UTF-16 string sizes plus a flat allowance for the objects and the map entry.
            sizeCalculation: (ch) => 2 * (ch.text.length + ch.docId.length) + 2 * JSON.stringify(ch.metadata).length + 200,
          })
        : undefined;
  }

  get size(): number {
    return this.entries?.size ?? 0;
  }

  /** `store.hydrate(labels)`, answered from memory where possible; only the misses go to the store. */
  async hydrate(store: DocumentStore, labels: readonly number[]): Promise<Map<number, HydratedChunk>> {
    const out = new Map<number, HydratedChunk>();
    let misses: number[] | undefined;
    for (const label of labels) {
      const hit = this.entries?.get(label);
      if (hit) out.set(label, hit);
      else (misses ??= []).push(label);
    }
    if (!misses) return out;
    const rows = await store.hydrate(misses);
    for (const label of misses) {
      const ch = rows.get(label);
      if (!ch) continue;
      out.set(label, ch);
      this.entries?.set(label, ch);
    }
    return out;
  }

  /** Labels tombstoned by a write: never answered from memory again. */
  forget(labels: readonly number[]): void {
    for (const label of labels) this.entries?.delete(label);
  }

  clear(): void {
    this.entries?.clear();
  }
}
