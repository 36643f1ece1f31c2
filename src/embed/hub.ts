// Hub ids → a local model directory, downloaded once.
//
// A hub model is served from a directory like any other: the files we need (config, tokenizer, the ONNX
// weights of the chosen dtype, the sentence-transformers configuration; PyTorch weights only when a retrain
// job asks) are fetched once into CACHE_DIR in Hugging Face's hub-cache layout
//   models--<org>--<name>/snapshots/<commit>/<files>   refs/main = <commit>
// so a cache filled by Python (huggingface_hub, sentence-transformers) is read as-is, and ours can be shared
// with the trainer (HF_HUB_CACHE). Looked up, in order: CACHE_DIR/<org>/<name>/ (transformers.js's own file
// cache, what earlier versions of this server downloaded), CACHE_DIR's hub layout, HF_HUB_CACHE /
// HF_HOME/hub / ~/.cache/huggingface/hub; the first complete one wins. Otherwise downloaded from HF_ENDPOINT
// (default https://huggingface.co, HF_TOKEN if set), unless HF_HUB_OFFLINE=1.
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createWriteStream } from 'node:fs';
import type { ModelSpec } from './types.js';

export const WEIGHTS: Record<ModelSpec['dtype'], string> = {
  fp32: 'onnx/model.onnx',
  fp16: 'onnx/model_fp16.onnx',
  q8: 'onnx/model_quantized.onnx',
};
export const REQUIRED = ['config.json', 'tokenizer.json', 'tokenizer_config.json'];
const ST_FILES = ['modules.json', 'config_sentence_transformers.json', 'sentence_bert_config.json', 'special_tokens_map.json'];
const PYTORCH_WEIGHTS = ['model.safetensors', 'pytorch_model.bin'];

/** Why a hub model could not be made local; the registry turns it into a one-line ModelLoadError. */
export class HubError extends Error {
  constructor(
    readonly reason: 'unreachable' | 'not_found' | 'no_onnx' | 'invalid',
    message: string,
  ) {
    super(message);
    this.name = 'HubError';
  }
}

export interface HubOptions {
  cacheDir: string;
  dtype: ModelSpec['dtype'];
  /** Also fetch the PyTorch weights (a retrain job's bundle needs them). */
  weights?: boolean;
  env?: Record<string, string | undefined>;
  fetch?: typeof fetch;
}

/** The fix for a hub repo without an ONNX export, in one line. */
function onnxExportFix(id: string): string {
  const dir = `./${id.split('/').pop()}`;
  return `export it once and serve the directory: hf download ${id} --local-dir ${dir} && optimum-cli export onnx --model ${dir} --task feature-extraction ${dir}/onnx, then MODEL_DIR=${dir}`;
}

/** Directories a hub id may already be cached in (see the header), existing or not. */
function cacheCandidates(id: string, cacheDir: string, env: Record<string, string | undefined> = process.env): string[] {
  const out = [join(cacheDir, id)];
  const hubRoots = [cacheDir];
  if (env.HF_HUB_CACHE) hubRoots.push(env.HF_HUB_CACHE);
  else if (env.HF_HOME) hubRoots.push(join(env.HF_HOME, 'hub'));
  else hubRoots.push(join(homedir(), '.cache/huggingface/hub'));
  for (const root of hubRoots) {
    const snap = snapshotDir(root, id);
    if (snap) out.push(snap);
  }
  return out;
}

function repoFolder(root: string, id: string): string {
  return join(root, `models--${id.replace(/\//g, '--')}`);
}

/** refs/main's snapshot of `id` under a hub cache root, if any. */
function snapshotDir(root: string, id: string): string | undefined {
  const repo = repoFolder(root, id);
  try {
    const rev = readFileSync(join(repo, 'refs/main'), 'utf8').trim();
    const dir = join(repo, 'snapshots', rev);
    return rev && existsSync(dir) ? dir : undefined;
  } catch {
    return undefined;
  }
}

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

/** Every file serving needs is there (and the PyTorch weights, when asked). */
function completeFor(dir: string, dtype: ModelSpec['dtype'], weights = false): boolean {
  if (![...REQUIRED, WEIGHTS[dtype]].every((f) => isFile(join(dir, f)))) return false;
  if (weights && !PYTORCH_WEIGHTS.some((f) => isFile(join(dir, f)))) return false;
  if (isFile(join(dir, 'modules.json'))) {
    try {
      const mods = JSON.parse(readFileSync(join(dir, 'modules.json'), 'utf8')) as { path?: string; type?: string }[];
      for (const m of mods) if (m.path && /Pooling$/.test(m.type ?? '') && !isFile(join(dir, m.path, 'config.json'))) return false;
    } catch {
      return true; // complete enough: readStConfig reports the broken file by name
    }
  }
  return true;
}

/** The cached directory of a hub id if one is complete; never touches the network. */
export function cachedHubModel(id: string, opts: Pick<HubOptions, 'cacheDir' | 'dtype' | 'weights' | 'env'>): string | undefined {
  return cacheCandidates(id, opts.cacheDir, opts.env).find((d) => completeFor(d, opts.dtype, opts.weights));
}

function offline(env: Record<string, string | undefined>): boolean {
  return ['1', 'true', 'yes', 'on'].includes((env.HF_HUB_OFFLINE ?? env.TRANSFORMERS_OFFLINE ?? '').toLowerCase());
}

/**
 * A complete local directory for hub model `id`: from a cache, else downloaded into cacheDir (hub layout).
 * Rejects with HubError: not_found (no such repo), unreachable (offline and not cached), no_onnx (the repo
 * has no ONNX weights of this dtype; the message carries the fix).
 */
