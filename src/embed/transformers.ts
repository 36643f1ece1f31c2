// transformers.js provider, worker side: one tokenizer + one ONNX session per worker thread.
//
// We load with AutoTokenizer/AutoModel and do the feature-extraction steps ourselves instead of calling
// pipeline('feature-extraction'): the pipeline always truncates at the tokenizer's model_max_length and
// has no max_length option, so it cannot honour maxTokens. Pooling (the model's sentence-transformers mode:
// cls / mean / max / lasttoken / …, see ./st.ts) is done here in one row-major pass that skips padding;
// transformers.js's mean_pooling walks the tensor column-wise over every padded position: ~50 ms vs ~5 ms
// per [32 × 256 × 384] batch on the 2-core dev box (measured under load). Prompts arrive as indices into
// the model's prompt table and are prepended here, so the pool never needs the tokenizer.
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
import { readStConfig, type PoolingMode, type StConfig } from './st.js';

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

/** Points the process-global transformers.js env at the model directory; returns the id for from_pretrained. */
function configureEnv(init: WorkerInit): { modelId: string; localOnly: boolean } {
  env.logLevel = LogLevel.ERROR;
  // Hub models were made local by the main thread (src/embed/hub.ts): a worker never downloads.
  const dir = resolve(modelDir(init));
  env.allowLocalModels = true;
  env.allowRemoteModels = false;
  // transformers.js resolves local models as localModelPath/<id>/<file>.
  env.localModelPath = dirname(dir) + '/';
  // transformers.js only prefixes localModelPath to names that pass its hub-id check (no spaces, no
  // "--" or "..", ≤ 96 chars); any other name is used as a path as-is, so hand it the absolute path.
  const name = basename(dir);
  return { modelId: looksLikeHubName(name) ? name : dir, localOnly: true };
}

function modelDir(init: WorkerInit): string {
  if (init.dir) return init.dir;
  if (init.spec.source.kind === 'dir') return init.spec.source.path;
  throw new ModelLoadFailure(
    'invalid',
    `hub model ${init.spec.source.id} reached a worker without its local directory (load it through loadEmbedder)`,
  );
}

/** Mirrors transformers.js's isValidHfModelId for a single path segment. */
function looksLikeHubName(name: string): boolean {
  return (
    /^[\w\-.]{1,96}$/.test(name) &&
    !/^[-.]|[-.]$/.test(name) &&
    !name.includes('..') &&
    !name.includes('--') &&
    !/\.(git|ipynb)$/.test(name)
  );
}

function classifyLoadError(err: unknown): ModelLoadFailure {
  const message = err instanceof Error ? err.message : String(err);
  const code = (err as { code?: unknown; cause?: { code?: unknown } } | null)?.cause?.code ?? (err as { code?: unknown } | null)?.code;
  const firstLine = message.split('\n', 1)[0] ?? message;
  if (err instanceof ModelFileNotFoundError || /could not locate file|not found locally|ENOENT/i.test(message) || code === 'ENOENT') {
    return new ModelLoadFailure('not_found', firstLine);
  }
  if (
    /fetch failed|ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ETIMEDOUT|network/i.test(message) ||
    (typeof code === 'string' && /^E(NOTFOUND|AI_AGAIN|CONNREFUSED|TIMEDOUT|CONNRESET)$/.test(code))
  ) {
    return new ModelLoadFailure('unreachable', firstLine);
  }
  return new ModelLoadFailure('invalid', firstLine);
}

function finitePositive(x: unknown): number | undefined {
  return typeof x === 'number' && Number.isFinite(x) && x > 0 ? x : undefined;
}

export class TransformersEncoder {
  /** Prompt texts by index (ToWorker.prompts), and their token counts when include_prompt is false. */
  private readonly promptTexts: string[];
  private promptTokens: number[] = [];

  private constructor(
    private readonly tokenizer: PreTrainedTokenizer,
    private readonly model: PreTrainedModel,
    readonly maxTokens: number,
    private readonly perTextRuns: boolean,
    private readonly st: StConfig,
    public dim: number,
  ) {
    this.promptTexts = Object.values(st.prompts);
  }

  static async load(init: WorkerInit): Promise<TransformersEncoder> {
    const { modelId, localOnly } = configureEnv(init);
    const st = init.st ?? readStConfig(modelDir(init));
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
    // sentence-transformers ≤ 5 files set max_seq_length in sentence_bert_config.json; it wins over the
    // tokenizer's model_max_length (6.x saves it as the tokenizer's model_max_length).
    const config = model.config as unknown as { max_position_embeddings?: unknown };
    const limit = Math.min(
      st.maxSeqLength ?? finitePositive(tokenizer.model_max_length) ?? Infinity,
      finitePositive(config.max_position_embeddings) ?? Infinity,
    );
    const cap = Number.isFinite(limit) ? limit : 512;
    const maxTokens = Math.min(init.maxTokens ?? cap, cap);
    const encoder = new TransformersEncoder(tokenizer, model, maxTokens, init.perTextRuns, st, 0);
    if (!st.includePrompt) {
      // sentence-transformers' prompt length: the prompt's tokens with [CLS], without a trailing special token.
      encoder.promptTokens = encoder.promptTexts.map((p) => (p === '' ? 0 : promptLength(tokenizer, encoder.prep(p))));
    }
    try {
      // Probe once: proves the session runs and tells the pool the embedding width.
      encoder.dim = (await encoder.encode(['dimension probe'])).dim;
    } catch (err) {
      throw new ModelLoadFailure(
        'invalid',
        `model loaded but inference failed: ${(err instanceof Error ? err.message : String(err)).split('\n', 1)[0]}`,
      );
    }
    return encoder;
  }

