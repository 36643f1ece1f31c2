// The store is the source of truth. Both dialects implement this interface; tests run against both.
export type Scalar = string | number | boolean | null;
export type Metadata = Record<string, unknown>;

export interface Collection {
  id: number;
  name: string;
  hnsw: { M: number; efConstruction: number; efSearch: number };
  chunk: { size: number; overlap: number };
  createdAt: number;
}

/** A new collection's row, in the column names both dialects' `collections` tables share. */
export function collectionColumns(input: Omit<Collection, 'id' | 'createdAt'>) {
  return {
    name: input.name,
    hnswM: input.hnsw.M,
    efConstruction: input.hnsw.efConstruction,
    efSearch: input.hnsw.efSearch,
    chunkSize: input.chunk.size,
    chunkOverlap: input.chunk.overlap,
  };
}

export interface DocumentInput {
  id: string;
  text: string;
  metadata: Metadata;
  /** Chunk texts, in order (at least one). */
  chunks: string[];
}

export interface ChunkRow {
  label: number;
  docId: string;
  n: number;
  text: string;
}

export interface HydratedChunk extends ChunkRow {
  metadata: Metadata;
}

export interface UpsertResult {
  seq: number;
  added: ChunkRow[];
  /** Labels of chunks that were replaced or deleted (tombstoned). */
  removed: number[];
}

export interface ChangesSince {
  added: ChunkRow[];
  removed: number[];
  seq: number;
}

export type ModelStatus = 'champion' | 'candidate' | 'retired' | 'rejected' | 'purged';

export interface ModelVersionRow {
  version: string;
  parentVersion: string | null;
  source: string;
  dim: number;
  status: ModelStatus;
  card: Metadata;
  createdAt: number;
  promotedAt: number | null;
}

export interface ServingPointer {
  modelVersion: string;
  generation: number;
  changedAt: number;
}

type IndexStatus = 'building' | 'ready' | 'retired';

export interface IndexRecord {
  id: number;
  collectionId: number;
  modelVersion: string;
  path: string | null;
  snapshotSeq: number;
  count: number;
  status: IndexStatus;
  createdAt: number;
}

export interface QueryLogRow {
  id: string;
  collection: string;
  query: string | null;
  mode: string;
  k: number;
  resultIds: string[];
  scores: number[];
  modelVersion: string;
  latencyMs: number;
  createdAt: number;
}

export interface QueryLogSliceOptions {
  /** Oldest first: the first createdAt to read; newest first: the last (inclusive upper bound). */
  from: number;
  newestFirst?: boolean;
  /** Newest first: stop at this createdAt (inclusive lower bound). */
  floor?: number;
  /** About how many log rows one slice covers (more only when rows share one timestamp). */
  scanRows: number;
}

export interface QueryLogSlice {
  rows: QueryLogRow[];
  /** `from` for the next slice; undefined when the scan reached the end of the log (or `floor`). */
  next: number | undefined;
}

export interface FeedbackRow {
  id: number;
  queryId: string;
  documentId: string;
  relevant: boolean;
  createdAt: number;
}

export interface FeedbackPair {
  /** The feedback row's id: ids only grow, so `afterId` reads what came since. */
  id: number;
  queryId: string;
  query: string;
  documentId: string;
  createdAt: number;
}

export type JobState = 'queued' | 'mining' | 'training' | 'evaluating' | 'reembedding' | 'swapping' | 'done' | 'rejected' | 'failed';

export const TERMINAL_JOB_STATES: readonly JobState[] = ['done', 'rejected', 'failed'];

export interface TrainJobRow {
  id: string;
  collection: string;
  trigger: string;
  state: JobState;
  progress: Metadata;
  timings: Record<string, number>;
  parentVersion: string;
  candidateVersion: string | null;
  error: string | null;
  createdAt: number;
  updatedAt: number;
}

export interface DriftReportRow {
  id: number;
  collection: string;
  modelVersion: string;
  metrics: Metadata;
  drifted: boolean;
  jobId: string | null;
  createdAt: number;
}

