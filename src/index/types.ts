// HNSW indexes, one per (collection, model version). Labels are chunk rowids from the store, so the
// label ↔ document map lives in the database and an index can always be rebuilt from it.
export interface HnswParams {
  M: number;
  efConstruction: number;
  efSearch: number;
}

export interface IndexKey {
  collectionId: number;
  modelVersion: string;
}

export interface Hit {
  label: number;
  /** Cosine similarity (vectors are normalized; inner-product space). */
  score: number;
}

export interface SearchOptions {
  efSearch?: number;
  /** Only these labels may be returned (metadata filter resolved by the store). */
  allow?: readonly number[];
}

export interface VectorIndex {
  readonly key: IndexKey;
  readonly dim: number;
  add(labels: readonly number[], vectors: readonly Float32Array[]): Promise<void>;
  markDeleted(labels: readonly number[]): Promise<void>;
  search(vector: Float32Array, k: number, opts?: SearchOptions): Promise<Hit[]>;
  /** Live (not deleted) element count. */
  count(): number;
  /** Write the index to `path` atomically (temp file + rename). */
  snapshot(path: string): Promise<void>;
  close(): Promise<void>;
}
