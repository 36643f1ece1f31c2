// Public surface of the embedding room; the server imports from here only.
export type { EmbedObserver, EmbedOptions, EmbedPriority, Embedder, EmbedderOptions, ModelDescription, ModelOrigin, ModelSource, ModelSpec } from './types.js';
export { EmbedPool, EmbedWorkerError, WorkerLoadError, type PoolStats } from './pool.js';
export { loadEmbedder, ModelLoadError, registerProvider, resolveModelSpec, transformersProvider, type EmbedProvider, type ModelEnv } from './registry.js';
export { ModelConfigError, promptFor, readStConfig, type InputKind, type PoolingMode, type StConfig } from './st.js';
export { cachedHubModel, resolveHubModel, trainableModelDir } from './hub.js';
