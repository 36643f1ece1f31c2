import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { mkdir, readdir, rename, rm } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import type { Metrics } from '../metrics.js';
import type { Logger } from '../util/log.js';
import { ObjectStoreError, type ObjectStore } from './types.js';

/** `indexes/<collection>-<version>/latest.json`: names the newest complete snapshot object. */
export interface SnapshotPointer {
  key: string;
  /** Store change sequence the snapshot includes. */
  seq: number;
  count: number;
  bytes: number;
  sha256: string;
  collectionId: number;
  /** Collection ids are per database: name and creation time tell another deployment's snapshot apart. */
  collection: { name: string; createdAt: number };
  modelVersion: string;
  publisher: string;
  publishedAt: string;
}

interface ModelManifest {
  version: string;
  files: { path: string; bytes: number; sha256: string }[];
  publishedAt: string;
}

async function sha256File(path: string): Promise<{ sha256: string; bytes: number }> {
  const h = createHash('sha256');
  let bytes = 0;
  for await (const chunk of createReadStream(path)) {
    h.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { sha256: h.digest('hex'), bytes };
}

async function walk(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)).split(sep).join('/'))
    .sort();
}

const seg = (v: string) => encodeURIComponent(v);

/**
 * Index snapshots and model artifacts shared through an object store, so a fresh replica loads an
 * index instead of re-embedding the corpus, and any replica can load a model another one trained.
 *
 * Objects are immutable and content-checked: a snapshot is uploaded under a unique key and only then
 * named by the pointer; a model's files are uploaded before its manifest. A reader that sees a pointer
 * or a manifest therefore finds complete objects, and verifies their sha256 before using them.
 */
export class RemoteArtifacts {
  /** Distinguishes this process's uploads from other replicas' with the same store sequence. */
  readonly publisher = randomBytes(4).toString('hex');

  constructor(
    readonly objects: ObjectStore,
    private readonly deps: { log: Logger; metrics?: Metrics; keepSnapshots?: number },
  ) {}

  get location(): string {
    return this.objects.location;
  }

  private count(op: string, result: 'ok' | 'error' | 'skipped' | 'missing', bytes = 0, direction?: 'upload' | 'download') {
    this.deps.metrics?.objectStoreOps.inc({ op, result });
    if (bytes > 0 && direction) this.deps.metrics?.objectStoreBytes.inc({ direction }, bytes);
  }

  private snapshotPrefix(collectionId: number, version: string): string {
    return `indexes/${collectionId}-${seg(version)}`;
  }

  async latestSnapshot(collectionId: number, version: string): Promise<SnapshotPointer | undefined> {
    const raw = await this.objects.getBytes(`${this.snapshotPrefix(collectionId, version)}/latest.json`);
    if (!raw) return undefined;
    try {
      const p = JSON.parse(raw.toString('utf8')) as SnapshotPointer;
      if (typeof p.key === 'string' && Number.isInteger(p.seq) && typeof p.sha256 === 'string' && Number.isInteger(p.bytes)) return p;
    } catch {
      /* fall through */
    }
    this.deps.log.warn('ignoring a malformed snapshot pointer', { collectionId, version, location: this.location });
    return undefined;
  }

  /**
   * Uploads the local snapshot at `path` unless the store already has one at least as new.
   * Returns the pointer it published, or undefined when it skipped.
   */
  async publishSnapshot(
    c: { id: number; name: string; createdAt: number },
    version: string,
    path: string,
    meta: { seq: number; count: number },
  ): Promise<SnapshotPointer | undefined> {
    const collectionId = c.id;
    const prefix = this.snapshotPrefix(collectionId, version);
    try {
      const current = await this.latestSnapshot(collectionId, version);
      if (current && current.seq >= meta.seq) {
        this.count('snapshot_upload', 'skipped');
        return undefined;
      }
      const { sha256, bytes } = await sha256File(path);
      const key = `${prefix}/${String(meta.seq).padStart(12, '0')}-${this.publisher}.hnsw`;
      await this.objects.putFile(key, path);
      const pointer: SnapshotPointer = {
        key,
        seq: meta.seq,
        count: meta.count,
        bytes,
        sha256,
        collectionId,
        collection: { name: c.name, createdAt: c.createdAt },
        modelVersion: version,
        publisher: this.publisher,
        publishedAt: new Date().toISOString(),
      };
      await this.objects.putBytes(`${prefix}/latest.json`, JSON.stringify(pointer));
      this.count('snapshot_upload', 'ok', bytes, 'upload');
      await this.pruneSnapshots(prefix, key).catch((err) =>
        this.deps.log.warn('old snapshot objects not pruned', { prefix, err: String(err) }),
      );
      return pointer;
    } catch (err) {
      this.count('snapshot_upload', 'error');
      throw err;
    }
  }

