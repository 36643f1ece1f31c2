import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { tempDir } from '../helpers.js';

export interface TestS3 {
  endpoint: string;
  bucket: string;
  close(): Promise<void>;
}

/**
 * A real S3-protocol server (s3rver: HTTP, SigV4, XML — the wire protocol of AWS and MinIO) in its own
 * process on a random port, with one bucket. The AWS SDK reads credentials from the environment;
 * s3rver's fixed pair is set here.
 */
export async function startS3(bucket = 'retrieval-test'): Promise<TestS3> {
  process.env.AWS_ACCESS_KEY_ID = 'S3RVER';
  process.env.AWS_SECRET_ACCESS_KEY = 'S3RVER';
  const dir = tempDir('s3rver-');
  const child = spawn(process.execPath, ['--openssl-legacy-provider', join(import.meta.dirname, 's3rver-main.mjs'), dir, bucket], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`s3rver exited with ${code}`)));
    createInterface({ input: child.stdout! }).once('line', (l) => resolve((JSON.parse(l) as { port: number }).port));
  });
  return {
    endpoint: `http://127.0.0.1:${port}`,
    bucket,
    async close() {
      child.removeAllListeners('exit');
      await new Promise<void>((r) => {
        child.once('exit', () => r());
        child.kill('SIGTERM');
      });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
