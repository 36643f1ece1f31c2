// Messages between the pool (main thread) and an embed worker. Kept in one place so both sides are
// type-checked against the same shapes; structured clone carries them, Float32Array buffers are transferred.
import type { ModelSpec } from './types.js';

export interface WorkerInit {
  spec: ModelSpec;
  cacheDir: string;
  maxTokens?: number;
  intraOpThreads: number;
  /** Run every text as its own ONNX batch (see EmbedderOptions.reproducible). */
  perTextRuns: boolean;
}

export type ToWorker = { type: 'embed'; id: number; texts: string[] };

/** Why a model failed to load; the registry turns it into a one-line ModelLoadError. */
export type LoadFailure = 'not_found' | 'unreachable' | 'invalid';

export type FromWorker =
  | { type: 'ready'; dim: number; maxTokens: number }
  | { type: 'load-error'; reason: LoadFailure; message: string }
  | { type: 'result'; id: number; dim: number; data: Float32Array; tokens: number; ms: number }
  | { type: 'error'; id: number; message: string };