export interface EvalReportRow {
  id: number;
  jobId: string | null;
  candidateVersion: string;
  championVersion: string;
  metrics: Metadata;
  decision: Metadata;
  passed: boolean;
  createdAt: number;
}

export interface ApiKeyRow {
  id: string;
  hash: string;
  role: 'read' | 'admin';
  name: string | null;
  createdAt: number;
}

/** Collections and their settings; deleting one removes its documents, chunks and index records. */
export interface CollectionStore {
  createCollection(input: Omit<Collection, 'id' | 'createdAt'>): Promise<Collection>;
  getCollection(name: string): Promise<Collection | undefined>;
  getCollectionById(id: number): Promise<Collection | undefined>;
  listCollections(): Promise<Collection[]>;
  /** Deletes the collection with its documents, chunks and index records. */
  deleteCollection(name: string): Promise<boolean>;
  countDocuments(collectionId: number): Promise<number>;
}

/** Documents, their chunks (labels = row ids), the change sequence, metadata filters and BM25 keyword search. */
export interface DocumentStore {
  upsertDocuments(collectionId: number, docs: DocumentInput[]): Promise<UpsertResult>;
  deleteDocument(collectionId: number, docId: string): Promise<UpsertResult | undefined>;
  getDocument(collectionId: number, docId: string): Promise<{ id: string; text: string; metadata: Metadata } | undefined>;
  hydrate(labels: readonly number[]): Promise<Map<number, HydratedChunk>>;
  /** Live chunks in label order, for rebuilds and re-embeds; pass the last label to page on. */
  liveChunks(collectionId: number, afterLabel: number, limit: number): Promise<ChunkRow[]>;
  countLiveChunks(collectionId: number): Promise<number>;
  changesSince(collectionId: number, seq: number): Promise<ChangesSince>;
  currentSeq(): Promise<number>;
  /** Labels of live chunks whose document metadata equals every key/value of the filter. */
  labelsMatching(collectionId: number, filter: Record<string, Scalar>): Promise<number[]>;
  /** BM25 over live chunks; higher score is better. */
  keywordSearch(
    collectionId: number,
    query: string,
    k: number,
    filter?: Record<string, Scalar>,
  ): Promise<{ label: number; score: number }[]>;
  /** Random sample of live chunks (pseudo-query mining). */
  sampleChunks(collectionId: number, n: number): Promise<ChunkRow[]>;
}

/** Model versions and the serving pointer (the champion a restart or a replica reads). */
export interface ModelStore {
  upsertModelVersion(row: Omit<ModelVersionRow, 'createdAt' | 'promotedAt'>): Promise<void>;
  getModelVersion(version: string): Promise<ModelVersionRow | undefined>;
  listModelVersions(): Promise<ModelVersionRow[]>;
  setModelStatus(version: string, status: ModelStatus): Promise<void>;
  getServing(): Promise<ServingPointer | undefined>;
  /** Atomically: old champion → retired, `version` → champion, generation + 1. */
  promote(version: string): Promise<ServingPointer>;
}

/** One record per (collection, model version) index: its snapshot path, the seq it covers, its status. */
export interface IndexRecordStore {
  getIndexRecord(collectionId: number, modelVersion: string): Promise<IndexRecord | undefined>;
  listIndexRecords(filter?: { modelVersion?: string; collectionId?: number }): Promise<IndexRecord[]>;
  saveIndexRecord(rec: Omit<IndexRecord, 'id' | 'createdAt'>): Promise<IndexRecord>;
  deleteIndexRecord(collectionId: number, modelVersion: string): Promise<void>;
}

/** Serving strategies (src/search/strategy.ts), one per (collection, model version). */
export interface StrategyStore {
  getStrategy(collectionId: number, modelVersion: string): Promise<Metadata | undefined>;
  saveStrategy(collectionId: number, modelVersion: string, strategy: Metadata): Promise<void>;
}

