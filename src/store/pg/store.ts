import { and, asc, count, desc, eq, gt, gte, inArray, isNotNull, isNull, lt, lte, sql, type SQL } from 'drizzle-orm';
import { drizzle as drizzleNodePg } from 'drizzle-orm/node-postgres';
import { migrate as migrateNodePg } from 'drizzle-orm/node-postgres/migrator';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import { mkdirSync } from 'node:fs';
import pg from 'pg';
import type { Extension } from '@electric-sql/pglite';
import { AppError } from '../../errors.js';
import type { Logger } from '../../util/log.js';
import * as s from '../schema/pg.js';
import { encodeJsonArray } from '../json-batch.js';
import { feedbackPairsQuery } from '../schema/queries.js';
import type * as T from '../types.js';
import { collectionColumns, LocalJobClaims } from '../types.js';
import { migrateVectors } from './vectors.js';

// Both drivers (node-postgres against a server, PGlite in-process) produce this common base type,
// so every query below is written once.
type Db = PgDatabase<PgQueryResultHKT, typeof s>;
type Tx = Parameters<Parameters<Db['transaction']>[0]>[0];

// Advisory-lock namespace (first int4 key) so our locks never collide with another application's
// locks on a shared server. The second key picks the resource.
const LOCK_NS = 0x52_54_52_56; // "RTRV"
const LOCK_MIGRATE = 1;
const LOCK_SERVING = 2;

const METADATA_KEY = /^[A-Za-z0-9_.-]{1,128}$/;
// Bound on distinct query terms in keyword search: each term costs one GIN lookup for its df.
const MAX_KEYWORD_TERMS = 64;
// Keyword search: terms with idf at or below this are "weak" (see keywordSearch), and at most this many
// weak-only chunks are ranked to fill a result list. (Strong matches always outscore weak-only ones:
// ≥ 1e-3 · 0.2 per strong term against ≤ 64 terms · 2.2e-6.)
const WEAK_IDF = 1e-3;
const STOPWORD_CANDIDATES = 2000;
const KEYWORD_STATS_TTL_MS = 30_000;
const KEYWORD_STATS_MAX_TERMS = 50_000;
// BM25 parameters, the same defaults as SQLite FTS5's bm25().
const BM25_K1 = 1.2;
const BM25_B = 0.75;
// Inlined as literals: as bind parameters next to an integer tf they would be typed integer.
const K1 = sql.raw(BM25_K1.toFixed(4));
const K1_PLUS_1 = sql.raw((BM25_K1 + 1).toFixed(4));
const B = sql.raw(BM25_B.toFixed(4));

const toCollection = (r: typeof s.collections.$inferSelect): T.Collection => ({
  id: r.id,
  name: r.name,
  hnsw: { M: r.hnswM, efConstruction: r.efConstruction, efSearch: r.efSearch },
  chunk: { size: r.chunkSize, overlap: r.chunkOverlap },
  createdAt: r.createdAt,
});

const chunkCols = { label: s.chunks.label, docId: s.chunks.docId, n: s.chunks.n, text: s.chunks.text };

async function rawRows(db: Db | Tx, q: SQL): Promise<Record<string, unknown>[]> {
  // node-postgres returns QueryResult, PGlite returns Results; both carry `rows`.
  const res: unknown = await db.execute(q);
  const rows = (res as { rows?: unknown }).rows;
  if (!Array.isArray(rows)) throw new Error('postgres driver returned no rows array');
  return rows as Record<string, unknown>[];
}

function metadataConds(filter: Record<string, T.Scalar>): SQL[] {
  return Object.entries(filter).map(([k, v]) => {
    if (!METADATA_KEY.test(k)) throw new AppError('invalid_request', `filter key "${k}" must match ${METADATA_KEY.source}`);
    // jsonb equality is type-aware ("1" ≠ 1 ≠ true, 1 = 1.0) and a missing key yields SQL NULL (no
    // match), which is exactly the SQLite json_type/json_extract semantics.
    return sql`(${s.documents.metadata} -> ${k}::text) = ${JSON.stringify(v)}::jsonb`;
  });
}

export interface PgStoreOptions {
  migrationsFolder: string;
  logger?: Logger;
  /** node-postgres pool size. */
  poolMax?: number;
  /** INDEX_BACKEND=pgvector: load (PGlite) and create the pgvector extension and the vector catalog. */
  vectors?: boolean;
}

type SqlRows = Record<string, unknown>[];
// Rows by the JSON keys of QueryLogRow; a logged id already present is skipped, as before.
const INSERT_QUERY_LOG = `INSERT INTO query_log (id, collection, query, mode, k, result_ids, scores, model_version, latency_ms, created_at)
  SELECT "id", "collection", "query", "mode", "k", "resultIds", "scores", "modelVersion", "latencyMs", "createdAt"
  FROM jsonb_to_recordset($1::jsonb) AS r("id" text, "collection" text, "query" text, "mode" text, "k" integer,
    "resultIds" jsonb, "scores" jsonb, "modelVersion" text, "latencyMs" double precision, "createdAt" bigint)
  ON CONFLICT DO NOTHING`;

/**
 * A JSON array of rows as a jsonb parameter. Postgres text holds neither NUL nor an unpaired surrogate, and a jsonb
 * escape of either fails the whole statement, while JSON.stringify writes both as \u escapes (and only those: a
 * valid surrogate pair is written as is). Such text is what a client may send, so NUL is dropped and a lone
 * surrogate becomes U+FFFD, as node-postgres's UTF-8 encoding of a plain text parameter did.
 */
async function jsonbRows(rows: readonly unknown[]): Promise<string> {
  const json = await encodeJsonArray(rows);
  return json.includes('\\u')
    ? json.replace(PG_UNSAFE_ESCAPE, (_, pairs: string, cp: string) => (cp === '0000' ? pairs : `${pairs}\\ufffd`))
    : json;
}
// \u0000 or a \udXXX escape: the odd backslash after a run of escaped ones (\\), from the run's start.
const PG_UNSAFE_ESCAPE = /(?<!\\)((?:\\\\)*)\\u(0000|d[89a-f][0-9a-f]{2})/g;

