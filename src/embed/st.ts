// sentence-transformers configuration of a model directory: pooling, normalization, truncation and prompts,
// read the way sentence-transformers (5.x and 6.x file formats) reads them, so the server embeds exactly as
// `SentenceTransformer(dir).encode(...)` does. Pure file reading, no ONNX: runs on the main thread before any
// worker starts, so a model we cannot serve fails at start with one line naming the file and the fix.
//
// Where the files are looked for, in order:
//   1. the directory itself (a sentence-transformers / hub layout: modules.json next to config.json),
//   2. its pytorch/ folder (the artifacts the trainer writes: transformers.js layout at the root, the
//      sentence-transformers model it was exported from in pytorch/),
//   3. neither: model_card.json's pooling/normalize, else mean pooling + normalize (our historic default).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export type PoolingMode = 'cls' | 'mean' | 'max' | 'lasttoken' | 'mean_sqrt_len_tokens' | 'weightedmean';
const POOLING_MODES: readonly PoolingMode[] = ['cls', 'mean', 'max', 'lasttoken', 'mean_sqrt_len_tokens', 'weightedmean'];
// sentence-transformers ≤ 5 wrote one boolean per mode; the concatenation order of its forward().
const LEGACY_POOLING_KEYS: [string, PoolingMode][] = [
  ['pooling_mode_cls_token', 'cls'],
  ['pooling_mode_max_tokens', 'max'],
  ['pooling_mode_mean_tokens', 'mean'],
  ['pooling_mode_mean_sqrt_len_tokens', 'mean_sqrt_len_tokens'],
  ['pooling_mode_weightedmean_tokens', 'weightedmean'],
  ['pooling_mode_lasttoken', 'lasttoken'],
];

/** Which texts an embed call holds: queries and documents get their own prompt (see promptFor). */
export type InputKind = 'query' | 'document';

export interface StConfig {
  /** Where the description came from (see the header). */
  source: 'sentence-transformers' | 'sentence-transformers (pytorch/)' | 'model_card.json' | 'default';
  pooling: PoolingMode;
  /** false: prompt tokens are left out of the pooling (INSTRUCTOR-style models). */
  includePrompt: boolean;
  /** The model ends with a Normalize module. The server L2-normalizes every vector either way (cosine index). */
  normalize: boolean;
  /** sentence_bert_config.json's max_seq_length (≤ 5.x files); otherwise the tokenizer's model_max_length. */
  maxSeqLength?: number;
  doLowerCase: boolean;
  prompts: Record<string, string>;
  defaultPromptName: string | null;
  similarity: string | null;
}

/** A model we refuse to serve; the message is one line naming the file and the fix. */
export class ModelConfigError extends Error {
  constructor(
    readonly file: string,
    reason: string,
    readonly fix: string,
  ) {
    super(`${file}: ${reason}; fix: ${fix}`);
    this.name = 'ModelConfigError';
  }
}

