// Candidate embeddings made by the trainer (job.json `embed_corpus`): the shadow re-embed builds the candidate's
// index from the artifact's embeddings/ once its checksums, dim and a sample re-embedded here check out, and
// catches up writes made since the bundle; a tampered file is refused with the reason and the job re-embeds on
// the CPU and still swaps. The file is a committed fixture made by the trainer's own code (embed_rows) over
// this collection's chunks: MAKE_EMBEDDINGS_FIXTURE=1 (with TRAINER_FIXTURE_PYTHON, a Python with torch and
// sentence-transformers) regenerates it.
import { createHash } from 'node:crypto';
import { cpSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO, startTestServer, tempDir, type TestServer } from '../helpers.js';
import { GO_FIXTURE as GO, goScenario } from './go-data.js';

const FT = join(REPO, 'test/fixtures/models/tiny-ft-go');
const FIXTURE = join(REPO, 'test/fixtures/embeddings/go-600');
const MAKE = process.env.MAKE_EMBEDDINGS_FIXTURE === '1';
const PYTHON = process.env.TRAINER_FIXTURE_PYTHON ?? '/tmp/tvenv/bin/python';

// Response bodies are checked field by field; a loose type keeps the assertions readable.
interface Json {
  [k: string]: any;
}

const sc = goScenario(GO, { split: 'dev', bp: 60, shift: 60, corpusSize: 600, seed: 11 });
const docs = sc.docs.map((d) => ({ id: d.id, text: d.text }));
const LATE = { id: 'late-doc', text: 'zzlate quokka marmalade written while the trainer ran' };

const cleanups: (() => Promise<void> | void)[] = [];

/**
 * One server, one collection (the same chunks, so the same labels, every time), feedback on 120 queries, one
 * retrain whose trainer copies tiny-ft-go and `embeddings` into the artifact. While the job is training a
 * document is written and another deleted: writes the bundle's embed.jsonl does not have. The server and `dir`
 * are removed after the suite, also when the job fails.
 */
