// Messages between the pool (main thread) and an embed worker. Kept in one place so both sides are
// type-checked against the same shapes; structured clone carries them, Float32Array buffers are transferred.
import type { StConfig } from './st.js';
import type { ModelSpec } from './types.js';

export interface WorkerInit {
  spec: ModelSpec;
  /** The local model directory (a hub model's cache snapshot): workers never download. Default: a dir spec's path. */
  dir?: string;
  /** Its sentence-transformers configuration (pooling, prompts, …), read once on the main thread. Default: read from dir. */
  st?: StConfig;
  cacheDir: string;
  maxTokens?: number;
  intraOpThreads: number;
  /** Run every text as its own ONNX batch (see EmbedderOptions.reproducible). */
  perTextRuns: boolean;
}

/**
 * `prompts[i]` indexes Object.keys(st.prompts) for texts[i] (-1: none); absent when no text has a prompt.
 * The worker prepends the prompt text (and leaves its tokens out of the pooling when include_prompt is false).
 * `close`: finish the batches already sent, release the ONNX session and end the thread.
 * `kill`: end the thread at once, as a crash would, but between native calls (EmbedPool.terminateWorker).
 */
export type ToWorker = { type: 'embed'; id: number; texts: string[]; prompts?: number[] } | { type: 'close' } | { type: 'kill' };

/** Why a model failed to load; the registry turns it into a one-line ModelLoadError. */
export type LoadFailure = 'not_found' | 'unreachable' | 'invalid';

export type FromWorker =
  | { type: 'ready'; dim: number; maxTokens: number }
  | { type: 'load-error'; reason: LoadFailure; message: string }
  | { type: 'result'; id: number; dim: number; data: Float32Array; tokens: number; ms: number }
  | { type: 'error'; id: number; message: string };
