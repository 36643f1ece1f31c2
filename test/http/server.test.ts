import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, describe, expect, test } from 'vitest';
import type { IndexManager } from '../../src/index/manager.js';
import { REPO, TINY_MODEL, freePort, startTestServer, tempDir } from '../helpers.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

function which(cmd: string): string | undefined {
  try {
    return (
      execFileSync('sh', ['-c', `command -v ${cmd}`])
        .toString()
        .trim() || undefined
    );
  } catch {
    return undefined;
  }
}

describe('real HTTP', () => {
  test('OpenAI-compatible /v1/embeddings through the official openai client (float and base64)', async () => {
    const s = await startTestServer({}, { listen: true });
    cleanups.push(() => s.dispose());
    const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'unused' });
    const texts = ['mitochondrial fission', 'protein kinase activity'];
    const b64 = await client.embeddings.create({ model: 'default', input: texts }); // the client asks for base64
    const flt = await client.embeddings.create({ model: 'default', input: texts, encoding_format: 'float' });
    expect(b64.data).toHaveLength(2);
    expect(b64.model).toBe(s.engine.serving.version);
    const dim = s.engine.serving.embedder.dim;
    for (let i = 0; i < 2; i++) {
      const a = b64.data[i]!.embedding;
      const f = flt.data[i]!.embedding;
      expect(a).toHaveLength(dim);
      expect(f).toHaveLength(dim);
      for (let j = 0; j < dim; j++) expect(a[j]).toBeCloseTo(f[j]!, 5);
      expect(Math.hypot(...f)).toBeCloseTo(1, 4);
    }
    await expect(client.embeddings.create({ model: 'x', input: [] })).rejects.toMatchObject({ status: 400 });
  }, 60_000);

  test('/metrics is valid Prometheus exposition (promtool check metrics)', async () => {
    const s = await startTestServer();
    cleanups.push(() => s.dispose());
    await s.req('POST', '/collections', { name: 'm' });
    await s.req('POST', '/collections/m/documents', { documents: [{ id: '1', text: 'hello world' }] });
    await s.req('POST', '/search', { collection: 'm', query: 'hello', k: 1 });
    await s.req('POST', '/search', { collection: 'nope', query: 'hello', k: 1 });
    const r = await s.req('GET', '/metrics');
    expect(r.status).toBe(200);
    const text = r.body as string;
    for (const name of [
      'http_requests_total',
      'http_request_duration_seconds_bucket',
      'embed_batch_size_bucket',
      'embed_batch_duration_seconds_bucket',
      'index_size',
      'ingest_documents_total',
      'model_info',
    ]) {
      expect(text).toContain(name);
    }
    expect(text).toMatch(/http_requests_total\{route="\/search",method="POST",status="404"\} 1/);
    expect(text).toMatch(/ingest_documents_total\{collection="m"\} 1/);
    const promtool = which('promtool');
    if (!promtool) {
      // CI installs Debian's prometheus package; a developer box without it is told so, not silently passed.
      expect(process.env.CI, 'promtool missing (apt-get install prometheus)').not.toBe('true');
      return;
    }
    const file = join(s.dataDir, 'metrics.txt');
    writeFileSync(file, text);
    const out = execFileSync('sh', ['-c', `promtool check metrics < ${file} 2>&1; echo "rc=$?"`]).toString();
    expect(out.trim().split('\n').pop(), out).toBe('rc=0');
  }, 60_000);

  test('readyz is 503 until loaded, healthz always 200', async () => {
    const s = await startTestServer();
    cleanups.push(() => s.dispose());
    expect((await s.req('GET', '/healthz')).status).toBe(200);
    expect((await s.req('GET', '/readyz')).body).toMatchObject({ ready: true });
  }, 60_000);
});

