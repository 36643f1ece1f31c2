import { mkdtempSync, rmSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { startServer, type Server, type StartOptions } from '../src/server.js';
import type { Config } from '../src/config.js';

export const REPO = resolve(import.meta.dirname, '..');
export const TINY_MODEL = join(REPO, 'test/fixtures/models/tiny');

export function tempDir(prefix = 'rs-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** A TCP port free on 127.0.0.1 right now, for a server started in a child process. */
export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer()
      .listen(0, '127.0.0.1', () => {
        const { port } = srv.address() as AddressInfo;
        srv.close(() => res(port));
      })
      .on('error', rej);
  });
}

export interface TestServer extends Server {
  dataDir: string;
  /** JSON request through app.request() (no socket). */
  req(
    method: string,
    path: string,
    body?: unknown,
    headers?: Record<string, string>,
  ): Promise<{ status: number; body: any; headers: Headers }>;
  dispose(): Promise<void>;
}

export async function startTestServer(config: Partial<Config> = {}, opts: Omit<StartOptions, 'config' | 'env'> = {}): Promise<TestServer> {
  const dataDir = (config.DATA_DIR as string | undefined) ?? tempDir();
  const server = await startServer({
    env: {},
    listen: opts.listen ?? false,
    loop: opts.loop,
    extend: opts.extend,
    config: {
      DATA_DIR: dataDir,
      MODEL_DIR: TINY_MODEL,
      LOG_LEVEL: 'silent',
      PORT: 0,
      HOST: '127.0.0.1',
      AUTH: 'off',
      EMBED_WORKERS: 1,
      INDEX_WORKERS: 1,
      SNAPSHOT_EVERY_SECONDS: 3600,
      DRIFT_INTERVAL_SECONDS: 0,
      ...config,
    },
  });
  const req: TestServer['req'] = async (method, path, body, headers = {}) => {
    const init: RequestInit = { method, headers: { 'content-type': 'application/json', ...headers } };
    if (body !== undefined) init.body = typeof body === 'string' ? body : JSON.stringify(body);
    const res = await server.app.request(path, init);
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      /* metrics and other text bodies */
    }
    return { status: res.status, body: parsed, headers: res.headers };
  };
  return {
    ...server,
    dataDir,
    req,
    async dispose() {
      await server.close();
      if (!config.DATA_DIR) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * A fresh database on the Postgres server of TEST_DATABASE_URL (CI starts one), so test files running
 * in parallel never share tables. The role may CREATEDB (test/store/start-postgres.sh).
 */
export async function freshPostgres(prefix: string): Promise<{ url: string; drop: () => Promise<void> }> {
  const base = process.env.TEST_DATABASE_URL;
  if (!base) throw new Error('TEST_DATABASE_URL is not set');
  const { default: pg } = await import('pg');
  const db = `${prefix}_${process.pid}_${Date.now()}_${Math.floor(Math.random() * 1e6)}`;
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${db}`);
  await admin.end();
  const url = new URL(base);
  url.pathname = `/${db}`;
  return {
    url: url.toString(),
    async drop() {
      const c = new pg.Client({ connectionString: base });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
      await c.end();
    },
  };
}
