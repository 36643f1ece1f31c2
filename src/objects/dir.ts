import { createReadStream, createWriteStream } from 'node:fs';
import { access, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { randomBytes } from 'node:crypto';
import { ObjectStoreError, type ObjectStore } from './types.js';

/** A directory as an object store: for a volume every replica mounts (NFS, EFS, a hostPath in tests). */
export class DirObjectStore implements ObjectStore {
  readonly location: string;

  constructor(private readonly root: string) {
    this.location = `file://${root}`;
  }

  private path(key: string): string {
    if (key.split('/').some((p) => p === '..' || p === '')) throw new ObjectStoreError(`bad object key "${key}"`);
    return join(this.root, ...key.split('/'));
  }

  async check(): Promise<void> {
    try {
      await mkdir(this.root, { recursive: true });
      await access(this.root);
      const probe = join(this.root, `.probe-${randomBytes(4).toString('hex')}`);
      await writeFile(probe, '');
      await rm(probe, { force: true });
    } catch (err) {
      throw new ObjectStoreError(`object store ${this.location} is not a writable directory: ${(err as Error).message}`, { cause: err });
    }
  }

  private async atomicWrite(key: string, write: (tmp: string) => Promise<void>): Promise<void> {
    const dest = this.path(key);
    await mkdir(dirname(dest), { recursive: true });
    const tmp = `${dest}.tmp-${randomBytes(4).toString('hex')}`;
    try {
      await write(tmp);
      await rename(tmp, dest);
    } catch (err) {
      await rm(tmp, { force: true });
      throw new ObjectStoreError(`cannot write ${key} to ${this.location}: ${(err as Error).message}`, { cause: err });
    }
  }

  putFile(key: string, path: string): Promise<void> {
    return this.atomicWrite(key, (tmp) => pipeline(createReadStream(path), createWriteStream(tmp)));
  }

  putBytes(key: string, data: Uint8Array | string): Promise<void> {
    return this.atomicWrite(key, (tmp) => writeFile(tmp, data));
  }

  async getFile(key: string, path: string): Promise<boolean> {
    const src = this.path(key);
    const tmp = `${path}.dl-${randomBytes(4).toString('hex')}`;
    try {
      await mkdir(dirname(path), { recursive: true });
      await pipeline(createReadStream(src), createWriteStream(tmp));
      await rename(tmp, path);
      return true;
    } catch (err) {
      await rm(tmp, { force: true });
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw new ObjectStoreError(`cannot read ${key} from ${this.location}: ${(err as Error).message}`, { cause: err });
    }
  }

  async getBytes(key: string): Promise<Buffer | undefined> {
    try {
      return await readFile(this.path(key));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new ObjectStoreError(`cannot read ${key} from ${this.location}: ${(err as Error).message}`, { cause: err });
    }
  }

  async list(prefix: string): Promise<string[]> {
    const base = this.path(prefix.replace(/\/+$/, '') || '.');
    try {
      const entries = await readdir(base, { recursive: true, withFileTypes: true });
      return entries
        .filter((e) => e.isFile() && !/\.tmp-[0-9a-f]{8}$/.test(e.name))
        .map((e) => relative(this.root, join(e.parentPath, e.name)).split(sep).join('/'))
        .sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw new ObjectStoreError(`cannot list ${prefix} in ${this.location}: ${(err as Error).message}`, { cause: err });
    }
  }

  async delete(keys: string[]): Promise<void> {
    for (const k of keys) await rm(this.path(k), { force: true });
  }
}
