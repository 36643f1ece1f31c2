// Vector indexes in Postgres with pgvector: one table per (collection, model version) holding every live
// chunk's vector under its label, with an HNSW index (vector_cosine_ops) built with the collection's M and
// efConstruction. Nothing is kept in this process but a handle and the live count, so a replica starts in
// seconds and every replica searches the same index. A candidate model's vectors go into a table of its own
// while the champion's keeps serving; the cut-over stays a pointer flip in the store.
import { createHash } from 'node:crypto';

import { IndexClosedError, IndexStateError } from './errors.js';
import { keyId } from './manager.js';
import type { HnswParams, Hit, IndexBackend, IndexKey, SearchOptions, VectorIndex } from './types.js';

/** One query with positional parameters ($1…); rows come back as objects. */
type SqlQuery = (text: string, params?: unknown[]) => Promise<Record<string, unknown>[]>;

/** What the backend needs from a Postgres connection (node-postgres pool or PGlite). */
export interface SqlClient {
  query: SqlQuery;
  /** Runs `fn` on one connection between BEGIN and COMMIT (ROLLBACK when it throws). */
  transaction<T>(fn: (q: SqlQuery) => Promise<T>): Promise<T>;
}

/** The catalog of vector tables; created by the store's pgvector migration (src/store/pg/vectors.ts). */
const CATALOG = 'vector_indexes';
/** pgvector's limit for hnsw.ef_search; deeper answers come from iterative scans or the exact path. */
const MAX_EF_SEARCH = 1000;
/** Rows per INSERT: two array parameters, so the statement size is the only bound. */
const ROWS_PER_INSERT = 500;
/** Most memory an index build asks for (maintenance_work_mem, per build); a larger graph builds slower. */
const MAX_BUILD_MEMORY_MB = 1024;

function vectorTableName(key: IndexKey): string {
  // Identifiers are at most 63 bytes; a model version may be longer or hold any character.
  return `vec_${key.collectionId}_${createHash('sha256').update(key.modelVersion).digest('hex').slice(0, 20)}`;
}

function vectorLiteral(v: Float32Array): string {
  let s = '[';
  for (let i = 0; i < v.length; i++) {
    const x = v[i] as number;
    if (!Number.isFinite(x)) throw new RangeError(`vector component ${i} is ${x}`);
    s += i === 0 ? String(x) : `,${x}`;
  }
  return `${s}]`;
}

function validLabels(labels: readonly number[]): number[] {
  // Labels are chunk row ids: positive integers. Anything else cannot be in a table, so it is ignored.
  return labels.filter((l) => Number.isSafeInteger(l) && l >= 0);
}

class PgVectorIndex implements VectorIndex {
  private live: number;
  private dropped: Error | undefined;

  constructor(
    readonly key: IndexKey,
    readonly dim: number,
    readonly params: HnswParams,
    readonly table: string,
    count: number,
    private readonly backend: PgVectorIndexes,
  ) {
    this.live = count;
  }

  private get sql(): SqlClient {
    if (this.dropped) throw this.dropped;
    return this.backend.sql;
  }

  markDropped(err: Error): void {
    this.dropped ??= err;
  }

  count(): number {
    return this.live;
  }

  private async bump(q: SqlQuery, delta: number): Promise<void> {
    const [row] = await q(`UPDATE ${CATALOG} SET count = count + $1 WHERE table_name = $2 RETURNING count`, [delta, this.table]);
    if (!row) throw new IndexStateError(`vector table ${this.table} is not in the catalog (dropped by another replica?)`);
    this.live = Number(row.count);
  }

  async add(labels: readonly number[], vectors: readonly Float32Array[]): Promise<void> {
    if (labels.length !== vectors.length) throw new RangeError(`${labels.length} labels but ${vectors.length} vectors`);
    for (const l of labels) if (!Number.isSafeInteger(l) || l < 0) throw new RangeError(`label ${l} is not a non-negative integer`);
    for (const v of vectors)
      if (v.length !== this.dim) throw new RangeError(`vector of length ${v.length}, index dimension is ${this.dim}`);
    if (labels.length === 0) return;
    const sql = this.sql;
    for (let i = 0; i < labels.length; i += ROWS_PER_INSERT) {
      const ls = labels.slice(i, i + ROWS_PER_INSERT);
      const vs = vectors.slice(i, i + ROWS_PER_INSERT).map(vectorLiteral);
      await sql.transaction(async (q) => {
        // Re-adding a label replaces its vector; only new rows change the live count.
        const rows = await q(
          `INSERT INTO ${this.table} (label, embedding) SELECT * FROM unnest($1::bigint[], $2::text[]::vector[])
           ON CONFLICT (label) DO UPDATE SET embedding = EXCLUDED.embedding RETURNING (xmax = 0) AS inserted`,
          [ls, vs],
        );
        const inserted = rows.filter((r) => r.inserted === true).length;
        await this.bump(q, inserted);
      });
    }
  }

