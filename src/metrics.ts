import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

// One registry per server instance (tests start many servers in one process).
export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  // prom-client names these gauges *_total, which `promtool check metrics` rejects (reserved for counters).
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
    registry.removeSingleMetric(name);
  }
  const r = [registry];
  // One line per metric; the label names stay typed (prom-client checks them at every .inc/.set/.observe).
  const counter = <L extends string = never>(name: string, help: string, labelNames: readonly L[] = []) =>
    new Counter<L>({ name, help, labelNames, registers: r });
  const gauge = <L extends string = never>(name: string, help: string, labelNames: readonly L[] = []) =>
    new Gauge<L>({ name, help, labelNames, registers: r });
  const histogram = <L extends string = never>(name: string, help: string, buckets: number[], labelNames: readonly L[] = []) =>
    new Histogram<L>({ name, help, buckets, labelNames, registers: r });
  return {
    registry,
    httpRequests: counter('http_requests_total', 'HTTP requests by route, method and status.', ['route', 'method', 'status']),
    httpDuration: histogram(
      'http_request_duration_seconds',
      'HTTP request latency by route.',
      [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      ['route', 'method'],
    ),
    embedBatchSize: histogram('embed_batch_size', 'Texts per ONNX batch.', [1, 2, 4, 8, 16, 32, 64, 128, 256]),
    embedBatchDuration: histogram(
      'embed_batch_duration_seconds',
      'ONNX batch latency.',
      [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    ),
    embedQueueDepth: gauge('embed_queue_depth', 'Texts waiting in the embed batching queue.'),
    indexSize: gauge('index_size', 'Live vectors per index.', ['collection', 'model_version']),
    ingestDocuments: counter('ingest_documents_total', 'Documents upserted.', ['collection']),
    ingestChunks: counter('ingest_chunks_total', 'Chunks embedded and indexed.', ['collection']),
    searches: counter('search_total', 'Searches served by mode.', ['mode']),
    // mode "auto": the strategy each collection serves, and the measured NDCG@10 behind the choice
    strategyMode: gauge('search_strategy', 'Serving strategy of mode "auto" per collection (1 = the chosen mode).', ['collection', 'mode']),
    strategyScore: gauge(
      'search_strategy_ndcg10',
      "NDCG@10 of each mode on the collection's evaluation set when the strategy was chosen.",
      ['collection', 'mode'],
    ),
    strategyWeight: gauge('search_strategy_dense_weight', 'Dense weight of the served fusion (1 = vector only, 0 = keyword only).', [
      'collection',
    ]),
    queryLogBuffered: gauge('query_log_buffered', 'Query-log rows waiting to be written.'),
    queryLogDropped: counter('query_log_dropped_total', 'Query-log rows dropped because the buffer was full or a write failed.'),
    snapshots: counter('index_snapshots_total', 'Index snapshots written.', ['result']),
    objectStoreOps: counter(
      'object_store_operations_total',
      'Object-store transfers of index snapshots and model artifacts, by operation and result.',
      ['op', 'result'],
    ),
    objectStoreBytes: counter('object_store_bytes_total', 'Bytes moved to or from the object store.', ['direction']),
    modelInfo: gauge('model_info', 'The serving model version (value 1).', ['version']),
    // self-tuning loop
    driftScore: gauge('drift_score', 'Latest drift statistics per collection.', ['collection', 'metric']),
    driftDetected: counter('drift_detected_total', 'Drift checks that crossed a threshold.', ['collection']),
    trainJobs: counter('train_jobs_total', 'Retrain jobs reaching a state.', ['state']),
    trainJobDuration: histogram(
      'train_job_state_duration_seconds',
      'Time spent per job state.',
      [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600],
      ['state'],
    ),
    gateDecisions: counter('gate_decisions_total', 'Gate decisions.', ['decision']),
    reembedProgress: gauge('reembed_progress_ratio', 'Shadow re-embed progress (0..1).', ['collection', 'model_version']),
    swaps: counter('model_swaps_total', 'Model/index cut-overs, by kind.', ['kind']),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
