// Retrain jobs and model routes on a real server (SQLite, ONNX tiny model): bad input answered with
// stable codes, trainer crash / timeout / empty artifact → `failed` with the trainer's stderr tail while
// the champion keeps serving, and restart recovery (a queued job is resumed, a mid-way one is failed).
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config.js';
import type { Loop } from '../../src/loop.js';
import { modelsDir } from '../../src/serving/models.js';
import { openStore } from '../../src/store/index.js';
import { startTestServer, tempDir, type TestServer } from '../helpers.js';
import { startLlm } from './llm-server.js';

// Response bodies are checked field by field; a loose type keeps the assertions readable.
interface Json {
  [k: string]: any;
}

const TOPICS = ['kinase', 'membrane', 'ribosome', 'mitochondrion', 'apoptosis', 'transport', 'receptor', 'chromatin', 'cilium', 'synapse'];
const docs = Array.from({ length: 120 }, (_, i) => ({
  id: `doc-${i}`,
  text: `Passage ${i} about ${TOPICS[i % 10]} number ${i}. It explains the role of ${TOPICS[(i + 3) % 10]} in cell ${i}.`,
}));

async function start(dir: string, cfg: Partial<Config>, onReady?: (l: Loop) => void): Promise<TestServer> {
  return startTestServer(
    { DATA_DIR: dir, TRAINER_BACKEND: 'command', TRAINER_TIMEOUT_SECONDS: 30, ...cfg },
    {
      loop: { onReady, mining: { minEvalQueries: 5, pseudoQueries: 20 } },
    },
  );
}

/** 60 searches with feedback so a job has something to mine. */
async function traffic(s: TestServer): Promise<void> {
  for (let i = 0; i < 60; i++) {
    const r = await s.req('POST', '/search', { collection: 'c', query: `what does ${TOPICS[i % 10]} ${i} do`, k: 5 });
    expect(r.status).toBe(200);
    expect((await s.req('POST', '/feedback', { queryId: r.body.queryId, documentId: `doc-${i}` })).status).toBe(201);
  }
}

type Job = NonNullable<Awaited<ReturnType<Loop['jobs']['wait']>>>;