/**
 * A text[] literal for one parameter (both drivers take it as a string), with each element made what Postgres
 * stores, as jsonbRows does. Every element is quoted: unquoted, an element "null" would become SQL NULL.
 */
function textArray(values: readonly string[]): string {
  const quote = (v: string) => {
    const safe = v.includes('\u0000') || LONE_SURROGATE.test(v) ? Buffer.from(v.replaceAll('\u0000', ''), 'utf8').toString('utf8') : v;
    return `"${safe.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`;
  };
  return `{${values.map(quote).join(',')}}`;
}
const LONE_SURROGATE = /[\ud800-\udfff]/;

type SqlQuery = (text: string, params?: unknown[]) => Promise<SqlRows>;

/** Plain SQL on the store's connection(s), for the pgvector index backend (src/index/pgvector.ts). */
export interface PgSqlClient {
  query: SqlQuery;
  transaction<R>(fn: (q: SqlQuery) => Promise<R>): Promise<R>;
}

export class PgStore implements T.Store {
  readonly dialect = 'postgres' as const;

  /** Keyword-search statistics per collection (see termStats). */
  private readonly kwStats = new Map<number, { at: number; n: number; avgdl: number; df: Map<string, number> }>();

  private constructor(
    private readonly db: Db,
    private readonly shutdown: () => Promise<void>,
    /** Plain SQL on the same database (the pgvector index backend). */
    readonly sql: PgSqlClient,
    /** Session-level job claims (node-postgres); absent for PGlite, which only one process can open. */
    private readonly claimSession?: (id: string) => Promise<T.JobClaim | undefined>,
    opts: { autoAnalyze?: boolean } = {},
  ) {
    if (opts.autoAnalyze) this.autoAnalyze = { changed: 0, total: 0 };
  }

  private readonly localClaims = new LocalJobClaims();

  /**
   * PGlite runs no autovacuum, so nothing ever ANALYZEs its tables and the planner keeps estimating a
   * freshly created (empty) table at one row: a keyword term's chunks were counted by walking a b-tree and
   * filtering every row, 6× slower than with statistics, and with a search load on the one connection the
   * whole loop (drift checks, jobs) queued behind such queries. This counts rows written since the last
   * ANALYZE and runs one at autovacuum's default threshold (50 + 10% of the rows). Absent on a Postgres
   * server, whose autovacuum does it.
   */
  private readonly autoAnalyze?: { changed: number; total: number };

  /** After a write commits: ANALYZE when `rows` more pass the threshold (see autoAnalyze). */
  private async analyzeAfterWrite(rows: number): Promise<void> {
    const a = this.autoAnalyze;
    if (!a || rows <= 0) return;
    a.changed += rows;
    if (a.changed < 50 + 0.1 * a.total) return;
    a.total += a.changed;
    a.changed = 0;
    await this.sql.query('ANALYZE');
  }

  async claimJob(id: string): Promise<T.JobClaim | undefined> {
    return this.claimSession ? this.claimSession(id) : this.localClaims.claim(id);
  }

