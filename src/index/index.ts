export type { HnswParams, Hit, IndexBackend, IndexKey, SearchOptions, VectorIndex } from './types.js';
export { PgVectorIndexes } from './pgvector.js';
export { DEFAULT_HNSW_PARAMS, IndexManager, keyId, type IndexManagerOptions } from './manager.js';
export { IndexClosedError, IndexLostError, IndexSnapshotError, IndexStateError } from './errors.js';