/** A fresh server with `cfg`: collection `c` with the documents and traffic, one retrain waited for, then `check`. */
async function withRetrain(prefix: string, cfg: Partial<Config>, check: (job: Job, s: TestServer) => Promise<void>): Promise<void> {
  const dir = tempDir(prefix);
  let loop!: Loop;
  const s = await start(dir, cfg, (l) => {
    loop = l;
  });
  try {
    await s.req('POST', '/collections', { name: 'c' });
    await s.req('POST', '/collections/c/documents', { documents: docs });
    await traffic(s);
    const r = await s.req('POST', '/collections/c/retrain');
    const job = await loop.jobs.wait(r.body.id as string);
    expect(job).toBeDefined();
    await check(job!, s);
  } finally {
    await s.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('retrain jobs', () => {
  let dir: string;
  let s: TestServer;
  let loop: Loop;

  beforeAll(async () => {
    dir = tempDir('jobs-');
    s = await start(
      dir,
      {
        // Writes a progress line and a log line, then crashes like a Python traceback would.
        TRAINER_COMMAND: `echo '{"event":"progress","step":3,"loss":1.25}'; echo 'loading bundle' >&2; echo 'Traceback (most recent call last):' >&2; echo 'RuntimeError: CUDA out of memory' >&2; exit 3 # {bundle} {out}`,
      },
      (l) => {
        loop = l;
      },
    );
    await s.req('POST', '/collections', { name: 'c' });
    await s.req('POST', '/collections', { name: 'empty' });
    expect((await s.req('POST', '/collections/c/documents', { documents: docs })).status).toBe(200);
    await traffic(s);
  }, 60_000);

  afterAll(async () => {
    await s?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers bad input with stable 4xx codes', async () => {
    expect((await s.req('POST', '/collections/empty/retrain')).body.error.code).toBe('collection_empty');
    expect((await s.req('POST', '/collections/empty/retrain')).status).toBe(409);
    expect((await s.req('POST', '/collections/nope/retrain')).status).toBe(404);
    expect((await s.req('POST', '/collections/c/retrain', { epochs: 3 })).body.error.code).toBe('invalid_request');
    expect((await s.req('POST', '/collections/c/retrain', '{oops')).body.error.code).toBe('invalid_json');
    expect((await s.req('GET', '/jobs/00000000-0000-0000-0000-000000000000')).body.error.code).toBe('job_not_found');
    expect((await s.req('GET', '/jobs?state=bogus')).body.error.code).toBe('invalid_request');
    expect((await s.req('GET', '/drift')).body.error.code).toBe('invalid_request');
    expect((await s.req('GET', '/drift?collection=nope')).body.error.code).toBe('collection_not_found');
    const fb = await s.req('POST', '/feedback', { queryId: 'no-such-query', documentId: 'doc-1' });
    expect(fb.status).toBe(404);
    expect(fb.body.error.code).toBe('query_not_found');
    const rb = await s.req('POST', '/models/no-such-version/rollback');
    expect(rb.status).toBe(404);
    expect(rb.body.error.code).toBe('model_not_found');
  });

  it('rollback to a purged version or one whose files are gone → 409 model_unavailable', async () => {
    const champion = s.engine.serving.version;
    await s.store.upsertModelVersion({
      version: 'old-purged',
      parentVersion: null,
      source: 'dir:/nonexistent/purged',
      dim: 64,
      status: 'retired',
      card: {},
    });
    await s.store.upsertModelVersion({
      version: 'old-gone',
      parentVersion: null,
      source: 'dir:/nonexistent/gone',
      dim: 64,
      status: 'retired',
      card: {},
    });
    // Give both a past as champion, then put the real champion back (the engine keeps serving it).
    await s.store.promote('old-purged');
    await s.store.promote('old-gone');
    await s.store.promote(champion);
    await s.store.setModelStatus('old-purged', 'purged');
    for (const v of ['old-purged', 'old-gone']) {
      const r = await s.req('POST', `/models/${v}/rollback`);
      expect(r.status).toBe(409);
      expect(r.body.error.code).toBe('model_unavailable');
    }
    expect((await s.req('GET', '/models')).body.champion).toBe(champion);
    const same = await s.req('POST', `/models/${champion}/rollback`);
    expect(same.body).toMatchObject({ model: champion, changed: false });
  });

  it('a trainer crash fails the job with the stderr tail; a second retrain while one runs is refused; the champion keeps serving', async () => {
    const champion = s.engine.serving.version;
    const r = await s.req('POST', '/collections/c/retrain', {});
    expect(r.status).toBe(202);
    expect(r.body.state).toBe('queued');
    const second = await s.req('POST', '/collections/c/retrain');
    expect(second.status).toBe(409);
    expect(second.body.error.code).toBe('job_running');
    const job = await loop.jobs.wait(r.body.id as string);
    expect(job!.state).toBe('failed');
    expect(job!.error).toMatch(/^trainer exited with 3/);
    expect(job!.error).toContain('RuntimeError: CUDA out of memory');
    expect(job!.error).toContain('loading bundle');
    const view = (await s.req('GET', `/jobs/${job!.id}`)).body;
    expect(view.progress.training.progress).toMatchObject({ step: 3, loss: 1.25 });
    expect(view.progress.training.lastEvent).toBe('progress');
    expect(view.progress.stderrTail).toContain('Traceback (most recent call last):');
    expect(view.progress.mining.feedbackQueries).toBe(60);
    expect(Object.keys(view.timings)).toEqual(expect.arrayContaining(['queued', 'mining', 'training', 'total']));
    expect(view.gate).toBeNull();
    // Nothing changed for searches.
    const q = await s.req('POST', '/search', { collection: 'c', query: 'kinase', k: 3 });
    expect(q.status).toBe(200);
    expect(q.body.model).toBe(champion);
    expect((await s.req('GET', '/jobs?collection=c')).body.jobs[0].id).toBe(job!.id);
    const metrics = (await s.req('GET', '/metrics')).body as string;
    expect(metrics).toMatch(/train_jobs_total\{state="failed"\} 1/);
  });
});

describe('trainer timeout, empty artifact, and restart recovery', () => {
  it('kills a trainer past TRAINER_TIMEOUT_SECONDS and fails the job with its last lines', async () => {
    await withRetrain(
      'jobs-timeout-',
      { TRAINER_TIMEOUT_SECONDS: 1, TRAINER_COMMAND: `echo 'epoch 1/1 starting' >&2; sleep 30; mkdir -p {out} # {bundle}` },
      async (job, s) => {
        expect(job.state).toBe('failed');
        expect(job.error).toMatch(/timed out after 1s/);
        expect(job.error).toContain('epoch 1/1 starting');
        expect((await s.req('POST', '/search', { collection: 'c', query: 'membrane', k: 3 })).status).toBe(200);
      },
    );
  }, 60_000);

  it('a trainer that exits 0 without an artifact fails the job, and nothing half-made is left under models/', async () => {
    await withRetrain('jobs-empty-', { TRAINER_COMMAND: `mkdir -p {out} && echo '{}' > {out}/config.json # {bundle}` }, async (job, s) => {
      expect(job.state).toBe('failed');
      expect(job.error).toMatch(/artifact lacks tokenizer\.json, tokenizer_config\.json, onnx\/model\.onnx/);
      expect(readdirSync(modelsDir(s.config)).filter((f) => f.startsWith('ft-'))).toEqual([]);
    });
  }, 60_000);

  it('TRAIN_SEED is the seed of the job.json the trainer gets (default 13)', async () => {
    for (const [env, want] of [
      [{}, 13],
      [{ TRAIN_SEED: 29 }, 29],
    ] as const) {
      const copy = join(tempDir('jobs-seed-copy-'), 'job.json');
      await withRetrain('jobs-seed-', { ...env, TRAINER_COMMAND: `cp {bundle}/job.json '${copy}'; exit 1 # {out}` }, async (job) => {
        expect(job.state).toBe('failed');
        expect(JSON.parse(readFileSync(copy, 'utf8')).seed).toBe(want);
      });
      rmSync(dirname(copy), { recursive: true, force: true });
    }
  }, 60_000);

  it('with LLM_BASE_URL/LLM_MODEL set, a job mines LLM questions and paraphrases and records their token use', async () => {
    const llm = await startLlm(1);
    try {
      const cfg = {
        LLM_BASE_URL: llm.url,
        LLM_MODEL: 'local-test',
        LLM_API_KEY: 'k',
        LLM_CONCURRENCY: 2,
        TRAINER_COMMAND: `exit 9 # {bundle} {out}`,
      };
      await withRetrain('jobs-llm-', cfg, async (job) => {
        expect(job.state).toBe('failed');
        expect(job.error).toMatch(/^trainer exited with 9/);
        const mining = job.progress.mining as Json;
        expect(mining.bySource.llm_question).toBeGreaterThan(0);
        expect(mining.bySource.llm_paraphrase).toBeGreaterThan(0);
        expect(mining.llm.retries).toBe(1);
        expect(mining.llm.promptTokens).toBe(40 * (mining.llm.requests - 1));
        expect(llm.maxInFlight).toBeLessThanOrEqual(2);
      });
    } finally {
      llm.server.close();
    }
  }, 90_000);

  it('after a restart a queued job is resumed, a job caught mid-way is failed with the reason, one past its commit point is done', async () => {
    const dir = tempDir('jobs-restart-');
    const cmd = `echo 'boom' >&2; exit 1 # {bundle} {out}`;
    let s = await start(dir, { TRAINER_COMMAND: cmd });
    await s.req('POST', '/collections', { name: 'c' });
    await s.req('POST', '/collections', { name: 'd' });
    await s.req('POST', '/collections', { name: 'e' });
    await s.req('POST', '/collections/c/documents', { documents: docs });
    await s.req('POST', '/collections/d/documents', { documents: docs.slice(0, 10) });
    await traffic(s);
    const champion = s.engine.serving.version;
    await s.close();

    // As a kill -9 would leave them: one job mid-training with a half-written candidate, one queued.
    const store = await openStore({ dataDir: dir });
    await store.insertJob({
      id: '11111111-aaaa-4aaa-8aaa-111111111111',
      collection: 'd',
      trigger: 'drift',
      state: 'training',
      progress: { state: 'training' },
      timings: { queued: 0.1, mining: 2 },
      parentVersion: champion,
      candidateVersion: 'ft-d-half',
      error: null,
    });
    await store.insertJob({
      id: '22222222-bbbb-4bbb-8bbb-222222222222',
      collection: 'c',
      trigger: 'manual',
      state: 'queued',
      progress: {},
      timings: {},
      parentVersion: champion,
      candidateVersion: null,
      error: null,
    });
    // Killed after the store's promote (the commit point) but before the job row said "done".
    await store.insertJob({
      id: '33333333-cccc-4ccc-8ccc-333333333333',
      collection: 'e',
      trigger: 'drift',
      state: 'swapping',
      progress: { state: 'swapping' },
      timings: {},
      parentVersion: 'older',
      candidateVersion: champion,
      error: null,
    });
    await store.saveIndexRecord({
      collectionId: (await store.getCollection('d'))!.id,
      modelVersion: 'ft-d-half',
      path: null,
      snapshotSeq: 0,
      count: 3,
      status: 'building',
    });
    await store.close();

    let loop!: Loop;
    s = await start(dir, { TRAINER_COMMAND: cmd }, (l) => {
      loop = l;
    });
    try {
      expect(s.engine.serving.version).toBe(champion);
      const mid = await s.store.getJob('11111111-aaaa-4aaa-8aaa-111111111111');
      expect(mid!.state).toBe('failed');
      expect(mid!.error).toBe(`interrupted by a server restart while training; the champion ${champion} kept serving`);
      expect(await s.store.listIndexRecords({ modelVersion: 'ft-d-half' })).toEqual([]);
      const committed = await s.store.getJob('33333333-cccc-4ccc-8ccc-333333333333');
      expect(committed!.state).toBe('done');
      expect(committed!.progress.recovered).toBe('the cut-over had committed before the restart');
      const resumed = await loop.jobs.wait('22222222-bbbb-4bbb-8bbb-222222222222');
      // It ran again from the start: mined, trained (the trainer fails here), and says so.
      expect(resumed!.state).toBe('failed');
      expect(resumed!.error).toContain('boom');
      expect(resumed!.timings.mining).toBeGreaterThanOrEqual(0);
      const q = await s.req('POST', '/search', { collection: 'c', query: 'ribosome', k: 3 });
      expect(q.status).toBe(200);
      expect(q.body.results).toHaveLength(3);
    } finally {
      await s.dispose();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);
});
