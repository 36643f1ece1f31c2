// Time to ready for a node that lost its index volume: rebuild from the database (re-embed every chunk)
// vs download the snapshot from S3 (s3rver on this machine) and replay. Same data dir, same model, one run.
//   npx tsx bench/objects/index.ts [--docs 10000] [--model DIR] [--data ../shared/data/go]
import { spawn, type ChildProcess } from 'node:child_process';
import { createReadStream, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { tempDir } from '../../test/helpers.js';
import { startS3 } from '../../test/objects/s3server.js';

const { values: a } = parseArgs({
  options: {
    docs: { type: 'string', default: '10000' },
    model: { type: 'string' },
    data: { type: 'string', default: '../shared/data/go' },
    port: { type: 'string', default: '18741' },
  },
});
const REPO = resolve(import.meta.dirname, '../..');
const base = `http://127.0.0.1:${a.port}`;
const dir = tempDir('bench-objects-');
const s3 = await startS3('bench-objects');
const common = {
  ...process.env,
  DATA_DIR: dir,
  PORT: a.port!,
  HOST: '127.0.0.1',
  AUTH: 'off',
  LOG_LEVEL: 'warn',
  DRIFT_INTERVAL_SECONDS: '0',
  ...(a.model ? { MODEL_DIR: resolve(a.model) } : {}),
};
const withS3 = { ...common, OBJECT_STORE_URL: `s3://${s3.bucket}/bench`, S3_ENDPOINT: s3.endpoint };

async function start(env: NodeJS.ProcessEnv): Promise<{ p: ChildProcess; ms: number }> {
  const t0 = performance.now();
  const p = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], { cwd: REPO, env, stdio: ['ignore', 'ignore', 'inherit'] });
  for (;;) {
    try {
      if ((await fetch(`${base}/readyz`)).ok) return { p, ms: performance.now() - t0 };
    } catch {
      /* starting */
    }
    if (p.exitCode !== null) throw new Error(`server exited with ${p.exitCode}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
const stop = (p: ChildProcess) =>
  new Promise((r) => {
    p.once('exit', r);
    p.kill('SIGTERM');
  });
const post = async (path: string, body: unknown) => {
  const r = await fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
  return r.json() as Promise<{ results?: { id: string }[] }>;
};
const topIds = async (q: string) =>
  ((await post('/search', { collection: 'c', query: q, k: 10 })).results ?? []).map((r) => r.id).join(',');

try {
  const docs: { id: string; text: string }[] = [];
  for await (const l of createInterface({ input: createReadStream(join(a.data!, 'corpus.jsonl')) })) {
    if (!l.trim()) continue;
    const d = JSON.parse(l) as { id: string; text: string };
    docs.push({ id: d.id, text: d.text });
    if (docs.length >= Number(a.docs)) break;
  }
  let { p } = await start(withS3);
  await post('/collections', { name: 'c' });
  const t0 = performance.now();
  for (let i = 0; i < docs.length; i += 256) await post('/collections/c/documents', { documents: docs.slice(i, i + 256) });
  const ingestS = (performance.now() - t0) / 1000;
  const want = await topIds('regulation of transcription');
  await stop(p); // SIGTERM: final snapshot, published to S3

  rmSync(join(dir, 'indexes'), { recursive: true, force: true });
  const rebuild = await start(common);
  const sameRebuilt = (await topIds('regulation of transcription')) === want;
  await stop(rebuild.p);

  rmSync(join(dir, 'indexes'), { recursive: true, force: true });
  const restore = await start(withS3);
  const sameRestored = (await topIds('regulation of transcription')) === want;
  const metrics = await (await fetch(`${base}/metrics`)).text();
  const downloaded = /object_store_bytes_total\{direction="download"\} (\d+)/.exec(metrics)?.[1] ?? '0';
  p = restore.p;
  await stop(p);

  console.log(
    `objects: ${docs.length} docs (${a.data}), model ${a.model ?? 'models/base'}, node ${process.version}; ingest ${ingestS.toFixed(1)} s`,
  );
  console.log(
    `ready after losing the index volume: rebuild from DB ${(rebuild.ms / 1000).toFixed(1)} s (same top-10: ${sameRebuilt}), ` +
      `restore from S3 ${(restore.ms / 1000).toFixed(1)} s (same top-10: ${sameRestored}, ${(Number(downloaded) / 2 ** 20).toFixed(1)} MiB downloaded)`,
  );
  console.log(`ratio restore/rebuild: ${(restore.ms / rebuild.ms).toFixed(3)} (${(rebuild.ms / restore.ms).toFixed(1)}x faster)`);
} finally {
  await s3.close();
  rmSync(dir, { recursive: true, force: true });
}
