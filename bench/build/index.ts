// Index build time at scale: what a shadow build costs once the embeddings exist (trainer-made on the GPU, or
// the CPU re-embed). Builds one HNSW index through the server's own IndexManager (a worker thread, the
// collection defaults M 16 / efConstruction 200) from synthetic unit vectors added in the batches the shadow
// build uses, and prints the rate as it goes, so a large N can be projected from its first part as well.
//   npm run bench:build -- [N=100000] [dim=256]
// Synthetic vectors are uniform on the sphere: a harder case for HNSW than real embeddings (which cluster), so
// this is an upper bound on the build time of a real corpus of the same size.
import { IndexManager, DEFAULT_HNSW_PARAMS } from '../../src/index/manager.js';
import { randomUnitVector, seededRandom } from '../../src/util/random.js';

const n = Number(process.argv[2] ?? 100_000);
const dim = Number(process.argv[3] ?? 256);
const batch = 1024;
const rand = seededRandom(7);
const unit = () => randomUnitVector(dim, rand);

const indexes = new IndexManager({ workers: 1 });
await indexes.ready();
const idx = await indexes.create({ collectionId: 1, modelVersion: 'bench' }, dim, DEFAULT_HNSW_PARAMS, n);
const t0 = performance.now();
let genMs = 0;
let next = 1;
for (let done = 0; done < n; done += batch) {
  const m = Math.min(batch, n - done);
  const g = performance.now();
  const vecs = Array.from({ length: m }, unit);
  genMs += performance.now() - g;
  await idx.add(
    Array.from({ length: m }, () => next++),
    vecs,
  );
  const total = done + m;
  if (total % 100_000 < batch || total === n) {
    const s = (performance.now() - t0 - genMs) / 1000;
    console.log(JSON.stringify({ vectors: total, seconds: +s.toFixed(1), perSecond: Math.round(total / s) }));
  }
}
const buildS = (performance.now() - t0 - genMs) / 1000;
const mem = process.memoryUsage();
console.log(
  `built ${n} x ${dim} (M ${DEFAULT_HNSW_PARAMS.M}, efConstruction ${DEFAULT_HNSW_PARAMS.efConstruction}) in ${buildS.toFixed(1)} s ` +
    `= ${Math.round(n / buildS)} vectors/s; process RSS ${Math.round(mem.rss / 2 ** 20)} MiB`,
);
await indexes.close();
