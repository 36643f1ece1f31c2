import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';

export const PACKAGE_ROOT = fileURLToPath(new URL('..', import.meta.url));

const int = (def: number, min = 0) => z.coerce.number().int().min(min).default(def);
const boolWords = z.enum(['true', 'false', '1', '0', 'on', 'off', 'yes', 'no']);
const isTrue = (v: string) => ['true', '1', 'on', 'yes'].includes(v);
const bool = (def: boolean) => boolWords.default(def ? 'true' : 'false').transform(isTrue);
const optionalBool = () => boolWords.optional().transform((v) => (v === undefined ? undefined : isTrue(v)));

// Every knob is an environment variable; the README table is this schema.
export const ConfigSchema = z.object({
  PORT: int(8080),
  HOST: z.string().default('0.0.0.0'),
  DATA_DIR: z.string().default('./data'),
  DATABASE_URL: z.string().optional(),
  EMBED_MODEL: z.string().optional(),
  MODEL_DIR: z.string().optional(),
  EMBED_DTYPE: z.enum(['fp32', 'fp16', 'q8']).optional(),
  // One ONNX session per worker: each costs ~65 MiB of RSS (runtime, session, arena), so workers past the first
  // start only under concurrent load (EmbedderOptions.lazy). On 2 cores, two workers with one intra-op thread each
  // served /search by text at 1.38x the QPS of one worker with two threads (bench:peers, 16 clients): a query is
  // a few tokens, too small an ONNX run to split over threads.
  EMBED_WORKERS: int(availableParallelism() >= 2 ? 2 : 1, 1),
  // Measured on models/base (q8, 2 cores): texts per CPU-second peak at batch 4-8 and fall 30% by 32.
  EMBED_MAX_BATCH: int(8, 1),
  EMBED_MAX_WAIT_MS: int(2),
  EMBED_MAX_QUEUE: int(4096, 1),
  EMBED_MAX_TOKENS: int(256, 8),
  INDEX_WORKERS: int(Math.max(1, Math.min(2, availableParallelism())), 1),
  // hnswlib: copies of every collection's index, each in its own worker (at most INDEX_WORKERS), so one
  // collection's searches run on several cores at once; each copy costs the index's memory again. It pays where
  // the search itself is the bottleneck (bench/search: 1.5x at ef 64, 384-d); on the 2-core box at ef 24 the index
  // worker is half idle and 2 copies gave 1.05x the QPS (noise) for +310 MiB on 100k x 256-d, hence 1.
  INDEX_REPLICAS: int(1, 1),
  // SQLite: threads with their own connection that run keyword (BM25) searches, so that keyword and hybrid
  // searches neither queue behind one core nor stall the event loop (an FTS5 query over 35k passages is
  // milliseconds of CPU). 0 = on the event loop. Postgres ranks in the database.
  // On the 2-core box, GO keyword /search + /feedback at 16 in flight: 73 searches/s with 0 threads, 94 with 1, 106 with 2.
  KEYWORD_THREADS: int(Math.max(1, Math.min(4, availableParallelism())), 0),
  // Where vectors and their HNSW graphs live: `hnswlib` in this process's worker threads (every replica holds
  // every collection), `pgvector` in the Postgres store (needs a Postgres DATABASE_URL; replicas hold none).
  INDEX_BACKEND: z.enum(['hnswlib', 'pgvector']).default('hnswlib'),
  // hnswlib: a flat f32 copy of the vectors beside hnswlib's own, for exact filtered search at memory speed
  // (4 × dim bytes a vector). Off by default: the copy doubles the memory per vector, and without it filters
  // of a hundred to a few thousand labels cost 10-80 ms instead of 1-4 ms a search (100k × 256-d, 2-core
  // box: the graph or getPoint), which only filter-heavy workloads notice.
  INDEX_VECTOR_COPY: bool(false),
  HNSW_M: int(16, 2),
  HNSW_EF_CONSTRUCTION: int(200, 10),
  HNSW_EF_SEARCH: int(64, 1),
  CHUNK_SIZE: int(1000, 50),
  CHUNK_OVERLAP: int(200, 0),
  MAX_K: int(1000, 1),
  MAX_BATCH_DOCS: int(1000, 1),
  MAX_TEXT_BYTES: int(1_048_576, 1),
  MAX_BODY_BYTES: int(33_554_432, 1024),
  SNAPSHOT_EVERY_SECONDS: int(60, 1),
  // Shared storage for index snapshots and model artifacts (s3://bucket/prefix or file:///dir); unset = DATA_DIR only.
  OBJECT_STORE_URL: z.string().optional(),
  S3_ENDPOINT: z.string().url().optional(),
  S3_REGION: z.string().default('us-east-1'),
  S3_FORCE_PATH_STYLE: optionalBool(),
  QUERY_LOG_FLUSH_MS: int(200, 1),
  QUERY_LOG_MAX_BUFFER: int(10_000, 1),
  AUTH: z.enum(['on', 'off']).default('on'),
  ADMIN_API_KEY: z.string().optional(),
  // `read`: /metrics needs a read key like every other read (its labels name collections and model
  // versions); `off`: open, for a scraper on a private network. No effect with AUTH=off.
  METRICS_AUTH: z.enum(['off', 'read']).default('read'),
  LOG_LEVEL: z.enum(['debug', 'info', 'warn', 'error', 'silent']).default('info'),
  SHUTDOWN_GRACE_MS: int(10_000),
  // self-tuning loop
  DRIFT_INTERVAL_SECONDS: int(300, 0),
  DRIFT_WINDOW: int(500, 10),
  DRIFT_MIN_QUERIES: int(100, 10),
  DRIFT_AUC_THRESHOLD: z.coerce.number().default(0.75),
  DRIFT_CENTROID_THRESHOLD: z.coerce.number().default(0.1),
  DRIFT_MMD_PVALUE: z.coerce.number().default(0.01),
  DRIFT_COOLDOWN_SECONDS: int(3600, 0),
  AUTO_RETRAIN: bool(true),
  TRAINER_BACKEND: z.enum(['local', 'command']).default('local'),
  TRAINER_COMMAND: z.string().optional(),
  TRAINER_PYTHON: z.string().default('python3'),
  TRAINER_TIMEOUT_SECONDS: int(3600, 1),
  // The recipe. Unset TRAIN_LR / TRAIN_EPOCHS are swept by the trainer (`sweep`: learning rate × epochs, picked
  // on a validation split carved from the mined pairs, members weight-averaged greedily); set, they pin it.
  TRAIN_EPOCHS: z.coerce.number().positive().max(100).optional(),
  TRAIN_BATCH_SIZE: int(256, 2),
  TRAIN_LR: z.coerce.number().positive().max(1).optional(),
  TRAIN_SWEEP: bool(true),
  // A job's seed: its held-out split of the feedback queries, the mined pairs' sample and order, and the
  // trainer's (sweep members train at the seed, soup members at seed, seed+1, …). Change it to measure the
  // loop's spread across seeds.
  TRAIN_SEED: z.coerce
    .number()
    .int()
    .min(0)
    .max(2 ** 31 - 1)
    .default(13),
  // Self-supervised pairs from the collection itself (trainer corpus_pairs): per document, pairs with
  // another document of its group, and inverse-cloze (sentence → passage) pairs. The group field is found
  // by the job (a metadata field that names the source document, e.g. `pmid`); TRAIN_GROUP_BY names it,
  // `none` turns grouping off.
  TRAIN_GROUP_BY: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,128}$/)
    .optional(),
  TRAIN_GROUP_PAIRS: int(3, 0),
  TRAIN_ICT_PAIRS: int(2, 0),
  // Seeds trained side by side and weight-averaged into the candidate (trainer `soup`), and the in-batch
  // hardness weighting of the MNRL loss (trainer `hardness`, 0 = off).
  TRAIN_SOUP: z.coerce.number().int().min(1).max(8).default(1),
  TRAIN_HARDNESS: z.coerce.number().min(0).default(5),
  // The trainer's training loop (job.json `engine`): `fast` pre-tokenizes once and keeps the batches on the GPU
  // (same loss and semantics, trainer/README.md "Engines"); `st` is sentence-transformers' own Trainer.
  TRAIN_ENGINE: z.enum(['st', 'fast']).default('fast'),
  // Token limit of training (and so of the candidate's serving); unset = the champion's own (its model card's
  // max_seq_length), so a model pretrained on 256-token passages is not fine-tuned, and then served, at 128.
  TRAIN_MAX_SEQ_LENGTH: z.coerce.number().int().min(8).max(8192).optional(),
  // The trainer embeds every live chunk with the candidate after training (job.json `embed_corpus`, on its GPU);
  // the shadow re-embed then loads those vectors after checking a sample against this server's own embedder,
  // and falls back to the CPU re-embed when they do not check out. false = always the CPU re-embed.
  TRAIN_EMBED_CORPUS: bool(true),
  // Serving strategy per collection (mode "auto", src/search): re-decided when the collection grows by this
  // fraction; evaluation-set sizes; how much weak evidence (pseudo-queries) must favour the encoder.
  STRATEGY_REDECIDE_GROWTH: z.coerce.number().positive().default(0.5),
  STRATEGY_MIN_DOCUMENTS: int(20, 1),
  STRATEGY_EVAL_QUERIES: int(300, 10),
  STRATEGY_MIN_FEEDBACK_QUERIES: int(30, 5),
  STRATEGY_COLD_MARGIN: z.coerce.number().min(0).default(0.02),
  GATE_MARGIN: z.coerce.number().default(0.01),
  GATE_TOLERANCE: z.coerce.number().default(0.005),
  REEMBED_BATCH: int(256, 1),
  REEMBED_PAUSE_MS: int(0),
  LLM_BASE_URL: z.string().optional(),
  LLM_MODEL: z.string().optional(),
  LLM_API_KEY: z.string().optional(),
  LLM_CONCURRENCY: int(4, 1),
});

