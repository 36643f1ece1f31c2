import type { HnswParams } from './types.js';

// Messages between IndexManager (main thread) and hnsw-worker. Vectors and labels travel as typed
// arrays whose buffers are transferred, never as JSON or arrays of numbers: a 384-d query is one
// 1.5 KB buffer move instead of 384 structured-clone number copies.

export type WorkerRequest =
  | { op: 'create'; id: number; keyId: string; dim: number; params: HnswParams; capacity: number; tuning: ShardTuning }
  | { op: 'load'; id: number; keyId: string; dim: number; params: HnswParams; path: string; tuning: ShardTuning }
  | { op: 'add'; id: number; keyId: string; labels: Float64Array; vectors: Float32Array }
  | { op: 'delete'; id: number; keyId: string; labels: Float64Array }
  | { op: 'search'; id: number; items: SearchItem[]; vectors: Float32Array }
  | { op: 'snapshot'; id: number; keyId: string; path: string }
  | { op: 'drop'; id: number; keyId: string };

/**
 * What the manager sends: a request; `close` (finish the requests in flight, then end the thread); or `kill`
 * (end the thread as a crash would, but between native calls: IndexManager.killWorker).
 */
export type ToHnswWorker = WorkerRequest | { op: 'close' } | { op: 'kill' };

/** One query of a search batch; its vector is `vectors.subarray(offset, offset + dim)`. */
export interface SearchItem {
  keyId: string;
  offset: number;
  k: number;
  ef: number;
  allow: Float64Array | null;
}

export interface ShardTuning {
  /** Filters allowing at most this many live labels are answered by exact brute force. */
  bruteForceMaxLabels: number;
  /** ... or at most this fraction of the live elements. */
  bruteForceMaxFraction: number;
  /**
   * Larger filters first try an unfiltered search with ef up to this (ef / selectivity, the breadth the
   * filter path would explore) and keep the allowed hits; 0 always uses hnswlib's filter callback.
   */
  oversampleMaxK: number;
  /**
   * Keep the flat f32 copy of the vectors that exact filtered search scores from (4 × dim bytes a vector,
   * about as much as hnswlib's own vectors + graph). Off, exact scoring reads each vector back from hnswlib
   * (getPoint, 40-75 µs each), so brute force is limited to 512 labels. Default on.
   */
  vectorCopy?: boolean;
}

export interface ShardState {
  /** Live (not deleted) elements. */
  count: number;
  capacity: number;
}

export type WorkerResponse =
  | { id: number; ok: true; state?: ShardState }
  | {
      id: number;
      ok: true;
      /** Per item: number of hits, or -1 when that item failed (message in `errors`). */
      lengths: Int32Array;
      labels: Float64Array;
      scores: Float32Array;
      errors: Record<number, string>;
    }
  | { id: number; ok: false; error: { name: string; message: string } };

export type WorkerReady = { ready: true };
