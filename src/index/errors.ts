// Errors the index room throws. The server maps them: a snapshot error means "rebuild from the DB",
// a lost index means "the worker died; load or rebuild it again", a closed manager means shutdown.

/** A snapshot file is missing, truncated, corrupt or of another dimension. Rebuild from the database. */
export class IndexSnapshotError extends Error {
  override readonly name = 'IndexSnapshotError';
}

/** The worker thread hosting this index exited; its in-memory index is gone and must be reloaded. */
export class IndexLostError extends Error {
  override readonly name = 'IndexLostError';
}

/** The key is already hosted (create/load) or not hosted (operations after drop). */
export class IndexStateError extends Error {
  override readonly name = 'IndexStateError';
}

/** The manager was closed. */
export class IndexClosedError extends Error {
  override readonly name = 'IndexClosedError';
}
