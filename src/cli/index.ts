// `retrieval` — command-line client for the retrieval server (and local admin for API keys).
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { createApiKey, isRole } from '../auth/keys.js';
import { RetrievalClient, RetrievalError, type JobInfo, type ModelInfo, type Scalar, type SearchMode } from '../client/index.js';
import { IngestError, ingestFile } from './ingest.js';
import type { ProgressSink } from './progress.js';

export interface CliIO {
  stdout: { write(s: string): unknown };
  stderr: ProgressSink;
  env: Record<string, string | undefined>;
  /** Aborted on SIGINT: ingest stops cleanly and keeps its checkpoint. */
  signal?: AbortSignal;
}

const USAGE = `usage: retrieval <command> [options]

commands:
  ingest FILE.jsonl --collection C [--batch 256] [--concurrency 2] [--create] [--restart] [--quiet]
      Upsert JSON Lines ({"id","text","metadata"?}; other top-level fields go into metadata).
      Progress is checkpointed in FILE.jsonl.progress; rerunning the command resumes after the
      last acknowledged line.
  search QUERY --collection C [--k 10] [--mode vector|keyword|hybrid] [--filter '{"key":"value"}']
  collections                       list collections
  reindex [--collection C]          rebuild the HNSW index of C (default: every collection) from the store
  retrain --collection C            start a retrain job
  jobs [ID] [--collection C]        list jobs, or show one
  models                            list model versions
  rollback VERSION                  make VERSION the serving model again
  drift --collection C              run a drift check now
  keys create --role read|admin [--name NAME]
      Create an API key directly in the server's database (DATA_DIR / DATABASE_URL from the
      environment, as the server reads them). Prints the key once; only its hash is stored.

options for commands that talk to the server:
  --url URL    server base URL (env RETRIEVAL_URL, default http://127.0.0.1:8080)
  --key KEY    API key (env RETRIEVAL_API_KEY)
  --json       print the raw JSON response
`;

class UsageError extends Error {}

