// Index snapshots and model artifacts in S3, through real servers: a node that lost its local indexes
// restores them from the bucket instead of re-embedding, and on Postgres a brand-new replica (empty
// DATA_DIR) loads the champion another replica trained, and its index, from the bucket.
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Loop } from '../../src/loop.js';
import { openObjectStore, type ObjectStore } from '../../src/objects/index.js';
import { REPO, freshPostgres, startTestServer, tempDir, type TestServer } from '../helpers.js';
import { GO_FIXTURE as GO, goScenario } from '../loop/go-data.js';
import { startS3, type TestS3 } from './s3server.js';

let s3: TestS3;
const cleanups: (() => Promise<void> | void)[] = [];
beforeAll(async () => {
  s3 = await startS3();
});
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  await s3.close();
});

const metric = (text: string, re: RegExp) => Number(re.exec(text)?.[1] ?? 0);
const embedded = (text: string) => metric(text, /^embed_batch_size_sum (\d+)/m);
const ops = (text: string, op: string, result: string) =>
  metric(text, new RegExp(`^object_store_operations_total\\{op="${op}",result="${result}"\\} (\\d+)`, 'm'));

describe('object store with SQLite', () => {
  it('local index snapshots lost → restored from S3 on restart (no re-embedding), later writes replayed from the DB', async () => {
    const dir = tempDir('obj-sqlite-');
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const cfg = { DATA_DIR: dir, OBJECT_STORE_URL: `s3://${s3.bucket}/sqlite-node`, S3_ENDPOINT: s3.endpoint };
    let s: TestServer = await startTestServer(cfg);
    expect((await s.req('POST', '/collections', { name: 'notes' })).status).toBe(201);
    const docs = Array.from({ length: 120 }, (_, i) => ({
      id: `n${i}`,
      text: `note ${i} about ${['glaciers', 'kinases', 'ribosomes', 'tides'][i % 4]} number ${i}`,
    }));
    expect((await s.req('POST', '/collections/notes/documents', { documents: docs })).status).toBe(200);
    await s.engine.snapshotAll();
    const bucket = await objectStore(s3);
    const pointerKey = (await bucket.list('sqlite-node/indexes')).find((k) => k.endsWith('latest.json'))!;
    expect(pointerKey).toBeDefined();
    const firstPointer = (await bucket.getBytes(pointerKey))!;
    // Written after the published snapshot: must come back from the store's change log.
    expect(
      (await s.req('POST', '/collections/notes/documents', { documents: [{ id: 'late', text: 'a late note on volcanoes' }] })).status,
    ).toBe(200);
    expect((await s.req('DELETE', '/collections/notes/documents/n3')).status).toBe(200);
    const want = (await s.req('POST', '/search', { collection: 'notes', query: 'kinases number 5', k: 5 })).body.results.map(
      (r: { id: string }) => r.id,
    );
    // Closing publishes a newer snapshot; put the older pointer back (as a slower replica's write could)
    // so the restart has to replay the late write and the delete from the database.
    await s.dispose();
    expect(JSON.parse((await bucket.getBytes(pointerKey))!.toString()).seq).toBeGreaterThan(JSON.parse(firstPointer.toString()).seq);
    await bucket.putBytes(pointerKey, firstPointer);
    // Lose the index volume.
    rmSync(join(dir, 'indexes'), { recursive: true, force: true });

    s = await startTestServer(cfg);
    cleanups.push(() => s.dispose());
    const m = (await s.req('GET', '/metrics')).body as string;
    expect(ops(m, 'snapshot_download', 'ok')).toBe(1);
    // Only the one late document is embedded; the other 119 chunks come from the snapshot.
    expect(embedded(m)).toBe(1);
    expect(readdirSync(join(dir, 'indexes')).some((f) => f.endsWith('.hnsw'))).toBe(true);
    const got = await s.req('POST', '/search', { collection: 'notes', query: 'kinases number 5', k: 5 });
    expect(got.body.results.map((r: { id: string }) => r.id)).toEqual(want);
    expect((await s.req('POST', '/search', { collection: 'notes', query: 'a late note on volcanoes', k: 1 })).body.results[0].id).toBe(
      'late',
    );
    const all = (await s.req('POST', '/search', { collection: 'notes', query: 'note', k: 200 })).body.results.map(
      (r: { id: string }) => r.id,
    );
    expect(all).toHaveLength(120);
    expect(all).not.toContain('n3');
  }, 60_000);

  it('a wrong bucket stops the server at start with one clear error', async () => {
    await expect(startTestServer({ OBJECT_STORE_URL: 's3://missing-bucket', S3_ENDPOINT: s3.endpoint })).rejects.toThrow(
      /s3:\/\/missing-bucket .*NoSuchBucket/,
    );
  });
});