describe('durability', () => {
  test('restart loads the snapshot and replays writes made after it', async () => {
    const dir = tempDir();
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const a = await startTestServer({ DATA_DIR: dir });
    await a.req('POST', '/collections', { name: 'd' });
    await a.req('POST', '/collections/d/documents', {
      documents: [
        { id: '1', text: 'first document about rivers' },
        { id: '2', text: 'second document about mountains' },
      ],
    });
    await a.engine.snapshotAll();
    const rec = (await a.store.listIndexRecords())[0]!;
    expect(rec.status).toBe('ready');
    expect(existsSync(rec.path!)).toBe(true);
    // After the snapshot: an add, a replace and a delete that only the store knows about.
    await a.req('POST', '/collections/d/documents', {
      documents: [
        { id: '3', text: 'third document about deserts' },
        { id: '1', text: 'first document rewritten about oceans' },
      ],
    });
    await a.req('DELETE', '/collections/d/documents/2');
    // Simulate a crash: no final snapshot (close the store and workers without engine.stop()).
    await a.engine.queryLog.stop();
    await a.indexes.close();
    await a.store.close();
    const b = await startTestServer({ DATA_DIR: dir });
    cleanups.push(() => b.dispose());
    expect((await b.req('GET', '/collections/d')).body).toMatchObject({ documents: 2, chunks: 2 });
    const q1 = await b.req('POST', '/search', { collection: 'd', query: 'third document about deserts', k: 5 });
    expect(q1.body.results.map((r: { id: string }) => r.id).sort()).toEqual(['1', '3']);
    expect(q1.body.results[0].id).toBe('3');
    const q2 = await b.req('POST', '/search', { collection: 'd', query: 'first document rewritten about oceans', k: 1 });
    expect(q2.body.results[0]).toMatchObject({ id: '1', text: 'first document rewritten about oceans' });
  }, 90_000);

  test('a corrupt snapshot is not loaded: the index is rebuilt from the store', async () => {
    const dir = tempDir();
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const a = await startTestServer({ DATA_DIR: dir });
    await a.req('POST', '/collections', { name: 'c' });
    await a.req('POST', '/collections/c/documents', {
      documents: Array.from({ length: 30 }, (_, i) => ({ id: `d${i}`, text: `document number ${i} about topic ${i % 7}` })),
    });
    await a.close(); // graceful: writes the final snapshot
    const rec = (
      await (await import('../../src/store/index.js')).openStore({ dataDir: dir }).then(async (st) => {
        const r = await st.listIndexRecords();
        await st.close();
        return r;
      })
    )[0]!;
    expect(rec.status).toBe('ready');
    truncateSync(rec.path!, 100);
    const b = await startTestServer({ DATA_DIR: dir });
    cleanups.push(() => b.dispose());
    expect((await b.req('GET', '/collections/c')).body).toMatchObject({ documents: 30, chunks: 30 });
    const q = await b.req('POST', '/search', { collection: 'c', query: 'document number 17 about topic 3', k: 1 });
    expect(q.body.results[0].id).toBe('d17');
  }, 90_000);

  test('a crashed index worker is detected and the index reloaded: searches keep working', async () => {
    const s = await startTestServer();
    cleanups.push(() => s.dispose());
    await s.req('POST', '/collections', { name: 'w' });
    await s.req('POST', '/collections/w/documents', {
      documents: Array.from({ length: 40 }, (_, i) => ({ id: `d${i}`, text: `worker crash test document ${i} about topic ${i % 5}` })),
    });
    // The default backend (hnswlib worker threads).
    await (s.indexes as IndexManager).killWorker(0);
    const r = await s.req('POST', '/search', { collection: 'w', query: 'worker crash test document 12 about topic 2', k: 3 });
    expect(r.status).toBe(200);
    expect(r.body.results[0].id).toBe('d12');
    expect((await s.req('GET', '/collections/w')).body.chunks).toBe(40);
  }, 60_000);

  test('kill -9 during bulk ingest and snapshots (3 times): every acknowledged document is searchable after restart', async () => {
    const dir = tempDir();
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const port = await freePort();
    const env = {
      ...process.env,
      DATA_DIR: dir,
      MODEL_DIR: TINY_MODEL,
      PORT: String(port),
      HOST: '127.0.0.1',
      LOG_LEVEL: 'error',
      AUTH: 'off',
      SNAPSHOT_EVERY_SECONDS: '1',
      EMBED_WORKERS: '1',
      INDEX_WORKERS: '1',
    };
    const start = () =>
      spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], { cwd: REPO, env, stdio: ['ignore', 'ignore', 'pipe'] });
    const waitReady = async (p: ChildProcess) => {
      for (let i = 0; i < 600; i++) {
        if (p.exitCode !== null) throw new Error(`server exited with ${p.exitCode}`);
        try {
          if ((await fetch(`http://127.0.0.1:${port}/readyz`)).ok) return;
        } catch {
          /* not listening yet */
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error('server did not become ready');
    };
    const base = `http://127.0.0.1:${port}`;
    const post = (path: string, body: unknown) =>
      fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    let p = start();
    cleanups.push(() => {
      p.kill('SIGKILL');
    });
    await waitReady(p);
    expect((await post('/collections', { name: 'k' })).status).toBe(201);
    const acked: string[] = [];
    let batch = 0;
    // Three kill -9s at different offsets: with a snapshot every second, some land mid-snapshot
    // (writeIndex to .tmp, rename, sidecar), some mid-ingest transaction.
    for (const killAfterMs of [2500, 1300, 3100]) {
      let stop = false;
      const ingest = (async () => {
        while (!stop) {
          const docs = Array.from({ length: 20 }, (_, i) => ({
            id: `b${batch}-${i}`,
            text: `batch ${batch} item ${i} about subject ${(batch * 20 + i) % 97}`,
          }));
          try {
            const r = await post('/collections/k/documents', { documents: docs });
            if (r.status !== 200) break;
            acked.push(...docs.map((d) => d.id));
            batch++;
          } catch {
            break;
          }
        }
      })();
      await new Promise((r) => setTimeout(r, killAfterMs));
      p.kill('SIGKILL');
      stop = true;
      await ingest;
      p = start();
      await waitReady(p);
      const info = (await (await fetch(`${base}/collections/k`)).json()) as { documents: number; chunks: number };
      expect(info.documents).toBeGreaterThanOrEqual(acked.length);
      expect(info.chunks).toBe(info.documents);
      // Every acknowledged document is in the index: an exact-text query finds a sample of them.
      const sample = acked.filter((_, i) => i % Math.max(1, Math.floor(acked.length / 15)) === 0);
      for (const id of sample) {
        const [b, i] = id.slice(1).split('-').map(Number) as [number, number];
        const r = (await (
          await post('/search', { collection: 'k', query: `batch ${b} item ${i} about subject ${(b * 20 + i) % 97}`, k: 3 })
        ).json()) as { results: { id: string }[] };
        expect(r.results.map((x) => x.id)).toContain(id);
      }
    }
    expect(acked.length).toBeGreaterThan(0);
    p.kill('SIGTERM');
  }, 180_000);
});
