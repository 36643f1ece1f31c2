import { parentPort, workerData } from 'node:worker_threads';
import { computeEmbeddingDrift, type EmbeddingDriftInput } from './embedding-drift.js';

// The quadratic statistics (MMD kernel matrix, cross-validated classifier) take ~1 s of CPU for two
// 500-query windows; running them here keeps the event loop free for searches.
const input = workerData as EmbeddingDriftInput;
parentPort!.postMessage(computeEmbeddingDrift(input));
