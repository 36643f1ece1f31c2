// SQLite schema (the embedded default). The Postgres twin lives in ./pg.ts and must keep the same
// table and column names: the repository code is written once against these shapes.
import { sql } from 'drizzle-orm';
import { index, integer, primaryKey, real, sqliteTable, text, uniqueIndex } from 'drizzle-orm/sqlite-core';
import { collectionSettings } from './columns.js';

const now = sql`(CAST(unixepoch('subsec') * 1000 AS INTEGER))`;

export const collections = sqliteTable('collections', {
  id: integer('id').primaryKey({ autoIncrement: true }),
  name: text('name').notNull().unique(),
  ...collectionSettings((name) => integer(name)),
  createdAt: integer('created_at').notNull().default(now),
});

export const documents = sqliteTable(
  'documents',
  {
    collectionId: integer('collection_id')
      .notNull()
      .references(() => collections.id, { onDelete: 'cascade' }),
    id: text('id').notNull(),
    text: text('text').notNull(),
    metadata: text('metadata', { mode: 'json' }).$type<Record<string, unknown>>().notNull(),
    seq: integer('seq').notNull(),
    updatedAt: integer('updated_at').notNull().default(now),
  },
  (t) => [primaryKey({ columns: [t.collectionId, t.id] })],
);

// A chunk's rowid is its HNSW label in every index of its collection, so the label map needs no
// table of its own. Replaced or deleted chunks become tombstones (deleted_seq set) so an index
// snapshot taken at seq S can be caught up by replaying rows with seq > S or deleted_seq > S.
// Keyword search indexes each collection's live chunks in an FTS5 table of its own, outside this schema
// (drizzle has no virtual tables): see ../sqlite/fts.ts.
export const chunks = sqliteTable(
  'chunks',
  {
    label: integer('label').primaryKey({ autoIncrement: true }),
    collectionId: integer('collection_id')
      .notNull()
      .references(() => collections.id, { onDelete: 'cascade' }),
    docId: text('doc_id').notNull(),
    n: integer('n').notNull(),
    text: text('text').notNull(),
    seq: integer('seq').notNull(),
    deletedSeq: integer('deleted_seq'),
  },
  (t) => [
    index('chunks_doc').on(t.collectionId, t.docId),
    index('chunks_seq').on(t.collectionId, t.seq),
    // Partial: with a plain index the planner served `deleted_seq IS NULL` (every live chunk) from it,
    // turning each re-upsert's tombstone lookup into a scan (ingest went quadratic).
    index('chunks_deleted_seq').on(t.collectionId, t.deletedSeq).where(sql`deleted_seq IS NOT NULL`),
  ],
);

// Monotonic change counter shared by all collections; one row.
export const counters = sqliteTable('counters', {
  name: text('name').primaryKey(),
  value: integer('value').notNull(),
});

export const modelVersions = sqliteTable('model_versions', {
  version: text('version').primaryKey(),
  parentVersion: text('parent_version'),
  source: text('source').notNull(), // hub id or local directory
  dim: integer('dim').notNull(),
  status: text('status', { enum: ['champion', 'candidate', 'retired', 'rejected', 'purged'] }).notNull(),
  card: text('card', { mode: 'json' }).$type<Record<string, unknown>>().notNull(),
  createdAt: integer('created_at').notNull().default(now),
  promotedAt: integer('promoted_at'),
});

// The serving pointer: a single row naming the champion. Replicas follow `generation`.
export const serving = sqliteTable('serving', {
  id: integer('id').primaryKey(),
  modelVersion: text('model_version').notNull(),
  generation: integer('generation').notNull(),
  changedAt: integer('changed_at').notNull().default(now),
});

export const indexes = sqliteTable(
  'indexes',
  {
    id: integer('id').primaryKey({ autoIncrement: true }),
    collectionId: integer('collection_id')
      .notNull()
      .references(() => collections.id, { onDelete: 'cascade' }),
    modelVersion: text('model_version').notNull(),
    path: text('path'),
    snapshotSeq: integer('snapshot_seq').notNull().default(0),
    count: integer('count').notNull().default(0),
    status: text('status', { enum: ['building', 'ready', 'retired'] }).notNull(),
    createdAt: integer('created_at').notNull().default(now),
  },
  (t) => [uniqueIndex('indexes_coll_model').on(t.collectionId, t.modelVersion)],
);