  async markDeleted(labels: readonly number[]): Promise<void> {
    const ls = validLabels(labels);
    if (ls.length === 0) return;
    await this.sql.transaction(async (q) => {
      const rows = await q(`DELETE FROM ${this.table} WHERE label = ANY($1::bigint[]) RETURNING label`, [ls]);
      await this.bump(q, -rows.length);
    });
  }

  async search(vector: Float32Array, k: number, opts: SearchOptions = {}): Promise<Hit[]> {
    if (vector.length !== this.dim) throw new RangeError(`query of length ${vector.length}, index dimension is ${this.dim}`);
    if (!Number.isInteger(k) || k <= 0) return [];
    const allow = opts.allow ? validLabels(opts.allow) : undefined;
    if (allow && allow.length === 0) return [];
    const ef = Math.min(MAX_EF_SEARCH, Math.max(opts.efSearch ?? this.params.efSearch, k));
    const literal = vectorLiteral(vector);
    const where = allow ? 'WHERE label = ANY($2::bigint[])' : '';
    const params = allow ? [literal, allow] : [literal];
    const iterative = this.backend.iterativeScan;
    const hits = await this.sql.transaction(async (q) => {
      // Per query, inside the transaction: hnsw.ef_search as asked, and iterative scans, which keep walking
      // the graph until the filter has passed k rows (or ef_search is raised past k) instead of stopping at
      // ef_search candidates.
      await q(
        `SELECT set_config('hnsw.ef_search', $1, true)${iterative ? `, set_config('hnsw.iterative_scan', 'relaxed_order', true)` : ''}`,
        [String(ef)],
      );
      return q(
        `SELECT label, embedding <=> $1::vector AS distance FROM ${this.table} ${where} ORDER BY embedding <=> $1::vector LIMIT ${k}`,
        params,
      );
    });
    let out = hits.map((r) => ({ label: Number(r.label), score: 1 - Number(r.distance) }));
    // A graph search may come back short (a selective filter past the scan limit, unreachable nodes, or no
    // iterative scans in this pgvector): score the candidates exactly then, as the hnswlib backend does.
    const want = Math.min(k, allow ? allow.length : this.live);
    if (out.length < want) {
      const exact = await this.sql.query(
        `SELECT label, embedding <=> $1::vector AS distance FROM ${this.table} ${where} ORDER BY (embedding <=> $1::vector) + 0 LIMIT ${k}`,
        params,
      );
      out = exact.map((r) => ({ label: Number(r.label), score: 1 - Number(r.distance) }));
    }
    // relaxed_order may hand rows back slightly out of order.
    return out.sort((a, b) => b.score - a.score);
  }

  /**
   * Builds the HNSW index once a bulk load is done (pgvector builds a graph over loaded rows several times faster
   * than it inserts them one by one into an existing graph). Until then searches are exact scans.
   */
  async seal(): Promise<void> {
    await this.backend.ensureHnsw(this.table, this.params);
  }

  async snapshot(): Promise<void> {
    // The table is the persistent copy; there is nothing to write.
  }

  close(): Promise<void> {
    return this.backend.drop(this.key);
  }

  /**
   * Of `labels`, those without a row here. Re-reads the live count too: other replicas write the same table,
   * so a replica replaying the change log embeds only what no one has written yet.
   */
  async absent(labels: readonly number[]): Promise<number[]> {
    const ls = validLabels(labels);
    const [row] = await this.sql.query(`SELECT count FROM ${CATALOG} WHERE table_name = $1`, [this.table]);
    if (row) this.live = Number(row.count);
    if (ls.length === 0) return [];
    const rows = await this.sql.query(
      `SELECT l FROM unnest($1::bigint[]) AS l WHERE NOT EXISTS (SELECT 1 FROM ${this.table} WHERE label = l)`,
      [ls],
    );
    return rows.map((r) => Number(r.l));
  }

  /**
   * Brings the table in line with the store's live chunks of its collection: deletes rows whose chunk is no
   * longer live, and returns the live labels that have no row (written while no replica was there to add them,
   * or a build that stopped half-way). The caller embeds those.
   */
  async reconcile(): Promise<number[]> {
    return this.sql.transaction(async (q) => {
      // The chunks table is the store's (src/store/schema/pg.ts): both live in one database.
      await q(
        `DELETE FROM ${this.table} v WHERE NOT EXISTS
           (SELECT 1 FROM chunks c WHERE c.label = v.label AND c.collection_id = $1 AND c.deleted_seq IS NULL)`,
        [this.key.collectionId],
      );
      const missing = await q(
        `SELECT c.label FROM chunks c WHERE c.collection_id = $1 AND c.deleted_seq IS NULL
           AND NOT EXISTS (SELECT 1 FROM ${this.table} v WHERE v.label = c.label) ORDER BY c.label`,
        [this.key.collectionId],
      );
      const [n] = await q(`SELECT count(*)::bigint AS n FROM ${this.table}`);
      await q(`UPDATE ${CATALOG} SET count = $1 WHERE table_name = $2`, [Number(n?.n ?? 0), this.table]);
      this.live = Number(n?.n ?? 0);
      return missing.map((r) => Number(r.label));
    });
  }
}

