// Helpers the loop drivers (replay.ts, scenario.ts) share: JSON-lines reading, a bounded worker pool and a
// seeded shuffle, so a rerun replays the same traffic in the same order.
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

export async function* jsonl<T>(file: string): AsyncGenerator<T> {
  for await (const line of createInterface({ input: createReadStream(file), crlfDelay: Infinity }))
    if (line.trim()) yield JSON.parse(line) as T;
}

export async function readAll<T>(file: string): Promise<T[]> {
  const out: T[] = [];
  for await (const x of jsonl<T>(file)) out.push(x);
  return out;
}

/** Runs fn over items with at most n in flight. */
export async function pool<T>(items: T[], n: number, fn: (x: T, i: number) => Promise<void>) {
  let i = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (i < items.length) {
        const k = i++;
        await fn(items[k]!, k);
      }
    }),
  );
}

/** Seeded shuffle (mulberry32). */
export function shuffled<T>(xs: T[], seed: number): T[] {
  let s = seed >>> 0;
  const r = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out = [...xs];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

export type Json = Record<string, unknown>;
export type Log = (msg: string, extra?: Record<string, unknown>) => void;

/** JSON lines on stderr, stamped with seconds since `t0` (and any fixed fields). */
export function stderrLog(t0: number, fixed: Record<string, unknown> = {}): Log {
  return (msg, extra = {}) =>
    process.stderr.write(JSON.stringify({ t: ((Date.now() - t0) / 1000).toFixed(1), ...fixed, msg, ...extra }) + '\n');
}

/**
 * The server's HTTP API with an optional API key. A reused keep-alive connection can be reset by the server
 * just as it times out (ECONNRESET): `call` retries, a few times, what never reached a handler — every
 * request the drivers make is safe to repeat (a repeated retrain answers 409).
 */
export function apiClient(url: string, apiKey: string | undefined, log: Log) {
  const headers: Record<string, string> = { 'content-type': 'application/json', ...(apiKey ? { authorization: `Bearer ${apiKey}` } : {}) };
  async function call<T = Json>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
    for (let attempt = 0; ; attempt++) {
      try {
        const r = await fetch(url + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
        return { status: r.status, body: (await r.json()) as T };
      } catch (err) {
        if (attempt >= 4) throw err;
        log('network error, retrying', { method, path, err: String((err as { cause?: unknown }).cause ?? err) });
        await new Promise((r) => setTimeout(r, 500 * (attempt + 1)));
      }
    }
  }
  async function ok<T = Json>(method: string, path: string, body?: unknown): Promise<T> {
    const r = await call<T>(method, path, body);
    if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
    return r.body;
  }
  return { call, ok };
}

/**
 * Creates `col` and upserts corpus.jsonl in batches of 256, four in flight; `metadata` picks each document's
 * metadata from its row (the rest of the row besides id and text, unless told otherwise).
 */
export async function ingestCorpus(
  api: ReturnType<typeof apiClient>,
  dataDir: string,
  col: string,
  metadata: (row: Json) => Json = ({ id: _id, text: _text, ...rest }) => rest,
): Promise<{ documents: number; seconds: number }> {
  await api.call('POST', '/collections', { name: col });
  const t = Date.now();
  let n = 0;
  let batch: { id: string; text: string; metadata: Json }[] = [];
  const pending: Promise<void>[] = [];
  const flush = async (docs: typeof batch) => {
    await api.ok('POST', `/collections/${col}/documents`, { documents: docs });
    n += docs.length;
  };
  for await (const d of jsonl<{ id: string; text: string } & Json>(join(dataDir, 'corpus.jsonl'))) {
    batch.push({ id: d.id, text: d.text, metadata: metadata(d) });
    if (batch.length === 256) {
      pending.push(flush(batch));
      batch = [];
      if (pending.length >= 4) await Promise.all(pending.splice(0));
    }
  }
  if (batch.length) pending.push(flush(batch));
  await Promise.all(pending);
  return { documents: n, seconds: (Date.now() - t) / 1000 };
}
