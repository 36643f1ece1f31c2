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

const script = `
import { bundleWorker } from ${JSON.stringify(join(REPO, 'src/util/worker.ts'))};
import { IndexManager } from ${JSON.stringify(join(REPO, 'src/index/manager.ts'))};
import { loadEmbedder, resolveModelSpec } from ${JSON.stringify(join(REPO, 'src/embed/registry.ts'))};
const hnsw = bundleWorker(new URL(${JSON.stringify(`file://${join(REPO, 'src/index/hnsw-worker.ts')}`)}));
const m = new IndexManager({ workers: 1 });
const idx = await m.create({ collectionId: 1, modelVersion: 'v' }, 2, { M: 8, efConstruction: 50, efSearch: 10 });
await idx.add([7, 8], [Float32Array.of(1, 0), Float32Array.of(0, 1)]);
const hits = await idx.search(Float32Array.of(0, 1), 1);
await m.close();
const dir = ${JSON.stringify(join(REPO, 'test/fixtures/models/tiny'))};
const emb = await loadEmbedder(resolveModelSpec({ MODEL_DIR: dir, defaultDir: dir }), { workers: 1, maxBatch: 8, maxWaitMs: 1, maxQueue: 100, cacheDir: process.env.CACHE_DIR });
const [v] = await emb.embed(['hello world']);
await emb.close();
console.log(JSON.stringify({ protocol: hnsw?.protocol, hits, dim: v.length, norm: Math.hypot(...v) }));
`;

describe('spawnWorker outside vitest', () => {
  it('starts the index and embed workers from bundles, and they answer', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: REPO, env: { ...process.env, CACHE_DIR: mkdtempSync(join(tmpdir(), 'worker-spawn-')) }, timeout: 60_000,
    });
    const out = JSON.parse(stdout.trim().split('\n').at(-1)!) as { protocol: string; hits: { label: number }[]; dim: number; norm: number };
    expect(out.protocol).toBe('data:');
    expect(out.hits.map((h) => h.label)).toEqual([8]);
    expect(out.dim).toBeGreaterThan(0);
    expect(out.norm).toBeCloseTo(1, 3);
  }, 90_000);
});

describe('spawnWorker outside vitest, an entry that reads import.meta', () => {
  it('is not bundled: its file URL matters', async () => {
    const entry = join(mkdtempSync(join(tmpdir(), 'worker-meta-')), 'meta-worker.ts');
    writeFileSync(entry, "import { parentPort } from 'node:worker_threads';\nparentPort?.postMessage(import.meta.url as string);\n");
    const code = `
import { bundleWorker, spawnWorker } from ${JSON.stringify(join(REPO, 'src/util/worker.ts'))};
const entry = new URL(${JSON.stringify(`file://${entry}`)});
const w = spawnWorker(entry);
const url = await new Promise((r) => w.once('message', r));
await w.terminate();
console.log(JSON.stringify({ bundled: bundleWorker(entry) !== null, url }));`;
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { cwd: REPO, timeout: 60_000 });
    expect(JSON.parse(stdout.trim().split('\n').at(-1)!)).toEqual({ bundled: false, url: `file://${entry}` });
  }, 90_000);
});