async function objectStore(s: TestS3): Promise<ObjectStore> {
  return (await openObjectStore({ OBJECT_STORE_URL: `s3://${s.bucket}`, S3_ENDPOINT: s.endpoint, S3_REGION: 'us-east-1' }))!;
}

const FT = join(REPO, 'test/fixtures/models/tiny-ft-go');
const pgUrl = process.env.TEST_DATABASE_URL;

describe.skipIf(!pgUrl)('object store with Postgres replicas', () => {
  it('replica A retrains and publishes; A and its disk vanish; a new replica B loads the champion and its index from S3', async () => {
    const db = await freshPostgres('rt_objects');
    cleanups.push(db.drop);
    const shared = { DATABASE_URL: db.url, OBJECT_STORE_URL: `s3://${s3.bucket}/cluster`, S3_ENDPOINT: s3.endpoint };
    const dirA = tempDir('obj-a-');
    cleanups.push(() => rmSync(dirA, { recursive: true, force: true }));
    let loop: Loop | undefined;
    const a = await startTestServer(
      {
        ...shared,
        DATA_DIR: dirA,
        TRAINER_BACKEND: 'command',
        AUTO_RETRAIN: false,
        TRAINER_COMMAND: `mkdir -p {out} && cp -R '${FT}'/. {out}/ # {bundle}`,
      },
      {
        loop: {
          onReady: (l) => {
            loop = l;
          },
          mining: { minEvalQueries: 20 },
        },
      },
    );
    let aOpen = true;
    cleanups.push(() => (aOpen ? a.dispose() : undefined));
    expect((await a.req('POST', '/collections', { name: 'go' })).status).toBe(201);
    const sc = goScenario(GO, { split: 'dev', bp: 60, shift: 60, corpusSize: 600, seed: 11 });
    expect((await a.req('POST', '/collections/go/documents', { documents: sc.docs.map((d) => ({ id: d.id, text: d.text })) })).status).toBe(
      200,
    );
    for (const q of [...sc.bp, ...sc.shift]) {
      const r = await a.req('POST', '/search', { collection: 'go', query: q.query, k: 3 });
      for (const id of q.relevant) expect((await a.req('POST', '/feedback', { queryId: r.body.queryId, documentId: id })).status).toBe(201);
    }
    const started = await a.req('POST', '/collections/go/retrain', {});
    expect(started.status).toBe(202);
    const job = (await loop!.jobs.wait(started.body.id as string))!;
    expect(job.error).toBeNull();
    expect(job.state).toBe('done');
    const view = (await a.req('GET', `/jobs/${job.id}`)).body;
    expect(view.progress.publish).toMatchObject({ location: expect.stringContaining('s3://') });
    expect(view.progress.publish.files).toBeGreaterThanOrEqual(4);
    const champion = a.engine.serving.version;
    expect(champion).toBe(job.candidateVersion);
    await a.engine.snapshotAll();
    const queries = sc.shift.slice(0, 10).map((q) => q.query);
    const before = await Promise.all(queries.map(async (q) => (await a.req('POST', '/search', { collection: 'go', query: q, k: 5 })).body));
    await a.dispose();
    aOpen = false;
    rmSync(dirA, { recursive: true, force: true });

    const b = await startTestServer({ ...shared, DATA_DIR: tempDir('obj-b-') });
    cleanups.push(() => b.dispose());
    expect(b.engine.serving.version).toBe(champion);
    const m = (await b.req('GET', '/metrics')).body as string;
    expect(ops(m, 'model_download', 'ok')).toBe(1);
    expect(ops(m, 'snapshot_download', 'ok')).toBe(1);
    expect(embedded(m)).toBe(0);
    expect(existsSync(join(b.dataDir, 'models', champion, 'onnx/model.onnx'))).toBe(true);
    for (let i = 0; i < queries.length; i++) {
      const r = (await b.req('POST', '/search', { collection: 'go', query: queries[i], k: 5 })).body;
      expect(r.model).toBe(champion);
      expect(r.results.map((x: { id: string }) => x.id)).toEqual(before[i].results.map((x: { id: string }) => x.id));
    }
  }, 180_000);
});
