// HNSW indexes, one per (collection, model version). Labels are chunk rowids from the store, so the
// label ↔ document map lives in the database and an index can always be rebuilt from it. Two backends
// implement IndexBackend: hnswlib in worker threads (manager.ts, in memory, snapshots to files) and pgvector
// (pgvector.ts, tables in the Postgres store, shared by every replica).
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
  /** Write the index to `path` atomically (temp file + rename); a no-op for a persistent backend. */
  snapshot(path: string): Promise<void>;
  close(): Promise<void>;
  /**
   * Persistent backends: of `labels`, those the index holds no vector for (others may have written them
   * already), refreshing count() from the shared index.
   */
  absent?(labels: readonly number[]): Promise<number[]>;
  /**
   * Persistent backends: removes vectors of chunks no longer live in the store and returns the live labels
   * that have no vector yet, for the caller to embed.
   */
  reconcile?(): Promise<number[]>;
  /** Persistent backends: the bulk load of a fresh index is done; build its search structure now. */
  seal?(): Promise<void>;
}

export interface IndexBackend {
  readonly kind: 'hnswlib' | 'pgvector';
  /**
   * true: indexes live in the database, survive restarts and are shared by replicas (open() finds them;
   * no snapshots). false: indexes live in this process (snapshots and replay restore them).
   */
  readonly persistent: boolean;
  /** A new, empty index (a persistent backend replaces one stored under the key). */
  create(key: IndexKey, dim: number, params: HnswParams, capacity?: number): Promise<VectorIndex>;
  /** A snapshot file written by snapshot() (in-memory backends). */
  load(key: IndexKey, dim: number, params: HnswParams, path: string): Promise<VectorIndex>;
  /** The index stored under `key` (persistent backends); undefined when there is none. */
  open(key: IndexKey, dim: number, params: HnswParams): Promise<VectorIndex | undefined>;
  /** Persistent backends: `idx`, built under another key, atomically becomes the index of `key`. */
  rename?(idx: VectorIndex, key: IndexKey): Promise<VectorIndex>;
  get(key: IndexKey): VectorIndex | undefined;
  keys(): IndexKey[];
  /** Frees the index (a persistent backend deletes its vectors). Unknown keys are a no-op. */
  drop(key: IndexKey): Promise<void>;
  ready(): Promise<void>;
  /** Lets go of every index held by this process. */
  close(): Promise<void>;
}
