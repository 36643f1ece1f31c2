// Postgres twin of ./sqlite.ts. Table and column names must stay identical (test/store/schema-parity
// checks it): the Store contract, the drift monitor and ops queries are written against one shape.
// Timestamps are epoch milliseconds in bigint columns, not timestamptz, so both dialects hand the
// application the same numbers and no timezone conversion ever happens in a driver.
import { sql } from 'drizzle-orm';
import { bigint, boolean, doublePrecision, index, integer, jsonb, pgTable, primaryKey, text, uniqueIndex } from 'drizzle-orm/pg-core';
import { collectionSettings } from './columns.js';

const now = sql`((extract(epoch from clock_timestamp()) * 1000)::bigint)`;
const ms = (name: string) => bigint(name, { mode: 'number' });

export const collections = pgTable('collections', {
  id: integer('id').primaryKey().generatedByDefaultAsIdentity(),
  name: text('name').notNull().unique(),
  ...collectionSettings((name) => integer(name)),
  createdAt: ms('created_at').notNull().default(now),
});

export const documents = pgTable(
  'documents',
  {
    collectionId: integer('collection_id')
      .notNull()
      .references(() => collections.id, { onDelete: 'cascade' }),
    id: text('id').notNull(),
    text: text('text').notNull(),
    metadata: jsonb('metadata').$type<Record<string, unknown>>().notNull(),
    seq: bigint('seq', { mode: 'number' }).notNull(),
    updatedAt: ms('updated_at').notNull().default(now),
  },
  (t) => [primaryKey({ columns: [t.collectionId, t.id] })],
);

// label = HNSW label (see sqlite.ts). bigint so a long-lived collection with heavy re-upserts cannot
// run out of labels; hnswlib labels are size_t and JS numbers are exact up to 2^53.
export const chunks = pgTable(
  'chunks',
  {
    label: bigint('label', { mode: 'number' }).primaryKey().generatedByDefaultAsIdentity(),
    collectionId: integer('collection_id')
      .notNull()
      .references(() => collections.id, { onDelete: 'cascade' }),
    docId: text('doc_id').notNull(),
    n: integer('n').notNull(),
    text: text('text').notNull(),
    seq: bigint('seq', { mode: 'number' }).notNull(),
    deletedSeq: bigint('deleted_seq', { mode: 'number' }),
  },
  (t) => [
    index('chunks_doc').on(t.collectionId, t.docId),
    index('chunks_seq').on(t.collectionId, t.seq),
    index('chunks_deleted_seq').on(t.collectionId, t.deletedSeq).where(sql`deleted_seq IS NOT NULL`),
  ],
);

export const counters = pgTable('counters', {
  name: text('name').primaryKey(),
  value: bigint('value', { mode: 'number' }).notNull(),
});

export const modelVersions = pgTable('model_versions', {
  version: text('version').primaryKey(),
  parentVersion: text('parent_version'),
  source: text('source').notNull(),
  dim: integer('dim').notNull(),
  // Plain text with a TS enum, as in SQLite: adding a status must not need an ALTER TYPE migration.
  status: text('status', { enum: ['champion', 'candidate', 'retired', 'rejected', 'purged'] }).notNull(),
  card: jsonb('card').$type<Record<string, unknown>>().notNull(),
  createdAt: ms('created_at').notNull().default(now),
  promotedAt: ms('promoted_at'),
});

export const serving = pgTable('serving', {
  id: integer('id').primaryKey(),
  modelVersion: text('model_version').notNull(),
  generation: integer('generation').notNull(),
  changedAt: ms('changed_at').notNull().default(now),
});

export const indexes = pgTable(
  'indexes',
  {
    id: integer('id').primaryKey().generatedByDefaultAsIdentity(),
    collectionId: integer('collection_id')
      .notNull()
      .references(() => collections.id, { onDelete: 'cascade' }),
    modelVersion: text('model_version').notNull(),
    path: text('path'),
    snapshotSeq: bigint('snapshot_seq', { mode: 'number' }).notNull().default(0),
    count: integer('count').notNull().default(0),
    status: text('status', { enum: ['building', 'ready', 'retired'] }).notNull(),
    createdAt: ms('created_at').notNull().default(now),
  },
  (t) => [uniqueIndex('indexes_coll_model').on(t.collectionId, t.modelVersion)],
);

