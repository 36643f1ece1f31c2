import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { dirname } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { S3Client } from '@aws-sdk/client-s3';
import { ObjectStoreError, joinKey, type ObjectStore } from './types.js';

export interface S3Options {
  bucket: string;
  prefix: string;
  /** For S3-compatible services (MinIO, Ceph RGW, R2, …); unset = AWS. */
  endpoint?: string;
  region: string;
  forcePathStyle: boolean;
  /** Keys per ListObjectsV2 page (S3's maximum is 1000). */
  pageSize?: number;
}

type Sdk = typeof import('@aws-sdk/client-s3');

/**
 * S3 through the official AWS SDK. Credentials come from the SDK's default chain (AWS_ACCESS_KEY_ID /
 * AWS_SECRET_ACCESS_KEY, AWS_PROFILE, web identity, instance roles), never from our own config.
 */
export class S3ObjectStore implements ObjectStore {
  readonly location: string;

  private constructor(
    private readonly sdk: Sdk,
    private readonly client: S3Client,
    private readonly opts: S3Options,
  ) {
    this.location = `s3://${opts.bucket}${opts.prefix ? `/${opts.prefix}` : ''}${opts.endpoint ? ` at ${opts.endpoint}` : ''}`;
  }

  static async create(opts: S3Options): Promise<S3ObjectStore> {
    // Imported lazily: the SDK is large and only deployments that use S3 should pay for loading it.
    const sdk = await import('@aws-sdk/client-s3');
    const client = new sdk.S3Client({
      region: opts.region,
      endpoint: opts.endpoint,
      forcePathStyle: opts.forcePathStyle,
      // Flexible checksums (aws-chunked uploads with trailers) are AWS-only; many S3-compatible services
      // reject them, so only send checksums where an operation requires one.
      ...(opts.endpoint
        ? { requestChecksumCalculation: 'WHEN_REQUIRED' as const, responseChecksumValidation: 'WHEN_REQUIRED' as const }
        : {}),
    });
    return new S3ObjectStore(sdk, client, opts);
  }

  private key(k: string): string {
    return joinKey(this.opts.prefix, k);
  }

  private fail(what: string, err: unknown): ObjectStoreError {
    const e = err as { name?: string; message?: string; $metadata?: { httpStatusCode?: number } };
    const status = e.$metadata?.httpStatusCode ? ` (HTTP ${e.$metadata.httpStatusCode})` : '';
    return new ObjectStoreError(`${what} on ${this.location} failed: ${e.name ?? 'Error'}: ${e.message ?? String(err)}${status}`, {
      cause: err,
    });
  }

  private static isMissing(err: unknown): boolean {
    const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
    return e.name === 'NoSuchKey' || e.name === 'NotFound' || e.$metadata?.httpStatusCode === 404;
  }

  async check(): Promise<void> {
    try {
      await this.client.send(new this.sdk.ListObjectsV2Command({ Bucket: this.opts.bucket, Prefix: this.key(''), MaxKeys: 1 }));
    } catch (err) {
      throw this.fail('listing the bucket', err);
    }
  }

  async putFile(key: string, path: string): Promise<void> {
    try {
      const { size } = await stat(path);
      await this.client.send(
        new this.sdk.PutObjectCommand({
          Bucket: this.opts.bucket,
          Key: this.key(key),
          Body: createReadStream(path),
          ContentLength: size,
        }),
      );
    } catch (err) {
      throw this.fail(`uploading ${key}`, err);
    }
  }

  async putBytes(key: string, data: Uint8Array | string): Promise<void> {
    try {
      await this.client.send(new this.sdk.PutObjectCommand({ Bucket: this.opts.bucket, Key: this.key(key), Body: data }));
    } catch (err) {
      throw this.fail(`uploading ${key}`, err);
    }
  }

  async getFile(key: string, path: string): Promise<boolean> {
    const tmp = `${path}.dl-${randomBytes(4).toString('hex')}`;
    try {
      const res = await this.client.send(new this.sdk.GetObjectCommand({ Bucket: this.opts.bucket, Key: this.key(key) }));
      await mkdir(dirname(path), { recursive: true });
      await pipeline(res.Body as Readable, createWriteStream(tmp));
      await rename(tmp, path);
      return true;
    } catch (err) {
      await rm(tmp, { force: true });
      if (S3ObjectStore.isMissing(err)) return false;
      throw this.fail(`downloading ${key}`, err);
    }
  }

  async getBytes(key: string): Promise<Buffer | undefined> {
    try {
      const res = await this.client.send(new this.sdk.GetObjectCommand({ Bucket: this.opts.bucket, Key: this.key(key) }));
      return Buffer.from(await res.Body!.transformToByteArray());
    } catch (err) {
      if (S3ObjectStore.isMissing(err)) return undefined;
      throw this.fail(`downloading ${key}`, err);
    }
  }

  async list(prefix: string): Promise<string[]> {
    const full = this.key(prefix);
    const strip = this.opts.prefix ? this.opts.prefix.replace(/\/+$/, '').length + 1 : 0;
    const keys: string[] = [];
    let token: string | undefined;
    try {
      do {
        const res = await this.client.send(
          new this.sdk.ListObjectsV2Command({
            Bucket: this.opts.bucket,
            Prefix: full ? `${full}/` : undefined,
            ContinuationToken: token,
            MaxKeys: this.opts.pageSize,
          }),
        );
        for (const o of res.Contents ?? []) if (o.Key) keys.push(o.Key.slice(strip));
        token = res.IsTruncated ? res.NextContinuationToken : undefined;
      } while (token);
    } catch (err) {
      throw this.fail(`listing ${prefix}`, err);
    }
    return keys.sort();
  }

  async delete(keys: string[]): Promise<void> {
    // One DeleteObject per key: DeleteObjects needs Content-MD5, which several S3-compatible services
    // and the SDK's checksum modes disagree on; deletes here are a handful of old snapshots.
    for (const k of keys) {
      try {
        await this.client.send(new this.sdk.DeleteObjectCommand({ Bucket: this.opts.bucket, Key: this.key(k) }));
      } catch (err) {
        if (!S3ObjectStore.isMissing(err)) throw this.fail(`deleting ${k}`, err);
      }
    }
  }
}
