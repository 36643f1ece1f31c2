// kill -9 in the middle of a retrain's shadow re-embed: the restarted server serves the last committed
// champion, has every acknowledged document, and the interrupted job is failed with the reason.
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO, TINY_MODEL, freePort, tempDir } from '../helpers.js';
import { GO_FIXTURE as GO, goScenario } from './go-data.js';

const FT = join(REPO, 'test/fixtures/models/tiny-ft-go');

// Response bodies are checked field by field; a loose type keeps the assertions readable.
interface Json {
  [k: string]: any;
}

describe('crash during a swap', () => {
  const cleanups: (() => void)[] = [];
  afterAll(() => {
    for (const c of cleanups.reverse()) c();
  });

  it('kill -9 while re-embedding → restart on the committed champion, nothing lost, job failed with the reason', async () => {
    const dir = tempDir('loop-crash-');
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const port = await freePort();
    const env = {
      ...process.env,
      DATA_DIR: dir,
      MODEL_DIR: TINY_MODEL,
      PORT: String(port),
      HOST: '127.0.0.1',
      LOG_LEVEL: 'warn',
      AUTH: 'off',
      EMBED_WORKERS: '1',
      INDEX_WORKERS: '1',
      DRIFT_INTERVAL_SECONDS: '0',
      TRAINER_BACKEND: 'command',
      TRAINER_COMMAND: `mkdir -p {out} && cp -R '${FT}'/. {out}/ # {bundle}`,
      // Slow the shadow re-embed down so the kill lands inside it.
      REEMBED_BATCH: '16',
      REEMBED_PAUSE_MS: '100',
    };
    const start = () =>
      spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], { cwd: REPO, env, stdio: ['ignore', 'ignore', 'pipe'] });
    const base = `http://127.0.0.1:${port}`;
    const http = async (method: string, path: string, body?: unknown) => {
      const r = await fetch(base + path, {
        method,
        headers: { 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { status: r.status, body: (await r.json()) as Json };
    };
    const waitReady = async (p: ChildProcess) => {
      for (let i = 0; i < 600; i++) {
        if (p.exitCode !== null) throw new Error(`server exited with ${p.exitCode}`);
        try {
          if ((await fetch(`${base}/readyz`)).ok) return;
        } catch {
          /* not listening yet */
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error('server did not become ready');
    };
    let p = start();
    cleanups.push(() => p.kill('SIGKILL'));
    await waitReady(p);
    const champion = (await http('GET', '/models')).body.champion as string;
    expect((await http('POST', '/collections', { name: 'c' })).status).toBe(201);
    const sc = goScenario(GO, { split: 'dev', bp: 60, shift: 60, corpusSize: 600, seed: 11 });
    const docs = sc.docs.map((d) => ({ id: d.id, text: d.text }));
    expect((await http('POST', '/collections/c/documents', { documents: docs })).status).toBe(200);
    // Enough distinct feedback queries for the default held-out set (20 % ≥ 20 queries).
    for (const q of [...sc.bp, ...sc.shift]) {
      const s = await http('POST', '/search', { collection: 'c', query: q.query, k: 3 });
      for (const id of q.relevant) expect((await http('POST', '/feedback', { queryId: s.body.queryId, documentId: id })).status).toBe(201);
    }
    const job = (await http('POST', '/collections/c/retrain', {})).body;
    expect(job.state).toBe('queued');
    // Wait until the shadow re-embed has started, write one more document, then kill -9.
    for (let i = 0; ; i++) {
      const j = (await http('GET', `/jobs/${job.id as string}`)).body;
      if (j.state === 'reembedding' && (j.progress.reembed?.done ?? 0) > 0) break;
      if (['done', 'failed', 'rejected'].includes(j.state as string) || i > 600)
        throw new Error(`job never reached reembedding: ${JSON.stringify(j)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(
      (await http('POST', '/collections/c/documents', { documents: [{ id: 'late', text: 'written during the re-embed' }] })).status,
    ).toBe(200);
    const before = (await http('GET', '/collections/c')).body;
    p.kill('SIGKILL');
    await new Promise((r) => p.once('exit', r));

    p = start();
    await waitReady(p);
    const models = (await http('GET', '/models')).body;
    expect(models.champion).toBe(champion);
    expect((await http('GET', '/collections/c')).body).toMatchObject({
      documents: docs.length + 1,
      chunks: before.chunks,
      model: champion,
    });
    const q = await http('POST', '/search', { collection: 'c', query: 'written during the re-embed', k: 1 });
    expect(q.body.model).toBe(champion);
    expect(q.body.results[0].id).toBe('late');
    const after = (await http('GET', `/jobs/${job.id as string}`)).body;
    expect(after.state).toBe('failed');
    expect(after.error).toBe(`interrupted by a server restart while reembedding; the champion ${champion} kept serving`);
    // The job can be run again and completes.
    const again = (await http('POST', '/collections/c/retrain', {})).body;
    let finished: Json;
    for (let i = 0; ; i++) {
      finished = (await http('GET', `/jobs/${again.id as string}`)).body;
      if (finished.state === 'done') break;
      if (['failed', 'rejected'].includes(finished.state as string) || i > 1200)
        throw new Error(`retry did not finish: ${JSON.stringify(finished)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect((await http('GET', '/models')).body.champion).toBe(finished.candidateVersion);
    expect((await http('GET', '/collections/c')).body.chunks).toBe(before.chunks);
  }, 180_000);
});
