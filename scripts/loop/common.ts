// Helpers the loop drivers (replay.ts, scenario.ts) share: JSON-lines reading, a bounded worker pool and a
// seeded shuffle, so a rerun replays the same traffic in the same order.
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';

export async function* jsonl<T>(file: string): AsyncGenerator<T> {
  for await (const line of createInterface({ input: createReadStream(file), crlfDelay: Infinity })) if (line.trim()) yield JSON.parse(line) as T;
}

export async function readAll<T>(file: string): Promise<T[]> {
  const out: T[] = [];
  for await (const x of jsonl<T>(file)) out.push(x);
  return out;
}

/** Runs fn over items with at most n in flight. */
export async function pool<T>(items: T[], n: number, fn: (x: T, i: number) => Promise<void>) {
  let i = 0;
  await Promise.all(Array.from({ length: n }, async () => { while (i < items.length) { const k = i++; await fn(items[k]!, k); } }));
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
