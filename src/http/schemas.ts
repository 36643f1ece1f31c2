import { z } from 'zod';
import type { JobState, ModelVersionRow } from '../store/types.js';

// Request schemas are strict: an unknown field is a client bug worth reporting, not ignoring.
// The OpenAPI document is generated from these same schemas.
export const CollectionName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/, 'letters, digits, "_", "-", "." (1-128, starting with a letter or digit)');

export const CreateCollectionBody = z.strictObject({
  name: CollectionName,
  hnsw: z
    .strictObject({
      M: z.number().int().min(2).max(128).optional(),
      efConstruction: z.number().int().min(10).max(2000).optional(),
      efSearch: z.number().int().min(1).max(5000).optional(),
    })
    .optional(),
  chunk: z
    .strictObject({
      size: z.number().int().min(50).max(100_000).optional(),
      overlap: z.number().int().min(0).max(50_000).optional(),
    })
    .optional(),
});

export const Scalar = z.union([z.string(), z.number(), z.boolean(), z.null()]);

export const DocumentBody = z.strictObject({
  id: z.string().min(1).max(512),
  // Checked by the route so a missing/non-string text gets the specific `empty_text` code.
  text: z.unknown().optional(),
  metadata: z.record(z.string(), z.unknown()).optional(),
});

export const UpsertDocumentsBody = z.strictObject({
  documents: z.array(DocumentBody),
});

export const SearchBody = z.strictObject({
  collection: CollectionName,
  query: z.string().optional(),
  // Element types are checked by the route: NaN/Infinity must answer `invalid_vector`, not a schema error.
  vector: z
    .union([z.array(z.unknown()), z.string()])
    .optional()
    .describe(
      'The query vector: an array of numbers, or a base64 string of little-endian float32 values (what /v1/embeddings returns with encoding_format "base64"; about a quarter of the bytes and a tenth of the parse time)',
    ),
  k: z.number().optional(),
  filter: z.record(z.string(), Scalar).optional(),
  efSearch: z.number().int().min(1).max(10_000).optional(),
  mode: z.enum(['auto', 'vector', 'keyword', 'hybrid']).default('auto'),
});

export const EmbeddingsBody = z.strictObject({
  input: z.union([z.string(), z.array(z.string())]),
  model: z.string().optional(),
  encoding_format: z.enum(['float', 'base64']).default('float'),
  dimensions: z.number().int().optional(),
  user: z.string().optional(),
  /** "query" or "document" (the model's prompt for it, as sentence-transformers' encode_query / encode_document), or one of its prompt names. */
  input_type: z.string().min(1).max(128).optional(),
});

export const FeedbackBody = z.strictObject({
  queryId: z.string().min(1).max(128),
  documentId: z.string().min(1).max(512),
  relevant: z.boolean().default(true),
});

// ---- path parameters and queries

export const JobId = z.string().regex(/^[0-9a-f-]{8,64}$/i, 'a job id');
export const ModelVersion = z.string().regex(/^[A-Za-z0-9._-]{1,200}$/, 'a model version');

export const JOB_STATES = [
  'queued',
  'mining',
  'training',
  'evaluating',
  'reembedding',
  'swapping',
  'done',
  'rejected',
  'failed',
] as const satisfies readonly JobState[];
export const MODEL_STATUSES = [
  'champion',
  'candidate',
  'retired',
  'rejected',
  'purged',
] as const satisfies readonly ModelVersionRow['status'][];

export const DriftQuery = z.strictObject({
  collection: CollectionName,
  /** A configured baseline: ISO time or epoch ms where the reference window starts. */
  referenceSince: z.string().optional(),
  /** Create a retrain job when drift fires (AUTO_RETRAIN must be on); default: report only. */
  trigger: z.enum(['true', 'false']).optional(),
});

export const DriftReportsQuery = z.strictObject({ collection: CollectionName, limit: z.coerce.number().int().min(1).max(1000).optional() });

export const RetrainBody = z.strictObject({
  trigger: z.string().min(1).max(64).optional(),
});

export const JobsQuery = z.strictObject({
  collection: CollectionName.optional(),
  state: z.enum(JOB_STATES).optional(),
  limit: z.coerce.number().int().min(1).max(1000).optional(),
});

// ---- responses (what the handlers answer; test/http/contract.test.ts checks real answers against them)

const Metadata = z.record(z.string(), z.unknown());
const IsoTime = z.string();

export const Health = z.object({ ok: z.boolean() });
export const Readiness = z.object({ ready: z.boolean(), model: z.string().optional() });

/** The serving strategy of mode "auto" (src/search/tuner.ts): the mode, fusion weight and the numbers behind it. */
const Strategy = z.looseObject({ mode: z.enum(['vector', 'keyword', 'hybrid']) });

