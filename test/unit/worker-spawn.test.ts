import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

// spawnWorker bundles a .ts worker entry into a data: URL module where it can (a plain `node --import
// tsx` process, as the server runs): vitest's transforms hide import.meta.resolve, so this runs in a
// child process — the index and embed workers as the server starts them, answering real calls.
const REPO = resolve(import.meta.dirname, '../..');
const run = async (script: string) => {
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: REPO,
    env: { ...process.env, CACHE_DIR: mkdtempSync(join(tmpdir(), 'worker-spawn-')) },
    timeout: 60_000,
  });
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
};

describe('spawnWorker outside vitest', () => {
  it('runs a bundled entry (its relative TypeScript imports included) from a data: URL', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'worker-bundle-'));
    writeFileSync(join(dir, 'dep.ts'), 'export const where = (): string => new Error("here").stack ?? "";\n');
    writeFileSync(
      join(dir, 'entry.ts'),
      "import { parentPort } from 'node:worker_threads';\nimport { where } from './dep.js';\nparentPort?.postMessage(where());\n",
    );
    const out = await run(`
import { spawnWorker } from ${JSON.stringify(join(REPO, 'src/util/worker.ts'))};
const w = spawnWorker(new URL(${JSON.stringify(`file://${join(dir, 'entry.ts')}`)}));
const stack = await new Promise((r) => w.once('message', r));
await w.terminate();
console.log(JSON.stringify({ fromData: /data:text\\/javascript/.test(stack) }));`);
    expect(out).toEqual({ fromData: true });
  }, 90_000);

  it('the index and embed workers start bundled and answer', async () => {
    const out = await run(`
import { IndexManager } from ${JSON.stringify(join(REPO, 'src/index/manager.ts'))};
import { loadEmbedder, resolveModelSpec } from ${JSON.stringify(join(REPO, 'src/embed/registry.ts'))};
const m = new IndexManager({ workers: 1 });
const idx = await m.create({ collectionId: 1, modelVersion: 'v' }, 2, { M: 8, efConstruction: 50, efSearch: 10 });
await idx.add([7, 8], [Float32Array.of(1, 0), Float32Array.of(0, 1)]);
const hits = await idx.search(Float32Array.of(0, 1), 1);
await m.close();
const dir = ${JSON.stringify(join(REPO, 'test/fixtures/models/tiny'))};
const emb = await loadEmbedder(resolveModelSpec({ MODEL_DIR: dir, defaultDir: dir }), { workers: 1, maxBatch: 8, maxWaitMs: 1, maxQueue: 100, cacheDir: process.env.CACHE_DIR });
const [v] = await emb.embed(['hello world']);
await emb.close();
console.log(JSON.stringify({ hits: hits.map((h) => h.label), norm: Math.round(Math.hypot(...v) * 1000) / 1000 }));`);
    expect(out).toEqual({ hits: [8], norm: 1 });
  }, 90_000);

  it('an entry that reads import.meta is not bundled: its file URL matters', async () => {
    const entry = join(mkdtempSync(join(tmpdir(), 'worker-meta-')), 'meta-worker.ts');
    writeFileSync(entry, "import { parentPort } from 'node:worker_threads';\nparentPort?.postMessage(import.meta.url as string);\n");
    const out = await run(`
import { spawnWorker } from ${JSON.stringify(join(REPO, 'src/util/worker.ts'))};
const w = spawnWorker(new URL(${JSON.stringify(`file://${entry}`)}));
const url = await new Promise((r) => w.once('message', r));
await w.terminate();
console.log(JSON.stringify({ url }));`);
    expect(out).toEqual({ url: `file://${entry}` });
  }, 90_000);
});