/**
 * The pgvector index backend. `create` makes an empty table (replacing one stored under the key), `open`
 * attaches to the stored one, `drop` drops the table, `close` only lets go of the handles.
 */
export class PgVectorIndexes implements IndexBackend {
  readonly kind = 'pgvector' as const;
  readonly persistent = true;
  private readonly handles = new Map<string, PgVectorIndex>();
  private closed = false;

  private constructor(
    readonly sql: SqlClient,
    /** pgvector ≥ 0.8: hnsw.iterative_scan exists. */
    readonly iterativeScan: boolean,
    readonly version: string,
  ) {}

  /** Needs the extension and the catalog in place (the store's pgvector migration). */
  static async open(sql: SqlClient): Promise<PgVectorIndexes> {
    const [row] = await sql.query(`SELECT extversion FROM pg_extension WHERE extname = 'vector'`);
    if (!row) throw new IndexStateError('the pgvector extension is not installed in this database');
    const version = String(row.extversion);
    const [major = 0, minor = 0] = version.split('.').map(Number);
    return new PgVectorIndexes(sql, major > 0 || minor >= 8, version);
  }

  private check(): void {
    if (this.closed) throw new IndexClosedError('index backend closed');
  }

  private validate(dim: number, params: HnswParams): void {
    if (!Number.isInteger(dim) || dim <= 0) throw new RangeError(`dimension ${dim} is not a positive integer`);
    // pgvector indexes at most 2000 dimensions for `vector`; m 2..100, ef_construction 4..1000 and ≥ 2·m.
    if (dim > 2000) throw new RangeError(`dimension ${dim}: pgvector's HNSW indexes vectors of at most 2000 dimensions`);
    if (!Number.isInteger(params.M) || params.M < 2 || params.M > 100) throw new RangeError(`M ${params.M}: pgvector accepts 2..100`);
    if (!Number.isInteger(params.efConstruction) || params.efConstruction < 4 || params.efConstruction > 1000) {
      throw new RangeError(`efConstruction ${params.efConstruction}: pgvector accepts 4..1000`);
    }
  }

  async create(key: IndexKey, dim: number, params: HnswParams): Promise<VectorIndex> {
    this.check();
    this.validate(dim, params);
    const id = keyId(key);
    if (this.handles.has(id)) throw new IndexStateError(`index ${id} already exists; drop it first`);
    const table = vectorTableName(key);
    // ef_construction must be at least 2·m in pgvector.
    const efc = Math.max(params.efConstruction, 2 * params.M);
    await this.sql.transaction(async (q) => {
      await q(`DROP TABLE IF EXISTS ${table}`);
      await q(`DELETE FROM ${CATALOG} WHERE table_name = $1`, [table]);
      // The HNSW index comes with seal(), after the bulk load.
      await q(`CREATE TABLE ${table} (label bigint PRIMARY KEY, embedding vector(${dim}) NOT NULL)`);
      await q(
        `INSERT INTO ${CATALOG} (table_name, collection_id, model_version, dim, m, ef_construction, count) VALUES ($1, $2, $3, $4, $5, $6, 0)`,
        [table, key.collectionId, key.modelVersion, dim, params.M, efc],
      );
    });
    const idx = new PgVectorIndex({ ...key }, dim, { ...params }, table, 0, this);
    this.handles.set(id, idx);
    return idx;
  }

  /** The table stored under `key`, or undefined when there is none or it was made for another dimension. */
  async open(key: IndexKey, dim: number, params: HnswParams): Promise<VectorIndex | undefined> {
    this.check();
    const id = keyId(key);
    const have = this.handles.get(id);
    if (have) return have;
    const table = vectorTableName(key);
    const [row] = await this.sql.query(`SELECT c.dim, c.count FROM ${CATALOG} c WHERE c.table_name = $1 AND to_regclass($1) IS NOT NULL`, [
      table,
    ]);
    if (!row || Number(row.dim) !== dim) return undefined;
    // A build that stopped before its seal() has no graph yet.
    await this.ensureHnsw(table, params);
    const idx = new PgVectorIndex({ ...key }, dim, { ...params }, table, Number(row.count), this);
    this.handles.set(id, idx);
    return idx;
  }

