import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DirObjectStore } from './dir.js';
import { S3ObjectStore } from './s3.js';
import { ObjectStoreError, type ObjectStore } from './types.js';

export { ObjectStoreError, type ObjectStore } from './types.js';
export { RemoteArtifacts } from './remote.js';

export interface ObjectStoreConfig {
  OBJECT_STORE_URL?: string;
  S3_ENDPOINT?: string;
  S3_REGION: string;
  S3_FORCE_PATH_STYLE?: boolean;
}

/**
 * OBJECT_STORE_URL picks the backend: `s3://bucket[/prefix]` (AWS or, with S3_ENDPOINT, any
 * S3-compatible service) or `file:///dir` (a directory every replica mounts). Unset: none — snapshots
 * and models stay in DATA_DIR only.
 */
export async function openObjectStore(cfg: ObjectStoreConfig): Promise<ObjectStore | undefined> {
  const raw = cfg.OBJECT_STORE_URL;
  if (!raw) return undefined;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ObjectStoreError(`OBJECT_STORE_URL "${raw}" is not a URL; use s3://bucket/prefix or file:///path`);
  }
  if (url.protocol === 's3:') {
    const bucket = url.hostname;
    if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket))
      throw new ObjectStoreError(`OBJECT_STORE_URL: "${bucket}" is not a valid S3 bucket name`);
    if (url.username || url.password)
      throw new ObjectStoreError('OBJECT_STORE_URL must not hold credentials; use AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY');
    return S3ObjectStore.create({
      bucket,
      prefix: decodeURIComponent(url.pathname).replace(/^\/+|\/+$/g, ''),
      endpoint: cfg.S3_ENDPOINT,
      region: cfg.S3_REGION,
      // Path-style is what S3-compatible services expect; AWS itself prefers virtual-hosted style.
      forcePathStyle: cfg.S3_FORCE_PATH_STYLE ?? cfg.S3_ENDPOINT !== undefined,
    });
  }
  if (url.protocol === 'file:') return new DirObjectStore(resolve(fileURLToPath(url)));
  throw new ObjectStoreError(`OBJECT_STORE_URL scheme "${url.protocol}" is not supported; use s3:// or file://`);
}
