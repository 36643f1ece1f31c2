// Provider registry (LanceDB-style): every embedding backend implements EmbedProvider and is chosen by
// the ModelSpec. transformers.js (local ONNX on CPU) is the only one; a remote OpenAI-compatible provider
// would be added to `providers` and claim the specs it understands.
import { createHash } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { HubError, REQUIRED, WEIGHTS, resolveHubModel } from './hub.js';
import { EmbedPool, WorkerLoadError } from './pool.js';
import { ModelConfigError, readStConfig } from './st.js';
import type { Embedder, EmbedderOptions, ModelSpec } from './types.js';

interface EmbedProvider {
  readonly name: string;
  supports(spec: ModelSpec): boolean;
  /** Loads the model; must reject with ModelLoadError when the model itself is the problem. */
  load(spec: ModelSpec, opts: EmbedderOptions): Promise<Embedder>;
}

/** One line, names the variable to change; the CLI prints err.message and exits without a stack. */
export class ModelLoadError extends Error {
  constructor(
    readonly model: string,
    readonly variable: 'EMBED_MODEL' | 'MODEL_DIR',
    readonly reason: string,
    message: string,
  ) {
    super(message);
    this.name = 'ModelLoadError';
  }
}

const HINT = 'set MODEL_DIR to a local model directory or EMBED_MODEL to a reachable hub id';

function modelLoadError(spec: Pick<ModelSpec, 'source' | 'origin'>, reason: string): ModelLoadError {
  const model = spec.source.kind === 'hub' ? spec.source.id : spec.source.path;
  const variable = spec.origin === 'EMBED_MODEL' || (spec.origin === undefined && spec.source.kind === 'hub') ? 'EMBED_MODEL' : 'MODEL_DIR';
  const label = spec.origin === 'default' ? 'default model, MODEL_DIR and EMBED_MODEL unset' : variable;
  const oneLine = reason.replace(/\s+/g, ' ').trim().slice(0, 300);
  return new ModelLoadError(model, variable, oneLine, `cannot load model "${model}" (${label}): ${oneLine} — ${HINT}`);
}

/** Checks a model directory up front: a clear reason (and the fix) beats a worker's "could not locate file". */
function checkModelDir(spec: Pick<ModelSpec, 'source' | 'origin' | 'dtype'>, dirIn: string): void {
  const dir = resolve(dirIn);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw modelLoadError(spec, 'no such directory');
  const onnx = WEIGHTS[spec.dtype];
  const missing = [...REQUIRED, onnx].filter((f) => !existsSync(join(dir, f)));
  if (missing.length === 0) return;
  const known = ['modules.json', 'config.json', 'pytorch/modules.json'].some((f) => existsSync(join(dir, f)));
  if (!known && !existsSync(join(dir, 'onnx'))) {
    throw modelLoadError(
      spec,
      `not a model directory: neither ONNX weights (${onnx}) nor a sentence-transformers (modules.json) or transformers.js layout (config.json, tokenizer.json); point it at a model directory`,
    );
  }
  const others = (Object.entries(WEIGHTS) as [ModelSpec['dtype'], string][]).filter(
    ([d, f]) => d !== spec.dtype && existsSync(join(dir, f)),
  );
  if (missing.length === 1 && missing[0] === onnx && others.length > 0) {
    throw modelLoadError(
      spec,
      `missing ${onnx} (EMBED_DTYPE ${spec.dtype}); the directory has ${others.map(([d, f]) => `${f} (${d})`).join(', ')}: set EMBED_DTYPE=${others[0]![0]}`,
    );
  }
  const pytorchOnly = !existsSync(join(dir, 'onnx')) && ['model.safetensors', 'pytorch_model.bin'].some((f) => existsSync(join(dir, f)));
  throw modelLoadError(
    spec,
    pytorchOnly
      ? `missing ${missing.join(', ')}: PyTorch weights only, no ONNX export; export it: optimum-cli export onnx --model ${dir} --task feature-extraction ${join(dir, 'onnx')}`
      : `missing ${missing.join(', ')}`,
  );
}

/** The sentence-transformers configuration, or a one-line ModelLoadError naming the file and the fix. */
function stConfigOf(spec: Pick<ModelSpec, 'source' | 'origin'>, dir: string) {
  try {
    return readStConfig(dir);
  } catch (err) {
    if (err instanceof ModelConfigError) throw modelLoadError(spec, err.message);
    throw err;
  }
}

const transformersProvider: EmbedProvider = {
  name: 'transformers.js',
  supports: (spec) => spec.source.kind === 'hub' || spec.source.kind === 'dir',
  async load(spec, opts) {
    let dir: string;
    if (spec.source.kind === 'hub') {
      try {
        dir = await resolveHubModel(spec.source.id, { cacheDir: opts.cacheDir, dtype: spec.dtype });
      } catch (err) {
        if (err instanceof HubError) throw modelLoadError(spec, err.message);
        throw err;
      }
    } else {
      dir = resolve(spec.source.path);
    }
    checkModelDir(spec, dir);
    const st = stConfigOf(spec, dir);
    try {
      return await EmbedPool.start(spec, opts, { dir, st });
    } catch (err) {
      if (!(err instanceof WorkerLoadError)) throw err;
      throw modelLoadError(spec, err.message);
    }
  },
};

