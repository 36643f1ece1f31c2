// The client's self-tuning-loop calls (drift, retrain, jobs, models, rollback) against the real server
// with the loop on (`loop: true`) and API keys on. The trainer is a `command` that fails at once:
// what is tested here is the API contract and error mapping, not training (test/loop covers that).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/auth/keys.js';
import { RetrievalClient, RetrievalError, type JobInfo, type JobState } from '../../src/client/index.js';
import { apiKeyAuth } from '../../src/http/auth.js';
import { startTestServer, type TestServer } from '../helpers.js';

const TERMINAL: JobState[] = ['done', 'rejected', 'failed'];

async function expectCode(p: Promise<unknown>, code: string, status: number): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(RetrievalError);
  expect({ code: (err as RetrievalError).code, status: (err as RetrievalError).status }).toEqual({ code, status });
}

describe('RetrievalClient: self-tuning loop endpoints', () => {
  let server: TestServer;
  let admin: RetrievalClient;
  let reader: RetrievalClient;

  beforeAll(async () => {
    const keys: { admin?: string; read?: string } = {};
    server = await startTestServer(
      {
        AUTH: 'on',
        TRAINER_BACKEND: 'command',
        TRAINER_COMMAND: 'echo "no GPU in this test" >&2; exit 3 # {bundle} {out}',
        AUTO_RETRAIN: false,
      },
      {
        listen: true,
        loop: true,
        extend: async (ctx) => {
          keys.admin = (await createApiKey(ctx.store, { role: 'admin' })).key;
          keys.read = (await createApiKey(ctx.store, { role: 'read' })).key;
          return { auth: apiKeyAuth({ store: ctx.store, mode: 'on', logger: ctx.log }) };
        },
      },
    );
    admin = new RetrievalClient({ url: server.url, apiKey: keys.admin });
    reader = new RetrievalClient({ url: server.url, apiKey: keys.read });
  });
  afterAll(async () => {
    await server?.dispose();
  });

  it('models lists the serving champion', async () => {
    const m = await reader.models();
    expect(m.serving).toEqual(expect.any(String));
    expect(m.champion).toBe(m.serving);
    const champ = m.models.find((x) => x.version === m.serving);
    expect(champ).toMatchObject({ status: 'champion', champion: true });
    expect(champ!.dim).toBeGreaterThan(0);
    expect(Array.isArray(champ!.evalReports)).toBe(true);
  });

  it('drift runs a check and stores a report', async () => {
    await admin.createCollection({ name: 'loop-drift' });
    await admin.upsertDocuments('loop-drift', [{ id: 'a', text: 'alpha beta gamma' }]);
    const d = await reader.drift('loop-drift');
    expect(d).toMatchObject({ collection: 'loop-drift', drifted: false, jobId: null });
    expect(typeof d.id).toBe('number');
    const reports = await reader.driftReports('loop-drift', 5);
    expect(reports.map((r) => r.id)).toContain(d.id);
    await expectCode(reader.drift('no-such-collection'), 'collection_not_found', 404);
  });

  it('retrain: admin only, a job with a state that ends, visible in /jobs', async () => {
    await admin.createCollection({ name: 'loop-train' });
    await admin.upsertDocuments(
      'loop-train',
      Array.from({ length: 20 }, (_, i) => ({ id: `d${i}`, text: `document ${i} about topic ${i % 4} and more words` })),
    );
    await expectCode(reader.retrain('loop-train'), 'forbidden', 403);
    const job = await admin.retrain('loop-train');
    expect(job).toMatchObject({ collection: 'loop-train', trigger: 'manual' });
    let cur: JobInfo = job;
    for (let i = 0; i < 120 && !TERMINAL.includes(cur.state); i++) {
      await new Promise((r) => setTimeout(r, 250));
      cur = await reader.job(job.id);
    }
    expect(TERMINAL).toContain(cur.state);
    expect(cur.state).not.toBe('done');
    expect(typeof cur.error).toBe('string');
    expect((await reader.jobs({ collection: 'loop-train' })).map((j) => j.id)).toContain(job.id);
    expect((await reader.jobs({ collection: 'loop-train', state: cur.state, limit: 5 })).map((j) => j.id)).toContain(job.id);
  });

  it('loop errors map to stable codes', async () => {
    await admin.createCollection({ name: 'loop-empty' });
    await expectCode(admin.retrain('loop-empty'), 'collection_empty', 409);
    await expectCode(admin.retrain('loop-missing'), 'collection_not_found', 404);
    await expectCode(reader.job('00000000-0000-4000-8000-000000000000'), 'job_not_found', 404);
    await expectCode(admin.rollback('no-such-version'), 'model_not_found', 404);
    await expectCode(reader.rollback('no-such-version'), 'forbidden', 403);
  });
});
