// Typed client for the retrieval server's HTTP API. Self-contained at run time (fetch only): the wire
// types are derived from the route definitions' zod schemas (src/http/schemas.ts) with type-only
// imports, which erase at compile time, so the client's types cannot drift from what the server
// validates and answers. Lifting the client into its own package means shipping those schemas' types too.
import type { z } from 'zod';
import type * as S from '../http/schemas.js';

type Out<T extends z.ZodType> = z.output<T>;
type In<T extends z.ZodType> = z.input<T>;

export type Scalar = Out<typeof S.Scalar>;
export type Metadata = Record<string, unknown>;
/** The mode that answered a search (a request may also ask for "auto": the collection's tuned strategy). */
export type SearchMode = Out<typeof S.SearchResponse>['mode'];
export type JobState = (typeof S.JOB_STATES)[number];
export type ModelStatus = (typeof S.MODEL_STATUSES)[number];

export type CollectionInfo = Out<typeof S.CollectionInfo>;
export type HnswParams = CollectionInfo['hnsw'];
export type ChunkParams = CollectionInfo['chunk'];
export type CreateCollectionInput = In<typeof S.CreateCollectionBody>;

/** The server checks `text` itself (empty_text), so its schema leaves it open; clients send a string. */
export type DocumentInput = Omit<In<typeof S.DocumentBody>, 'text'> & { text: string };
export type StoredDocument = Out<typeof S.StoredDocument>;
export type UpsertResult = Out<typeof S.UpsertResult>;

/**
 * The server checks `vector`'s elements itself (invalid_vector). Numbers go as JSON; a Float32Array goes as
 * base64 of its bytes (smaller, exact, and cheaper for the server to read); a string is sent as it is.
 */
export type SearchRequest = Omit<In<typeof S.SearchBody>, 'vector'> & { vector?: number[] | Float32Array | string };
export type SearchResult = Out<typeof S.SearchResult>;
export type SearchResponse = Out<typeof S.SearchResponse>;

/** The client always asks for floats (the `openai` client asks for base64). */
export type EmbeddingsRequest = Omit<In<typeof S.EmbeddingsBody>, 'encoding_format'>;
export type EmbeddingsResponse = Omit<Out<typeof S.EmbeddingsResponse>, 'data'> & {
  data: (Omit<Out<typeof S.EmbeddingsResponse>['data'][number], 'embedding'> & { embedding: number[] })[];
};
export type ModelCard = Out<typeof S.ModelCard>;

export type FeedbackInput = In<typeof S.FeedbackBody>;
export type FeedbackResult = Out<typeof S.FeedbackResult>;

export type GateResult = Out<typeof S.GateResult>;
export type JobInfo = Out<typeof S.JobInfo>;
export type JobsQuery = { collection?: string; state?: JobState; limit?: number };
export type EvalReportInfo = Out<typeof S.EvalReportInfo>;
export type ModelInfo = Out<typeof S.ModelInfo>;
export type ModelsResponse = Out<typeof S.ModelsResponse>;
export type RollbackResult = Out<typeof S.RollbackResult>;
export type StrategyResult = Out<typeof S.StrategyResult>;

