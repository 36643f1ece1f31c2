// The training bundle the server writes, checked by the real trainer's validator (`python -m trainer
// validate`, plain Python): corpus rows grouped by a metadata field, and the corpus_pairs job keys.
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore } from '../../src/store/index.js';
import type { Store } from '../../src/store/types.js';
import { loadConfig } from '../../src/config.js';
import { writeBundle, type JobSpec } from '../../src/train/bundle.js';
import { SWEEP_LRS, summarizeTrainReport, trainRecipe } from '../../src/train/jobs.js';
import { REPO, TINY_MODEL, tempDir } from '../helpers.js';

const python = spawnSync('python3', ['--version']).status === 0;
const JOB: JobSpec = {
  version: 'v2',
  parent_version: 'v1',
  loss: 'mnrl',
  batch_size: 8,
  epochs: 1,
  lr: 1e-4,
  seed: 1,
  collection: 'papers',
};

describe.skipIf(!python)('training bundle → trainer validate', () => {
  let dir: string;
  let store: Store;
  let cid: number;
  beforeAll(async () => {
    dir = tempDir('bundle-');
    store = await openStore({ dataDir: dir });
    cid = (
      await store.createCollection({ name: 'papers', hnsw: { M: 8, efConstruction: 50, efSearch: 20 }, chunk: { size: 1000, overlap: 0 } })
    ).id;
    // Three articles of three sections each (sections are documents sharing metadata.pmid), one document
    // in two chunks, one without the field.
    const docs = [];
    for (let a = 0; a < 3; a++) {
      for (let s = 0; s < 3; s++) {
        docs.push({
          id: `${a}-${s}`,
          text: `Article ${a} section ${s}. It reports finding ${a * 10 + s} in patients. Outcomes improved.`,
          metadata: { pmid: 1000 + a, section: s },
          chunks: [] as string[],
        });
      }
    }
    docs.push({
      id: 'long',
      text: '',
      metadata: { pmid: 2000 },
      chunks: ['First half of a long review. It covers many trials.', 'Second half of the review. It ends with advice.'],
    });
    docs.push({ id: 'loose', text: 'A note without an article id. It stands alone here.', metadata: {}, chunks: [] as string[] });
    await store.upsertDocuments(
      cid,
      docs.map((d) => ({ ...d, chunks: d.chunks.length ? d.chunks : [d.text] })),
    );
  });
  afterAll(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const bundle = async (name: string, job: JobSpec, groupBy?: string, embedChunks?: boolean) => {
    const out = join(dir, name);
    const info = await writeBundle(out, {
      store,
      collectionId: cid,
      baseModelDir: TINY_MODEL,
      job,
      groupBy,
      embedChunks,
      pairs: [
        {
          anchor: 'which finding in patients',
          positive: 'Article 0 section 1. It reports finding 1 in patients. Outcomes improved.',
          docId: '0-1',
          source: 'feedback',
        },
      ],
      eval: [{ query: 'finding 2', relevant: ['0-2'] }],
    });
    const corpus = readFileSync(join(out, 'corpus.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { id: string; text: string; group?: string });
    const jobJson = JSON.parse(readFileSync(join(out, 'job.json'), 'utf8')) as Record<string, unknown>;
    const validate = spawnSync('python3', ['-m', 'trainer', 'validate', out], { cwd: REPO, encoding: 'utf8' });
    return { info, corpus, jobJson, validate };
  };

  it('groups documents by a metadata field; the trainer accepts the bundle and its corpus_pairs', async () => {
    const b = await bundle('grouped', { ...JOB, corpus_pairs: { group: 3, ict: 2 } }, 'pmid');
    expect(b.info.groups).toBe(4);
    expect(b.corpus.find((r) => r.id === '1-2')).toMatchObject({ group: '1001' });
    expect(b.corpus.find((r) => r.id === 'long')).toEqual({
      id: 'long',
      text: 'First half of a long review. It covers many trials. Second half of the review. It ends with advice.',
      group: '2000',
    });
    expect(b.corpus.find((r) => r.id === 'loose')!.group).toBeUndefined();
    expect(b.jobJson.corpus_pairs).toEqual({ group: 3, ict: 2 });
    expect(b.validate.stderr).toBe('');
    expect(b.validate.status).toBe(0);
    const valid = JSON.parse(b.validate.stdout.trim().split('\n').at(-1)!) as {
      event: string;
      corpus: number;
      job: { corpus_pairs: { group: number; ict: number } };
    };
    expect(valid).toMatchObject({ event: 'valid', corpus: 11, job: { corpus_pairs: { group: 3, ict: 2 } } });
  });

  it('embedChunks: embed.jsonl holds every live chunk (id = label, stored text), job.json embed_corpus; the trainer accepts it', async () => {
    const seq = await store.currentSeq();
    const b = await bundle('embed', JOB, undefined, true);
    const live = await store.liveChunks(cid, 0, 1000);
    const rows = readFileSync(join(b.info.dir, 'embed.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { id: string; text: string });
    expect(rows).toEqual(live.map((r) => ({ id: String(r.label), text: r.text })));
    expect(b.info).toMatchObject({ embedRows: 12, seq });
    expect(b.jobJson.embed_corpus).toBe(true);
    expect(b.validate.status).toBe(0);
    expect(JSON.parse(b.validate.stdout.trim().split('\n').at(-1)!)).toMatchObject({ event: 'valid', embed_rows: 12 });
    const off = await bundle('no-embed', JOB);
    expect(off.info.embedRows).toBe(0);
    expect(off.jobJson.embed_corpus).toBeUndefined();
  });

  it('without a group field: group pairs are dropped (ICT kept), and nothing asked → no corpus_pairs at all', async () => {
    const ict = await bundle('ict-only', { ...JOB, corpus_pairs: { group: 3, ict: 2 } }, 'no_such_field');
    expect(ict.info.groups).toBe(0);
    expect(ict.corpus.every((r) => r.group === undefined)).toBe(true);
    expect(ict.jobJson.corpus_pairs).toEqual({ group: 0, ict: 2 });
    expect(ict.validate.status).toBe(0);
    const none = await bundle('none', { ...JOB, corpus_pairs: { group: 3, ict: 0 } });
    expect(none.jobJson.corpus_pairs).toBeUndefined();
    expect(none.validate.status).toBe(0);
    // The validator really checks: a group request over an ungrouped corpus is refused with exit 2.
    const bad = join(dir, 'none');
    const job = JSON.parse(readFileSync(join(bad, 'job.json'), 'utf8')) as Record<string, unknown>;
    execFileSync('python3', [
      '-c',
      `import json,sys; p=sys.argv[1]; j=json.load(open(p)); j['corpus_pairs']={'group':2}; json.dump(j,open(p,'w'))`,
      join(bad, 'job.json'),
    ]);
    const refused = spawnSync('python3', ['-m', 'trainer', 'validate', bad], { cwd: REPO, encoding: 'utf8' });
    expect(refused.status).toBe(2);
    expect(refused.stderr).toMatch(/trainer: error: .*group/);
    expect(job.version).toBe('v2');
  });

  it('TRAIN_SOUP / TRAIN_HARDNESS reach job.json, and the trainer accepts them', async () => {
    const cfg = loadConfig({ TRAIN_SOUP: '4', TRAIN_HARDNESS: '5', TRAIN_EPOCHS: '10', TRAIN_LR: '8e-4', TRAIN_GROUP_BY: 'pmid' });
    const b = await bundle('soup', { version: 'v3', parent_version: 'v1', seed: 1, collection: 'papers', ...trainRecipe(cfg) }, 'pmid');
    expect(b.jobJson).toMatchObject({ soup: 4, hardness: { mode: 'in_batch_negatives', strength: 5 }, epochs: 10, lr: 8e-4, loss: 'mnrl' });
    expect(b.jobJson).not.toHaveProperty('sweep'); // both axes pinned
    expect(b.validate.status).toBe(0);
    const valid = JSON.parse(b.validate.stdout.trim().split('\n').at(-1)!) as { job: Record<string, unknown> };
    expect(valid.job).toMatchObject({ soup: 4, hardness: { mode: 'in_batch_negatives', strength: 5 }, soup_concurrency: 0 });
    expect(() => loadConfig({ TRAIN_SOUP: '9' })).toThrow(/TRAIN_SOUP/);
    expect(() => loadConfig({ TRAIN_HARDNESS: '-1' })).toThrow(/TRAIN_HARDNESS/);
  });

  it('the default recipe sweeps learning rate × epochs with hardness weighting and corpus pairs; the trainer accepts it', async () => {
    const plain = trainRecipe(loadConfig({}));
    expect(plain).toMatchObject({
      batch_size: 256,
      engine: 'fast',
      sweep: { lr: SWEEP_LRS, epochs: 'auto', select: 'greedy_soup' },
      hardness: { mode: 'in_batch_negatives', strength: 5 },
      corpus_pairs: { group: 3, ict: 2 },
    });
    expect(plain).not.toHaveProperty('soup');
    // one axis pinned: the other is still swept; TRAIN_SWEEP=false pins both
    expect(trainRecipe(loadConfig({ TRAIN_LR: '1e-4' })).sweep).toEqual({ lr: [1e-4], epochs: 'auto', select: 'greedy_soup' });
    expect(trainRecipe(loadConfig({ TRAIN_EPOCHS: '3' })).sweep).toEqual({ lr: SWEEP_LRS, epochs: [3], select: 'greedy_soup' });
    expect(trainRecipe(loadConfig({ TRAIN_SWEEP: 'false' }))).not.toHaveProperty('sweep');
    const b = await bundle('sweep', { version: 'v4', parent_version: 'v1', seed: 1, collection: 'papers', ...plain }, 'pmid');
    expect(b.validate.stderr).toBe('');
    expect(b.validate.status).toBe(0);
  });

  it("the job trains at the champion's token limit unless TRAIN_MAX_SEQ_LENGTH says otherwise", async () => {
    const base = join(REPO, 'models/base');
    expect(trainRecipe(loadConfig({}), base).max_seq_length).toBe(256); // base-2's card
    expect(trainRecipe(loadConfig({}), TINY_MODEL).max_seq_length).toBe(128);
    expect(trainRecipe(loadConfig({ TRAIN_MAX_SEQ_LENGTH: '64' }), base).max_seq_length).toBe(64);
    expect(trainRecipe(loadConfig({}), dir)).not.toHaveProperty('max_seq_length'); // no model card: the trainer's default
    expect(() => loadConfig({ TRAIN_MAX_SEQ_LENGTH: '4' })).toThrow(/TRAIN_MAX_SEQ_LENGTH/);
    const b = await bundle('seq', {
      version: 'v4',
      parent_version: 'v1',
      seed: 1,
      collection: 'papers',
      ...trainRecipe(loadConfig({}), base),
    });
    expect(b.jobJson.max_seq_length).toBe(256);
    expect(b.validate.status).toBe(0);
    expect((JSON.parse(b.validate.stdout.trim().split('\n').at(-1)!) as { job: Record<string, unknown> }).job.max_seq_length).toBe(256);
  });
});

describe('train report summary (a real soup report from the H100, device call 7)', () => {
  it("keeps the headline numbers and each member's seed and metrics, not their full reports", () => {
    const report = JSON.parse(readFileSync(join(REPO, 'test/fixtures/train_report.soup4.json'), 'utf8')) as Record<string, unknown>;
    const s = summarizeTrainReport(report) as Record<string, unknown> & {
      soup: { concurrency: number; members: Array<Record<string, number>> };
    };
    expect(s.device).toMatch(/H100/);
    expect((s.eval_after as Record<string, number>)['ndcg@10']).toBeCloseTo(0.888, 3);
    expect(s.loss_config).toMatchObject({ hardness: { mode: 'in_batch_negatives', strength: 5 } });
    expect(s.soup.concurrency).toBe(4);
    expect(s.soup.members.map((m) => m.seed)).toEqual([42, 43, 44, 45]);
    expect(Object.keys(s.soup.members[0]!).sort()).toEqual(['mrr@10', 'ndcg@10', 'recall@10', 'seed', 'train_seconds']);
    expect(s).not.toHaveProperty('loss_curve');
    expect(JSON.stringify(s).length).toBeLessThan(JSON.stringify(report).length / 5);
    expect(summarizeTrainReport({ device: 'cpu', soup: null })).toEqual({ device: 'cpu' });
  });
});