  async ensureHnsw(table: string, params: HnswParams): Promise<void> {
    const [row] = await this.sql.query(`SELECT m, ef_construction FROM ${CATALOG} WHERE table_name = $1`, [table]);
    const m = Number(row?.m ?? params.M);
    const efc = Number(row?.ef_construction ?? Math.max(params.efConstruction, 2 * params.M));
    const [have] = await this.sql.query(`SELECT to_regclass($1) IS NOT NULL AS present`, [`${table}_hnsw`]);
    if (have?.present === true) return;
    const [size] = await this.sql.query(`SELECT count(*)::bigint AS n, max(vector_dims(embedding)) AS dim FROM ${table}`);
    // pgvector builds fast while the graph fits maintenance_work_mem and falls back to inserting row by row (many
    // times slower) once it does not: give the build room for the graph (vector + neighbour lists per row, with
    // slack), never less than the server's setting and at most MAX_BUILD_MEMORY_MB.
    const rows = Number(size?.n ?? 0);
    const perRow = Number(size?.dim ?? 0) * 4 + 2 * m * 12 + 128;
    const wantMb = Math.min(MAX_BUILD_MEMORY_MB, Math.ceil((rows * perRow * 1.5) / 2 ** 20));
    await this.sql.transaction(async (q) => {
      const [cur] = await q(`SELECT setting::bigint * 1024 AS bytes FROM pg_settings WHERE name = 'maintenance_work_mem'`);
      if (wantMb * 2 ** 20 > Number(cur?.bytes ?? 0)) await q(`SELECT set_config('maintenance_work_mem', $1, true)`, [`${wantMb}MB`]);
      await q(
        `CREATE INDEX IF NOT EXISTS ${table}_hnsw ON ${table} USING hnsw (embedding vector_cosine_ops) WITH (m = ${m}, ef_construction = ${efc})`,
      );
    });
  }

  load(): Promise<VectorIndex> {
    return Promise.reject(new IndexStateError('the pgvector backend keeps its indexes in the database and loads no snapshot files'));
  }

  /**
   * Makes `idx` (built under another key, e.g. a rebuild next to the serving index) the index of `key`, in one
   * transaction: the table under `key` is replaced, searches see the old table or the new one, never neither.
   */
  async rename(idx: VectorIndex, key: IndexKey): Promise<VectorIndex> {
    this.check();
    const from = this.handles.get(keyId(idx.key));
    if (!from || from !== idx) throw new IndexStateError(`index ${keyId(idx.key)} is not open in this backend`);
    const table = vectorTableName(key);
    await this.sql.transaction(async (q) => {
      await q(`DROP TABLE IF EXISTS ${table}`);
      await q(`DELETE FROM ${CATALOG} WHERE table_name = $1`, [table]);
      await q(`ALTER TABLE ${from.table} RENAME TO ${table}`);
      await q(`ALTER INDEX IF EXISTS ${from.table}_hnsw RENAME TO ${table}_hnsw`);
      await q(`UPDATE ${CATALOG} SET table_name = $1, collection_id = $2, model_version = $3 WHERE table_name = $4`, [
        table,
        key.collectionId,
        key.modelVersion,
        from.table,
      ]);
    });
    this.handles.delete(keyId(idx.key));
    from.markDropped(new IndexStateError(`index ${keyId(idx.key)} became ${keyId(key)}`));
    this.handles.get(keyId(key))?.markDropped(new IndexStateError(`index ${keyId(key)} was replaced`));
    const moved = new PgVectorIndex({ ...key }, idx.dim, from.params, table, idx.count(), this);
    this.handles.set(keyId(key), moved);
    return moved;
  }

  get(key: IndexKey): VectorIndex | undefined {
    return this.handles.get(keyId(key));
  }

  keys(): IndexKey[] {
    return [...this.handles.values()].map((i) => ({ ...i.key }));
  }

  /** Drops the table (and its vectors) of `key`, opened here or not. */
  async drop(key: IndexKey): Promise<void> {
    this.check();
    const id = keyId(key);
    this.handles.get(id)?.markDropped(new IndexStateError(`index ${id} was dropped`));
    this.handles.delete(id);
    const table = vectorTableName(key);
    await this.sql.transaction(async (q) => {
      await q(`DROP TABLE IF EXISTS ${table}`);
      await q(`DELETE FROM ${CATALOG} WHERE table_name = $1`, [table]);
    });
  }

  async ready(): Promise<void> {}

  /** Lets go of the handles; the tables stay for the next start and for the other replicas. */
  async close(): Promise<void> {
    this.closed = true;
    for (const idx of this.handles.values()) idx.markDropped(new IndexClosedError('index backend closed'));
    this.handles.clear();
  }
}
