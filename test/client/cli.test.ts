// The `retrieval` CLI in-process (runCli with captured streams) against a real server on a real port.
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RetrievalClient, type DocumentInput, type UpsertResult } from '../../src/client/index.js';
import { runCli } from '../../src/cli/index.js';
import { checkpointPath, ingestFile, readCheckpoint } from '../../src/cli/ingest.js';
import { apiKeyAuth } from '../../src/http/auth.js';
import { startTestServer, tempDir, type TestServer } from '../helpers.js';

const ADMIN = 'cli-test-bootstrap-admin';
const NS = ['BP', 'MF', 'CC'];

function jsonl(n: number, bad?: number): string {
  const lines: string[] = [];
  for (let i = 1; i <= n; i++) {
    lines.push(
      i === bad
        ? '{"id": "broken", "text": '
        : JSON.stringify({
            id: `GO:${String(i).padStart(7, '0')}`,
            text: `definition number ${i} about term${i} biology`,
            namespace: NS[i % 3],
          }),
    );
    if (i % 97 === 0) lines.push(''); // blank lines are skipped but still counted
  }
  return lines.join('\n') + '\n';
}

describe('retrieval CLI', () => {
  let server: TestServer;
  let dir: string;
  let admin: RetrievalClient;
  const run = async (args: string[], env: Record<string, string | undefined> = {}) => {
    let stdout = '';
    let stderr = '';
    const code = await runCli(args, {
      stdout: { write: (s: string) => (stdout += s) },
      stderr: { write: (s: string) => (stderr += s), isTTY: false },
      env: { RETRIEVAL_URL: server.url, RETRIEVAL_API_KEY: ADMIN, ...env },
    });
    return { code, stdout, stderr };
  };

  beforeAll(async () => {
    dir = tempDir('cli-');
    server = await startTestServer(
      { AUTH: 'on' },
      {
        listen: true,
        extend: async ({ store, config, log }) => ({
          auth: apiKeyAuth({ store, mode: config.AUTH, bootstrapAdminKey: ADMIN, logger: log }),
        }),
      },
    );
    admin = new RetrievalClient({ url: server.url, apiKey: ADMIN });
  });
  afterAll(async () => {
    await server?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it('ingests a JSONL file in batches, puts extra fields into metadata, and a rerun is a no-op', async () => {
    const file = join(dir, 'corpus.jsonl');
    writeFileSync(file, jsonl(300));
    const r = await run(['ingest', file, '--collection', 'cli-go', '--batch', '50', '--create']);
    expect(r.stderr).toMatch(/ingested 300 documents \(300 chunks\) into "cli-go"/);
    expect(r.code).toBe(0);
    // Non-TTY progress: plain lines (at least the final one), never carriage returns.
    expect(r.stderr).toMatch(/ingest cli-go: 100\.0%\s+300 docs/);
    expect(r.stderr).not.toContain('\r');
    expect((await admin.getCollection('cli-go')).documents).toBe(300);
    expect(readCheckpoint(checkpointPath(file))).toMatchObject({ done: true, docs: 300, line: 303, collection: 'cli-go' });
    const doc = await admin.getDocument('cli-go', 'GO:0000001');
    expect(doc.metadata).toEqual({ namespace: 'MF' });

    const seq = await server.store.currentSeq();
    const again = await run(['ingest', file, '--collection', 'cli-go']);
    expect(again.code).toBe(0);
    expect(again.stderr).toMatch(/already fully ingested/);
    expect(await server.store.currentSeq()).toBe(seq);

    const s = await run([
      'search',
      'term7',
      'biology',
      '--collection',
      'cli-go',
      '--mode',
      'keyword',
      '--k',
      '3',
      '--filter',
      '{"namespace":"MF"}',
    ]);
    expect(s.code).toBe(0);
    expect(s.stdout.split('\n')[0]).toMatch(/^#\s+score\s+id\s+text/);
    expect(s.stdout).toContain('GO:0000007');
    const sj = await run(['search', 'term7', '--collection', 'cli-go', '--mode', 'keyword', '--json']);
    expect(JSON.parse(sj.stdout).results[0].id).toBe('GO:0000007');
    const cols = await run(['collections']);
    expect(cols.stdout).toMatch(/cli-go\s+300\s+300/);
    const re = await run(['reindex', '--collection', 'cli-go']);
    expect([re.code, re.stderr]).toEqual([0, 'reindexed cli-go: 300 chunks\n']);
  });

  it('stops at a bad line with its number, then resumes after the last acknowledged batch', async () => {
    const file = join(dir, 'bad.jsonl');
    writeFileSync(file, jsonl(300, 120));
    const r = await run(['ingest', file, '--collection', 'cli-resume', '--batch', '50', '--create', '--quiet', '--concurrency', '1']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/line 121: invalid JSON/); // line 97 is followed by a blank line
    expect(r.stderr).toMatch(/rerun the same command to resume/);
    const cp = readCheckpoint(checkpointPath(file))!;
    expect(cp).toMatchObject({ done: false, docs: 100 });
    expect((await admin.getCollection('cli-resume')).documents).toBe(100);

    // Fix the line (after the watermark, so the checkpoint stays valid) and rerun the same command.
    writeFileSync(file, jsonl(300));
    const seq = await server.store.currentSeq();
    const r2 = await run(['ingest', file, '--collection', 'cli-resume', '--batch', '50', '--quiet']);
    expect(r2.stderr).toMatch(/ingested 300 documents .* \(resumed after line 101\)/);
    expect(r2.code).toBe(0);
    expect((await admin.getCollection('cli-resume')).documents).toBe(300);
    // Only the remaining 200 documents were sent: 4 batches of 50, one upsert (seq) each.
    expect((await server.store.currentSeq()) - seq).toBe(4);
  });

  it('an interrupted ingest keeps a consistent checkpoint and the rerun completes', async () => {
    const file = join(dir, 'interrupt.jsonl');
    writeFileSync(file, jsonl(400));
    await admin.createCollection({ name: 'cli-int' });
    const ac = new AbortController();
    let calls = 0;
    // Interrupt (what SIGINT does) while the 3rd batch is being sent, with 2 batches in flight.
    class Interrupting extends RetrievalClient {
      override async upsertDocuments(c: string, docs: DocumentInput[]): Promise<UpsertResult> {
        if (++calls === 3) ac.abort();
        return super.upsertDocuments(c, docs);
      }
    }
    const base = {
      collection: 'cli-int',
      batch: 40,
      maxBatchBytes: 1 << 20,
      concurrency: 2,
      create: false,
      restart: false,
      progress: false,
      stderr: { write: () => true },
    };
    const first = await ingestFile(new Interrupting({ url: server.url, apiKey: ADMIN }), { ...base, file, signal: ac.signal });
    expect(first.done).toBe(false);
    const cp = readCheckpoint(checkpointPath(file))!;
    // Every acknowledged batch is in the checkpoint, and nothing beyond what the server has.
    expect(cp.docs).toBe(calls * 40);
    expect((await admin.getCollection('cli-int')).documents).toBe(cp.docs);
    const second = await ingestFile(admin, { ...base, file });
    expect(second).toMatchObject({ done: true, docs: 400, resumedFromLine: cp.line });
    expect((await admin.getCollection('cli-int')).documents).toBe(400);
  });

  it('refuses to resume into another collection or from a file that changed', async () => {
    const file = join(dir, 'guard.jsonl');
    writeFileSync(file, jsonl(60));
    expect((await run(['ingest', file, '--collection', 'cli-guard', '--create', '--quiet'])).code).toBe(0);
    const other = await run(['ingest', file, '--collection', 'cli-other', '--quiet']);
    expect([other.code, other.stderr]).toEqual([1, expect.stringMatching(/belongs to collection "cli-guard"/)]);
    writeFileSync(file, jsonl(60).replace('definition number 1 ', 'DEFINITION NUMBER 1 '));
    const changed = await run(['ingest', file, '--collection', 'cli-guard', '--quiet']);
    expect([changed.code, changed.stderr]).toEqual([1, expect.stringMatching(/changed since/)]);
    const restarted = await run(['ingest', file, '--collection', 'cli-guard', '--quiet', '--restart']);
    expect(restarted.code).toBe(0);
    expect((await admin.getDocument('cli-guard', 'GO:0000001')).text).toMatch(/^DEFINITION NUMBER 1 /);
    const missing = await run(['ingest', file, '--collection', 'cli-not-there', '--quiet', '--restart']);
    expect([missing.code, missing.stderr]).toEqual([1, expect.stringMatching(/does not exist; create it first or pass --create/)]);
  });

  it('keys create writes a working key into the server database; roles are enforced', async () => {
    const env = { DATA_DIR: server.dataDir, RETRIEVAL_API_KEY: undefined };
    const r = await run(['keys', 'create', '--role', 'read', '--name', 'rag-app'], env);
    expect(r.code).toBe(0);
    const key = r.stdout.trim();
    expect(key).toMatch(/^rk_[A-Za-z0-9_-]{43}$/);
    expect(r.stderr).toMatch(/created read key key_\w+ in the sqlite store/);
    expect((await run(['collections', '--key', key])).code).toBe(0);
    const file = join(dir, 'forbidden.jsonl');
    writeFileSync(file, jsonl(5));
    const w = await run(['ingest', file, '--collection', 'cli-ro', '--create', '--quiet', '--key', key]);
    expect([w.code, w.stderr]).toEqual([1, expect.stringMatching(/forbidden \(HTTP 403\)/)]);
    const none = await run(['collections'], { RETRIEVAL_API_KEY: undefined });
    expect([none.code, none.stderr]).toEqual([1, expect.stringMatching(/unauthorized \(HTTP 401\)/)]);
    expect(existsSync(join(server.dataDir, 'retrieval.db'))).toBe(true);
  });

  it('usage errors exit 2 with the usage text', async () => {
    for (const args of [
      [],
      ['frobnicate'],
      ['ingest'],
      ['ingest', 'x.jsonl'],
      ['search', '--collection', 'c'],
      ['ingest', 'x', '--collection', 'c', '--batch', '0'],
      ['keys', 'create', '--role', 'root'],
      ['search', 'q', '--bogus'],
    ]) {
      const r = await run(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr + r.stdout, args.join(' ')).toMatch(/usage: retrieval/);
    }
    expect((await run(['help'])).code).toBe(0);
    expect(readFileSync(new URL('../../src/cli/bin.mjs', import.meta.url), 'utf8')).toMatch(/^#!\/usr\/bin\/env node/);
  });
});