async function runJob(dir: string, embeddings: string | null): Promise<{ s: TestServer; job: Json }> {
  const gate = join(dir, 'go-on');
  const copy = MAKE
    ? `PYTHONPATH='${REPO}' '${PYTHON}' '${REPO}/test/fixtures/embeddings/make.py' {bundle} '${FT}/pytorch' {out}/embeddings >&2 && rm -rf '${FIXTURE}' && cp -R {out}/embeddings '${FIXTURE}'`
    : embeddings
      ? `cp -R '${embeddings}' {out}/embeddings`
      : 'true';
  const s = await startTestServer(
    {
      DATA_DIR: join(dir, 'data'),
      TRAINER_BACKEND: 'command',
      TRAINER_TIMEOUT_SECONDS: 120,
      TRAINER_COMMAND: `mkdir -p {out} && cp -R '${FT}'/. {out}/ && ${copy} && while [ ! -f '${gate}' ]; do sleep 0.05; done # {bundle}`,
    },
    { loop: true },
  );
  cleanups.push(
    () => s.dispose(),
    () => rmSync(dir, { recursive: true, force: true }),
  );
  expect((await s.req('POST', '/collections', { name: 'c' })).status).toBe(201);
  expect((await s.req('POST', '/collections/c/documents', { documents: docs })).status).toBe(200);
  for (const q of [...sc.bp, ...sc.shift]) {
    const r = await s.req('POST', '/search', { collection: 'c', query: q.query, k: 3 });
    for (const id of q.relevant) expect((await s.req('POST', '/feedback', { queryId: r.body.queryId, documentId: id })).status).toBe(201);
  }
  const created = (await s.req('POST', '/collections/c/retrain', {})).body as Json;
  for (let i = 0; ; i++) {
    const j = (await s.req('GET', `/jobs/${created.id as string}`)).body as Json;
    if (j.state === 'training') break;
    if (['done', 'failed', 'rejected'].includes(j.state as string) || i > 2400)
      throw new Error(`job never reached training: ${JSON.stringify(j)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  expect((await s.req('POST', '/collections/c/documents', { documents: [LATE] })).status).toBe(200);
  expect((await s.req('DELETE', `/collections/c/documents/${encodeURIComponent(docs[0]!.id)}`)).status).toBeLessThan(300);
  writeFileSync(gate, '');
  let job: Json;
  for (let i = 0; ; i++) {
    job = (await s.req('GET', `/jobs/${created.id as string}`)).body as Json;
    if (['done', 'failed', 'rejected'].includes(job.state as string)) break;
    if (i > 2400) throw new Error(`job did not finish: ${JSON.stringify(job)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { s, job };
}

/** A copy of the fixture with `edit` applied to its files. */
function variant(dir: string, name: string, edit: (d: string) => void): string {
  const d = join(dir, name);
  cpSync(FIXTURE, d, { recursive: true });
  edit(d);
  return d;
}

/** The served model and index after the job: the late write is found, the deleted document is gone. */
async function expectSwappedAndCaughtUp(s: TestServer, job: Json): Promise<void> {
  expect(job.state).toBe('done');
  expect((await s.req('GET', '/models')).body.champion).toBe(job.candidateVersion);
  const late = await s.req('POST', '/search', { collection: 'c', query: LATE.text, k: 3, mode: 'vector' });
  expect(late.body.model).toBe(job.candidateVersion);
  expect(late.body.results[0].id).toBe(LATE.id);
  const gone = await s.req('POST', '/search', { collection: 'c', query: docs[0]!.text, k: 10, mode: 'vector' });
  expect(gone.body.results.map((r: Json) => r.id)).not.toContain(docs[0]!.id);
}

describe('trainer-made candidate embeddings', () => {
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  it.runIf(MAKE)(
    'makes the fixture with the trainer code',
    async () => {
      const dir = tempDir('emb-make-');
      const { job } = await runJob(dir, null);
      expect(job.state).toBe('done');
      expect(existsSync(join(FIXTURE, 'manifest.json'))).toBe(true);
    },
    300_000,
  );

  it.skipIf(MAKE)(
    'a good file: the index is built from it, later writes are caught up, top-1 equals a CPU-built index',
    async () => {
      const dir = tempDir('emb-good-');
      const { s, job } = await runJob(dir, FIXTURE);
      const manifest = JSON.parse(readFileSync(join(FIXTURE, 'manifest.json'), 'utf8')) as Json;
      const re = job.progress.reembed as Json;
      expect(re.source).toBe('trainer_embeddings');
      expect(re.fallbackReason).toBeUndefined();
      expect(re.rows).toBe(manifest.count);
      // Every live chunk but the late document's came from the file; the deleted document's chunks were skipped.
      const c = await s.catalog.require('c');
      const live = await s.store.liveChunks(c.id, 0, 100_000);
      const lateChunks = live.filter((r) => r.docId === LATE.id).length;
      expect(re.fromFile).toBe(live.length - lateChunks);
      expect(re.embeddedHere).toBeGreaterThanOrEqual(lateChunks);
      expect(re.sample).toMatchObject({ n: 32 });
      expect(re.sample.minCosine).toBeGreaterThanOrEqual(0.999);
      for (const k of ['load', 'verify', 'build', 'total']) expect(typeof re.seconds[k]).toBe('number');
      console.log(
        `trainer embeddings: ${manifest.count} rows × ${manifest.dim}, load ${re.seconds.load}s verify ${re.seconds.verify}s build ${re.seconds.build}s (reembed total ${re.seconds.total}s)`,
      );
      await expectSwappedAndCaughtUp(s, job);

      // The same candidate re-embedding every live chunk here, into an index of its own: same top-1.
      const embedder = s.engine.serving.embedder;
      const t0 = performance.now();
      const cpu = await s.indexes.create({ collectionId: c.id, modelVersion: 'cpu-check' }, embedder.dim, c.hnsw, 2048);
      await cpu.add(
        live.map((r) => r.label),
        await embedder.embed(
          live.map((r) => r.text),
          { kind: 'document' },
        ),
      );
      console.log(`CPU re-embed of the same ${live.length} chunks into an index: ${Math.round(performance.now() - t0) / 1000}s`);
      const served = s.engine.serving.indexes.get(c.id)!;
      const queries = [...sc.bp.slice(0, 20), ...sc.shift.slice(0, 20)].map((q) => q.query);
      const qv = await embedder.embed(queries, { kind: 'query' });
      for (const v of qv) expect((await served.search(v, 1))[0]!.label).toBe((await cpu.search(v, 1))[0]!.label);
      await cpu.close();
    },
    300_000,
  );

  it.skipIf(MAKE)(
    'a trainer that writes no embeddings/: the CPU re-embed, and the job says so',
    async () => {
      const dir = tempDir('emb-none-');
      const { s, job } = await runJob(dir, null);
      const re = job.progress.reembed as Json;
      expect(re).toMatchObject({
        source: 'cpu',
        fallbackReason: 'the artifact has no embeddings/manifest.json (the trainer did not embed the corpus)',
      });
      expect(typeof re.seconds.cpu).toBe('number');
      await expectSwappedAndCaughtUp(s, job);
    },
    300_000,
  );

  it.skipIf(MAKE)(
    'flipped bytes in vectors.f32 (sha256 left as it was): refused, CPU re-embed, still swaps',
    async () => {
      const dir = tempDir('emb-flip-');
      const bad = variant(dir, 'flipped', (d) => {
        const f = join(d, 'vectors.f32');
        const b = readFileSync(f);
        for (let i = 1000; i < 1016; i++) b[i] = b[i]! ^ 0xff;
        writeFileSync(f, b);
      });
      const { s, job } = await runJob(dir, bad);
      const re = job.progress.reembed as Json;
      expect(re.source).toBe('cpu');
      expect(re.fallbackReason).toMatch(/^vectors\.f32 sha256 .* does not match manifest\.json/);
      expect(typeof re.seconds.cpu).toBe('number');
      await expectSwappedAndCaughtUp(s, job);
    },
    300_000,
  );

  it.skipIf(MAKE)(
    'wrong vectors under a fixed sha256: the sample re-embedded here refuses them, CPU re-embed, still swaps',
    async () => {
      const dir = tempDir('emb-wrong-');
      const bad = variant(dir, 'wrong', (d) => {
        // Every row moved down by one: well-formed unit vectors, each belonging to another chunk.
        const f = join(d, 'vectors.f32');
        const m = JSON.parse(readFileSync(join(d, 'manifest.json'), 'utf8')) as Json;
        const b = readFileSync(f);
        const row = (m.dim as number) * 4;
        const shifted = Buffer.concat([b.subarray(b.length - row), b.subarray(0, b.length - row)]);
        writeFileSync(f, shifted);
        m.sha256['vectors.f32'] = createHash('sha256').update(shifted).digest('hex');
        writeFileSync(join(d, 'manifest.json'), JSON.stringify(m, null, 2));
      });
      const { s, job } = await runJob(dir, bad);
      const re = job.progress.reembed as Json;
      expect(re.source).toBe('cpu');
      expect(re.fallbackReason).toMatch(/^chunk \d+: cosine -?\d\.\d+ with this server's embedding, below 0\.999$/);
      await expectSwappedAndCaughtUp(s, job);
    },
    300_000,
  );
});
