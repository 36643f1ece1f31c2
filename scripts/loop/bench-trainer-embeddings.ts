// Shadow re-embed from trainer-made embeddings vs the CPU re-embed, on this machine: a GO collection served by
// MODEL_DIR (default models/base), its chunks embedded by the trainer's own code (embed_rows, CPU PyTorch via
// test/fixtures/embeddings/make.py), then Swapper.shadowBuild once from the file and once on the CPU.
//   TRAINER_FIXTURE_PYTHON=/path/to/python (torch + sentence-transformers) [EMBED_DTYPE=q8] npx tsx scripts/loop/bench-trainer-embeddings.ts [docs]
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Config } from '../../src/config.js';
import { startServer } from '../../src/server.js';
import { Swapper } from '../../src/swap/swap.js';
import { GO_FIXTURE, goScenario } from '../../test/loop/go-data.js';

const REPO = resolve(import.meta.dirname, '../..');
const MODEL = process.env.MODEL_DIR ?? join(REPO, 'models/base');
const PYTHON = process.env.TRAINER_FIXTURE_PYTHON ?? 'python3';
const n = Number(process.argv[2] ?? 2500);
const dir = mkdtempSync(join(tmpdir(), 'emb-bench-'));
const server = await startServer({
  env: {},
  listen: false,
  config: {
    DATA_DIR: join(dir, 'data'),
    MODEL_DIR: MODEL,
    LOG_LEVEL: 'warn',
    PORT: 0,
    HOST: '127.0.0.1',
    AUTH: 'off',
    SNAPSHOT_EVERY_SECONDS: 3600,
    DRIFT_INTERVAL_SECONDS: 0,
    ...(process.env.EMBED_DTYPE ? { EMBED_DTYPE: process.env.EMBED_DTYPE as Config['EMBED_DTYPE'] } : {}),
  },
});
try {
  const { engine, collections, store } = server;
  const sc = goScenario(GO_FIXTURE, { split: 'dev', bp: 160, shift: 240, corpusSize: 2500, seed: 5 });
  await collections.create('c');
  let t = performance.now();
  const docs = sc.docs.slice(0, n);
  for (let i = 0; i < docs.length; i += 256)
    await collections.upsertDocuments(
      'c',
      docs.slice(i, i + 256).map((d) => ({ id: d.id, text: d.text })),
    );
  const ingest = (performance.now() - t) / 1000;
  const c = await server.catalog.require('c');
  const seq = await store.currentSeq();
  const live = await store.liveChunks(c.id, 0, 1e9);
  const bundle = join(dir, 'bundle');
  mkdirSync(bundle);
  writeFileSync(join(bundle, 'embed.jsonl'), live.map((r) => JSON.stringify({ id: String(r.label), text: r.text })).join('\n') + '\n');
  t = performance.now();
  execFileSync(PYTHON, [join(REPO, 'test/fixtures/embeddings/make.py'), bundle, join(MODEL, 'pytorch'), join(dir, 'embeddings')], {
    cwd: REPO,
    env: { ...process.env, PYTHONPATH: REPO },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const trainerEmbed = (performance.now() - t) / 1000;
  const swapper = new Swapper({
    engine,
    store,
    indexes: server.indexes,
    config: { ...server.config, REEMBED_PAUSE_MS: 0 },
    metrics: server.metrics,
    log: server.log,
  });
  const embedder = engine.serving.embedder;
  for (const v of ['bench-file', 'bench-cpu'])
    await store.upsertModelVersion({
      version: v,
      parentVersion: null,
      source: `dir:${MODEL}`,
      dim: embedder.dim,
      status: 'candidate',
      card: {},
    });
  t = performance.now();
  const fromFile = await swapper.shadowBuild('bench-file', embedder, undefined, { dir: join(dir, 'embeddings'), collectionId: c.id, seq });
  const fileWall = (performance.now() - t) / 1000;
  t = performance.now();
  await swapper.shadowBuild('bench-cpu', embedder);
  const cpuWall = (performance.now() - t) / 1000;
  console.log(
    JSON.stringify(
      {
        model: MODEL,
        dtype: process.env.EMBED_DTYPE ?? 'default',
        dim: embedder.dim,
        docs: docs.length,
        chunks: live.length,
        ingestSeconds: ingest,
        trainerEmbedSecondsCpuTorch: trainerEmbed,
        fromFile: { wallSeconds: fileWall, report: fromFile.reembed },
        cpuReembedWallSeconds: cpuWall,
        speedup: cpuWall / fileWall,
      },
      null,
      2,
    ),
  );
} finally {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
}