/** A drift check: the stored report's identity plus every statistic the monitor computed. */
export type DriftCheck = Out<typeof S.DriftCheck>;
export type DriftReportInfo = Out<typeof S.DriftReportInfo>;

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
  health(): Promise<Out<typeof S.Health>> {
    return this.json('GET', '/healthz');
  }
  /** Resolves whether or not the server is ready (503 is an answer here, not an error). */
  async ready(): Promise<Out<typeof S.Readiness>> {
    try {
      return await this.json('GET', '/readyz', undefined, { retry: false });
    } catch (err) {
      if (err instanceof RetrievalError && err.status === 503) return { ready: false };
      throw err;
    }
  }
  async metrics(): Promise<string> {
    return (await this.request('GET', '/metrics')).text();
  }
  /** The OpenAPI 3.1 document generated from the server's request schemas. */
  openapi(): Promise<Record<string, unknown>> {
    return this.json('GET', '/openapi.json');
  }

  // ---- collections and documents
  createCollection(input: CreateCollectionInput): Promise<CollectionInfo> {
    return this.json('POST', '/collections', input);
  }
  async listCollections(): Promise<CollectionInfo[]> {
    return (await this.json<Out<typeof S.CollectionList>>('GET', '/collections')).collections;
  }
  getCollection(name: string): Promise<CollectionInfo> {
    return this.json('GET', `/collections/${enc(name)}`);
  }
  deleteCollection(name: string): Promise<Out<typeof S.Deleted>> {
    return this.json('DELETE', `/collections/${enc(name)}`);
  }
  /** Batch upsert; re-sending an id replaces that document, so retrying a batch is safe. */
  upsertDocuments(collection: string, documents: DocumentInput[]): Promise<UpsertResult> {
    return this.json('POST', `/collections/${enc(collection)}/documents`, { documents });
  }
  getDocument(collection: string, id: string): Promise<StoredDocument> {
    return this.json('GET', `/collections/${enc(collection)}/documents/${enc(id)}`);
  }
  deleteDocument(collection: string, id: string): Promise<Out<typeof S.Deleted>> {
    return this.json('DELETE', `/collections/${enc(collection)}/documents/${enc(id)}`);
  }
  reindex(collection: string): Promise<Out<typeof S.Reindexed>> {
    return this.json('POST', `/collections/${enc(collection)}/reindex`, {});
  }

  /** Re-measures the collection's serving strategy for mode "auto" now (admin). */
  decideStrategy(collection: string): Promise<StrategyResult> {
    return this.json('POST', `/collections/${enc(collection)}/strategy`, undefined, { retry: false });
  }

  // ---- search
  search(req: SearchRequest): Promise<SearchResponse> {
    const { vector } = req;
    if (!(vector instanceof Float32Array)) return this.json('POST', '/search', req);
    // The wire format is little-endian float32: a Float32Array's own bytes on every platform Node ships for.
    const base64 = Buffer.from(vector.buffer, vector.byteOffset, vector.byteLength).toString('base64');
    return this.json('POST', '/search', { ...req, vector: base64 });
  }
  embeddings(req: EmbeddingsRequest): Promise<EmbeddingsResponse> {
    return this.json('POST', '/v1/embeddings', { ...req, encoding_format: 'float' });
  }
  /** The serving model as the OpenAI models API describes it, with its pooling, prompts and weights file. */
  async embeddingModels(): Promise<ModelCard[]> {
    return (await this.json<Out<typeof S.ModelList>>('GET', '/v1/models')).data;
  }
  feedback(input: FeedbackInput): Promise<FeedbackResult> {
    return this.json('POST', '/feedback', input);
  }

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
    return (await this.json<Out<typeof S.DriftReports>>('GET', `/drift/reports?${q}`)).reports;
  }
  retrain(collection: string, opts: { trigger?: string } = {}): Promise<JobInfo> {
    // Not retried: a second POST while the first job runs would only earn job_running.
    return this.json('POST', `/collections/${enc(collection)}/retrain`, opts, { retry: false });
  }
  async jobs(opts: JobsQuery = {}): Promise<JobInfo[]> {
    const q = new URLSearchParams();
    if (opts.collection) q.set('collection', opts.collection);
    if (opts.state) q.set('state', opts.state);
    if (opts.limit !== undefined) q.set('limit', String(opts.limit));
    const qs = q.toString();
    return (await this.json<Out<typeof S.JobList>>('GET', `/jobs${qs ? `?${qs}` : ''}`)).jobs;
  }
  job(id: string): Promise<JobInfo> {
    return this.json('GET', `/jobs/${enc(id)}`);
  }
  models(): Promise<ModelsResponse> {
    return this.json('GET', '/models');
  }
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
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = undefined;
      }
      if (isErrorBody(parsed))
        throw new RetrievalError(parsed.error.code, parsed.error.message, res.status, parsed.error.details, retryAfter);
      throw new RetrievalError(
        `http_${res.status}`,
        `${method} ${path}: HTTP ${res.status}${text ? `: ${text.slice(0, 200)}` : ''}`,
        res.status,
        undefined,
        retryAfter,
      );
    }
  }
}

const enc = encodeURIComponent;

export function createClient(opts: ClientOptions): RetrievalClient {
  return new RetrievalClient(opts);
}
