// One in-process search loop in a worker thread, for bench/search/peers.ts: loads its own copy of an
// index (hnswlib-node snapshot or usearch file), then searches as fast as it can for `ms`, one query at
// a time, and reports the latencies. Several of these side by side are "16 clients" on 2 cores.
import { usearchIndex } from './usearch-index.js';
import { parentPort, workerData } from 'node:worker_threads';
import hnswlib from 'hnswlib-node';

export interface PeerJob {
  system: 'hnswlib' | 'usearch';
  path: string;
  dim: number;
  ef: number;
  k: number;
  queries: Float32Array;
  warmupMs: number;
  ms: number;
}

const job = workerData as PeerJob;
const nq = job.queries.length / job.dim;
let search: (i: number) => void;
if (job.system === 'hnswlib') {
  const idx = new hnswlib.HierarchicalNSW('ip', job.dim);
  await idx.readIndex(job.path);
  idx.setEf(job.ef);
  const plain = Array.from({ length: nq }, (_, i) => Array.from(job.queries.subarray(i * job.dim, (i + 1) * job.dim)));
  search = (i) => void idx.searchKnn(plain[i % nq]!, job.k);
} else {
  const idx = usearchIndex(job.dim, job.ef);
  idx.load(job.path);
  const qs = Array.from({ length: nq }, (_, i) => job.queries.subarray(i * job.dim, (i + 1) * job.dim));
  search = (i) => void idx.search(qs[i % nq]!, job.k, 1);
}
parentPort!.postMessage('ready');
await new Promise<void>((r) => parentPort!.once('message', () => r()));
const lat: number[] = [];
let i = 0;
const t0 = performance.now();
const startAt = t0 + job.warmupMs;
const end = startAt + job.ms;
for (let now = t0; now < end; ) {
  search(i++);
  const after = performance.now();
  if (now >= startAt) lat.push(after - now);
  now = after;
}
parentPort!.postMessage({ latencies: Float64Array.from(lat), ms: job.ms });
