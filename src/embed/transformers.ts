// transformers.js provider, worker side: one tokenizer + one ONNX session per worker thread.
//
// We load with AutoTokenizer/AutoModel and do the feature-extraction steps ourselves instead of calling
// pipeline('feature-extraction'): the pipeline always truncates at the tokenizer's model_max_length and
// has no max_length option, so it cannot honour maxTokens. Mean pooling is done here in one row-major
// pass that skips padding; transformers.js's mean_pooling walks the tensor column-wise over every padded
// position: ~50 ms vs ~5 ms per [32 × 256 × 384] batch on the 2-core dev box (measured under load).
import { basename, dirname, resolve } from 'node:path';
import {
  AutoModel,
  AutoTokenizer,
  env,
  LogLevel,
  ModelFileNotFoundError,
  type PreTrainedModel,
  type PreTrainedTokenizer,
  type PretrainedModelOptions,
  type Tensor,
} from '@huggingface/transformers';
import type { LoadFailure, WorkerInit } from './protocol.js';

export interface EncodedBatch {
  /** Row-major [texts × dim], every row L2-normalized. */
  data: Float32Array;
  dim: number;
  /** Real (unpadded) tokens in the batch, for metrics. */
  tokens: number;
}

export class ModelLoadFailure extends Error {
  constructor(
    readonly reason: LoadFailure,
    message: string,
  ) {
    super(message);
    this.name = 'ModelLoadFailure';
  }
}

export type SessionOptions = NonNullable<PretrainedModelOptions['session_options']>;

/** Session options for throughput on CPU; exported so the bench's bare loop runs the same settings. */
export function cpuSessionOptions(intraOpThreads: number): SessionOptions {
  return {
    // Each worker owns `intraOpThreads` cores; more threads than cores per worker only adds contention.
    intraOpNumThreads: intraOpThreads,
    // BERT-style encoders are one chain of ops; a parallel executor only adds scheduling overhead.
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    enableCpuMemArena: true,
    enableMemPattern: true,
    // ORT's pool threads busy-wait between ops by default. The cores are shared (HTTP thread, index
    // workers, other embed workers, tokenization on this worker's own JS thread), and there spinning
    // threads starve the real work: 2 threads on the 2-core box ran 527 texts/s spinning vs 1791 not.
    extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
  };
}

/** Points the process-global transformers.js env at the model; returns the id to pass to from_pretrained. */
function configureEnv(init: WorkerInit): { modelId: string; localOnly: boolean } {
  env.logLevel = LogLevel.ERROR;
  const { source } = init.spec;
  if (source.kind === 'dir') {
    const dir = resolve(source.path);
    env.allowLocalModels = true;
    env.allowRemoteModels = false;
    // transformers.js resolves local models as localModelPath/<id>/<file>.
    env.localModelPath = dirname(dir) + '/';
    // transformers.js only prefixes localModelPath to names that pass its hub-id check (no spaces, no
    // "--" or "..", ≤ 96 chars); any other name is used as a path as-is, so hand it the absolute path.
    const name = basename(dir);
    return { modelId: looksLikeHubName(name) ? name : dir, localOnly: true };
  }
  // A hub id must never be shadowed by a same-named folder under the library's default localModelPath.
  env.allowLocalModels = false;
  env.allowRemoteModels = true;
  env.useFSCache = true;
  env.cacheDir = init.cacheDir;
  return { modelId: source.id, localOnly: false };
}

/** Mirrors transformers.js's isValidHfModelId for a single path segment. */
function looksLikeHubName(name: string): boolean {
  return /^[\w\-.]{1,96}$/.test(name) && !/^[-.]|[-.]$/.test(name) && !name.includes('..') && !name.includes('--') && !/\.(git|ipynb)$/.test(name);
}

function classifyLoadError(err: unknown): ModelLoadFailure {
  const message = err instanceof Error ? err.message : String(err);
  const code = (err as { code?: unknown; cause?: { code?: unknown } } | null)?.cause?.code ?? (err as { code?: unknown } | null)?.code;
  const firstLine = message.split('\n', 1)[0] ?? message;
  if (err instanceof ModelFileNotFoundError || /could not locate file|not found locally|ENOENT/i.test(message) || code === 'ENOENT') {
    return new ModelLoadFailure('not_found', firstLine);
  }
  if (/fetch failed|ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ETIMEDOUT|network/i.test(message) || typeof code === 'string' && /^E(NOTFOUND|AI_AGAIN|CONNREFUSED|TIMEDOUT|CONNRESET)$/.test(code)) {
    return new ModelLoadFailure('unreachable', firstLine);
  }
  return new ModelLoadFailure('invalid', firstLine);
}

function finitePositive(x: unknown): number | undefined {
  return typeof x === 'number' && Number.isFinite(x) && x > 0 ? x : undefined;
}

export class TransformersEncoder {
  private constructor(
    private readonly tokenizer: PreTrainedTokenizer,
    private readonly model: PreTrainedModel,
    readonly maxTokens: number,
    private readonly perTextRuns: boolean,
    public dim: number,
  ) {}

