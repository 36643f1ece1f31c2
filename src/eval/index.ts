export { computeIrMetrics, sortHits, DEFAULT_K, type IrMetrics, type IrMetricName, type IrMetricOptions, type RankedHit } from './metrics.js';
export { decideGate, GATE_GUARDED, GATE_PRIMARY, type GateDecision, type GateOptions } from './gate.js';
export { Bm25Index, bm25Tokenize, type Bm25Options } from './bm25.js';
