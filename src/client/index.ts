// Typed client for the retrieval server's HTTP API. Self-contained (fetch only, no server imports), so
// it can be lifted into its own package; the wire types below are the documented API, not internals.

export type Scalar = string | number | boolean | null;
export type Metadata = Record<string, unknown>;
export type SearchMode = 'vector' | 'keyword' | 'hybrid';
export type JobState =
  | 'queued' | 'mining' | 'training' | 'evaluating' | 'reembedding' | 'swapping'
  | 'done' | 'rejected' | 'failed';
export type ModelStatus = 'champion' | 'candidate' | 'retired' | 'rejected' | 'purged';

export interface HnswParams { M: number; efConstruction: number; efSearch: number }
export interface ChunkParams { size: number; overlap: number }

export interface CollectionInfo {
  name: string;
  documents: number;
  chunks: number;
  model: string;
  dim: number;
  hnsw: HnswParams;
  chunk: ChunkParams;
  createdAt: string;
}

export interface CreateCollectionInput {
  name: string;
  hnsw?: Partial<HnswParams>;
  chunk?: Partial<ChunkParams>;
}

export interface DocumentInput { id: string; text: string; metadata?: Metadata }
export interface StoredDocument { id: string; text: string; metadata: Metadata }
export interface UpsertResult { upserted: number; chunks: number; seq: number }

export interface SearchRequest {
  collection: string;
  query?: string;
  vector?: number[];
  k?: number;
  filter?: Record<string, Scalar>;
  efSearch?: number;
  mode?: SearchMode;
}

export interface SearchResult {
  id: string;
  score: number;
  text: string;
  metadata: Metadata;
  chunk?: { id: string; n: number };
}

export interface SearchResponse {
  results: SearchResult[];
  model: string;
  queryId: string;
  tookMs: number;
}

export interface EmbeddingsRequest { input: string | string[]; model?: string }
export interface EmbeddingsResponse {
  object: 'list';
  data: { object: 'embedding'; index: number; embedding: number[] }[];
  model: string;
  usage: { prompt_tokens: number; total_tokens: number };
}

export interface FeedbackInput { queryId: string; documentId: string; relevant?: boolean }
export interface FeedbackResult { id: number; queryId: string; documentId: string; relevant: boolean }

export interface GateResult { passed: boolean; decision: Metadata; metrics: Metadata; evalReportId: number }

export interface JobInfo {
  id: string;
  collection: string;
  trigger: string;
  state: JobState;
  progress: Metadata;
  timings: Record<string, number>;
  parentVersion: string;
  candidateVersion: string | null;
  error: string | null;
  /** The evaluator's decision once the job got that far (GET /jobs/:id only). */
  gate: GateResult | null;
  createdAt: string;
  updatedAt: string;
}

export interface EvalReportInfo {
  id: number;
  jobId: string | null;
  championVersion: string;
  passed: boolean;
  metrics: Metadata;
  decision: Metadata;
  createdAt: string;
}

export interface ModelInfo {
  version: string;
  parentVersion: string | null;
  status: ModelStatus;
  champion: boolean;
  dim: number;
  source: string;
  card: Metadata;
  createdAt: string;
  promotedAt: string | null;
  evalReports: EvalReportInfo[];
}

export interface ModelsResponse {
  champion: string | null;
  serving: string;
  previous: string | null;
  models: ModelInfo[];
}

export interface RollbackResult { model: string; changed: boolean; rebuilt: unknown; generation: number; collections: unknown }

/** A drift check: the stored report's identity plus every statistic the monitor computed. */
export interface DriftCheck {
  id: number;
  collection: string;
  drifted: boolean;
  jobId: string | null;
  createdAt: string;
  [metric: string]: unknown;
}

export interface DriftReportInfo { id: number; drifted: boolean; jobId: string | null; modelVersion: string; metrics: Metadata; createdAt: string }

export interface ClientOptions {
  /** Base URL, e.g. http://127.0.0.1:8080 */
  url: string;
  /** API key sent as `Authorization: Bearer <key>`. */
  apiKey?: string;
  /** Per-request timeout (default 60 s). */
  timeoutMs?: number;
  /** Retries on 429/503 and on connection errors, honouring Retry-After (default 3). */
  retries?: number;
  /** Upper bound on one wait between retries (default 30 s). */
  maxRetryDelayMs?: number;
  fetch?: typeof fetch;
}