const providers: EmbedProvider[] = [transformersProvider];

export async function loadEmbedder(spec: ModelSpec, opts: EmbedderOptions): Promise<Embedder> {
  const provider = providers.find((p) => p.supports(spec));
  if (!provider) throw modelLoadError(spec, 'no embedding provider handles this model source');
  return provider.load(spec, opts);
}

// ---- env → ModelSpec ------------------------------------------------------------------------------

export interface ModelEnv {
  EMBED_MODEL?: string;
  MODEL_DIR?: string;
  /** 'fp32' | 'fp16' | 'q8'; default: model_card.json's dtype, else whichever weights file the directory has (fp32 first). */
  EMBED_DTYPE?: string;
  /** The model shipped with the repo, used when neither variable is set. */
  defaultDir: string;
}

interface ModelCard {
  version?: unknown;
  dtype?: unknown;
}

function readCard(dir: string): ModelCard {
  const file = join(dir, 'model_card.json');
  if (!existsSync(file)) return {};
  try {
    const card: unknown = JSON.parse(readFileSync(file, 'utf8'));
    return card !== null && typeof card === 'object' ? (card as ModelCard) : {};
  } catch {
    return {};
  }
}

function parseDtype(value: unknown): ModelSpec['dtype'] | undefined {
  return value === 'fp32' || value === 'fp16' || value === 'q8' ? value : undefined;
}

/** The dtype suffix of version names: the fp32, fp16 and q8 weights of one model give different vectors. */
function dtypeSuffix(dtype: ModelSpec['dtype']): string {
  return dtype === 'fp32' ? '' : `-${dtype}`;
}

/** Version names end up in file names (index snapshots) and metric labels, so keep them to [A-Za-z0-9._-]. */
function slug(s: string): string {
  return (
    s
      .replace(/\//g, '__')
      .replace(/[^A-Za-z0-9._-]+/g, '-')
      .replace(/^-+|-+$/g, '') || 'model'
  );
}

/** Short content hash of the weights: two different models in folders with the same name never share a version. */
function weightsHash(file: string): string {
  const hash = createHash('sha256');
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      hash.update(buf.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex').slice(0, 8);
}

/**
 * MODEL_DIR wins over EMBED_MODEL; EMBED_MODEL that is a path (./x, /x, ../x or an existing directory) is
 * treated as a directory. Throws ModelLoadError when the chosen directory is missing or incomplete.
 */
export function resolveModelSpec(envIn: ModelEnv): ModelSpec {
  const explicitDtype = envIn.EMBED_DTYPE ? parseDtype(envIn.EMBED_DTYPE) : undefined;
  if (envIn.EMBED_DTYPE && !explicitDtype) throw new RangeError(`EMBED_DTYPE must be fp32, fp16 or q8, got "${envIn.EMBED_DTYPE}"`);
  const embedModel = envIn.EMBED_MODEL?.trim();
  const modelDir = envIn.MODEL_DIR?.trim();

  if (!modelDir && embedModel && !looksLikePath(embedModel)) {
    const dtype = explicitDtype ?? 'fp32';
    return { version: slug(embedModel) + dtypeSuffix(dtype), source: { kind: 'hub', id: embedModel }, dtype, origin: 'EMBED_MODEL' };
  }

  const origin = modelDir ? 'MODEL_DIR' : embedModel ? 'EMBED_MODEL' : 'default';
  const dir = resolve(modelDir || embedModel || envIn.defaultDir);
  const base = { source: { kind: 'dir' as const, path: dir }, origin } satisfies Pick<ModelSpec, 'source' | 'origin'>;
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw modelLoadError(base, 'no such directory');
  const card = readCard(dir);
  const dtype = explicitDtype ?? parseDtype(card.dtype) ?? defaultDtype(dir) ?? 'fp32';
  const spec: ModelSpec = { ...base, dtype, version: '' };
  checkModelDir(spec, dir);
  // A model we cannot serve (pooling, prompts, modules) fails here, at start, naming the file.
  stConfigOf(spec, dir);
  // q8 and fp32 weights of one artifact give different vectors, so they must not share a version.
  const q8 = dtypeSuffix(dtype);
  spec.version =
    typeof card.version === 'string' && card.version.trim() !== ''
      ? card.version.trim() + q8 // the trainer's name verbatim, so model-card parent links still match
      : `${slug(basename(dir))}${q8}-${weightsHash(join(dir, WEIGHTS[dtype]))}`;
  return spec;
}

/** Whichever ONNX weights a directory has: fp32, then q8, then fp16. */
export function defaultDtype(dir: string): ModelSpec['dtype'] | undefined {
  return (['fp32', 'q8', 'fp16'] as const).find((d) => existsSync(join(dir, WEIGHTS[d])));
}

function looksLikePath(s: string): boolean {
  return s.startsWith('/') || s.startsWith('./') || s.startsWith('../') || (existsSync(s) && statSync(s).isDirectory());
}
