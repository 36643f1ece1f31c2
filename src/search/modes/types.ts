import type { Collection, HydratedChunk, Scalar } from '../../store/types.js';
import type { ServedMode, Strategy } from '../strategy.js';

/** One chunk of a ranking: its label (the chunk row id, also its HNSW label) and the mode's score. */
export interface Ranked {
  label: number;
  score: number;
}

type Filter = Record<string, Scalar>;

/**
 * What the search modes use of the serving engine, bound to the one serving pair (model + indexes) a request
 * started with, so a cut-over mid-request never mixes two models' vectors. The modes see nothing else of it.
 */
export interface Retrieval {
  /** The serving model: a given query vector must have its dimension. */
  readonly model: { version: string; dim: number };
  /** The text embedded by the serving model as a query (unit length); `bulk` keeps measurement off the query lane. */
  embedQuery(text: string, priority?: 'bulk'): Promise<Float32Array>;
  /** Nearest chunks in the collection's serving index, within `filter`'s chunks when given. */
  vectorSearch(c: Collection, vector: Float32Array, depth: number, opts?: { efSearch?: number; filter?: Filter }): Promise<Ranked[]>;
  /** BM25 over the collection's chunks (the store's keyword index), within `filter`'s chunks when given. */
  keywordSearch(c: Collection, query: string, depth: number, filter?: Filter): Promise<Ranked[]>;
  /** Chunks (text, document id, metadata) by label; labels tombstoned since the ranking are missing. */
  hydrate(labels: number[]): Promise<Map<number, HydratedChunk>>;
  /** The collection's measured strategy for the serving model; undefined until measured. */
  strategy(c: Collection): Strategy | undefined;
}

/** One query as every mode sees it: `depth` candidates are asked for (chunks of one document compete). */
export interface ModeQuery {
  collection: Collection;
  query?: string;
  vector?: ArrayLike<number>;
  depth: number;
  efSearch?: number;
  filter?: Filter;
}

/** A mode's answer: the mode that served (for `auto`, the collection's strategy), its fusion weight, the ranking. */
export interface Served {
  mode: ServedMode;
  weight?: number;
  hits: Ranked[];
  /** Hits to rank below `hits` when hydrating them yields fewer than k documents (called at most once). */
  more?: () => Promise<Ranked[]>;
}