/** Any failed call: `code` is the server's stable error code (or network/timeout/http_<status>). */
export class RetrievalError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status: number,
    readonly details?: unknown,
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
    this.name = 'RetrievalError';
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function parseRetryAfter(h: string | null): number | undefined {
  if (!h) return undefined;
  const n = Number(h);
  if (Number.isFinite(n) && n >= 0) return n;
  const at = Date.parse(h);
  return Number.isNaN(at) ? undefined : Math.max(0, (at - Date.now()) / 1000);
}

function isErrorBody(x: unknown): x is { error: { code: string; message: string; details?: unknown } } {
  if (typeof x !== 'object' || x === null || !('error' in x)) return false;
  const e = (x as { error: unknown }).error;
  return typeof e === 'object' && e !== null && typeof (e as { code?: unknown }).code === 'string';
}

export class RetrievalClient {
  readonly url: string;
  private readonly opts: Required<Omit<ClientOptions, 'apiKey' | 'url'>> & { apiKey?: string };

  constructor(opts: ClientOptions) {
    this.url = opts.url.replace(/\/+$/, '');
    this.opts = {
      apiKey: opts.apiKey,
      timeoutMs: opts.timeoutMs ?? 60_000,
      retries: opts.retries ?? 3,
      maxRetryDelayMs: opts.maxRetryDelayMs ?? 30_000,
      fetch: opts.fetch ?? globalThis.fetch.bind(globalThis),
    };
  }

  // ---- service
  health(): Promise<{ ok: boolean }> { return this.json('GET', '/healthz'); }
  /** Resolves whether or not the server is ready (503 is an answer here, not an error). */
  async ready(): Promise<{ ready: boolean; model?: string }> {
    try {
      return await this.json('GET', '/readyz', undefined, { retry: false });
    } catch (err) {
      if (err instanceof RetrievalError && err.status === 503) return { ready: false };
      throw err;
    }
  }
  async metrics(): Promise<string> { return (await this.request('GET', '/metrics')).text(); }
  /** The OpenAPI 3.1 document generated from the server's request schemas. */
  openapi(): Promise<Record<string, unknown>> { return this.json('GET', '/openapi.json'); }

  // ---- collections and documents
  createCollection(input: CreateCollectionInput): Promise<CollectionInfo> { return this.json('POST', '/collections', input); }
  async listCollections(): Promise<CollectionInfo[]> {
    return (await this.json<{ collections: CollectionInfo[] }>('GET', '/collections')).collections;
  }
  getCollection(name: string): Promise<CollectionInfo> { return this.json('GET', `/collections/${enc(name)}`); }
  deleteCollection(name: string): Promise<{ deleted: boolean }> { return this.json('DELETE', `/collections/${enc(name)}`); }
  /** Batch upsert; re-sending an id replaces that document, so retrying a batch is safe. */
  upsertDocuments(collection: string, documents: DocumentInput[]): Promise<UpsertResult> {
    return this.json('POST', `/collections/${enc(collection)}/documents`, { documents });
  }
  getDocument(collection: string, id: string): Promise<StoredDocument> {
    return this.json('GET', `/collections/${enc(collection)}/documents/${enc(id)}`);
  }
  deleteDocument(collection: string, id: string): Promise<{ deleted: boolean }> {
    return this.json('DELETE', `/collections/${enc(collection)}/documents/${enc(id)}`);
  }
  reindex(collection: string): Promise<{ reindexed: boolean; chunks: number }> {
    return this.json('POST', `/collections/${enc(collection)}/reindex`, {});
  }

  // ---- search
  search(req: SearchRequest): Promise<SearchResponse> { return this.json('POST', '/search', req); }
  embeddings(req: EmbeddingsRequest): Promise<EmbeddingsResponse> {
    return this.json('POST', '/v1/embeddings', { ...req, encoding_format: 'float' });
  }
  feedback(input: FeedbackInput): Promise<FeedbackResult> { return this.json('POST', '/feedback', input); }