  /** sentence_bert_config.json do_lower_case: a lowercasing normalizer in front of the tokenizer's own. */
  private prep(text: string): string {
    return this.st.doLowerCase ? text.toLowerCase() : text;
  }

  async encode(texts: string[], prompts?: number[]): Promise<EncodedBatch> {
    if (!this.perTextRuns || texts.length === 1) return this.run(texts, prompts);
    const rows: EncodedBatch[] = [];
    for (let i = 0; i < texts.length; i++) rows.push(await this.run([texts[i]!], prompts ? [prompts[i]!] : undefined));
    const dim = rows[0]!.dim;
    const data = new Float32Array(texts.length * dim);
    rows.forEach((r, i) => data.set(r.data, i * dim));
    return { data, dim, tokens: rows.reduce((n, r) => n + r.tokens, 0) };
  }

  private async run(texts: string[], prompts?: number[]): Promise<EncodedBatch> {
    const full = texts.map((t, i) => {
      const p = prompts?.[i] ?? -1;
      return this.prep(p >= 0 ? this.promptTexts[p]! + t : t);
    });
    const inputs = tokenize(this.tokenizer, full, this.maxTokens);
    const outputs = (await this.model(inputs)) as Record<string, Tensor | undefined>;
    // Same output preference as transformers.js's feature-extraction pipeline.
    let hidden = outputs.last_hidden_state ?? outputs.token_embeddings ?? outputs.logits;
    if (hidden?.dims.length !== 3) {
      throw new Error(`model has no [batch, tokens, hidden] output (outputs: ${Object.keys(outputs).join(', ')})`);
    }
    if (hidden.type === 'float16') hidden = hidden.to('float32');
    let skip: Int32Array | undefined;
    if (!this.st.includePrompt && prompts) {
      skip = new Int32Array(texts.length);
      for (let i = 0; i < texts.length; i++) skip[i] = prompts[i]! >= 0 ? (this.promptTokens[prompts[i]!] ?? 0) : 0;
    }
    return poolNormalize(
      hidden.data as Float32Array,
      inputs.attention_mask.data as BigInt64Array,
      hidden.dims as [number, number, number],
      this.st.pooling,
      skip,
    );
  }

  async dispose(): Promise<void> {
    await this.model.dispose();
  }
}

function promptLength(tokenizer: PreTrainedTokenizer, prompt: string): number {
  const ids = Array.from((tokenizer(prompt).input_ids as Tensor).data as BigInt64Array, Number);
  const special = new Set((tokenizer as unknown as { all_special_ids?: number[] }).all_special_ids ?? []);
  return ids.length - (ids.length > 0 && special.has(ids[ids.length - 1]!) ? 1 : 0);
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
export function meanPoolNormalize(
  hidden: Float32Array,
  mask: BigInt64Array | Int32Array | Float32Array,
  dims: readonly [number, number, number],
): EncodedBatch {
  return poolNormalize(hidden, mask, dims, 'mean');
}

/**
 * sentence-transformers' Pooling over the attention mask (right padding), then L2 normalize. `skip[b]`
 * leading real tokens of row b are left out of the pooling (a prompt with include_prompt false), exactly as
 * sentence-transformers zeroes them in the pooling mask. `tokens` counts real tokens for metrics.
 */
function poolNormalize(
  hidden: Float32Array,
  mask: BigInt64Array | Int32Array | Float32Array,
  dims: readonly [number, number, number],
  mode: PoolingMode,
  skip?: Int32Array,
): EncodedBatch {
  const [batch, seq, dim] = dims;
  const out = new Float32Array(batch * dim);
  const acc = new Float64Array(dim);
  let tokens = 0;
  for (let b = 0; b < batch; b++) {
    acc.fill(mode === 'max' ? -Infinity : 0);
    const s = skip?.[b] ?? 0;
    let count = 0;
    let weights = 0;
    let first = -1;
    let last = -1;
    for (let t = 0; t < seq; t++) {
      if (Number(mask[b * seq + t]) === 0) continue;
      tokens++;
      if (t < s) continue;
      count++;
      if (first < 0) first = t;
      last = t;
      const base = (b * seq + t) * dim;
      if (mode === 'mean' || mode === 'mean_sqrt_len_tokens') {
        for (let k = 0; k < dim; k++) acc[k]! += hidden[base + k]!;
      } else if (mode === 'max') {
        for (let k = 0; k < dim; k++) if (hidden[base + k]! > acc[k]!) acc[k] = hidden[base + k]!;
      } else if (mode === 'weightedmean') {
        const w = t + 1;
        weights += w;
        for (let k = 0; k < dim; k++) acc[k]! += w * hidden[base + k]!;
      }
    }
    if (count === 0) {
      acc.fill(0); // nothing to pool: a zero vector stays zero rather than becoming NaN
    } else if (mode === 'cls' || mode === 'lasttoken') {
      const base = (b * seq + (mode === 'cls' ? first : last)) * dim;
      for (let k = 0; k < dim; k++) acc[k] = hidden[base + k]!;
    } else if (mode === 'mean' || mode === 'mean_sqrt_len_tokens' || mode === 'weightedmean') {
      const div = mode === 'mean' ? count : mode === 'weightedmean' ? weights : Math.sqrt(count);
      for (let k = 0; k < dim; k++) acc[k] = acc[k]! / div;
    }
    let norm = 0;
    for (let k = 0; k < dim; k++) norm += acc[k]! * acc[k]!;
    // An all-zero row stays zero rather than becoming NaN.
    const inv = norm > 0 ? 1 / Math.sqrt(norm) : 0;
    for (let k = 0; k < dim; k++) out[b * dim + k] = acc[k]! * inv;
  }
  return { data: out, dim, tokens };
}