const common = {
  url: { type: 'string' },
  key: { type: 'string' },
  json: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const satisfies ParseArgsConfig['options'];

function parse<O extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: O) {
  try {
    return parseArgs({ args, options: { ...common, ...options }, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
}

function positiveInt(v: string | undefined, name: string, def: number): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`--${name} must be a positive integer`);
  return n;
}

function need(v: string | undefined, what: string): string {
  if (!v) throw new UsageError(`${what} is required`);
  return v;
}

function clientFor(values: { url?: string; key?: string }, io: CliIO): RetrievalClient {
  return new RetrievalClient({
    url: values.url ?? io.env.RETRIEVAL_URL ?? 'http://127.0.0.1:8080',
    apiKey: values.key ?? io.env.RETRIEVAL_API_KEY,
  });
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}

async function run(argv: string[], io: CliIO): Promise<number> {
  const [cmd, ...rest] = argv;
  const out = (s: string) => io.stdout.write(s);
  const json = (x: unknown) => out(JSON.stringify(x, null, 2) + '\n');
  if (!cmd || cmd === 'help' || cmd === '--help' || cmd === '-h') {
    out(USAGE);
    return cmd ? 0 : 2;
  }
  switch (cmd) {
    case 'ingest': {
      const { values, positionals } = parse(rest, {
        collection: { type: 'string', short: 'c' },
        batch: { type: 'string' },
        concurrency: { type: 'string' },
        'max-batch-bytes': { type: 'string' },
        create: { type: 'boolean', default: false },
        restart: { type: 'boolean', default: false },
        quiet: { type: 'boolean', short: 'q', default: false },
      });
      if (positionals.length !== 1) throw new UsageError('ingest takes exactly one FILE.jsonl');
      const summary = await ingestFile(clientFor(values, io), {
        file: positionals[0]!,
        collection: need(values.collection, '--collection'),
        batch: positiveInt(values.batch, 'batch', 256),
        concurrency: positiveInt(values.concurrency, 'concurrency', 2),
        maxBatchBytes: positiveInt(values['max-batch-bytes'], 'max-batch-bytes', 8 << 20),
        create: values.create,
        restart: values.restart,
        progress: !values.quiet,
        stderr: io.stderr,
        signal: io.signal,
      });
      if (values.json) json(summary);
      else if (summary.alreadyDone)
        io.stderr.write(
          `${positionals[0]} is already fully ingested into "${summary.collection}" (${summary.docs} docs); pass --restart to send it again\n`,
        );
      else if (!summary.done) io.stderr.write(`interrupted after line ${summary.lines}; rerun the same command to resume\n`);
      else {
        const resumed = summary.resumedFromLine > 0 ? ` (resumed after line ${summary.resumedFromLine})` : '';
        io.stderr.write(
          `ingested ${summary.docs} documents (${summary.chunks} chunks) into "${summary.collection}" in ${summary.seconds.toFixed(1)} s${resumed}\n`,
        );
      }
      return summary.done ? 0 : 130;
    }
    case 'search': {
      const { values, positionals } = parse(rest, {
        collection: { type: 'string', short: 'c' },
        k: { type: 'string', short: 'k' },
        mode: { type: 'string' },
        filter: { type: 'string' },
      });
      const query = positionals.join(' ');
      if (!query) throw new UsageError('search needs a QUERY');
      const mode = values.mode ?? 'vector';
      if (!['vector', 'keyword', 'hybrid'].includes(mode)) throw new UsageError('--mode must be vector, keyword or hybrid');
      let filter: Record<string, Scalar> | undefined;
      if (values.filter) {
        try {
          filter = JSON.parse(values.filter) as Record<string, Scalar>;
        } catch {
          throw new UsageError('--filter must be a JSON object, e.g. \'{"namespace":"BP"}\'');
        }
      }
      const res = await clientFor(values, io).search({
        collection: need(values.collection, '--collection'),
        query,
        k: positiveInt(values.k, 'k', 10),
        mode: mode as SearchMode,
        filter,
      });
      if (values.json) {
        json(res);
        return 0;
      }
      const rows = [['#', 'score', 'id', 'text']];
      res.results.forEach((r, i) => rows.push([String(i + 1), r.score.toFixed(4), r.id, r.text.replace(/\s+/g, ' ').slice(0, 100)]));
      out(table(rows));
      io.stderr.write(`model ${res.model}, ${res.tookMs} ms, queryId ${res.queryId}\n`);
      return 0;
    }
    case 'collections': {
      const { values } = parse(rest, {});
      const cols = await clientFor(values, io).listCollections();
      if (values.json) {
        json(cols);
        return 0;
      }
      out(table([['name', 'documents', 'chunks', 'model'], ...cols.map((c) => [c.name, String(c.documents), String(c.chunks), c.model])]));
      return 0;
    }
    case 'reindex': {
      const { values } = parse(rest, { collection: { type: 'string', short: 'c' } });
      const client = clientFor(values, io);
      const names = values.collection ? [values.collection] : (await client.listCollections()).map((c) => c.name);
      const results: { collection: string; chunks: number }[] = [];
      // One at a time: a rebuild re-embeds every chunk of the collection, which is the slow part.
      for (const name of names) {
        const r = await client.reindex(name);
        results.push({ collection: name, chunks: r.chunks });
        if (!values.json) io.stderr.write(`reindexed ${name}: ${r.chunks} chunks\n`);
      }
      if (values.json) json(results);
      return 0;
    }
    case 'retrain': {
      const { values } = parse(rest, { collection: { type: 'string', short: 'c' } });
      const job = await clientFor(values, io).retrain(need(values.collection, '--collection'));
      if (values.json) {
        json(job);
        return 0;
      }
      out(`job ${job.id} ${job.state} (collection ${job.collection})\n`);
      return 0;
    }
    case 'jobs': {
      const { values, positionals } = parse(rest, { collection: { type: 'string', short: 'c' } });
      const client = clientFor(values, io);
      if (positionals[0]) {
        json(await client.job(positionals[0]));
        return 0;
      }
      const jobs: JobInfo[] = await client.jobs({ collection: values.collection });
      if (values.json) {
        json(jobs);
        return 0;
      }
      out(
        table([
          ['id', 'collection', 'state', 'created', 'error'],
          ...jobs.map((j) => [j.id, j.collection, j.state, j.createdAt, (j.error ?? '').split('\n')[0]!.slice(0, 60)]),
        ]),
      );
      return 0;
    }
    case 'models': {
      const { values } = parse(rest, {});
      const res = await clientFor(values, io).models();
      if (values.json) {
        json(res);
        return 0;
      }
      // Eval metrics are in --json; the table shows the latest gate verdict only.
      const gate = (m: ModelInfo) => (m.evalReports[0] ? (m.evalReports[0].passed ? 'passed' : 'rejected') : '');
      out(
        table([
          ['version', 'status', 'serving', 'parent', 'created', 'gate'],
          ...res.models.map((m) => [
            m.version,
            m.status,
            m.version === res.serving ? '*' : '',
            m.parentVersion ?? '',
            m.createdAt,
            gate(m),
          ]),
        ]),
      );
      return 0;
    }
    case 'rollback': {
      const { values, positionals } = parse(rest, {});
      const version = need(positionals[0], 'VERSION');
      const res = await clientFor(values, io).rollback(version);
      if (values.json) {
        json(res);
        return 0;
      }
      out(`serving ${res.model} (generation ${res.generation}${res.changed ? '' : ', unchanged'})\n`);
      return 0;
    }
    case 'drift': {
      const { values } = parse(rest, { collection: { type: 'string', short: 'c' } });
      json(await clientFor(values, io).drift(need(values.collection, '--collection')));
      return 0;
    }
    case 'keys': {
      const [sub, ...args] = rest;
      if (sub !== 'create') throw new UsageError('keys: the only subcommand is "create"');
      const { values } = parse(args, { role: { type: 'string' }, name: { type: 'string' } });
      const role = need(values.role, '--role');
      if (!isRole(role)) throw new UsageError('--role must be read or admin');
      // Loaded lazily: the HTTP commands must not need the server's config or database drivers.
      const [{ loadConfig }, { openStore }] = await Promise.all([import('../config.js'), import('../store/index.js')]);
      const cfg = loadConfig(io.env);
      const store = await openStore({ databaseUrl: cfg.DATABASE_URL, dataDir: cfg.DATA_DIR });
      try {
        const k = await createApiKey(store, { role, name: values.name ?? null });
        if (values.json) json({ id: k.id, role: k.role, name: k.name, key: k.key, store: store.dialect });
        else {
          out(`${k.key}\n`);
          io.stderr.write(`created ${k.role} key ${k.id} in the ${store.dialect} store; it is shown only once\n`);
        }
      } finally {
        await store.close();
      }
      return 0;
    }
    default:
      throw new UsageError(`unknown command "${cmd}"`);
  }
}

/** Runs one command; returns the exit code (0 ok, 1 failed, 2 usage, 130 interrupted). */
export async function runCli(argv: string[], io: CliIO): Promise<number> {
  try {
    return await run(argv, io);
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr.write(`retrieval: ${err.message}\n\n${USAGE}`);
      return 2;
    }
    if (err instanceof RetrievalError) {
      io.stderr.write(`retrieval: ${err.code}${err.status ? ` (HTTP ${err.status})` : ''}: ${err.message}\n`);
      return 1;
    }
    if (err instanceof IngestError) {
      io.stderr.write(`retrieval: ${err.message}\n`);
      return 1;
    }
    io.stderr.write(`retrieval: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

function isMain(): boolean {
  const entry = process.argv[1];
  if (!entry) return false;
  try {
    return realpathSync(entry) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

/** Process entry (used by `tsx src/cli/index.ts` and by the `retrieval` bin shim). */
export async function main(argv = process.argv.slice(2)): Promise<void> {
  const ac = new AbortController();
  let interrupts = 0;
  process.on('SIGINT', () => {
    // First Ctrl-C: finish in-flight batches and save the checkpoint. Second: leave now.
    if (++interrupts > 1) process.exit(130);
    process.stderr.write('\ninterrupted: finishing in-flight batches (Ctrl-C again to quit now)\n');
    ac.abort();
  });
  const stderr = process.stderr;
  process.exitCode = await runCli(argv, {
    stdout: process.stdout,
    stderr: {
      write: (s: string) => stderr.write(s),
      isTTY: stderr.isTTY,
      get columns() {
        return stderr.columns;
      },
    },
    env: process.env,
    signal: ac.signal,
  });
}

if (isMain()) await main();