export async function resolveHubModel(id: string, opts: HubOptions): Promise<string> {
  const env = opts.env ?? process.env;
  const cached = cachedHubModel(id, opts);
  if (cached) return cached;
  if (offline(env)) throw new HubError('unreachable', 'not found offline (HF_HUB_OFFLINE is set and the model is not in the cache)');
  const endpoint = (env.HF_ENDPOINT || 'https://huggingface.co').replace(/\/+$/, '');
  const doFetch = opts.fetch ?? fetch;
  const headers: Record<string, string> = env.HF_TOKEN ? { Authorization: `Bearer ${env.HF_TOKEN}` } : {};
  const get = async (url: string, timeoutMs?: number): Promise<Response> => {
    try {
      return await doFetch(url, { headers, redirect: 'follow', ...(timeoutMs ? { signal: AbortSignal.timeout(timeoutMs) } : {}) });
    } catch (err) {
      throw new HubError('unreachable', `not found offline (hub unreachable and not in the cache: ${(err as Error).message})`);
    }
  };

  // A hub that does not answer must not hang the start (file downloads may take as long as they take).
  const info = await get(`${endpoint}/api/models/${id}/revision/main`, 30_000);
  if (info.status === 401 || info.status === 403 || info.status === 404) {
    throw new HubError(
      'not_found',
      `not found on the hub or in the cache (HTTP ${info.status}${info.status !== 404 ? '; a gated or private repo needs HF_TOKEN' : ''})`,
    );
  }
  if (!info.ok) throw new HubError('unreachable', `hub answered HTTP ${info.status} for the model info`);
  const meta = (await info.json()) as { sha?: unknown; siblings?: { rfilename?: unknown }[] };
  const sha = typeof meta.sha === 'string' && /^[0-9a-f]{6,64}$/i.test(meta.sha) ? meta.sha : undefined;
  const files = new Set((meta.siblings ?? []).map((s) => s.rfilename).filter((f): f is string => typeof f === 'string'));
  if (!sha) throw new HubError('invalid', 'the hub did not say which commit to download');

  const wanted = WEIGHTS[opts.dtype];
  if (!files.has(wanted)) {
    const have = (Object.entries(WEIGHTS) as [ModelSpec['dtype'], string][]).filter(([, f]) => files.has(f)).map(([d]) => d);
    if (have.length > 0)
      throw new HubError(
        'no_onnx',
        `the hub repo has no ${wanted} (EMBED_DTYPE ${opts.dtype}); it ships ${have.map((d) => `${d} (${WEIGHTS[d]})`).join(', ')}: set EMBED_DTYPE=${have[0]}`,
      );
    throw new HubError('no_onnx', `the hub repo has no ONNX export (no ${wanted}); ${onnxExportFix(id)}`);
  }
  const missing = REQUIRED.filter((f) => !files.has(f));
  if (missing.length > 0) throw new HubError('invalid', `the hub repo lacks ${missing.join(', ')} (transformers.js needs them)`);

  const pick = [...REQUIRED, ...ST_FILES, wanted, `${wanted}_data`, `${wanted}.data`].filter((f) => files.has(f));
  // Module configs (1_Pooling/config.json, 2_Normalize/config.json, …).
  for (const f of files) if (/^\d+_[^/]+\/config\.json$/.test(f)) pick.push(f);
  if (opts.weights) {
    const w = PYTORCH_WEIGHTS.find((f) => files.has(f));
    if (w) pick.push(w);
  }
  const snap = join(repoFolder(opts.cacheDir, id), 'snapshots', sha);
  for (const f of pick) {
    const dest = join(snap, f);
    if (isFile(dest)) continue;
    const res = await get(`${endpoint}/${id}/resolve/${sha}/${f.split('/').map(encodeURIComponent).join('/')}`);
    if (!res.ok || !res.body) throw new HubError('unreachable', `downloading ${f}: HTTP ${res.status}`);
    mkdirSync(dirname(dest), { recursive: true });
    const tmp = `${dest}.${process.pid}.tmp`;
    try {
      await pipeline(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream), createWriteStream(tmp));
      renameSync(tmp, dest);
    } catch (err) {
      rmSync(tmp, { force: true });
      throw new HubError('unreachable', `downloading ${f}: ${(err as Error).message}`);
    }
  }
  const refs = join(repoFolder(opts.cacheDir, id), 'refs');
  mkdirSync(refs, { recursive: true });
  writeFileSync(join(refs, 'main'), sha);
  if (!completeFor(snap, opts.dtype, false)) throw new HubError('invalid', `downloaded ${id} but ${snap} is still incomplete`);
  return snap;
}

/**
 * A model directory a retrain job can copy into its bundle's base/ (src/train/jobs.ts): a local model as it
 * is; a hub model's cache snapshot with its PyTorch weights (downloaded once, like the ONNX files). When the
 * weights cannot be fetched (offline), the cached snapshot is used and `baseModel` names the hub id for
 * job.json's "base_model", so the trainer loads the weights itself.
 */
export async function trainableModelDir(
  source: { kind: 'hub'; id: string } | { kind: 'dir'; path: string },
  opts: Omit<HubOptions, 'weights'>,
): Promise<{ dir: string; baseModel?: string }> {
  if (source.kind === 'dir') return { dir: source.path };
  try {
    return { dir: await resolveHubModel(source.id, { ...opts, weights: true }) };
  } catch (err) {
    const cached = cachedHubModel(source.id, { ...opts, weights: false });
    if (cached) return { dir: cached, baseModel: source.id };
    throw err;
  }
}
