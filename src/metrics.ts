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
  return {
    registry,
    httpRequests: new Counter({
      name: 'http_requests_total',
      help: 'HTTP requests by route, method and status.',
      labelNames: ['route', 'method', 'status'],
      registers: r,
    }),
    httpDuration: new Histogram({
      name: 'http_request_duration_seconds',
      help: 'HTTP request latency by route.',
      labelNames: ['route', 'method'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: r,
    }),
    embedBatchSize: new Histogram({
      name: 'embed_batch_size',
      help: 'Texts per ONNX batch.',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
      registers: r,
    }),
    embedBatchDuration: new Histogram({
      name: 'embed_batch_duration_seconds',
      help: 'ONNX batch latency.',
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: r,
    }),
    embedQueueDepth: new Gauge({ name: 'embed_queue_depth', help: 'Texts waiting in the embed batching queue.', registers: r }),
    indexSize: new Gauge({
      name: 'index_size',
      help: 'Live vectors per index.',
      labelNames: ['collection', 'model_version'],
      registers: r,
    }),
    ingestDocuments: new Counter({ name: 'ingest_documents_total', help: 'Documents upserted.', labelNames: ['collection'], registers: r }),
    ingestChunks: new Counter({
      name: 'ingest_chunks_total',
      help: 'Chunks embedded and indexed.',
      labelNames: ['collection'],
      registers: r,
    }),
    searches: new Counter({ name: 'search_total', help: 'Searches served by mode.', labelNames: ['mode'], registers: r }),
    // mode "auto": the strategy each collection serves, and the measured NDCG@10 behind the choice
    strategyMode: new Gauge({
      name: 'search_strategy',
      help: 'Serving strategy of mode "auto" per collection (1 = the chosen mode).',
      labelNames: ['collection', 'mode'],
      registers: r,
    }),
    strategyScore: new Gauge({
      name: 'search_strategy_ndcg10',
      help: "NDCG@10 of each mode on the collection's evaluation set when the strategy was chosen.",
      labelNames: ['collection', 'mode'],
      registers: r,
    }),
    strategyWeight: new Gauge({
      name: 'search_strategy_dense_weight',
      help: 'Dense weight of the served fusion (1 = vector only, 0 = keyword only).',
      labelNames: ['collection'],
      registers: r,
    }),
    queryLogBuffered: new Gauge({ name: 'query_log_buffered', help: 'Query-log rows waiting to be written.', registers: r }),
    queryLogDropped: new Counter({
      name: 'query_log_dropped_total',
      help: 'Query-log rows dropped because the buffer was full or a write failed.',
      registers: r,
    }),
    snapshots: new Counter({ name: 'index_snapshots_total', help: 'Index snapshots written.', labelNames: ['result'], registers: r }),
    objectStoreOps: new Counter({
      name: 'object_store_operations_total',
      help: 'Object-store transfers of index snapshots and model artifacts, by operation and result.',
      labelNames: ['op', 'result'],
      registers: r,
    }),
    objectStoreBytes: new Counter({
      name: 'object_store_bytes_total',
      help: 'Bytes moved to or from the object store.',
      labelNames: ['direction'],
      registers: r,
    }),
    modelInfo: new Gauge({ name: 'model_info', help: 'The serving model version (value 1).', labelNames: ['version'], registers: r }),
    // self-tuning loop
    driftScore: new Gauge({
      name: 'drift_score',
      help: 'Latest drift statistics per collection.',
      labelNames: ['collection', 'metric'],
      registers: r,
    }),
    driftDetected: new Counter({
      name: 'drift_detected_total',
      help: 'Drift checks that crossed a threshold.',
      labelNames: ['collection'],
      registers: r,
    }),
    trainJobs: new Counter({ name: 'train_jobs_total', help: 'Retrain jobs reaching a state.', labelNames: ['state'], registers: r }),
    trainJobDuration: new Histogram({
      name: 'train_job_state_duration_seconds',
      help: 'Time spent per job state.',
      labelNames: ['state'],
      buckets: [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600],
      registers: r,
    }),
    gateDecisions: new Counter({ name: 'gate_decisions_total', help: 'Gate decisions.', labelNames: ['decision'], registers: r }),
    reembedProgress: new Gauge({
      name: 'reembed_progress_ratio',
      help: 'Shadow re-embed progress (0..1).',
      labelNames: ['collection', 'model_version'],
      registers: r,
    }),
    swaps: new Counter({ name: 'model_swaps_total', help: 'Model/index cut-overs, by kind.', labelNames: ['kind'], registers: r }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
