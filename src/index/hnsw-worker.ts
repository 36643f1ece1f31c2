import { parentPort } from 'node:worker_threads';

import type { SearchItem, ToHnswWorker, WorkerRequest, WorkerResponse } from './protocol.js';
import { Shard } from './shard.js';

// Worker entry: hosts the shards (indexes) assigned to this thread. hnswlib calls are synchronous, so
// they run here and the main thread's event loop keeps serving HTTP meanwhile.
const port = parentPort;
if (!port) throw new Error('hnsw-worker must run as a worker thread');

const shards = new Map<string, Shard>();

function shardFor(keyId: string): Shard {
  const shard = shards.get(keyId);
  if (!shard) throw new Error(`index ${keyId} is not hosted by this worker`);
  return shard;
}

function fail(id: number, err: unknown): WorkerResponse {
  const e = err instanceof Error ? err : new Error(String(err));
  return { id, ok: false, error: { name: e.name, message: e.message } };
}

function searchBatch(id: number, items: SearchItem[], vectors: Float32Array): { res: WorkerResponse; transfer: ArrayBuffer[] } {
  const lengths = new Int32Array(items.length);
  const parts: { labels: Float64Array; scores: Float32Array }[] = [];
  const errors: Record<number, string> = {};
  let total = 0;
  items.forEach((item, i) => {
    try {
      const shard = shardFor(item.keyId);
      const hits = shard.search(vectors.subarray(item.offset, item.offset + shard.dim), item.k, item.ef, item.allow);
      lengths[i] = hits.labels.length;
      total += hits.labels.length;
      parts.push(hits);
    } catch (err) {
      lengths[i] = -1;
      errors[i] = (err as Error).message;
    }
  });
  const labels = new Float64Array(total);
  const scores = new Float32Array(total);
  let at = 0;
  for (const p of parts) {
    labels.set(p.labels, at);
    scores.set(p.scores, at);
    at += p.labels.length;
  }
  return { res: { id, ok: true, lengths, labels, scores, errors }, transfer: [lengths.buffer, labels.buffer, scores.buffer] };
}

async function handle(msg: WorkerRequest): Promise<void> {
  const { id } = msg;
  try {
    switch (msg.op) {
      case 'search': {
        const { res, transfer } = searchBatch(id, msg.items, msg.vectors);
        port!.postMessage(res, transfer);
        return;
      }
      case 'create': {
        if (shards.has(msg.keyId)) throw new Error(`index ${msg.keyId} already exists in this worker`);
        const shard = Shard.create(msg.dim, msg.params, msg.capacity, msg.tuning);
        shards.set(msg.keyId, shard);
        port!.postMessage({ id, ok: true, state: shard.state() } satisfies WorkerResponse);
        return;
      }
      case 'load': {
        if (shards.has(msg.keyId)) throw new Error(`index ${msg.keyId} already exists in this worker`);
        const shard = await Shard.load(msg.dim, msg.params, msg.path, msg.tuning);
        shards.set(msg.keyId, shard);
        port!.postMessage({ id, ok: true, state: shard.state() } satisfies WorkerResponse);
        return;
      }
      case 'add': {
        const state = await shardFor(msg.keyId).add(msg.labels, msg.vectors);
        port!.postMessage({ id, ok: true, state } satisfies WorkerResponse);
        return;
      }
      case 'delete': {
        const state = await shardFor(msg.keyId).markDeleted(msg.labels);
        port!.postMessage({ id, ok: true, state } satisfies WorkerResponse);
        return;
      }
      case 'snapshot': {
        const state = await shardFor(msg.keyId).snapshot(msg.path);
        port!.postMessage({ id, ok: true, state } satisfies WorkerResponse);
        return;
      }
      case 'drop': {
        // Dropping the last reference lets the native destructor free the index memory at next GC.
        shards.delete(msg.keyId);
        port!.postMessage({ id, ok: true } satisfies WorkerResponse);
        return;
      }
    }
  } catch (err) {
    port!.postMessage(fail(id, err));
  }
}

const inflight = new Set<Promise<void>>();
port.on('message', (msg: ToHnswWorker) => {
  // A message is handled between native calls; reads and writes of snapshot files run on libuv's pool.
  if (msg.op === 'kill') {
    void Promise.allSettled([...inflight]).then(() => process.exit(1));
    return;
  }
  if (msg.op === 'close') {
    // Ends the thread between native calls, never inside one (see stopWorker).
    void Promise.allSettled([...inflight]).then(() => {
      shards.clear();
      port.close();
    });
    return;
  }
  const p: Promise<void> = handle(msg).finally(() => inflight.delete(p));
  inflight.add(p);
});
port.postMessage({ ready: true });
