import { readFileSync } from 'node:fs';
import { afterAll, expect, test } from 'vitest';
import type { Loop } from '../../src/loop.js';
import { indexFile } from '../../src/serving/lifecycle.js';
import { encodeSource } from '../../src/serving/models.js';
import { TINY_MODEL, freshPostgres, startTestServer, type TestServer } from '../helpers.js';

// N stateless replicas share one Postgres. Needs a real server (CI starts one; see .ci/run).
const url = process.env.TEST_DATABASE_URL;
const servers: TestServer[] = [];
const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const s of servers) await s.dispose();
  for (const c of cleanups) await c();
});

async function eventually<T>(fn: () => Promise<T>, ok: (v: T) => boolean, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (ok(v) || Date.now() > end) return v;
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Two servers on a fresh Postgres database (b logs at TEST_LOG_LEVEL, silent by default); both stop after the test. */
async function twoReplicas(dbName: string) {
  const db = await freshPostgres(dbName);
  cleanups.push(db.drop);
  const a = await startTestServer({ DATABASE_URL: db.url });
  servers.push(a);
  const b = await startTestServer({ DATABASE_URL: db.url, LOG_LEVEL: (process.env.TEST_LOG_LEVEL as 'warn' | undefined) ?? 'silent' });
  servers.push(b);
  return { a, b };
}

test.skipIf(!url)(
  "replicas on one Postgres see each other's writes and follow the champion pointer",
  async () => {
    const { a, b } = await twoReplicas('rt_replicas');
    expect((await a.req('POST', '/collections', { name: 'shared' })).status).toBe(201);
    await a.req('POST', '/collections/shared/documents', { documents: [{ id: 'r1', text: 'written through replica a about glaciers' }] });
    const seen = await eventually(
      () => b.req('POST', '/search', { collection: 'shared', query: 'written through replica a about glaciers', k: 1 }),
      (r) => r.status === 200 && r.body.results[0]?.id === 'r1',
    );
    expect(seen.body.results[0].id).toBe('r1');
    // Replica a deletes; b stops returning it.
    await a.req('DELETE', '/collections/shared/documents/r1');
    const gone = await eventually(
      () => b.req('POST', '/search', { collection: 'shared', query: 'glaciers', k: 1 }),
      (r) => r.status === 200 && r.body.results.length === 0,
    );
    expect(gone.body.results).toEqual([]);
    await a.req('POST', '/collections/shared/documents', { documents: [{ id: 'r2', text: 'a document that both replicas must serve' }] });

    // A champion change recorded by one replica (as a swap does) is picked up by the other, which
    // builds its own index for the new model before it serves with it.
    await a.store.upsertModelVersion({
      version: 'tiny-next',
      parentVersion: a.engine.serving.version,
      source: encodeSource({ kind: 'dir', path: TINY_MODEL }),
      dim: a.engine.serving.embedder.dim,
      status: 'candidate',
      card: {},
    });
    await a.store.promote('tiny-next');
    const followed = await eventually(
      () => b.req('POST', '/search', { collection: 'shared', query: 'a document that both replicas must serve', k: 1 }),
      (r) => r.status === 200 && r.body.model === 'tiny-next',
      60_000,
    );
    expect(followed.body.model).toBe('tiny-next');
    expect(followed.body.results[0].id).toBe('r2');
  },
  120_000,
);

test.skipIf(!url)(
  "a replica's snapshot is labelled with the writes its index holds, not with the database's newest (other replicas load it)",
  async () => {
    const { a, b } = await twoReplicas('rt_snapseq');
    expect((await a.req('POST', '/collections', { name: 'snap' })).status).toBe(201);
    const c = (await a.store.getCollection('snap'))!;
    const docs = (from: number) => Array.from({ length: 5 }, (_, i) => ({ id: `s${from + i}`, text: `snapshot document ${from + i}` }));
    await a.req('POST', '/collections/snap/documents', { documents: docs(0) });
    await eventually(
      () => b.req('POST', '/search', { collection: 'snap', query: 'snapshot document 0', k: 10 }),
      (r) => r.status === 200 && r.body.results.length === 5,
    );
    // Writes through a, and at once a snapshot on b: b follows a's writes once a second, so its index may not
    // hold them yet. Whatever it holds, the label must not claim more (a replica loading the snapshot replays
    // only what comes after the label).
    for (let round = 0; round < 5; round++) {
      await a.req('POST', '/collections/snap/documents', { documents: docs(10 + round * 5) });
      await b.engine.snapshotAll();
      const meta = JSON.parse(readFileSync(`${indexFile(b.config.DATA_DIR, c.id, b.engine.serving.version)}.meta.json`, 'utf8')) as {
        seq: number;
        count: number;
      };
      // Only new documents are written: the chunks live at the label's sequence are today's minus those added since.
      const addedSince = (await a.store.changesSince(c.id, meta.seq)).added.length;
      expect(meta.count).toBe((await a.store.countLiveChunks(c.id)) - addedSince);
    }
  },
  60_000,
);

test.skipIf(!url)(
  'job claims live with the replica: another replica never fails or reruns a running job, and adopts it once its replica is gone',
  async () => {
    const db = await freshPostgres('rt_claims');
    cleanups.push(db.drop);
    const { openStore } = await import('../../src/store/index.js');
    // Store level: a claim held by one connection pool is refused to another until that pool closes,
    // which is what a crashed replica's connections do.
    const s1 = await openStore({ dataDir: '/nonexistent', databaseUrl: db.url });
    const s2 = await openStore({ dataDir: '/nonexistent', databaseUrl: db.url });
    const held = await s1.claimJob('j');
    expect(held).toBeDefined();
    expect(await s2.claimJob('j')).toBeUndefined();
    // A crashed replica's connections drop: terminate the backend that holds the claim.
    const { default: pg } = await import('pg');
    const admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
    const killed = await admin.query(
      "SELECT pg_terminate_backend(pid) AS ok FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()",
    );
    await admin.end();
    expect(killed.rows.length).toBe(1);
    await held!.release().catch(() => undefined);
    await s1.close();
    const taken = await s2.claimJob('j');
    expect(taken).toBeDefined();
    await taken!.release();
    await s2.close();

    // Replica level: A runs a slow job; B starts meanwhile and must leave it alone.
    let loopA: Loop | undefined;
    let loopB: Loop | undefined;
    const slow = {
      TRAINER_BACKEND: 'command' as const,
      AUTO_RETRAIN: false,
      TRAINER_COMMAND: 'sleep 4; echo "no GPU here" >&2; exit 3 # {bundle} {out}',
    };
    const a = await startTestServer(
      { DATABASE_URL: db.url, ...slow },
      {
        loop: {
          onReady: (l) => {
            loopA = l;
          },
          mining: { minEvalQueries: 1 },
        },
      },
    );
    servers.push(a);
    expect((await a.req('POST', '/collections', { name: 'c' })).status).toBe(201);
    await a.req('POST', '/collections/c/documents', {
      documents: Array.from({ length: 30 }, (_, i) => ({ id: `d${i}`, text: `document ${i} about topic ${i % 5}` })),
    });
    for (let i = 0; i < 10; i++) {
      const r = await a.req('POST', '/search', { collection: 'c', query: `what about topic ${i % 5} number ${i}`, k: 3 });
      expect((await a.req('POST', '/feedback', { queryId: r.body.queryId, documentId: `d${i}` })).status).toBe(201);
    }
    const job = (await a.req('POST', '/collections/c/retrain', {})).body;
    expect(job.state).toBe('queued');
    const b = await startTestServer(
      { DATABASE_URL: db.url, ...slow },
      {
        loop: {
          onReady: (l) => {
            loopB = l;
          },
        },
      },
    );
    servers.push(b);
    expect(loopB).toBeDefined();
    const seen = (await b.req('GET', `/jobs/${job.id as string}`)).body;
    expect(seen.error ?? '', JSON.stringify(seen)).not.toMatch(/interrupted/);
    expect(seen.state, JSON.stringify(seen).slice(0, 600)).not.toBe('failed');
    const done = (await loopA!.jobs.wait(job.id as string))!;
    expect(done.state).toBe('failed');
    expect(done.error).toMatch(/^trainer exited with 3/);

    // A job row left mid-way by a replica that is gone (no claim held) is adopted by a live one.
    const orphan = await b.store.insertJob({
      id: '00000000-0000-4000-8000-000000000001',
      collection: 'c',
      trigger: 'manual',
      state: 'training',
      progress: {},
      timings: {},
      parentVersion: b.engine.serving.version,
      candidateVersion: null,
      error: null,
    });
    const adopted = await loopB!.jobs.recover();
    expect(adopted.failed).toContain(orphan.id);
    expect((await b.store.getJob(orphan.id))!.error).toMatch(/interrupted/);
  },
  120_000,
);