export const CollectionInfo = z.object({
  name: z.string(),
  documents: z.number(),
  chunks: z.number(),
  model: z.string(),
  strategy: Strategy.nullable(),
  dim: z.number(),
  hnsw: z.object({ M: z.number(), efConstruction: z.number(), efSearch: z.number() }),
  chunk: z.object({ size: z.number(), overlap: z.number() }),
  createdAt: IsoTime,
});
export const CollectionList = z.object({ collections: z.array(CollectionInfo) });
export const Deleted = z.object({ deleted: z.boolean() });
export const UpsertResult = z.object({ upserted: z.number(), chunks: z.number(), seq: z.number() });
export const StoredDocument = z.object({ id: z.string(), text: z.string(), metadata: Metadata });
export const Reindexed = z.object({ reindexed: z.boolean(), chunks: z.number() });
export const StrategyResult = z.object({ collection: z.string(), strategy: Strategy.nullable() });

export const SearchResult = z.object({
  id: z.string(),
  score: z.number(),
  text: z.string(),
  metadata: Metadata,
  chunk: z.object({ id: z.string(), n: z.number() }),
});
export const SearchResponse = z.object({
  results: z.array(SearchResult),
  /** The mode that answered (for `auto`, the collection's strategy) and the fusion's dense weight (hybrid). */
  mode: z.enum(['vector', 'keyword', 'hybrid']),
  weight: z.number().optional(),
  model: z.string(),
  queryId: z.string(),
  tookMs: z.number(),
});

export const EmbeddingsResponse = z.object({
  object: z.literal('list'),
  /** `embedding` is a base64 string of little-endian float32 when encoding_format is "base64". */
  data: z.array(z.object({ object: z.literal('embedding'), index: z.number(), embedding: z.union([z.array(z.number()), z.string()]) })),
  model: z.string(),
  usage: z.object({ prompt_tokens: z.number(), total_tokens: z.number() }),
});

export const ModelCard = z.object({
  id: z.string(),
  object: z.literal('model'),
  created: z.number(),
  owned_by: z.string(),
  dimensions: z.number(),
  pooling: z.string().optional(),
  normalize: z.boolean().optional(),
  max_tokens: z.number().optional(),
  dtype: z.string().optional(),
  file: z.string().optional(),
  prompts: z.record(z.string(), z.string()).optional(),
  default_prompt_name: z.string().nullable().optional(),
  input_types: z.object({ query: z.string().nullable().optional(), document: z.string().nullable().optional() }).optional(),
  config: z.unknown().optional(),
});
export const ModelList = z.object({ object: z.literal('list'), data: z.array(ModelCard) });

export const FeedbackResult = z.object({ id: z.number(), queryId: z.string(), documentId: z.string(), relevant: z.boolean() });

/** A drift check: the stored report's identity plus every statistic the monitor computed. */
export const DriftCheck = z.looseObject({
  id: z.number(),
  collection: z.string(),
  drifted: z.boolean(),
  jobId: z.string().nullable(),
  createdAt: IsoTime,
});
export const DriftReportInfo = z.object({
  id: z.number(),
  drifted: z.boolean(),
  jobId: z.string().nullable(),
  modelVersion: z.string(),
  metrics: Metadata,
  createdAt: IsoTime,
});
export const DriftReports = z.object({ reports: z.array(DriftReportInfo) });

export const GateResult = z.object({ passed: z.boolean(), decision: Metadata, metrics: Metadata, evalReportId: z.number() });
export const JobInfo = z.object({
  id: z.string(),
  collection: z.string(),
  trigger: z.string(),
  state: z.enum(JOB_STATES),
  progress: Metadata,
  timings: z.record(z.string(), z.number()),
  parentVersion: z.string(),
  candidateVersion: z.string().nullable(),
  /** Read keys get the first line only (no trainer stderr). */
  error: z.string().nullable(),
  /** The evaluator's decision once the job got that far (GET /jobs/:id only). */
  gate: GateResult.nullable(),
  createdAt: IsoTime,
  updatedAt: IsoTime,
});
export const JobList = z.object({ jobs: z.array(JobInfo) });

export const EvalReportInfo = z.object({
  id: z.number(),
  jobId: z.string().nullable(),
  championVersion: z.string(),
  passed: z.boolean(),
  metrics: Metadata,
  decision: Metadata,
  createdAt: IsoTime,
});
export const ModelInfo = z.object({
  version: z.string(),
  parentVersion: z.string().nullable(),
  status: z.enum(MODEL_STATUSES),
  champion: z.boolean(),
  dim: z.number(),
  source: z.string(),
  card: Metadata,
  createdAt: IsoTime,
  promotedAt: IsoTime.nullable(),
  evalReports: z.array(EvalReportInfo),
});
export const ModelsResponse = z.object({
  champion: z.string().nullable(),
  serving: z.string(),
  previous: z.string().nullable(),
  models: z.array(ModelInfo),
});
export const RollbackResult = z.object({
  model: z.string(),
  changed: z.boolean(),
  rebuilt: z.unknown(),
  generation: z.number(),
  collections: z.unknown(),
});

export const WhoAmI = z.object({ role: z.enum(['read', 'admin']).nullable(), auth: z.string(), ready: z.boolean() });
export const LossCurve = z.object({
  jobId: z.string(),
  points: z.array(z.object({ step: z.number(), loss: z.number(), member: z.number().optional() })),
});
export const Text = z.string();