  /** A real Postgres server through a node-postgres pool (`postgres://` URLs). */
  static async connect(url: string, opts: PgStoreOptions): Promise<PgStore> {
    const pool = new pg.Pool({ connectionString: url, max: opts.poolMax ?? 10 });
    // An idle client losing its connection (server restart, failover) emits 'error' on the pool;
    // unhandled, that would crash the process instead of letting the next query reconnect.
    pool.on('error', (err) => opts.logger?.error('postgres pool error', { err: err.message }));
    try {
      const client = await pool.connect();
      try {
        // Replicas starting together must not run the same migration twice; the session lock
        // serialises them and the later ones find the journal already up to date.
        await client.query('SELECT pg_advisory_lock($1, $2)', [LOCK_NS, LOCK_MIGRATE]);
        try {
          await migrateNodePg(drizzleNodePg(client, { schema: s }), { migrationsFolder: opts.migrationsFolder });
          if (opts.vectors) await migrateVectors(async (text) => (await client.query(text)).rows);
        } finally {
          await client.query('SELECT pg_advisory_unlock($1, $2)', [LOCK_NS, LOCK_MIGRATE]);
        }
      } finally {
        client.release();
      }
    } catch (err) {
      await pool.end().catch(() => undefined);
      throw err;
    }
    const claimSession = async (id: string): Promise<T.JobClaim | undefined> => {
      // A connection of its own, held while the job runs: the lock lives and dies with it.
      const client = await pool.connect();
      // Checked-out clients get no pool-level error handler: a dropped connection must not crash the process.
      const onError = (err: Error) =>
        opts.logger?.warn('job claim connection lost; another replica may adopt the job', { job: id, err: err.message });
      client.on('error', onError);
      try {
        const { rows } = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, hashtext($2)) AS ok', [LOCK_NS, `job:${id}`]);
        if (rows[0]?.ok) {
          return {
            release: async () => {
              try {
                await client.query('SELECT pg_advisory_unlock($1, hashtext($2))', [LOCK_NS, `job:${id}`]);
                client.off('error', onError);
                client.release();
              } catch (err) {
                // A broken connection is discarded, not returned to the pool.
                client.off('error', onError);
                client.release(err as Error);
              }
            },
          };
        }
      } catch (err) {
        client.off('error', onError);
        client.release(err as Error);
        throw err;
      }
      client.off('error', onError);
      client.release();
      return undefined;
    };
    const sqlClient: PgSqlClient = {
      query: async (text, params) => (await pool.query(text, params)).rows,
      async transaction(fn) {
        const client = await pool.connect();
        try {
          await client.query('BEGIN');
          const out = await fn(async (text, params) => (await client.query(text, params)).rows);
          await client.query('COMMIT');
          client.release();
          return out;
        } catch (err) {
          // A connection that cannot even roll back is discarded, not returned to the pool.
          const broken = await client.query('ROLLBACK').then(
            () => undefined,
            (e: unknown) => e as Error,
          );
          client.release(broken);
          throw err;
        }
      },
    };
    return new PgStore(drizzleNodePg(pool, { schema: s }), () => pool.end(), sqlClient, claimSession);
  }

  /** In-process Postgres (PGlite): `dataDir` persists, undefined keeps everything in memory. */
  static async pglite(dataDir: string | undefined, opts: PgStoreOptions): Promise<PgStore> {
    if (dataDir) mkdirSync(dataDir, { recursive: true });
    // Imported on first use: PGlite (a wasm Postgres) adds ~40 MiB of RSS to every process that loads it.
    const [{ PGlite }, { drizzle: drizzlePglite }, { migrate: migratePglite }] = await Promise.all([
      import('@electric-sql/pglite'),
      import('drizzle-orm/pglite'),
      import('drizzle-orm/pglite/migrator'),
    ]);
    // pgvector for PGlite is a separate package, loaded only for the pgvector index backend.
    const extensions: Record<string, Extension> = opts.vectors ? { vector: (await import('@electric-sql/pglite-pgvector')).vector } : {};
    const client = await PGlite.create({ ...(dataDir ? { dataDir } : {}), extensions });
    try {
      const db = drizzlePglite(client, { schema: s });
      await migratePglite(db, { migrationsFolder: opts.migrationsFolder });
      if (opts.vectors) await migrateVectors(async (text) => (await client.query<Record<string, unknown>>(text)).rows);
      const sqlClient: PgSqlClient = {
        query: async (text, params) => (await client.query<Record<string, unknown>>(text, params)).rows,
        transaction: (fn) =>
          client.transaction((tx) => fn(async (text, params) => (await tx.query<Record<string, unknown>>(text, params)).rows)),
      };
      return new PgStore(db, () => client.close(), sqlClient, undefined, { autoAnalyze: true });
    } catch (err) {
      await client.close().catch(() => undefined);
      throw err;
    }
  }

  async close(): Promise<void> {
    await this.shutdown();
  }

  // The counter row is updated first in every writing transaction, so its row lock serialises writers
  // until commit: seq order is commit order. changesSince relies on that (see there).
  private async nextSeq(tx: Tx): Promise<number> {
    const [row] = await tx
      .insert(s.counters)
      .values({ name: 'seq', value: 1 })
      .onConflictDoUpdate({ target: s.counters.name, set: { value: sql`${s.counters.value} + 1` } })
      .returning({ value: s.counters.value });
    if (!row) throw new Error('seq counter upsert returned no row');
    return row.value;
  }

  async currentSeq(): Promise<number> {
    const [row] = await this.db.select({ value: s.counters.value }).from(s.counters).where(eq(s.counters.name, 'seq'));
    return row?.value ?? 0;
  }

  // ---- collections
  async createCollection(input: Omit<T.Collection, 'id' | 'createdAt'>): Promise<T.Collection> {
    // ON CONFLICT instead of check-then-insert: two replicas creating the same name race safely.
    const [row] = await this.db
      .insert(s.collections)
      .values(collectionColumns(input))
      .onConflictDoNothing({ target: s.collections.name })
      .returning();
    if (!row) throw new AppError('collection_exists', `collection "${input.name}" already exists`);
    return toCollection(row);
  }

  async getCollection(name: string): Promise<T.Collection | undefined> {
    const [r] = await this.db.select().from(s.collections).where(eq(s.collections.name, name));
    return r && toCollection(r);
  }

  async getCollectionById(id: number): Promise<T.Collection | undefined> {
    const [r] = await this.db.select().from(s.collections).where(eq(s.collections.id, id));
    return r && toCollection(r);
  }

  async listCollections(): Promise<T.Collection[]> {
    // COLLATE "C": byte order, as SQLite sorts, whatever locale the database was created with.
    const rows = await this.db.select().from(s.collections).orderBy(sql`${s.collections.name} COLLATE "C"`);
    return rows.map(toCollection);
  }

  async deleteCollection(name: string): Promise<boolean> {
    // Chunks, documents and index records go with the ON DELETE CASCADE foreign keys.
    const rows = await this.db.delete(s.collections).where(eq(s.collections.name, name)).returning({ id: s.collections.id });
    for (const r of rows) this.kwStats.delete(r.id);
    return rows.length > 0;
  }

  async countDocuments(collectionId: number): Promise<number> {
    const [r] = await this.db.select({ n: count() }).from(s.documents).where(eq(s.documents.collectionId, collectionId));
    return r?.n ?? 0;
  }

  // ---- documents
  async upsertDocuments(collectionId: number, docs: T.DocumentInput[]): Promise<T.UpsertResult> {
    // A repeated id inside one batch: the last occurrence wins, as sequential upserts would leave it.
    // Deduplicating also keeps the multi-row ON CONFLICT below legal (a row may be updated once).
    const byId = new Map<string, T.DocumentInput>();
    for (const d of docs) {
      byId.delete(d.id);
      byId.set(d.id, d);
    }
    const unique = [...byId.values()];
    let out: T.UpsertResult;
    // After commit, so a keyword search racing the write cannot re-cache pre-write statistics.
    try {
      out = await this.upsertTx(collectionId, unique);
    } finally {
      this.kwStats.delete(collectionId);
    }
    await this.analyzeAfterWrite(unique.length + out.added.length + out.removed.length);
    return out;
  }

  private upsertTx(collectionId: number, unique: T.DocumentInput[]): Promise<T.UpsertResult> {
    return this.db.transaction(async (tx) => {
      const seq = await this.nextSeq(tx);
      if (unique.length === 0) return { seq, added: [], removed: [] };
      const ids = unique.map((d) => d.id);
      // The rows go as jsonb parameters Postgres expands (jsonb_to_recordset): drizzle's multi-row INSERT builder
      // spent ~0.1–0.3 ms of main-thread CPU a row, a stall of every search of the process on a 1000-document
      // upsert (bench:store-writes). The ids to tombstone go as one text[] parameter: the update walks the
      // (collection_id, doc_id) index as for an IN list (from jsonb, `IN (SELECT …)` became a join and
      // `ANY (ARRAY(SELECT …))` a plan, both slowing as the table grew).
      const removed = (
        await rawRows(
          tx,
          sql`UPDATE chunks SET deleted_seq = ${seq} WHERE collection_id = ${collectionId} AND deleted_seq IS NULL
            AND doc_id = ANY (${textArray(ids)}::text[]) RETURNING label`,
        )
      ).map((r) => Number(r.label));
      const docs = await jsonbRows(unique.map((d) => ({ id: d.id, text: d.text, metadata: d.metadata })));
      await tx.execute(
        sql`INSERT INTO documents (collection_id, id, text, metadata, seq, updated_at)
          SELECT ${collectionId}::integer, r.id, r.text, r.metadata, ${seq}::bigint, ${Date.now()}::bigint
          FROM jsonb_to_recordset(${docs}::jsonb) AS r(id text, text text, metadata jsonb)
          ON CONFLICT (collection_id, id) DO UPDATE
          SET text = excluded.text, metadata = excluded.metadata, seq = excluded.seq, updated_at = excluded.updated_at`,
      );
      const chunks = await jsonbRows(unique.flatMap((d) => d.chunks.map((text, n) => ({ doc_id: d.id, n, text }))));
      const added: T.ChunkRow[] = (
        await rawRows(
          tx,
          sql`INSERT INTO chunks (collection_id, doc_id, n, text, seq)
            SELECT ${collectionId}::integer, r.doc_id, r.n, r.text, ${seq}::bigint
            FROM jsonb_to_recordset(${chunks}::jsonb) AS r(doc_id text, n integer, text text)
            RETURNING label, doc_id, n, text`,
        )
      ).map((r) => ({ label: Number(r.label), docId: r.doc_id as string, n: Number(r.n), text: r.text as string }));
      // RETURNING order of a multi-row insert is not guaranteed; label order is what SQLite yields.
      added.sort((a, b) => a.label - b.label);
      removed.sort((a, b) => a - b);
      return { seq, added, removed };
    });
  }

  async deleteDocument(collectionId: number, docId: string): Promise<T.UpsertResult | undefined> {
    let out: T.UpsertResult | undefined;
    try {
      out = await this.deleteTx(collectionId, docId);
    } finally {
      this.kwStats.delete(collectionId);
    }
    if (out) await this.analyzeAfterWrite(1 + out.removed.length);
    return out;
  }

  private deleteTx(collectionId: number, docId: string): Promise<T.UpsertResult | undefined> {
    return this.db.transaction(async (tx) => {
      const [doc] = await tx
        .select({ id: s.documents.id })
        .from(s.documents)
        .where(and(eq(s.documents.collectionId, collectionId), eq(s.documents.id, docId)))
        .for('update');
      if (!doc) return undefined;
      const seq = await this.nextSeq(tx);
      const old = await tx
        .update(s.chunks)
        .set({ deletedSeq: seq })
        .where(and(eq(s.chunks.collectionId, collectionId), eq(s.chunks.docId, docId), isNull(s.chunks.deletedSeq)))
        .returning({ label: s.chunks.label });
      await tx.delete(s.documents).where(and(eq(s.documents.collectionId, collectionId), eq(s.documents.id, docId)));
      return { seq, added: [], removed: old.map((o) => o.label).sort((a, b) => a - b) };
    });
  }

  async getDocument(collectionId: number, docId: string) {
    const [r] = await this.db
      .select({ id: s.documents.id, text: s.documents.text, metadata: s.documents.metadata })
      .from(s.documents)
      .where(and(eq(s.documents.collectionId, collectionId), eq(s.documents.id, docId)));
    return r;
  }

  async hydrate(labels: readonly number[]): Promise<Map<number, T.HydratedChunk>> {
    const out = new Map<number, T.HydratedChunk>();
    for (let i = 0; i < labels.length; i += 10_000) {
      const rows = await this.db
        .select({ ...chunkCols, metadata: s.documents.metadata })
        .from(s.chunks)
        .innerJoin(s.documents, and(eq(s.documents.collectionId, s.chunks.collectionId), eq(s.documents.id, s.chunks.docId)))
        .where(and(inArray(s.chunks.label, labels.slice(i, i + 10_000)), isNull(s.chunks.deletedSeq)));
      for (const r of rows) out.set(r.label, r);
    }
    return out;
  }

  async liveChunks(collectionId: number, afterLabel: number, limit: number): Promise<T.ChunkRow[]> {
    return this.db
      .select(chunkCols)
      .from(s.chunks)
      .where(and(eq(s.chunks.collectionId, collectionId), isNull(s.chunks.deletedSeq), gt(s.chunks.label, afterLabel)))
      .orderBy(asc(s.chunks.label))
      .limit(limit);
  }

  async countLiveChunks(collectionId: number): Promise<number> {
    const [r] = await this.db
      .select({ n: count() })
      .from(s.chunks)
      .where(and(eq(s.chunks.collectionId, collectionId), isNull(s.chunks.deletedSeq)));
    return r?.n ?? 0;
  }

  async changesSince(collectionId: number, seq: number): Promise<T.ChangesSince> {
    // Read the committed counter first, then bound both queries by it. Because writers serialise on
    // the counter row (see nextSeq), every transaction with seq ≤ now has committed, so the answer is
    // the exact delta (seq, now] even under READ COMMITTED while other replicas keep writing. A chunk
    // tombstoned after `now` still counts as live here; the next call reports its removal.
    const now = await this.currentSeq();
    const added = await this.db
      .select(chunkCols)
      .from(s.chunks)
      .where(
        and(
          eq(s.chunks.collectionId, collectionId),
          gt(s.chunks.seq, seq),
          lte(s.chunks.seq, now),
          sql`(${s.chunks.deletedSeq} IS NULL OR ${s.chunks.deletedSeq} > ${now})`,
        ),
      )
      .orderBy(asc(s.chunks.label));
    // Chunks born after `seq` and already dead were never in the snapshot: nothing to remove.
    const removed = await this.db
      .select({ label: s.chunks.label })
      .from(s.chunks)
      .where(
        and(eq(s.chunks.collectionId, collectionId), gt(s.chunks.deletedSeq, seq), lte(s.chunks.deletedSeq, now), lte(s.chunks.seq, seq)),
      )
      .orderBy(asc(s.chunks.label));
    return { added, removed: removed.map((r) => r.label), seq: now };
  }

  async labelsMatching(collectionId: number, filter: Record<string, T.Scalar>): Promise<number[]> {
    const rows = await this.db
      .select({ label: s.chunks.label })
      .from(s.chunks)
      .innerJoin(s.documents, and(eq(s.documents.collectionId, s.chunks.collectionId), eq(s.documents.id, s.chunks.docId)))
      .where(and(eq(s.chunks.collectionId, collectionId), isNull(s.chunks.deletedSeq), ...metadataConds(filter)))
      .orderBy(asc(s.chunks.label));
    return rows.map((r) => r.label);
  }

  async keywordSearch(collectionId: number, query: string, k: number, filter?: Record<string, T.Scalar>) {
    // Tokens are letters and digits only, so quoting them as tsquery lexemes cannot inject operators
    // (`"AND OR NEAR("` is three plain terms), and the same tokeniser as the SQLite side is used.
    const terms = [...new Set(query.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [])].slice(0, MAX_KEYWORD_TERMS);
    if (terms.length === 0) return [];
    const filterSql =
      filter && Object.keys(filter).length > 0
        ? sql`AND EXISTS (SELECT 1 FROM ${s.documents} WHERE ${s.documents.collectionId} = c.collection_id AND ${s.documents.id} = c.doc_id AND ${and(...metadataConds(filter))})`
        : sql``;

    // Okapi BM25 as FTS5 computes it: idf = ln((N − df + .5)/(df + .5)) floored at 1e-6, tf from the
    // tsvector's position lists, length = tokens (tsv_len, migration 0003). (ts_rank has no idf: a common word
    // would outrank a rare one, and keyword/hybrid results would differ between dialects.)
    const { n, avgdl, df } = await this.termStats(collectionId, terms);
    const idf = new Map<string, number>();
    for (const term of terms) {
      const d = df.get(term) ?? 0;
      if (d > 0) idf.set(term, Math.max(Math.log((n - d + 0.5) / (d + 0.5)), 1e-6));
    }
    if (idf.size === 0) return [];

    // MaxScore pruning, exact for top-k: a term adds less than idf·(k1+1) to any chunk's score. Score the
    // chunks holding the rarest term first; the k-th best of those (θ) bounds the final k-th score from
    // below. Terms whose bounds, summed from the most common up, stay under θ are "non-essential": a chunk
    // holding only those cannot reach the top k, so only chunks holding an essential term are candidates.
    // On 35k GO passages this keeps "… biosynthetic process" from scoring every chunk with "process".
    const rarestFirst = [...idf.entries()].sort((a, b) => b[1] - a[1]);
    // Seed with the rarest terms until together they occur in k chunks: with fewer than k seed chunks θ
    // would be 0 and every term essential ("1,2-dihydroxypropane catabolic process": the one chunk with
    // the rare word, then all 16k with "1", "2" or "process" — 220 ms instead of 15).
    const seedTerms: string[] = [];
    let covered = 0;
    for (const [term] of rarestFirst) {
      seedTerms.push(term);
      covered += df.get(term) ?? 0;
      if (covered >= k) break;
    }
    const seed = await this.bm25(collectionId, idf, avgdl, seedTerms, [], k, filterSql, Math.max(4 * k, 100));
    const theta = seed.length >= k ? seed[k - 1]!.score : 0;
    const commonFirst = [...rarestFirst].reverse();
    let i = 0;
    for (let bound = 0; i < commonFirst.length && bound + commonFirst[i]![1] * (BM25_K1 + 1) < theta; i++) {
      bound += commonFirst[i]![1] * (BM25_K1 + 1);
    }
    const essential = commonFirst.slice(i).map(([term]) => term);
    // Words in most chunks ("the", idf ≤ WEAK_IDF) are essential only when nothing better fills k; then
    // they only fill the list, from at most STOPWORD_CANDIDATES chunks, below every stronger match.
    const strong = essential.filter((term) => idf.get(term)! > WEAK_IDF);
    const weak = essential.filter((term) => idf.get(term)! <= WEAK_IDF);
    return this.bm25(collectionId, idf, avgdl, strong, weak, k, filterSql);
  }

  /**
   * N, average length and per-term document frequencies of a collection. Counting a common word's
   * chunks (12k for "process" in GO) cost more than the ranking itself, and query traffic repeats its
   * words, so they are cached: dropped on this instance's own writes to the collection, and after
   * KEYWORD_STATS_TTL_MS so other replicas' writes show up (they only nudge idf in between).
   */
  private async termStats(collectionId: number, terms: string[]): Promise<{ n: number; avgdl: number; df: Map<string, number> }> {
    const now = Date.now();
    let e = this.kwStats.get(collectionId);
    if (!e || now - e.at > KEYWORD_STATS_TTL_MS || e.df.size > KEYWORD_STATS_MAX_TERMS) {
      const [st] = await rawRows(
        this.db,
        sql`
        SELECT count(*)::float8 AS n, coalesce(avg(tsv_len), 0)::float8 AS avgdl
        FROM chunks WHERE collection_id = ${collectionId} AND deleted_seq IS NULL`,
      );
      e = { at: now, n: Number(st?.n ?? 0), avgdl: Number(st?.avgdl ?? 0), df: new Map() };
      this.kwStats.set(collectionId, e);
    }
    const missing = terms.filter((term) => !e.df.has(term));
    if (missing.length > 0) {
      const rows = await rawRows(
        this.db,
        sql`
        SELECT t.term, (SELECT count(*) FROM chunks x WHERE x.collection_id = ${collectionId} AND x.deleted_seq IS NULL
                          AND x.tsv @@ plainto_tsquery('simple', t.term))::float8 AS df
        FROM jsonb_array_elements_text(${JSON.stringify(missing)}::jsonb) AS t(term)`,
      );
      for (const r of rows) e.df.set(String(r.term), Number(r.df));
    }
    return e;
  }

  /** Top-k BM25 over chunks holding a `strong` term, filled up from chunks holding only `weak` ones. */
  private async bm25(
    collectionId: number,
    idf: Map<string, number>,
    avgdl: number,
    strong: string[],
    weak: string[],
    k: number,
    filterSql: SQL,
    tier1Cap?: number,
  ): Promise<{ label: number; score: number }[]> {
    // Terms are letters and digits only (see keywordSearch), so 'term' is a plain lexeme.
    const orQuery = (ts: string[]) => (ts.length ? sql`to_tsquery('simple', ${ts.map((x) => `'${x}'`).join(' | ')})` : sql`NULL::tsquery`);
    const rows = await rawRows(
      this.db,
      sql`
      WITH idf AS (
        SELECT key AS term, value::float8 AS idf FROM jsonb_each_text(${JSON.stringify(Object.fromEntries(idf))}::jsonb)
      ), q AS (
        SELECT ${orQuery(strong)} AS strong, ${orQuery(weak)} AS weak
      ), tier1 AS MATERIALIZED (
        SELECT c.label, c.tsv, c.tsv_len FROM chunks c
        WHERE c.collection_id = ${collectionId} AND c.deleted_seq IS NULL
          AND c.tsv @@ (SELECT strong FROM q) ${filterSql}
        ${tier1Cap ? sql`LIMIT ${tier1Cap}` : sql``}
      ), tier2 AS (
        SELECT c.label, c.tsv, c.tsv_len FROM chunks c
        WHERE c.collection_id = ${collectionId} AND c.deleted_seq IS NULL
          AND c.tsv @@ (SELECT weak FROM q)
          AND ((SELECT strong FROM q) IS NULL OR NOT c.tsv @@ (SELECT strong FROM q)) ${filterSql}
        LIMIT CASE WHEN (SELECT count(*) FROM tier1) >= ${k} THEN 0 ELSE ${STOPWORD_CANDIDATES}::int END
      ), cand AS (
        SELECT * FROM tier1 UNION ALL SELECT * FROM tier2
      )
      SELECT cand.label::float8 AS label,
             sum(idf.idf * (u.tf * ${K1_PLUS_1}) /
                 (u.tf + ${K1} * (1 - ${B} + ${B} * cand.tsv_len / greatest(${avgdl}::float8, 1))))::float8 AS score
      FROM cand
      -- setweight marks the query's lexemes and ts_filter keeps only those, so unnest builds position arrays
      -- for 2-3 lexemes per chunk instead of all of them (3-4× less per candidate; on PGlite this was most of
      -- a keyword search). to_tsvector writes every position with weight D, so nothing else is kept.
      CROSS JOIN LATERAL (SELECT lexeme, coalesce(array_length(positions, 1), 1) AS tf
                          FROM unnest(ts_filter(setweight(cand.tsv, 'A', ${textArray([...idf.keys()])}::text[]), '{a}'))) u
      JOIN idf ON idf.term = u.lexeme
      GROUP BY cand.label
      ORDER BY score DESC, cand.label
      LIMIT ${k}`,
    );
    return rows.map((r) => ({ label: Number(r.label), score: Number(r.score) }));
  }

  async sampleChunks(collectionId: number, n: number): Promise<T.ChunkRow[]> {
    return this.db
      .select(chunkCols)
      .from(s.chunks)
      .where(and(eq(s.chunks.collectionId, collectionId), isNull(s.chunks.deletedSeq)))
      .orderBy(sql`random()`)
      .limit(n);
  }

  // ---- models
  async upsertModelVersion(row: Omit<T.ModelVersionRow, 'createdAt' | 'promotedAt'>): Promise<void> {
    await this.db
      .insert(s.modelVersions)
      .values(row)
      .onConflictDoUpdate({
        target: s.modelVersions.version,
        set: { source: row.source, dim: row.dim, card: row.card, status: row.status, parentVersion: row.parentVersion },
      });
  }

  async getModelVersion(version: string): Promise<T.ModelVersionRow | undefined> {
    const [r] = await this.db.select().from(s.modelVersions).where(eq(s.modelVersions.version, version));
    return r;
  }

  async listModelVersions(): Promise<T.ModelVersionRow[]> {
    return this.db.select().from(s.modelVersions).orderBy(asc(s.modelVersions.createdAt), asc(s.modelVersions.version));
  }

  async setModelStatus(version: string, status: T.ModelStatus): Promise<void> {
    await this.db.update(s.modelVersions).set({ status }).where(eq(s.modelVersions.version, version));
  }

  async getServing(): Promise<T.ServingPointer | undefined> {
    const [r] = await this.db.select().from(s.serving).where(eq(s.serving.id, 1));
    return r && { modelVersion: r.modelVersion, generation: r.generation, changedAt: r.changedAt };
  }

  async promote(version: string): Promise<T.ServingPointer> {
    return this.db.transaction(async (tx) => {
      // The serving row may not exist yet, so FOR UPDATE alone cannot serialise the first two
      // promotions; the transaction-scoped advisory lock can, and is released at commit/rollback.
      await tx.execute(sql`SELECT pg_advisory_xact_lock(${LOCK_NS}, ${LOCK_SERVING})`);
      const now = Date.now();
      const [cur] = await tx.select().from(s.serving).where(eq(s.serving.id, 1));
      if (cur && cur.modelVersion !== version) {
        await tx.update(s.modelVersions).set({ status: 'retired' }).where(eq(s.modelVersions.version, cur.modelVersion));
      }
      await tx.update(s.modelVersions).set({ status: 'champion', promotedAt: now }).where(eq(s.modelVersions.version, version));
      const generation = (cur?.generation ?? 0) + 1;
      await tx
        .insert(s.serving)
        .values({ id: 1, modelVersion: version, generation, changedAt: now })
        .onConflictDoUpdate({ target: s.serving.id, set: { modelVersion: version, generation, changedAt: now } });
      return { modelVersion: version, generation, changedAt: now };
    });
  }

  // ---- index records
  async getIndexRecord(collectionId: number, modelVersion: string): Promise<T.IndexRecord | undefined> {
    const [r] = await this.db
      .select()
      .from(s.indexes)
      .where(and(eq(s.indexes.collectionId, collectionId), eq(s.indexes.modelVersion, modelVersion)));
    return r;
  }

  async listIndexRecords(filter: { modelVersion?: string; collectionId?: number } = {}): Promise<T.IndexRecord[]> {
    const conds: SQL[] = [];
    if (filter.modelVersion !== undefined) conds.push(eq(s.indexes.modelVersion, filter.modelVersion));
    if (filter.collectionId !== undefined) conds.push(eq(s.indexes.collectionId, filter.collectionId));
    return this.db
      .select()
      .from(s.indexes)
      .where(and(...conds))
      .orderBy(asc(s.indexes.id));
  }

  async saveIndexRecord(rec: Omit<T.IndexRecord, 'id' | 'createdAt'>): Promise<T.IndexRecord> {
    const [r] = await this.db
      .insert(s.indexes)
      .values(rec)
      .onConflictDoUpdate({
        target: [s.indexes.collectionId, s.indexes.modelVersion],
        set: { path: rec.path, snapshotSeq: rec.snapshotSeq, count: rec.count, status: rec.status },
      })
      .returning();
    if (!r) throw new Error('index record upsert returned no row');
    return r;
  }

  async deleteIndexRecord(collectionId: number, modelVersion: string): Promise<void> {
    await this.db.delete(s.indexes).where(and(eq(s.indexes.collectionId, collectionId), eq(s.indexes.modelVersion, modelVersion)));
  }

  // ---- serving strategies
  async getStrategy(collectionId: number, modelVersion: string): Promise<T.Metadata | undefined> {
    const [r] = await this.db
      .select()
      .from(s.strategies)
      .where(and(eq(s.strategies.collectionId, collectionId), eq(s.strategies.modelVersion, modelVersion)));
    return r?.strategy as T.Metadata | undefined;
  }

  async saveStrategy(collectionId: number, modelVersion: string, strategy: T.Metadata): Promise<void> {
    const decidedAt = Date.now();
    await this.db
      .insert(s.strategies)
      .values({ collectionId, modelVersion, strategy, decidedAt })
      .onConflictDoUpdate({ target: [s.strategies.collectionId, s.strategies.modelVersion], set: { strategy, decidedAt } });
  }

  // ---- query log and feedback
  async insertQueryLogs(rows: T.QueryLogRow[]): Promise<void> {
    if (rows.length === 0) return;
    // The batch travels as one JSON parameter that Postgres expands: drizzle's builder spent ~50 µs a row of
    // main-thread CPU on a multi-row INSERT (a 500-row statement took 22–26 ms to build), a stall at every flush.
    await this.sql.query(INSERT_QUERY_LOG, [await jsonbRows(rows)]);
    await this.analyzeAfterWrite(rows.length);
  }

  async getQueryLog(id: string): Promise<T.QueryLogRow | undefined> {
    const [r] = await this.db.select().from(s.queryLog).where(eq(s.queryLog.id, id));
    return r;
  }

  async queryLogWindow(collection: string, opts: { since?: number; until?: number; limit: number; newestFirst?: boolean }) {
    const conds = [eq(s.queryLog.collection, collection)];
    if (opts.since !== undefined) conds.push(gte(s.queryLog.createdAt, opts.since));
    if (opts.until !== undefined) conds.push(lte(s.queryLog.createdAt, opts.until));
    const dir = opts.newestFirst ? desc : asc;
    return this.db
      .select()
      .from(s.queryLog)
      .where(and(...conds))
      .orderBy(dir(s.queryLog.createdAt), dir(s.queryLog.id))
      .limit(opts.limit);
  }

  async queryLogTextSlice(collection: string, o: T.QueryLogSliceOptions): Promise<T.QueryLogSlice> {
    // Same slicing as the SQLite store (see there): an index-only boundary read, then the text rows.
    const q = s.queryLog;
    const t = q.createdAt;
    const floor = o.newestFirst && o.floor !== undefined ? [gte(t, o.floor)] : [];
    const ahead = o.newestFirst ? lte(t, o.from) : gte(t, o.from);
    const dir = o.newestFirst ? desc : asc;
    const [b] = await this.db
      .select({ t })
      .from(q)
      .where(and(eq(q.collection, collection), ahead, ...floor))
      .orderBy(dir(t))
      .limit(1)
      .offset(o.scanRows);
    const boundary = b?.t;
    let range: SQL[];
    let next: number | undefined;
    if (boundary === undefined) {
      range = [ahead, ...floor];
    } else if (boundary !== o.from) {
      range = [ahead, o.newestFirst ? gt(t, boundary) : lt(t, boundary)];
      next = boundary;
    } else {
      range = [eq(t, o.from)];
      const [n] = await this.db
        .select({ t })
        .from(q)
        .where(and(eq(q.collection, collection), o.newestFirst ? lt(t, o.from) : gt(t, o.from), ...floor))
        .orderBy(dir(t))
        .limit(1);
      next = n?.t;
    }
    const rows = await this.db
      .select()
      .from(q)
      .where(and(eq(q.collection, collection), ...range, isNotNull(q.query), sql`trim(${q.query}) <> ''`))
      .orderBy(dir(t), dir(q.id));
    return { rows, next };
  }

  async countQueryLog(collection: string, since?: number): Promise<number> {
    const conds = [eq(s.queryLog.collection, collection)];
    if (since !== undefined) conds.push(gte(s.queryLog.createdAt, since));
    const [r] = await this.db
      .select({ n: count() })
      .from(s.queryLog)
      .where(and(...conds));
    return r?.n ?? 0;
  }

  async insertFeedback(row: Omit<T.FeedbackRow, 'id' | 'createdAt'>): Promise<T.FeedbackRow> {
    const [r] = await this.db.insert(s.feedback).values(row).returning();
    if (!r) throw new Error('feedback insert returned no row');
    return r;
  }

  async feedbackPairs(collection: string, opts: { afterId?: number; limit?: number } = {}): Promise<T.FeedbackPair[]> {
    const { columns, on, where } = feedbackPairsQuery(s.feedback, s.queryLog, collection, opts.afterId);
    const rows = await this.db
      .select(columns)
      .from(s.feedback)
      .innerJoin(s.queryLog, on)
      .where(where)
      .orderBy(asc(s.feedback.id))
      .limit(opts.limit ?? 1_000_000);
    return rows.map((r) => ({ ...r, query: r.query ?? '' }));
  }

  // ---- drift, jobs, eval
  async insertDriftReport(row: Omit<T.DriftReportRow, 'id' | 'createdAt'>): Promise<T.DriftReportRow> {
    const [r] = await this.db.insert(s.driftReports).values(row).returning();
    if (!r) throw new Error('drift report insert returned no row');
    return r;
  }

  async listDriftReports(collection: string, limit: number): Promise<T.DriftReportRow[]> {
    return this.db
      .select()
      .from(s.driftReports)
      .where(eq(s.driftReports.collection, collection))
      .orderBy(desc(s.driftReports.id))
      .limit(limit);
  }

  async insertJob(row: Omit<T.TrainJobRow, 'createdAt' | 'updatedAt'>): Promise<T.TrainJobRow> {
    return this.db.transaction(async (tx) => {
      // One active job per collection across all replicas. A row lock cannot guard a row that does
      // not exist yet, so lock the collection name itself; the lock is held until commit, and under
      // READ COMMITTED the SELECT below starts after it is granted, so it sees any job just committed.
      await tx.execute(sql`SELECT pg_advisory_xact_lock(${LOCK_NS}, hashtext(${'train_jobs:' + row.collection}))`);
      const [running] = await tx
        .select({ id: s.trainJobs.id })
        .from(s.trainJobs)
        .where(and(eq(s.trainJobs.collection, row.collection), sql`${s.trainJobs.state} NOT IN ('done','rejected','failed')`))
        .limit(1);
      if (running)
        throw new AppError('job_running', `job ${running.id} is already running for collection "${row.collection}"`, { jobId: running.id });
      const [r] = await tx.insert(s.trainJobs).values(row).returning();
      if (!r) throw new Error('job insert returned no row');
      return r;
    });
  }

  async updateJob(id: string, patch: Partial<Pick<T.TrainJobRow, 'state' | 'progress' | 'timings' | 'candidateVersion' | 'error'>>) {
    const [r] = await this.db
      .update(s.trainJobs)
      .set({ ...patch, updatedAt: Date.now() })
      .where(eq(s.trainJobs.id, id))
      .returning();
    if (!r) throw new AppError('job_not_found', `job ${id} not found`);
    return r;
  }

  async getJob(id: string): Promise<T.TrainJobRow | undefined> {
    const [r] = await this.db.select().from(s.trainJobs).where(eq(s.trainJobs.id, id));
    return r;
  }

  async listJobs(opts: { collection?: string; states?: readonly T.JobState[]; limit?: number } = {}): Promise<T.TrainJobRow[]> {
    const conds: SQL[] = [];
    if (opts.collection !== undefined) conds.push(eq(s.trainJobs.collection, opts.collection));
    if (opts.states) conds.push(inArray(s.trainJobs.state, [...opts.states]));
    return this.db
      .select()
      .from(s.trainJobs)
      .where(and(...conds))
      .orderBy(desc(s.trainJobs.createdAt), desc(s.trainJobs.id))
      .limit(opts.limit ?? 100);
  }

  async insertEvalReport(row: Omit<T.EvalReportRow, 'id' | 'createdAt'>): Promise<T.EvalReportRow> {
    const [r] = await this.db.insert(s.evalReports).values(row).returning();
    if (!r) throw new Error('eval report insert returned no row');
    return r;
  }

  async listEvalReports(opts: { candidateVersion?: string; jobId?: string } = {}): Promise<T.EvalReportRow[]> {
    const conds: SQL[] = [];
    if (opts.candidateVersion !== undefined) conds.push(eq(s.evalReports.candidateVersion, opts.candidateVersion));
    if (opts.jobId !== undefined) conds.push(eq(s.evalReports.jobId, opts.jobId));
    return this.db
      .select()
      .from(s.evalReports)
      .where(and(...conds))
      .orderBy(desc(s.evalReports.id));
  }

  // ---- api keys
  async insertApiKey(row: Omit<T.ApiKeyRow, 'createdAt'>): Promise<void> {
    await this.db.insert(s.apiKeys).values(row);
  }

  async findApiKeyByHash(hash: string): Promise<T.ApiKeyRow | undefined> {
    const [r] = await this.db.select().from(s.apiKeys).where(eq(s.apiKeys.hash, hash));
    return r;
  }

  async countApiKeys(): Promise<number> {
    const [r] = await this.db.select({ n: count() }).from(s.apiKeys);
    return r?.n ?? 0;
  }
}
