import { AppError } from '../errors.js';
import type { Collection, CollectionStore } from '../store/types.js';

/**
 * Collections by name. Every request that names a collection looks it up and collections change rarely, so
 * rows are cached: this process's deletes forget theirs, and replicas on Postgres reset the cache from what
 * `Engine.follow()` found live.
 */
export class CollectionCatalog {
  private readonly byName = new Map<string, Collection>();

  constructor(private readonly store: Pick<CollectionStore, 'getCollection'>) {}

  /** The collection called `name`; AppError collection_not_found when there is none. */
  async require(name: string): Promise<Collection> {
    const hit = this.byName.get(name);
    if (hit) return hit;
    const c = await this.store.getCollection(name);
    if (!c) throw new AppError('collection_not_found', `collection "${name}" does not exist`);
    this.byName.set(name, c);
    return c;
  }

  forget(name: string): void {
    this.byName.delete(name);
  }

  /** Replaces the cache with the collections live in the store. */
  reset(live: readonly Collection[]): void {
    this.byName.clear();
    for (const c of live) this.byName.set(c.name, c);
  }
}
