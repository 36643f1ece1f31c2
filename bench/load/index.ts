// Mixed load against a real server process: 64 clients doing search / ingest / feedback for a while.
//   npx tsx bench/load/index.ts [--seconds 600] [--clients 64] [--docs 5000] [--model DIR] [--fixed]
// --fixed: ingest re-upserts documents of the seed set (the corpus size stays constant), so RSS growth
// over the run is a leak, not more data.
// Reports per-op counts, status classes (0 5xx is the goal), p50/p99, and server RSS start vs end.
import { spawn } from 'node:child_process';
import { createReadStream, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';

const { values: a } = parseArgs({
  options: {
    seconds: { type: 'string', default: '600' },
    clients: { type: 'string', default: '64' },
    docs: { type: 'string', default: '5000' },
    model: { type: 'string' },
    data: { type: 'string', default: '../shared/data/go' },
    port: { type: 'string', default: '18731' },
    fixed: { type: 'boolean', default: false },
  },
});
const REPO = resolve(import.meta.dirname, '../..');
const dir = mkdtempSync(join(tmpdir(), 'load-'));
const port = Number(a.port);
const base = `http://127.0.0.1:${port}`;
const env = {
  ...process.env,
  DATA_DIR: dir,
  PORT: String(port),
  HOST: '127.0.0.1',
  AUTH: 'off',
  LOG_LEVEL: 'warn',
  DRIFT_INTERVAL_SECONDS: '0',
  ...(a.model ? { MODEL_DIR: resolve(a.model) } : {}),
};
const server = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], { cwd: REPO, env, stdio: ['ignore', 'ignore', 'inherit'] });
const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${server.pid}/status`, 'utf8'))![1]) / 1024;

async function post(path: string, body: unknown): Promise<{ status: number; json: any }> {
  const r = await fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: r.status, json: await r.json().catch(() => undefined) };
}

async function lines<T>(file: string, max: number): Promise<T[]> {
  const out: T[] = [];
  for await (const l of createInterface({ input: createReadStream(file) })) {
    if (l.trim()) out.push(JSON.parse(l) as T);
    if (out.length >= max) break;
  }
  return out;
}

try {
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`${base}/readyz`)).ok) break;
    } catch {
      /* starting */
    }
    if (i > 1200 || server.exitCode !== null) throw new Error('server did not start');
    await new Promise((r) => setTimeout(r, 100));
  }
  const corpus = await lines<{ id: string; text: string }>(join(a.data!, 'corpus.jsonl'), Number(a.docs) + 20_000);
  const queries = (await lines<{ query: string; relevant: string[] }>(join(a.data!, 'queries.dev.jsonl'), 5000)).map((q) => q.query);
  await post('/collections', { name: 'load' });
  const seed = corpus.slice(0, Number(a.docs));
  for (let i = 0; i < seed.length; i += 256)
    await post('/collections/load/documents', { documents: seed.slice(i, i + 256).map((d) => ({ id: d.id, text: d.text })) });
  let next = seed.length;
  const rssStart = rss();
  const ops = { search: [] as number[], ingest: [] as number[], feedback: [] as number[] };
  const status: Record<string, number> = {};
  const recent: { queryId: string; id: string }[] = [];
  const rssTrace: number[] = [rssStart];
  const until = Date.now() + Number(a.seconds) * 1000;
  const tracer = setInterval(() => rssTrace.push(rss()), 10_000);
  let rng = 12345;
  const rnd = () => (rng = (rng * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  await Promise.all(
    Array.from({ length: Number(a.clients) }, async () => {
      while (Date.now() < until) {
        const r = rnd();
        const t = performance.now();
        let res: { status: number; json: any };
        let op: keyof typeof ops;
        if (r < 0.8) {
          op = 'search';
          res = await post('/search', {
            collection: 'load',
            query: queries[Math.floor(rnd() * queries.length)],
            k: 10,
            mode: rnd() < 0.8 ? 'vector' : 'hybrid',
          });
          const top = res.json?.results?.[0];
          if (top) {
            recent.push({ queryId: res.json.queryId, id: top.id });
            if (recent.length > 1000) recent.shift();
          }
        } else if (r < 0.9) {
          op = 'ingest';
          const pick = () => (a.fixed ? seed[Math.floor(rnd() * seed.length)]! : corpus[next++ % corpus.length]!);
          // A batch with one id twice is refused (duplicate_id): keep fixed-mode batches distinct.
          const docs = [...new Map(Array.from({ length: 8 }, pick).map((d) => [d.id, { id: d.id, text: d.text }])).values()];
          res = await post('/collections/load/documents', { documents: docs });
        } else {
          op = 'feedback';
          const f = recent[Math.floor(rnd() * recent.length)];
          res = f ? await post('/feedback', { queryId: f.queryId, documentId: f.id }) : { status: 201, json: {} };
        }
        ops[op].push(performance.now() - t);
        const cls = `${op} ${res.status}`;
        status[cls] = (status[cls] ?? 0) + 1;
        if (res.status === 429) await new Promise((r2) => setTimeout(r2, 50));
      }
    }),
  );
  clearInterval(tracer);
  const rssEnd = rss();
  const pct = (xs: number[], p: number) => {
    const s = [...xs].sort((x, y) => x - y);
    return s[Math.min(s.length - 1, Math.floor(s.length * p))] ?? NaN;
  };
  console.log(
    `load: ${a.clients} clients, ${a.seconds} s, ${seed.length} seed docs${a.fixed ? ' (fixed corpus: ingest re-upserts seed docs)' : ''}, node ${process.version}`,
  );
  for (const [op, xs] of Object.entries(ops))
    console.log(
      `${op.padEnd(9)} n=${String(xs.length).padStart(7)}  rps=${(xs.length / Number(a.seconds)).toFixed(1).padStart(7)}  p50=${pct(xs, 0.5).toFixed(1)} ms  p99=${pct(xs, 0.99).toFixed(1)} ms`,
    );
  console.log('statuses:', JSON.stringify(status));
  const fivexx = Object.entries(status)
    .filter(([k]) => / 5\d\d$/.test(k))
    .reduce((n, [, v]) => n + v, 0);
  console.log(`5xx: ${fivexx}`);
  console.log(
    `server RSS: start ${rssStart.toFixed(0)} MiB, end ${rssEnd.toFixed(0)} MiB, max ${Math.max(...rssTrace).toFixed(0)} MiB; trace (10 s steps): ${rssTrace.map((x) => x.toFixed(0)).join(' ')}`,
  );
  if (fivexx > 0) process.exitCode = 1;
} finally {
  server.kill('SIGTERM');
  await new Promise((r) => server.once('exit', r));
  rmSync(dir, { recursive: true, force: true });
}