  // ---- self-tuning loop
  /** Runs a drift check now; `trigger: true` lets a detected drift start a retrain job. */
  drift(collection: string, opts: { referenceSince?: string | number; trigger?: boolean } = {}): Promise<DriftCheck> {
    const q = new URLSearchParams({ collection });
    if (opts.referenceSince !== undefined) q.set('referenceSince', String(opts.referenceSince));
    if (opts.trigger !== undefined) q.set('trigger', String(opts.trigger));
    return this.json('GET', `/drift?${q}`);
  }
  async driftReports(collection: string, limit?: number): Promise<DriftReportInfo[]> {
    const q = new URLSearchParams({ collection });
    if (limit !== undefined) q.set('limit', String(limit));
    return (await this.json<{ reports: DriftReportInfo[] }>('GET', `/drift/reports?${q}`)).reports;
  }
  retrain(collection: string, opts: { trigger?: string } = {}): Promise<JobInfo> {
    // Not retried: a second POST while the first job runs would only earn job_running.
    return this.json('POST', `/collections/${enc(collection)}/retrain`, opts, { retry: false });
  }
  async jobs(opts: { collection?: string; state?: JobState; limit?: number } = {}): Promise<JobInfo[]> {
    const q = new URLSearchParams();
    if (opts.collection) q.set('collection', opts.collection);
    if (opts.state) q.set('state', opts.state);
    if (opts.limit !== undefined) q.set('limit', String(opts.limit));
    const qs = q.toString();
    return (await this.json<{ jobs: JobInfo[] }>('GET', `/jobs${qs ? `?${qs}` : ''}`)).jobs;
  }
  job(id: string): Promise<JobInfo> { return this.json('GET', `/jobs/${enc(id)}`); }
  models(): Promise<ModelsResponse> { return this.json('GET', '/models'); }
  rollback(version: string): Promise<RollbackResult> {
    return this.json('POST', `/models/${enc(version)}/rollback`, undefined, { retry: false });
  }

  // ---- transport
  private async json<T>(method: string, path: string, body?: unknown, o: { retry?: boolean } = {}): Promise<T> {
    const res = await this.request(method, path, body, o);
    const text = await res.text();
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new RetrievalError('invalid_response', `${method} ${path}: the server answered ${res.status} with a non-JSON body`, res.status);
    }
  }

  /**
   * One HTTP call with retries; resolves only for 2xx, otherwise throws RetrievalError. Hand-written rather than
   * p-retry / fetch-retry: the policy is the API's (Retry-After on 429/503, a timed-out write never repeated),
   * and the client stays dependency-free so it can be copied into an application.
   */
  async request(method: string, path: string, body?: unknown, o: { retry?: boolean } = {}): Promise<Response> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (this.opts.apiKey) headers.authorization = `Bearer ${this.opts.apiKey}`;
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const attempts = o.retry === false ? 1 : this.opts.retries + 1;
    for (let attempt = 1; ; attempt++) {
      let res: Response;
      try {
        res = await this.opts.fetch(this.url + path, { method, headers, body: payload, signal: AbortSignal.timeout(this.opts.timeoutMs) });
      } catch (err) {
        const timeout = err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError');
        const cause = err instanceof Error && err.cause instanceof Error ? `: ${err.cause.message}` : '';
        const e = timeout
          ? new RetrievalError('timeout', `${method} ${path}: no answer within ${this.opts.timeoutMs} ms`, 0)
          : new RetrievalError('network', `${method} ${path}: cannot reach ${this.url}${cause}`, 0);
        // A timed-out write may have been applied; only connection failures are safe to repeat.
        if (attempt >= attempts || timeout) throw e;
        await sleep(Math.min(this.opts.maxRetryDelayMs, 250 * 2 ** (attempt - 1)));
        continue;
      }
      if (res.ok) return res;
      const retryAfter = parseRetryAfter(res.headers.get('retry-after'));
      if ((res.status === 429 || res.status === 503) && attempt < attempts) {
        await res.body?.cancel().catch(() => undefined);
        await sleep(Math.min(this.opts.maxRetryDelayMs, retryAfter !== undefined ? retryAfter * 1000 : 500 * 2 ** (attempt - 1)));
        continue;
      }
      const text = await res.text().catch(() => '');
      let parsed: unknown;
      try { parsed = JSON.parse(text); } catch { parsed = undefined; }
      if (isErrorBody(parsed)) throw new RetrievalError(parsed.error.code, parsed.error.message, res.status, parsed.error.details, retryAfter);
      throw new RetrievalError(`http_${res.status}`, `${method} ${path}: HTTP ${res.status}${text ? `: ${text.slice(0, 200)}` : ''}`, res.status, undefined, retryAfter);
    }
  }
}

const enc = encodeURIComponent;

export function createClient(opts: ClientOptions): RetrievalClient {
  return new RetrievalClient(opts);
}
