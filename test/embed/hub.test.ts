// Hub downloads against a local stand-in for huggingface.co (HF_ENDPOINT): the model info API and
// /resolve/<sha>/<file>. First start downloads into DATA_DIR/models/cache (hub-cache layout) only the files
// serving needs; the second start is offline; a repo without ONNX weights fails with the export command.
import { createReadStream, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cachedHubModel, resolveHubModel, trainableModelDir } from '../../src/embed/hub.js';
import { loadEmbedder, ModelLoadError, resolveModelSpec } from '../../src/embed/registry.js';
import { ST_FIXTURES } from './st-fixtures.js';

const tmp = mkdtempSync(join(tmpdir(), 'hub-test-'));
const SRC = join(ST_FIXTURES, 'st-e5-tiny');
const SHA = 'a'.repeat(40);

function files(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => statSync(join(dir, f)).isFile())
    .map((f) => f.split('\\').join('/'));
}

let server: Server;
let endpoint: string;
const requests: string[] = [];
// repo id → local dir and the files the stand-in says it has
const repos: Record<string, { dir: string; omit?: RegExp }> = {
  'org/e5': { dir: SRC },
  'org/no-onnx': { dir: SRC, omit: /^onnx\// },
  'org/fp32-only': { dir: SRC, omit: /model_quantized/ },
};

beforeAll(async () => {
  server = createServer((req, res) => {
    const url = decodeURIComponent(req.url ?? '');
    requests.push(url);
    const info = /^\/api\/models\/(.+)\/revision\/main$/.exec(url);
    if (info) {
      const repo = repos[info[1]!];
      if (!repo) return void res.writeHead(404).end('{"error":"Repository not found"}');
      const siblings = files(repo.dir)
        .filter((f) => !repo.omit?.test(f))
        .map((rfilename) => ({ rfilename }));
      return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id: info[1], sha: SHA, siblings }));
    }
    const file = /^\/(.+?\/.+?)\/resolve\/([0-9a-f]+)\/(.+)$/.exec(url);
    const repo = file && repos[file[1]!];
    if (!file || !repo || file[2] !== SHA || !existsSync(join(repo.dir, file[3]!))) return void res.writeHead(404).end();
    res.writeHead(200);
    createReadStream(join(repo.dir, file[3]!)).pipe(res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  endpoint = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});

afterAll(async () => {
  await new Promise((r) => server.close(r));
  rmSync(tmp, { recursive: true, force: true });
});

const env = () => ({ HF_ENDPOINT: endpoint, HF_HUB_CACHE: join(tmp, 'no-python-cache') });

describe('hub ids', { timeout: 60_000 }, () => {
  it('downloads once into the hub-cache layout, only what serving needs; then serves offline', async () => {
    const cacheDir = join(tmp, 'cache1');
    const dir = await resolveHubModel('org/e5', { cacheDir, dtype: 'q8', env: env() });
    expect(relative(cacheDir, dir)).toBe(`models--org--e5/snapshots/${SHA}`);
    expect(readFileSync(join(cacheDir, 'models--org--e5/refs/main'), 'utf8')).toBe(SHA);
    expect(files(dir).sort()).toEqual([
      '1_Pooling/config.json',
      'config.json',
      'config_sentence_transformers.json',
      'modules.json',
      'onnx/model_quantized.onnx',
      'sentence_bert_config.json',
      'tokenizer.json',
      'tokenizer_config.json',
    ]);
    const n = requests.length;
    // offline now: the cache answers
    expect(await resolveHubModel('org/e5', { cacheDir, dtype: 'q8', env: { ...env(), HF_HUB_OFFLINE: '1' } })).toBe(dir);
    expect(requests.length).toBe(n);
    // a retrain job asks for the PyTorch weights: only they are fetched
    const t = await trainableModelDir({ kind: 'hub', id: 'org/e5' }, { cacheDir, dtype: 'q8', env: env() });
    expect(t).toEqual({ dir });
    expect(existsSync(join(dir, 'model.safetensors'))).toBe(true);
    expect(requests.slice(n).filter((u) => u.includes('/resolve/'))).toEqual([`/org/e5/resolve/${SHA}/model.safetensors`]);
    // offline and no weights cached: the snapshot is used and job.json names the hub id
    const cache2 = join(tmp, 'cache2');
    await resolveHubModel('org/e5', { cacheDir: cache2, dtype: 'q8', env: env() });
    expect(
      await trainableModelDir({ kind: 'hub', id: 'org/e5' }, { cacheDir: cache2, dtype: 'q8', env: { ...env(), HF_HUB_OFFLINE: '1' } }),
    ).toEqual({ dir: cachedHubModel('org/e5', { cacheDir: cache2, dtype: 'q8', env: env() }), baseModel: 'org/e5' });
  });

  it("a server start with EMBED_MODEL downloads through HF_ENDPOINT and serves with the repo's prompts", async () => {
    const saved = { HF_ENDPOINT: process.env.HF_ENDPOINT, HF_HUB_CACHE: process.env.HF_HUB_CACHE };
    Object.assign(process.env, env());
    try {
      const cacheDir = join(tmp, 'cache3');
      const e = await loadEmbedder(resolveModelSpec({ EMBED_MODEL: 'org/e5', defaultDir: '/x' }), {
        cacheDir,
        workers: 1,
        maxBatch: 8,
        maxWaitMs: 1,
        maxQueue: 100,
      });
      try {
        expect(e.model).toMatchObject({ pooling: 'mean', queryPrompt: 'query', documentPrompt: 'document', file: 'onnx/model.onnx' });
        expect(e.model!.dir).toBe(join(cacheDir, `models--org--e5/snapshots/${SHA}`));
      } finally {
        await e.close();
      }
    } finally {
      for (const [k, v] of Object.entries(saved))
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
    }
  });

  it('one line with the fix when the repo has no ONNX export, or not the asked dtype; not found → not_found', async () => {
    const opts = { cacheDir: join(tmp, 'cache4'), dtype: 'fp32' as const, env: env() };
    await expect(resolveHubModel('org/no-onnx', opts)).rejects.toThrow(
      /^the hub repo has no ONNX export \(no onnx\/model\.onnx\); export it once and serve the directory: hf download org\/no-onnx --local-dir \.\/no-onnx && optimum-cli export onnx --model \.\/no-onnx --task feature-extraction \.\/no-onnx\/onnx, then MODEL_DIR=\.\/no-onnx$/,
    );
    await expect(resolveHubModel('org/fp32-only', { ...opts, dtype: 'q8' })).rejects.toThrow(
      /has no onnx\/model_quantized\.onnx \(EMBED_DTYPE q8\); it ships fp32 \(onnx\/model\.onnx\): set EMBED_DTYPE=fp32/,
    );
    await expect(resolveHubModel('org/missing', opts)).rejects.toMatchObject({ reason: 'not_found' });
    // through the registry: a ModelLoadError naming EMBED_MODEL, one line
    const saved = process.env.HF_ENDPOINT;
    process.env.HF_ENDPOINT = endpoint;
    try {
      const err = await loadEmbedder(resolveModelSpec({ EMBED_MODEL: 'org/no-onnx', defaultDir: '/x' }), {
        cacheDir: join(tmp, 'cache5'),
        workers: 1,
        maxBatch: 8,
        maxWaitMs: 1,
        maxQueue: 100,
      }).then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      expect(err).toBeInstanceOf(ModelLoadError);
      expect(err!.message).toMatch(
        /^cannot load model "org\/no-onnx" \(EMBED_MODEL\): the hub repo has no ONNX export .*optimum-cli export onnx/,
      );
      expect(err!.message).not.toContain('\n');
    } finally {
      if (saved === undefined) delete process.env.HF_ENDPOINT;
      else process.env.HF_ENDPOINT = saved;
    }
  });
});
