// Errors the stores raise that callers map to answers or to one-line start-up failures.

/** The database cannot be opened: a wrong DATABASE_URL or an unreachable server. main.ts prints one line. */
export class StoreOpenError extends Error {
  override name = 'StoreOpenError';
}

/** A write names a collection that no longer exists (its per-collection tables are gone). */
export class CollectionGoneError extends Error {
  override name = 'CollectionGoneError';
}

/**
 * True when a write failed because its collection is gone: a foreign-key violation from any dialect
 * (better-sqlite3 `SQLITE_CONSTRAINT_FOREIGNKEY`, node-postgres and PGlite SQLSTATE 23503, also when drizzle
 * wraps the driver error in `cause`), or a CollectionGoneError, the same race seen before the row insert.
 */
export function isCollectionGone(err: unknown): boolean {
  for (let e: unknown = err, i = 0; e && typeof e === 'object' && i < 5; e = (e as { cause?: unknown }).cause, i++) {
    const code = (e as { code?: unknown }).code;
    if (code === 'SQLITE_CONSTRAINT_FOREIGNKEY' || code === '23503' || e instanceof CollectionGoneError) return true;
  }
  return false;
}