/** What searches leave behind and the monitor reads: the query log, feedback on it, drift reports. */
export interface QueryLogStore {
  insertQueryLogs(rows: QueryLogRow[]): Promise<void>;
  getQueryLog(id: string): Promise<QueryLogRow | undefined>;
  queryLogWindow(
    collection: string,
    opts: { since?: number; until?: number; limit: number; newestFirst?: boolean },
  ): Promise<QueryLogRow[]>;
  countQueryLog(collection: string, since?: number): Promise<number>;
  /**
   * One bounded slice of a scan for logged queries with text (query not null or blank), so a scan past
   * hundreds of thousands of vector-only searches never holds the caller for long: the slice covers about
   * `scanRows` log rows from `from` (inclusive) — oldest first, or newest first down to `floor` — and
   * returns its text rows in that order, with the cursor for the next slice (undefined at the end).
   */
  queryLogTextSlice(collection: string, opts: QueryLogSliceOptions): Promise<QueryLogSlice>;
  insertFeedback(row: Omit<FeedbackRow, 'id' | 'createdAt'>): Promise<FeedbackRow>;
  /** Relevant feedback joined to its logged query text, in feedback order; `afterId` reads only newer rows. */
  feedbackPairs(collection: string, opts?: { afterId?: number; limit?: number }): Promise<FeedbackPair[]>;
  insertDriftReport(row: Omit<DriftReportRow, 'id' | 'createdAt'>): Promise<DriftReportRow>;
  listDriftReports(collection: string, limit: number): Promise<DriftReportRow[]>;
}

/** Retrain jobs (the state machine of src/train/jobs.ts), who runs them, and their eval reports. */
export interface JobStore {
  insertJob(row: Omit<TrainJobRow, 'createdAt' | 'updatedAt'>): Promise<TrainJobRow>;
  updateJob(
    id: string,
    patch: Partial<Pick<TrainJobRow, 'state' | 'progress' | 'timings' | 'candidateVersion' | 'error'>>,
  ): Promise<TrainJobRow>;
  getJob(id: string): Promise<TrainJobRow | undefined>;
  listJobs(opts?: { collection?: string; states?: readonly JobState[]; limit?: number }): Promise<TrainJobRow[]>;
  /**
   * Claims the right to run (or give up on) a job for as long as this process holds it: undefined when a
   * live process already holds it. On Postgres it is a session-level advisory lock on a connection of its
   * own, so a replica that dies releases it with its connection; replicas never fail or rerun each
   * other's running jobs. One process (SQLite, PGlite): an in-process claim.
   */
  claimJob(id: string): Promise<JobClaim | undefined>;
  insertEvalReport(row: Omit<EvalReportRow, 'id' | 'createdAt'>): Promise<EvalReportRow>;
  listEvalReports(opts?: { candidateVersion?: string; jobId?: string }): Promise<EvalReportRow[]>;
}

/** API keys, stored as sha256 hashes. */
export interface KeyStore {
  insertApiKey(row: Omit<ApiKeyRow, 'createdAt'>): Promise<void>;
  findApiKeyByHash(hash: string): Promise<ApiKeyRow | undefined>;
  countApiKeys(): Promise<number>;
}

/**
 * The whole store, as the two dialects implement it and the composition root holds it. Everything else
 * depends on the parts above that it uses.
 */
export interface Store
  extends CollectionStore,
    DocumentStore,
    ModelStore,
    IndexRecordStore,
    StrategyStore,
    QueryLogStore,
    JobStore,
    KeyStore {
  readonly dialect: 'sqlite' | 'postgres';
  close(): Promise<void>;
}

export interface JobClaim {
  release(): Promise<void>;
}

/** The claim for stores used by a single process. */
export class LocalJobClaims {
  private readonly held = new Set<string>();

  claim(id: string): JobClaim | undefined {
    if (this.held.has(id)) return undefined;
    this.held.add(id);
    return {
      release: async () => {
        this.held.delete(id);
      },
    };
  }
}
