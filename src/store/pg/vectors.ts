// The pgvector migration, applied when INDEX_BACKEND=pgvector: the extension and the catalog of vector
// tables (src/index/pgvector.ts makes one table per collection and model version and records it here).
import { StoreOpenError } from '../errors.js';

type Exec = (text: string) => Promise<Record<string, unknown>[]>;

const CATALOG_DDL = `CREATE TABLE IF NOT EXISTS vector_indexes (
  table_name text PRIMARY KEY,
  collection_id integer NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
  model_version text NOT NULL,
  dim integer NOT NULL,
  m integer NOT NULL,
  ef_construction integer NOT NULL,
  count bigint NOT NULL DEFAULT 0,
  created_at bigint NOT NULL DEFAULT ((extract(epoch from clock_timestamp()) * 1000)::bigint)
)`;

/**
 * Creates the extension when it is missing and the role may, and the catalog. A server without pgvector, or a
 * role that may not create it, is one line saying what to do.
 */
export async function migrateVectors(exec: Exec): Promise<void> {
  const [installed] = await exec(`SELECT extversion FROM pg_extension WHERE extname = 'vector'`);
  if (!installed) {
    const [available] = await exec(`SELECT default_version FROM pg_available_extensions WHERE name = 'vector'`);
    if (!available) {
      throw new StoreOpenError(
        'INDEX_BACKEND=pgvector: this Postgres server has no pgvector extension; install it (e.g. the pgvector/pgvector image, or the postgresql-NN-pgvector package) or use INDEX_BACKEND=hnswlib',
      );
    }
    try {
      await exec('CREATE EXTENSION IF NOT EXISTS vector');
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      const why = code === '42501' ? 'this role may not create it' : err instanceof Error ? err.message : String(err);
      throw new StoreOpenError(
        `INDEX_BACKEND=pgvector: the pgvector extension is available but not created (${why}); run CREATE EXTENSION vector once as the database owner or a superuser`,
        { cause: err },
      );
    }
  }
  await exec(CATALOG_DDL);
}
