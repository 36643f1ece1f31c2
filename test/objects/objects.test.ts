// The object-store seam: one contract run against S3 (a real S3-protocol server) and a directory, then
// the snapshot/model publishing built on it, including what a reader does with tampered objects.
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMetrics } from '../../src/metrics.js';
import { DirObjectStore } from '../../src/objects/dir.js';
import { S3ObjectStore } from '../../src/objects/s3.js';
import { ObjectStoreError, RemoteArtifacts, openObjectStore, type ObjectStore } from '../../src/objects/index.js';
import { createLogger } from '../../src/util/log.js';
import { TINY_MODEL, tempDir } from '../helpers.js';
import { startS3, type TestS3 } from './s3server.js';

let s3: TestS3;
const dirs: string[] = [];
beforeAll(async () => {
  s3 = await startS3();
});
afterAll(async () => {
  await s3.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
const tmp = () => {
  const d = tempDir('objects-');
  dirs.push(d);
  return d;
};

const backends: [string, () => Promise<ObjectStore>][] = [
  [
    's3',
    async () =>
      (await openObjectStore({ OBJECT_STORE_URL: `s3://${s3.bucket}/team a/prod`, S3_ENDPOINT: s3.endpoint, S3_REGION: 'us-east-1' }))!,
  ],
  ['dir', async () => (await openObjectStore({ OBJECT_STORE_URL: `file://${tmp()}/store`, S3_REGION: 'us-east-1' }))!],
];

describe.each(backends)('ObjectStore contract (%s)', (_name, open) => {
  it('puts, gets, lists under a prefix, overwrites, deletes; missing keys are undefined/false, not errors', async () => {
    const o = await open();
    await o.check();
    const work = tmp();
    const big = join(work, 'big.bin');
    const payload = Buffer.alloc(3 * 1024 * 1024 + 17);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 31) & 0xff;
    writeFileSync(big, payload);
    await o.putFile('a/b/big.bin', big);
    await o.putBytes('a/b/small.json', '{"x":1}');
    await o.putBytes('a/c/unicode ü.txt', Buffer.from('héllo'));
    await o.putBytes('other/x', 'x');
    expect(await o.list('a')).toEqual(['a/b/big.bin', 'a/b/small.json', 'a/c/unicode ü.txt']);
    expect(await o.list('a/b/')).toEqual(['a/b/big.bin', 'a/b/small.json']);
    expect(await o.list('nothing-here')).toEqual([]);
    const dest = join(work, 'deep/dir/copy.bin');
    expect(await o.getFile('a/b/big.bin', dest)).toBe(true);
    expect(readFileSync(dest).equals(payload)).toBe(true);
    expect((await o.getBytes('a/c/unicode ü.txt'))!.toString()).toBe('héllo');
    await o.putBytes('a/b/small.json', '{"x":2}');
    expect((await o.getBytes('a/b/small.json'))!.toString()).toBe('{"x":2}');
    expect(await o.getBytes('a/b/missing')).toBeUndefined();
    expect(await o.getFile('a/b/missing', join(work, 'm'))).toBe(false);
    expect(existsSync(join(work, 'm'))).toBe(false);
    await o.delete(['a/b/big.bin', 'a/b/never-existed']);
    expect(await o.list('a')).toEqual(['a/b/small.json', 'a/c/unicode ü.txt']);
  });
});

it('S3 listing follows continuation tokens across pages', async () => {
  const o = await S3ObjectStore.create({
    bucket: s3.bucket,
    prefix: 'paging',
    endpoint: s3.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    pageSize: 2,
  });
  const keys = Array.from({ length: 7 }, (_, i) => `p/k${i}`);
  for (const k of keys) await o.putBytes(k, k);
  expect(await o.list('p')).toEqual(keys);
});

describe('openObjectStore', () => {
  it('unset → none; bad URLs, schemes, buckets and embedded credentials → ObjectStoreError naming the problem', async () => {
    expect(await openObjectStore({ S3_REGION: 'us-east-1' })).toBeUndefined();
    const bad: [string, RegExp][] = [
      ['not a url', /is not a URL/],
      ['ftp://host/x', /scheme "ftp:" is not supported/],
      ['s3://A_/x', /not a valid S3 bucket name/],
      ['s3://key:secret@bucket-name/x', /must not hold credentials/],
    ];
    for (const [u, re] of bad) {
      await expect(openObjectStore({ OBJECT_STORE_URL: u, S3_REGION: 'us-east-1' })).rejects.toThrow(re);
      await expect(openObjectStore({ OBJECT_STORE_URL: u, S3_REGION: 'us-east-1' })).rejects.toBeInstanceOf(ObjectStoreError);
    }
  });

  it('an unreachable endpoint or a missing bucket fails check() with the location and the reason', async () => {
    const missing = (await openObjectStore({
      OBJECT_STORE_URL: 's3://no-such-bucket/x',
      S3_ENDPOINT: s3.endpoint,
      S3_REGION: 'us-east-1',
    }))!;
    await expect(missing.check()).rejects.toThrow(/s3:\/\/no-such-bucket\/x .*NoSuchBucket/);
    const down = (await openObjectStore({
      OBJECT_STORE_URL: 's3://some-bucket',
      S3_ENDPOINT: 'http://127.0.0.1:9',
      S3_REGION: 'us-east-1',
    }))!;
    await expect(down.check()).rejects.toBeInstanceOf(ObjectStoreError);
    const file = join(tmp(), 'a-file');
    writeFileSync(file, '');
    await expect(new DirObjectStore(join(file, 'sub')).check()).rejects.toThrow(/not a writable directory/);
  });
});

describe('RemoteArtifacts on S3', () => {
  const log = createLogger('silent');
  const coll = { id: 7, name: 'docs', createdAt: 1_700_000_000_000 };

  it('snapshots: newer ones publish under unique keys, older or equal ones are skipped, two are kept, tampering is refused', async () => {
    const metrics = createMetrics();
    const remote = new RemoteArtifacts(await backends[0]![1](), { log, metrics });
    const work = tmp();
    const snap = (seq: number) => {
      const p = join(work, `s${seq}.hnsw`);
      writeFileSync(p, `snapshot bytes at ${seq}`.repeat(1000));
      return p;
    };
    expect(await remote.latestSnapshot(coll.id, 'v/1')).toBeUndefined();
    const p1 = await remote.publishSnapshot(coll, 'v/1', snap(10), { seq: 10, count: 3 });
    expect(p1).toMatchObject({ seq: 10, count: 3, collection: { name: 'docs', createdAt: coll.createdAt }, modelVersion: 'v/1' });
    expect(await remote.publishSnapshot(coll, 'v/1', snap(10), { seq: 10, count: 3 })).toBeUndefined();
    expect(await remote.publishSnapshot(coll, 'v/1', snap(9), { seq: 9, count: 2 })).toBeUndefined();
    await remote.publishSnapshot(coll, 'v/1', snap(11), { seq: 11, count: 4 });
    const p3 = (await remote.publishSnapshot(coll, 'v/1', snap(12), { seq: 12, count: 5 }))!;
    expect(await remote.latestSnapshot(coll.id, 'v/1')).toEqual(p3);
    const keys = (await remote.objects.list('indexes')).filter((k) => k.endsWith('.hnsw'));
    expect(keys).toHaveLength(2);
    expect(keys).toContain(p3.key);

    const dest = join(work, 'local.hnsw');
    expect(await remote.fetchSnapshot(p3, dest)).toBe(true);
    expect(readFileSync(dest, 'utf8')).toBe('snapshot bytes at 12'.repeat(1000));
    // Same size, other bytes: the sha256 in the pointer catches it and the local file is left alone.
    await remote.objects.putBytes(p3.key, 'snapshot bytes at 13'.repeat(1000));
    await expect(remote.fetchSnapshot(p3, dest)).rejects.toThrow(/does not match its pointer/);
    expect(readFileSync(dest, 'utf8')).toBe('snapshot bytes at 12'.repeat(1000));
    await remote.objects.delete([p3.key]);
    expect(await remote.fetchSnapshot(p3, dest)).toBe(false);
    const text = await metrics.registry.metrics();
    expect(text).toMatch(/object_store_operations_total\{op="snapshot_upload",result="ok"\} 3/);
    expect(text).toMatch(/object_store_operations_total\{op="snapshot_upload",result="skipped"\} 2/);
    expect(text).toMatch(/object_store_operations_total\{op="snapshot_download",result="error"\} 1/);
    await remote.deleteSnapshots(coll.id, 'v/1');
    expect(await remote.objects.list('indexes')).toEqual([]);
  });

  it('models: every file travels and is checked against the manifest; no manifest → not there; a bad file never lands', async () => {
    const remote = new RemoteArtifacts(await backends[0]![1](), { log });
    expect(await remote.hasModel('tiny-1')).toBe(false);
    const up = await remote.publishModel('tiny-1', TINY_MODEL);
    expect(up.files).toBeGreaterThanOrEqual(4);
    expect(await remote.hasModel('tiny-1')).toBe(true);
    const dest = join(tmp(), 'models', 'tiny-1');
    expect(await remote.fetchModel('tiny-1', dest)).toBe(true);
    for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'onnx/model.onnx']) {
      expect(readFileSync(join(dest, f)).equals(readFileSync(join(TINY_MODEL, f)))).toBe(true);
    }
    expect(await remote.fetchModel('never-published', join(tmp(), 'x'))).toBe(false);
    await remote.objects.putBytes('models/tiny-1/files/config.json', '{"tampered":true}');
    const dest2 = join(tmp(), 'models', 'tiny-1');
    await expect(remote.fetchModel('tiny-1', dest2)).rejects.toThrow(/config.json .* does not match its manifest/);
    expect(existsSync(dest2)).toBe(false);
  });
});
