// The one interface every embedding provider implements (LanceDB-style registry in ./registry.ts).
export type ModelSource = { kind: 'hub'; id: string } | { kind: 'dir'; path: string };

/** Which configuration variable chose the model; named in load errors so the operator knows what to change. */
type ModelOrigin = 'EMBED_MODEL' | 'MODEL_DIR' | 'default';

export interface ModelSpec {
  /** Stable version name stored with every vector and query-log row. */
  version: string;
  source: ModelSource;
  /** ONNX weights to load: 'fp32' → onnx/model.onnx, 'fp16' → onnx/model_fp16.onnx, 'q8' → onnx/model_quantized.onnx. */
  dtype: 'fp32' | 'fp16' | 'q8';
  /** Set by resolveModelSpec(); absent for specs built in code (errors then name both variables). */
  origin?: ModelOrigin;
}

/** Metrics hook: the server maps these onto prom-client histograms (src/embed never imports prom-client). */
export interface EmbedObserver {
  /** One ONNX batch finished: texts in it, worker-side ms (tokenize + run + pool), real (unpadded) tokens. */
  onBatch(size: number, ms: number, tokens?: number): void;
}

export interface EmbedderOptions {
  /** Where hub downloads are cached (DATA_DIR/models). */
  cacheDir: string;
  /** Number of worker threads running ONNX sessions. */
  workers: number;
  /** Max texts per ONNX batch. */
  maxBatch: number;
  /**
   * How long a partial batch waits for more texts while every worker is busy (an idle worker takes
   * whatever is queued at once, so a lone query never pays this wait).
   */
  maxWaitMs: number;
  /** Max texts waiting per priority lane; past it embed() rejects with AppError('overloaded'). */
  maxQueue: number;
  /** Tokens per text; longer texts are truncated by the tokenizer. */
  maxTokens?: number;
  /**
   * Make a text's vector independent of its batch-mates. Dynamically quantized (q8) weights compute
   * activation scales over the whole ONNX batch, so a vector shifts with whatever it was batched with
   * (~3e-3 max abs, cosine ≥ 0.9999 on models/base). When true, the worker runs each text as its own
   * ONNX batch (queueing and message batching are unchanged). Default: true for q8, false for fp32
   * (fp32 is batch-invariant to ~1e-6 already). On the 2-core box, q8 base costs ~330 texts/CPU-s
   * per-text vs ~255 at ONNX batch 32 and ~360 at batch 4–8, so it is not a throughput sacrifice.
   */
  reproducible?: boolean;
  /** ONNX intra-op threads per worker; default max(1, floor(cores / workers)). */
  intraOpThreads?: number;
  /**
   * Start only the first worker; each further one starts when texts are queued while no running worker is idle,
   * and then stays. An idle server holds one ONNX session (~65 MiB); concurrent load gets all of them.
   */
  lazy?: boolean;
  observer?: EmbedObserver;
}

/** 'query' (default) is served before 'bulk' (ingest, re-embed); each has its own maxQueue bound. */
export type EmbedPriority = 'query' | 'bulk';

export interface EmbedOptions {
  priority?: EmbedPriority;
  /**
   * What the texts are: search queries or indexed documents. Each gets the model's prompt for it, as
   * sentence-transformers' encode_query / encode_document do ("query"; "document", "passage" or "corpus").
   * Absent: plain encode() (the model's default_prompt_name, if any).
   */
  kind?: 'query' | 'document';
  /** One of the model's prompt names (config_sentence_transformers.json); wins over `kind`. */
  promptName?: string;
}

/** How the serving model embeds (from its sentence-transformers files): /v1/models and model cards show it. */
export interface ModelDescription {
  /** The directory the weights were loaded from (a hub model's cache snapshot). */
  dir: string;
  /** The ONNX file that serves, relative to dir. */
  file: string;
  dtype: ModelSpec['dtype'];
  pooling: string;
  /** The model itself ends with Normalize; the server L2-normalizes every vector regardless (cosine index). */
  normalize: boolean;
  includePrompt: boolean;
  maxTokens: number;
  prompts: Record<string, string>;
  defaultPromptName: string | null;
  /** Prompt names used for kind 'query' / 'document' (null: none). */
  queryPrompt: string | null;
  documentPrompt: string | null;
  configSource: string;
}
export interface Embedder {
  readonly version: string;
  readonly dim: number;
  /** Pooling, prompts, truncation and weights file of the model (providers that know them). */
  readonly model?: ModelDescription;
  /** L2-normalized embeddings (the model's own pooling and prompts), one per text, in order. */
  embed(texts: string[], options?: EmbedOptions): Promise<Float32Array[]>;
  /** Texts waiting in the batching queue (for backpressure and metrics). */
  queueDepth(): number;
  close(): Promise<void>;
}