// The serving strategy chosen for a collection with one encoder (twin of the SQLite table).
export const strategies = pgTable(
  'strategies',
  {
    collectionId: integer('collection_id')
      .notNull()
      .references(() => collections.id, { onDelete: 'cascade' }),
    modelVersion: text('model_version').notNull(),
    strategy: jsonb('strategy').$type<Record<string, unknown>>().notNull(),
    decidedAt: ms('decided_at').notNull().default(now),
  },
  (t) => [primaryKey({ columns: [t.collectionId, t.modelVersion] })],
);

export const queryLog = pgTable(
  'query_log',
  {
    id: text('id').primaryKey(),
    collection: text('collection').notNull(),
    query: text('query'),
    mode: text('mode').notNull(),
    k: integer('k').notNull(),
    resultIds: jsonb('result_ids').$type<string[]>().notNull(),
    scores: jsonb('scores').$type<number[]>().notNull(),
    modelVersion: text('model_version').notNull(),
    latencyMs: doublePrecision('latency_ms').notNull(),
    createdAt: ms('created_at').notNull(),
  },
  (t) => [index('query_log_coll_time').on(t.collection, t.createdAt)],
);

export const feedback = pgTable(
  'feedback',
  {
    id: integer('id').primaryKey().generatedByDefaultAsIdentity(),
    queryId: text('query_id').notNull(),
    documentId: text('document_id').notNull(),
    relevant: boolean('relevant').notNull(),
    createdAt: ms('created_at').notNull().default(now),
  },
  (t) => [index('feedback_query').on(t.queryId)],
);

export const driftReports = pgTable(
  'drift_reports',
  {
    id: integer('id').primaryKey().generatedByDefaultAsIdentity(),
    collection: text('collection').notNull(),
    modelVersion: text('model_version').notNull(),
    metrics: jsonb('metrics').$type<Record<string, unknown>>().notNull(),
    drifted: boolean('drifted').notNull(),
    jobId: text('job_id'),
    createdAt: ms('created_at').notNull().default(now),
  },
  (t) => [index('drift_reports_coll_time').on(t.collection, t.createdAt)],
);

export const trainJobs = pgTable(
  'train_jobs',
  {
    id: text('id').primaryKey(),
    collection: text('collection').notNull(),
    trigger: text('trigger').notNull(),
    state: text('state', {
      enum: ['queued', 'mining', 'training', 'evaluating', 'reembedding', 'swapping', 'done', 'rejected', 'failed'],
    }).notNull(),
    progress: jsonb('progress').$type<Record<string, unknown>>().notNull(),
    timings: jsonb('timings').$type<Record<string, number>>().notNull(),
    parentVersion: text('parent_version').notNull(),
    candidateVersion: text('candidate_version'),
    error: text('error'),
    createdAt: ms('created_at').notNull().default(now),
    updatedAt: ms('updated_at').notNull().default(now),
  },
  (t) => [index('train_jobs_coll_state').on(t.collection, t.state)],
);

export const evalReports = pgTable('eval_reports', {
  id: integer('id').primaryKey().generatedByDefaultAsIdentity(),
  jobId: text('job_id'),
  candidateVersion: text('candidate_version').notNull(),
  championVersion: text('champion_version').notNull(),
  metrics: jsonb('metrics').$type<Record<string, unknown>>().notNull(),
  decision: jsonb('decision').$type<Record<string, unknown>>().notNull(),
  passed: boolean('passed').notNull(),
  createdAt: ms('created_at').notNull().default(now),
});

export const apiKeys = pgTable('api_keys', {
  id: text('id').primaryKey(),
  hash: text('hash').notNull().unique(),
  role: text('role', { enum: ['read', 'admin'] }).notNull(),
  name: text('name'),
  createdAt: ms('created_at').notNull().default(now),
});