  /** Keeps the newest few snapshot objects (a replica may still be downloading the previous one). */
  private async pruneSnapshots(prefix: string, keep: string): Promise<void> {
    const snaps = (await this.objects.list(prefix)).filter((k) => k.endsWith('.hnsw')).sort();
    const n = this.deps.keepSnapshots ?? 2;
    const old = snaps.slice(0, Math.max(0, snaps.length - n)).filter((k) => k !== keep);
    if (old.length) await this.objects.delete(old);
  }

  /** Downloads the snapshot a pointer names to `dest`, verifying size and sha256 first. */
  async fetchSnapshot(pointer: SnapshotPointer, dest: string): Promise<boolean> {
    const tmp = `${dest}.remote-${randomBytes(4).toString('hex')}`;
    try {
      if (!(await this.objects.getFile(pointer.key, tmp))) {
        this.count('snapshot_download', 'missing');
        return false;
      }
      const got = await sha256File(tmp);
      if (got.sha256 !== pointer.sha256 || got.bytes !== pointer.bytes) {
        throw new ObjectStoreError(`snapshot ${pointer.key} from ${this.location} does not match its pointer (sha256 or size differs)`);
      }
      await rename(tmp, dest);
      this.count('snapshot_download', 'ok', got.bytes, 'download');
      return true;
    } catch (err) {
      this.count('snapshot_download', 'error');
      throw err;
    } finally {
      await rm(tmp, { force: true });
    }
  }

  async deleteSnapshots(collectionId: number, version: string): Promise<void> {
    const prefix = this.snapshotPrefix(collectionId, version);
    await this.objects.delete(await this.objects.list(prefix));
  }

  private modelPrefix(version: string): string {
    return `models/${seg(version)}`;
  }

  async hasModel(version: string): Promise<boolean> {
    return (await this.objects.getBytes(`${this.modelPrefix(version)}/manifest.json`)) !== undefined;
  }

  /** Uploads every file of a model directory, then its manifest (which makes it visible). */
  async publishModel(version: string, dir: string): Promise<{ files: number; bytes: number }> {
    const prefix = this.modelPrefix(version);
    try {
      const files: ModelManifest['files'] = [];
      for (const rel of await walk(dir)) {
        const abs = join(dir, rel);
        const { sha256, bytes } = await sha256File(abs);
        await this.objects.putFile(`${prefix}/files/${rel}`, abs);
        files.push({ path: rel, bytes, sha256 });
      }
      const manifest: ModelManifest = { version, files, publishedAt: new Date().toISOString() };
      await this.objects.putBytes(`${prefix}/manifest.json`, JSON.stringify(manifest, null, 2));
      const total = files.reduce((s, f) => s + f.bytes, 0);
      this.count('model_upload', 'ok', total, 'upload');
      return { files: files.length, bytes: total };
    } catch (err) {
      this.count('model_upload', 'error');
      throw err;
    }
  }

  /**
   * Downloads a published model into `dest` (a temp dir renamed into place, every file checked against
   * the manifest). False when the store has no such model.
   */
  async fetchModel(version: string, dest: string): Promise<boolean> {
    const prefix = this.modelPrefix(version);
    const tmp = `${dest}.dl-${randomBytes(4).toString('hex')}`;
    try {
      const raw = await this.objects.getBytes(`${prefix}/manifest.json`);
      if (!raw) {
        this.count('model_download', 'missing');
        return false;
      }
      const manifest = JSON.parse(raw.toString('utf8')) as ModelManifest;
      let total = 0;
      for (const f of manifest.files) {
        if (f.path.split('/').some((p) => p === '..' || p === ''))
          throw new ObjectStoreError(`model ${version} manifest names a bad path "${f.path}"`);
        const local = join(tmp, ...f.path.split('/'));
        if (!(await this.objects.getFile(`${prefix}/files/${f.path}`, local))) {
          throw new ObjectStoreError(`model ${version} in ${this.location} lacks ${f.path} named by its manifest`);
        }
        const got = await sha256File(local);
        if (got.sha256 !== f.sha256 || got.bytes !== f.bytes)
          throw new ObjectStoreError(`model ${version} file ${f.path} from ${this.location} does not match its manifest`);
        total += got.bytes;
      }
      await mkdir(join(dest, '..'), { recursive: true });
      if (existsSync(dest)) await rm(dest, { recursive: true, force: true });
      await rename(tmp, dest);
      this.count('model_download', 'ok', total, 'download');
      return true;
    } catch (err) {
      this.count('model_download', 'error');
      throw err;
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }
}
