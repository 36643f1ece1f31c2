/**
 * A flat key → bytes store: the seam between the server and wherever index snapshots and model
 * artifacts are shared (S3 or an S3-compatible service, or a mounted directory).
 * Keys use "/" separators and never start with one. Every put is atomic per object: a reader sees the
 * old bytes or the new ones, never a mix (S3 PUT semantics; the directory backend renames a temp file).
 */
export interface ObjectStore {
  /** Human-readable location, e.g. "s3://bucket/prefix" (logs and errors; never holds credentials). */
  readonly location: string;
  /** Fails with ObjectStoreError when the store cannot be reached or written (checked at start). */
  check(): Promise<void>;
  putFile(key: string, path: string): Promise<void>;
  putBytes(key: string, data: Uint8Array | string): Promise<void>;
  /** Streams the object to `path` (written to a temp file, then renamed). False when the key does not exist. */
  getFile(key: string, path: string): Promise<boolean>;
  getBytes(key: string): Promise<Buffer | undefined>;
  /** Every key under `prefix` (recursively). */
  list(prefix: string): Promise<string[]>;
  delete(keys: string[]): Promise<void>;
}

export class ObjectStoreError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ObjectStoreError';
  }
}

export function joinKey(...parts: string[]): string {
  return parts
    .filter((p) => p.length > 0)
    .map((p) => p.replace(/^\/+|\/+$/g, ''))
    .filter(Boolean)
    .join('/');
}
