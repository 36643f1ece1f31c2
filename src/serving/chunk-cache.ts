import type { DocumentStore, HydratedChunk } from '../store/types.js';

// Hydration on the search path without a store round trip for chunks already seen. A label names one
// chunk row for its whole life: an upsert tombstones the old rows and inserts new ones under new labels,
// and labels are never reused, so a cached (docId, n, text, metadata) never goes stale — a label only
// dies. The engine forgets labels as writes tombstone them (before the index drops them), so a search
// that raced a write misses here and the store's liveness check drops the hit as before.
// Bounded by an estimate of the bytes held; least recently used entries go first.
export class ChunkCache {
  private readonly entries = new Map<number, { chunk: HydratedChunk; bytes: number }>();
  private bytes = 0;

  constructor(private readonly maxBytes: number) {}

  get size(): number {
    return this.entries.size;
  }

  /** `store.hydrate(labels)`, answered from memory where possible; only the misses go to the store. */
  async hydrate(store: DocumentStore, labels: readonly number[]): Promise<Map<number, HydratedChunk>> {
    const out = new Map<number, HydratedChunk>();
    let misses: number[] | undefined;
    for (const label of labels) {
      const e = this.entries.get(label);
      if (e) {
        // Re-insert: a Map iterates in insertion order, so the front is the least recently used.
        this.entries.delete(label);
        this.entries.set(label, e);
        out.set(label, e.chunk);
      } else {
        (misses ??= []).push(label);
      }
    }
    if (!misses) return out;
    const rows = await store.hydrate(misses);
    for (const label of misses) {
      const ch = rows.get(label);
      if (!ch) continue;
      out.set(label, ch);
      this.put(ch);
    }
    return out;
  }

  private put(ch: HydratedChunk): void {
    if (this.maxBytes <= 0 || this.entries.has(ch.label)) return;
    // UTF-16 string sizes plus a flat allowance for the objects and the map entry.
    const bytes = 2 * (ch.text.length + ch.docId.length) + 2 * JSON.stringify(ch.metadata).length + 200;
    this.entries.set(ch.label, { chunk: ch, bytes });
    this.bytes += bytes;
    for (const [label, e] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.entries.delete(label);
      this.bytes -= e.bytes;
    }
  }

  /** Labels tombstoned by a write: never answered from memory again. */
  forget(labels: readonly number[]): void {
    for (const label of labels) {
      const e = this.entries.get(label);
      if (!e) continue;
      this.entries.delete(label);
      this.bytes -= e.bytes;
    }
  }

  clear(): void {
    this.entries.clear();
    this.bytes = 0;
  }
}
