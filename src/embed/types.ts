// The one interface every embedding provider implements (LanceDB-style registry in ./registry.ts).
export type ModelSource = { kind: 'hub'; id: string } | { kind: 'dir'; path: string };

export interface ModelSpec {
  /** Stable version name stored with every vector and query-log row. */
  version: string;
  source: ModelSource;
  /** ONNX weights to load: 'fp32' → onnx/model.onnx, 'q8' → onnx/model_quantized.onnx. */
  dtype: 'fp32' | 'q8';
}

export interface EmbedderOptions {
  /** Where hub downloads are cached (DATA_DIR/models). */
  cacheDir: string;
  /** Number of worker threads running ONNX sessions. */
  workers: number;
  /** Max texts per ONNX batch. */
  maxBatch: number;
  /** How long the batching queue waits for more texts before running a partial batch. */
  maxWaitMs: number;
  /** Max texts waiting in the queue; past it embed() rejects with AppError('overloaded'). */
  maxQueue: number;
  /** Tokens per text; longer texts are truncated by the tokenizer. */
  maxTokens?: number;
}

export interface Embedder {
  readonly version: string;
  readonly dim: number;
  /** L2-normalized mean-pooled embeddings, one per text, in order. */
  embed(texts: string[]): Promise<Float32Array[]>;
  /** Texts waiting in the batching queue (for backpressure and metrics). */
  queueDepth(): number;
  close(): Promise<void>;
}