export type Config = z.infer<typeof ConfigSchema>;

export class ConfigError extends Error {}

export function loadConfig(env: Record<string, string | undefined> = process.env, overrides: Partial<Config> = {}): Config {
  const picked: Record<string, string> = {};
  for (const key of Object.keys(ConfigSchema.shape)) {
    const v = env[key];
    if (v !== undefined && v !== '') picked[key] = v;
  }
  const parsed = ConfigSchema.safeParse(picked);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ConfigError(`invalid configuration: ${issue?.path.join('.')}: ${issue?.message}`);
  }
  const cfg = { ...parsed.data, ...overrides };
  if (cfg.CHUNK_OVERLAP >= cfg.CHUNK_SIZE) throw new ConfigError('invalid configuration: CHUNK_OVERLAP must be smaller than CHUNK_SIZE');
  if (cfg.INDEX_BACKEND === 'pgvector' && !/^(postgres(ql)?|pglite):\/\//i.test(cfg.DATABASE_URL?.trim() ?? '')) {
    throw new ConfigError(
      'invalid configuration: INDEX_BACKEND=pgvector keeps the vectors in Postgres: set DATABASE_URL to postgres://… or pglite://…',
    );
  }
  return { ...cfg, DATA_DIR: resolve(cfg.DATA_DIR) };
}

/** The base encoder committed in the repo: the default when neither EMBED_MODEL nor MODEL_DIR is set. */
export const DEFAULT_MODEL_DIR = resolve(PACKAGE_ROOT, 'models/base');