// The serving strategy chosen for a collection with one encoder (src/search/strategy.ts): measured, so it is
// kept per (collection, model version) and a rollback finds the old model's choice again.
export const strategies = sqliteTable(
  'strategies',
  {
    collectionId: integer('collection_id')
      .notNull()
      .references(() => collections.id, { onDelete: 'cascade' }),
    modelVersion: text('model_version').notNull(),
    strategy: text('strategy', { mode: 'json' }).$type<Record<string, unknown>>().notNull(),
    decidedAt: integer('decided_at').notNull().default(now),
  },
  (t) => [primaryKey({ columns: [t.collectionId, t.modelVersion] })],
);

export const queryLog = sqliteTable(
  'query_log',
  {
    id: text('id').primaryKey(),
    collection: text('collection').notNull(),
    query: text('query'),
    mode: text('mode').notNull(),
    k: integer('k').notNull(),
    resultIds: text('result_ids', { mode: 'json' }).$type<string[]>().notNull(),
    scores: text('scores', { mode: 'json' }).$type<number[]>().notNull(),
    modelVersion: text('model_version').notNull(),
    latencyMs: real('latency_ms').notNull(),
    createdAt: integer('created_at').notNull(),
  },
  (t) => [index('query_log_coll_time').on(t.collection, t.createdAt)],
);

export const feedback = sqliteTable(
  'feedback',
  {
    id: integer('id').primaryKey({ autoIncrement: true }),
    queryId: text('query_id').notNull(),
    documentId: text('document_id').notNull(),
    relevant: integer('relevant', { mode: 'boolean' }).notNull(),
    createdAt: integer('created_at').notNull().default(now),
  },
  (t) => [index('feedback_query').on(t.queryId)],
);

export const driftReports = sqliteTable(
  'drift_reports',
  {
    id: integer('id').primaryKey({ autoIncrement: true }),
    collection: text('collection').notNull(),
    modelVersion: text('model_version').notNull(),
    metrics: text('metrics', { mode: 'json' }).$type<Record<string, unknown>>().notNull(),
    drifted: integer('drifted', { mode: 'boolean' }).notNull(),
    jobId: text('job_id'),
    createdAt: integer('created_at').notNull().default(now),
  },
  (t) => [index('drift_reports_coll_time').on(t.collection, t.createdAt)],
);

export const trainJobs = sqliteTable(
  'train_jobs',
  {
    id: text('id').primaryKey(),
    collection: text('collection').notNull(),
    trigger: text('trigger').notNull(), // 'manual' | 'drift'
    state: text('state', {
      enum: ['queued', 'mining', 'training', 'evaluating', 'reembedding', 'swapping', 'done', 'rejected', 'failed'],
    }).notNull(),
    progress: text('progress', { mode: 'json' }).$type<Record<string, unknown>>().notNull(),
    timings: text('timings', { mode: 'json' }).$type<Record<string, number>>().notNull(),
    parentVersion: text('parent_version').notNull(),
    candidateVersion: text('candidate_version'),
    error: text('error'),
    createdAt: integer('created_at').notNull().default(now),
    updatedAt: integer('updated_at').notNull().default(now),
  },
  (t) => [index('train_jobs_coll_state').on(t.collection, t.state)],
);

export const evalReports = sqliteTable('eval_reports', {
  id: integer('id').primaryKey({ autoIncrement: true }),
  jobId: text('job_id'),
  candidateVersion: text('candidate_version').notNull(),
  championVersion: text('champion_version').notNull(),
  metrics: text('metrics', { mode: 'json' }).$type<Record<string, unknown>>().notNull(),
  decision: text('decision', { mode: 'json' }).$type<Record<string, unknown>>().notNull(),
  passed: integer('passed', { mode: 'boolean' }).notNull(),
  createdAt: integer('created_at').notNull().default(now),
});

export const apiKeys = sqliteTable('api_keys', {
  id: text('id').primaryKey(),
  hash: text('hash').notNull().unique(),
  role: text('role', { enum: ['read', 'admin'] }).notNull(),
  name: text('name'),
  createdAt: integer('created_at').notNull().default(now),
});
