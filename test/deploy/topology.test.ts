// deploy/local/topology.sh end to end: Postgres + S3 + two replicas + Prometheus as processes, the
// stand-in for `docker compose up` where there is no Docker. Needs Debian's prometheus and postgresql.
import { spawn, spawnSync } from 'node:child_process';
import { expect, it } from 'vitest';
import { REPO } from '../helpers.js';

const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const ready = Boolean(process.env.TEST_DATABASE_URL) && ['prometheus', 'psql', 'jq', 'curl'].every(has);

it.skipIf(!ready)(
  'the compose topology runs as processes: ingest via A, search via B, Prometheus scrapes both, a fresh B loads its index from S3',
  async () => {
    const out = await new Promise<{ code: number | null; text: string }>((resolve) => {
      const p = spawn('bash', ['deploy/local/topology.sh'], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
      let text = '';
      p.stdout.on('data', (d: Buffer) => {
        text += d.toString();
      });
      p.stderr.on('data', (d: Buffer) => {
        text += d.toString();
      });
      p.on('exit', (code) => resolve({ code, text }));
    });
    expect(out.text).toMatch(/top hit on B for document (\S+)'s own text: \1 /);
    expect(out.text).toMatch(/up\{job=retrieval\} summed: 2/);
    expect(out.text).toMatch(/rule groups loaded: [1-9]/);
    // The fresh replica loaded its index from S3 instead of re-embedding the 2,000 documents: it embedded only
    // the writes A made after its last published snapshot (A publishes every 2 s; on a loaded machine the
    // snapshot can lag the end of the ingest) and the strategy tuner's evaluation queries, at most half the corpus.
    const embedded = Number(/^embed_batch_size_sum (\d+)$/m.exec(out.text)?.[1]);
    expect(embedded).toBeLessThan(1000);
    expect(out.text).toMatch(/^index_size\{collection="docs",model_version="[^"]+"\} 2000$/m);
    expect(out.text).toMatch(/^object_store_operations_total\{op="snapshot_download",result="ok"\} 1$/m);
    expect(out.text, out.text.slice(-3000)).toContain('== OK');
    expect(out.code).toBe(0);
  },
  240_000,
);