  static async load(init: WorkerInit): Promise<TransformersEncoder> {
    const { modelId, localOnly } = configureEnv(init);
    let tokenizer: PreTrainedTokenizer;
    let model: PreTrainedModel;
    try {
      tokenizer = await AutoTokenizer.from_pretrained(modelId, { local_files_only: localOnly });
      model = await AutoModel.from_pretrained(modelId, {
        local_files_only: localOnly,
        device: 'cpu',
        dtype: init.spec.dtype,
        session_options: cpuSessionOptions(init.intraOpThreads),
      });
    } catch (err) {
      throw classifyLoadError(err);
    }
    // Some tokenizers report model_max_length = 1e30; the position-embedding table is the real limit.
    const config = model.config as unknown as { max_position_embeddings?: unknown };
    const limit = Math.min(
      finitePositive(tokenizer.model_max_length) ?? Infinity,
      finitePositive(config.max_position_embeddings) ?? Infinity,
    );
    const cap = Number.isFinite(limit) ? limit : 512;
    const maxTokens = Math.min(init.maxTokens ?? cap, cap);
    const encoder = new TransformersEncoder(tokenizer, model, maxTokens, init.perTextRuns, 0);
    try {
      // Probe once: proves the session runs and tells the pool the embedding width.
      encoder.dim = (await encoder.encode(['dimension probe'])).dim;
    } catch (err) {
      throw new ModelLoadFailure('invalid', `model loaded but inference failed: ${(err instanceof Error ? err.message : String(err)).split('\n', 1)[0]}`);
    }
    return encoder;
  }

  async encode(texts: string[]): Promise<EncodedBatch> {
    if (!this.perTextRuns || texts.length === 1) return this.run(texts);
    const rows: EncodedBatch[] = [];
    for (const t of texts) rows.push(await this.run([t]));
    const dim = rows[0]!.dim;
    const data = new Float32Array(texts.length * dim);
    rows.forEach((r, i) => data.set(r.data, i * dim));
    return { data, dim, tokens: rows.reduce((n, r) => n + r.tokens, 0) };
  }

  private async run(texts: string[]): Promise<EncodedBatch> {
    const inputs = tokenize(this.tokenizer, texts, this.maxTokens);
    const outputs = (await this.model(inputs)) as Record<string, Tensor | undefined>;
    // Same output preference as transformers.js's feature-extraction pipeline.
    const hidden = outputs.last_hidden_state ?? outputs.token_embeddings ?? outputs.logits;
    if (!hidden || hidden.dims.length !== 3) {
      throw new Error(`model has no [batch, tokens, hidden] output (outputs: ${Object.keys(outputs).join(', ')})`);
    }
    return meanPoolNormalize(hidden.data as Float32Array, inputs.attention_mask.data as BigInt64Array, hidden.dims as [number, number, number]);
  }

  async dispose(): Promise<void> {
    await this.model.dispose();
  }
}

type TokenizerOutput = { input_ids: Tensor; attention_mask: Tensor; [k: string]: Tensor };
const endsWithSep = new WeakMap<PreTrainedTokenizer, boolean>();

/**
 * Tokenizes like Python's tokenizers: transformers.js truncates *after* adding special tokens, so a text
 * longer than maxTokens loses its final [SEP] ([CLS] t1…t511 instead of [CLS] t1…t510 [SEP]), which the
 * model never saw in training. Where the tokenizer ends sequences with [SEP], a truncated row gets it back
 * in its last position, which yields exactly Python's ids.
 */
export function tokenize(tokenizer: PreTrainedTokenizer, texts: string[], maxTokens: number): TokenizerOutput {
  const inputs = tokenizer(texts, { padding: true, truncation: true, max_length: maxTokens }) as unknown as TokenizerOutput;
  const sep = (tokenizer as unknown as { sep_token_id?: number }).sep_token_id;
  if (sep === undefined) return inputs;
  let adds = endsWithSep.get(tokenizer);
  if (adds === undefined) {
    const probe = tokenizer('a').input_ids as Tensor;
    adds = Number(probe.data[probe.data.length - 1]) === sep;
    endsWithSep.set(tokenizer, adds);
  }
  if (!adds) return inputs;
  const ids = inputs.input_ids.data as BigInt64Array;
  const mask = inputs.attention_mask.data as BigInt64Array;
  const [rows, cols] = inputs.input_ids.dims as [number, number];
  for (let r = 0; r < rows; r++) {
    let len = 0;
    for (let c = 0; c < cols; c++) if (mask[r * cols + c] !== 0n) len = c + 1;
    // Only rows cut at the limit; a shorter row already ends with its [SEP].
    if (len === maxTokens && ids[r * cols + len - 1] !== BigInt(sep)) ids[r * cols + len - 1] = BigInt(sep);
  }
  return inputs;
}

/** Masked mean over tokens, then L2 normalize; exported for the bench's bare ONNX loop. */
export function meanPoolNormalize(hidden: Float32Array, mask: BigInt64Array | Int32Array | Float32Array, dims: readonly [number, number, number]): EncodedBatch {
  const [batch, seq, dim] = dims;
  const out = new Float32Array(batch * dim);
  const acc = new Float64Array(dim);
  let tokens = 0;
  for (let b = 0; b < batch; b++) {
    acc.fill(0);
    let count = 0;
    for (let t = 0; t < seq; t++) {
      if (Number(mask[b * seq + t]) === 0) continue;
      count++;
      const base = (b * seq + t) * dim;
      for (let k = 0; k < dim; k++) acc[k]! += hidden[base + k]!;
    }
    tokens += count;
    let norm = 0;
    for (let k = 0; k < dim; k++) {
      const v = acc[k]! / Math.max(count, 1);
      acc[k] = v;
      norm += v * v;
    }
    // An all-zero row stays zero rather than becoming NaN.
    const inv = norm > 0 ? 1 / Math.sqrt(norm) : 0;
    for (let k = 0; k < dim; k++) out[b * dim + k] = acc[k]! * inv;
  }
  return { data: out, dim, tokens };
}