function readJson(dir: string, rel: string, shown: string): unknown {
  try {
    return JSON.parse(readFileSync(join(dir, rel), 'utf8')) as unknown;
  } catch (err) {
    throw new ModelConfigError(
      shown,
      `not valid JSON (${(err instanceof Error ? err.message : String(err)).split('\n', 1)[0]})`,
      `repair or re-save the file (SentenceTransformer.save)`,
    );
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** The last dotted segment of a modules.json type, e.g. sentence_transformers.models.Pooling → Pooling. */
function moduleClass(type: string): string {
  return type.split('.').pop() ?? type;
}

const SENTENCE_CONFIG_NAMES = [
  'sentence_bert_config.json',
  'sentence_roberta_config.json',
  'sentence_distilbert_config.json',
  'sentence_camembert_config.json',
  'sentence_albert_config.json',
  'sentence_xlm-roberta_config.json',
  'sentence_xlnet_config.json',
];

/** Reads and validates the sentence-transformers description of `dir` (see the header for the search order). */
export function readStConfig(dir: string): StConfig {
  if (existsSync(join(dir, 'modules.json'))) return readSt(dir, '', 'sentence-transformers');
  if (existsSync(join(dir, 'pytorch/modules.json'))) return readSt(dir, 'pytorch/', 'sentence-transformers (pytorch/)');
  const card = existsSync(join(dir, 'model_card.json')) ? safeJson(join(dir, 'model_card.json')) : undefined;
  if (isObject(card) && typeof card.pooling === 'string') {
    const pooling = card.pooling as PoolingMode;
    if (!POOLING_MODES.includes(pooling)) {
      throw new ModelConfigError(
        'model_card.json',
        `pooling "${card.pooling}" cannot be served (known: ${POOLING_MODES.join(', ')})`,
        'set "pooling" to the mode the model was trained with',
      );
    }
    return { ...DEFAULT, source: 'model_card.json', pooling, normalize: card.normalize !== false };
  }
  return { ...DEFAULT };
}

const DEFAULT: StConfig = {
  source: 'default',
  pooling: 'mean',
  includePrompt: true,
  normalize: true,
  doLowerCase: false,
  prompts: {},
  defaultPromptName: null,
  similarity: null,
};

function safeJson(file: string): unknown {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as unknown;
  } catch {
    return undefined;
  }
}

function readSt(root: string, sub: '' | 'pytorch/', source: StConfig['source']): StConfig {
  const dir = join(root, sub);
  const f = (name: string) => `${sub}${name}`;
  const modules = readJson(dir, 'modules.json', f('modules.json'));
  if (!Array.isArray(modules) || modules.length === 0 || !modules.every((m) => isObject(m) && typeof m.type === 'string')) {
    throw new ModelConfigError(
      f('modules.json'),
      'must be a non-empty list of {"idx", "name", "path", "type"}',
      're-save the model with SentenceTransformer.save',
    );
  }
  const mods = (modules as { type: string; path?: unknown; name?: unknown }[]).map((m) => ({
    cls: moduleClass(m.type),
    type: m.type,
    path: typeof m.path === 'string' ? m.path : '',
  }));
  const transformer = mods[0]!;
  if (transformer.cls !== 'Transformer') {
    throw new ModelConfigError(
      f('modules.json'),
      `the first module is ${transformer.type}, not a Transformer`,
      'serve a model whose modules are Transformer, Pooling[, Normalize]',
    );
  }
  let pooling: { mode: PoolingMode; includePrompt: boolean } | undefined;
  let normalize = false;
  for (const m of mods.slice(1)) {
    if (m.cls === 'Pooling' && !pooling && !normalize) {
      pooling = readPooling(dir, m.path, f(`${m.path ? m.path + '/' : ''}config.json`));
    } else if (m.cls === 'Normalize' && pooling && !normalize) {
      normalize = true;
    } else {
      throw new ModelConfigError(
        f('modules.json'),
        `module ${m.type}${m.path ? ` (${m.path})` : ''} cannot be served: the server runs the ONNX encoder, then pooling and normalization only`,
        'serve a model whose modules are Transformer, Pooling[, Normalize] (or bake the extra module into the ONNX graph)',
      );
    }
  }
  if (!pooling)
    throw new ModelConfigError(
      f('modules.json'),
      'no Pooling module (token embeddings only)',
      'add a Pooling module (e.g. mean) and re-save the model',
    );

  // Transformer module options: legacy max_seq_length / do_lower_case (sentence-transformers ≤ 5 files).
  let maxSeqLength: number | undefined;
  let doLowerCase = false;
  const tDir = join(dir, transformer.path);
  const cfgName = SENTENCE_CONFIG_NAMES.find((n) => existsSync(join(tDir, n)));
  if (cfgName) {
    const shown = f(`${transformer.path ? transformer.path + '/' : ''}${cfgName}`);
    const c = readJson(tDir, cfgName, shown);
    if (isObject(c)) {
      if (c.max_seq_length !== undefined && c.max_seq_length !== null) {
        if (typeof c.max_seq_length !== 'number' || !Number.isInteger(c.max_seq_length) || c.max_seq_length < 1) {
          throw new ModelConfigError(
            shown,
            `max_seq_length must be a positive integer, got ${JSON.stringify(c.max_seq_length)}`,
            'set it to the token limit the model was trained with',
          );
        }
        maxSeqLength = c.max_seq_length;
      }
      doLowerCase = c.do_lower_case === true;
    }
  }

  // Prompts (config_sentence_transformers.json).
  const prompts: Record<string, string> = {};
  let defaultPromptName: string | null = null;
  let similarity: string | null = null;
  const stName = f('config_sentence_transformers.json');
  if (existsSync(join(dir, 'config_sentence_transformers.json'))) {
    const c = readJson(dir, 'config_sentence_transformers.json', stName);
    if (!isObject(c)) throw new ModelConfigError(stName, 'must be a JSON object', 're-save the model with SentenceTransformer.save');
    if (c.prompts !== undefined && c.prompts !== null) {
      if (!isObject(c.prompts))
        throw new ModelConfigError(
          stName,
          '"prompts" must be an object of name → prompt text',
          'write e.g. {"query": "query: ", "document": "passage: "}',
        );
      for (const [name, text] of Object.entries(c.prompts)) {
        // sentence-transformers turns a null prompt into "".
        if (text === null) prompts[name] = '';
        else if (typeof text === 'string') prompts[name] = text;
        else
          throw new ModelConfigError(
            stName,
            `prompt "${name}" is ${JSON.stringify(text)}, not a string`,
            'make every value of "prompts" a string',
          );
      }
    }
    if (c.default_prompt_name !== undefined && c.default_prompt_name !== null) {
      if (typeof c.default_prompt_name !== 'string' || !(c.default_prompt_name in prompts)) {
        throw new ModelConfigError(
          stName,
          `default_prompt_name ${JSON.stringify(c.default_prompt_name)} is not one of the prompts (${Object.keys(prompts).join(', ') || 'none'})`,
          'set it to a key of "prompts" or to null',
        );
      }
      defaultPromptName = c.default_prompt_name;
    }
    if (typeof c.similarity_fn_name === 'string') similarity = c.similarity_fn_name;
  }
  // The index ranks by cosine (inner product of unit vectors). Without a Normalize module a dot-product or
  // distance model would rank differently: refuse rather than serve it wrong.
  if (!normalize && similarity !== null && similarity !== 'cosine') {
    throw new ModelConfigError(
      stName,
      `similarity_fn_name "${similarity}" without a Normalize module: this server ranks by cosine, which would change the model's ranking`,
      'serve a cosine model, or add a Normalize module to modules.json if the model was trained normalized',
    );
  }
  return {
    source,
    pooling: pooling.mode,
    includePrompt: pooling.includePrompt,
    normalize,
    maxSeqLength,
    doLowerCase,
    prompts,
    defaultPromptName,
    similarity,
  };
}

function readPooling(dir: string, path: string, shown: string): { mode: PoolingMode; includePrompt: boolean } {
  if (!existsSync(join(dir, path, 'config.json')))
    throw new ModelConfigError(
      shown,
      'missing (the Pooling module of modules.json has no config)',
      're-save the model with SentenceTransformer.save',
    );
  const c = readJson(join(dir, path), 'config.json', shown);
  if (!isObject(c)) throw new ModelConfigError(shown, 'must be a JSON object', 're-save the model with SentenceTransformer.save');
  let modes: string[];
  if (c.pooling_mode !== undefined) {
    // sentence-transformers 6: "pooling_mode": "cls" | ["cls", "mean"]
    modes =
      typeof c.pooling_mode === 'string'
        ? [c.pooling_mode]
        : Array.isArray(c.pooling_mode)
          ? c.pooling_mode.map(String)
          : [String(c.pooling_mode)];
  } else {
    modes = LEGACY_POOLING_KEYS.filter(([k]) => c[k] === true).map(([, m]) => m);
    if (modes.length === 0) modes = ['mean']; // sentence-transformers' own fallback
  }
  const unknown = modes.find((m) => !POOLING_MODES.includes(m as PoolingMode));
  if (unknown !== undefined)
    throw new ModelConfigError(
      shown,
      `pooling mode "${unknown}" is unknown (known: ${POOLING_MODES.join(', ')})`,
      'set "pooling_mode" to one of them',
    );
  if (modes.length !== 1)
    throw new ModelConfigError(
      shown,
      `concatenated pooling (${modes.join(' + ')}) cannot be served`,
      'serve a model with a single pooling mode',
    );
  return { mode: modes[0] as PoolingMode, includePrompt: c.include_prompt !== false };
}

export interface PromptChoice {
  /** The prompt's name in the model's prompts, or null when none applies. */
  name: string | null;
  text: string;
}

/**
 * The prompt sentence-transformers prepends: an explicit prompt name wins; otherwise queries use "query" and
 * documents the first of "document", "passage", "corpus" the model defines (encode_query / encode_document);
 * when that finds none, or no kind is given, the default_prompt_name's prompt (plain encode); else none.
 * Throws RangeError for a prompt name the model does not define.
 */
export function promptFor(
  cfg: Pick<StConfig, 'prompts' | 'defaultPromptName'>,
  opts: { kind?: InputKind; promptName?: string } = {},
): PromptChoice {
  let name: string | null = null;
  if (opts.promptName !== undefined) {
    if (!(opts.promptName in cfg.prompts)) {
      throw new RangeError(`the model has no prompt named "${opts.promptName}" (it has: ${Object.keys(cfg.prompts).join(', ') || 'none'})`);
    }
    name = opts.promptName;
  } else if (opts.kind === 'query' && 'query' in cfg.prompts) {
    name = 'query';
  } else if (opts.kind === 'document') {
    name = ['document', 'passage', 'corpus'].find((n) => n in cfg.prompts) ?? null;
  }
  name ??= cfg.defaultPromptName;
  return name === null ? { name: null, text: '' } : { name, text: cfg.prompts[name] ?? '' };
}
