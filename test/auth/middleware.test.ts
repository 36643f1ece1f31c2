// The middleware on a small hono app with the server's error mapping, over a real SQLite store.
// (test/auth/server.test.ts covers the same policy on the real server.)
import { Hono } from 'hono';
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/auth/keys.js';
import { AppError, errorBody } from '../../src/errors.js';
import type { AppEnv } from '../../src/http/app.js';
import { apiKeyAuth, defaultRoleFor, requireRole } from '../../src/http/auth.js';
import { openStore } from '../../src/store/index.js';
import type { Store } from '../../src/store/types.js';
import type { Logger } from '../../src/util/log.js';
import { tempDir } from '../helpers.js';

function memLogger() {
  const lines: { level: string; msg: string }[] = [];
  const at = (level: string) => (msg: string) => {
    lines.push({ level, msg });
  };
  const logger: Logger = { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
  return { logger, lines };
}

function appWith(auth: ReturnType<typeof apiKeyAuth>) {
  const app = new Hono<AppEnv>();
  app.get('/healthz', (c) => c.json({ ok: true }));
  app.use('*', auth);
  app.get('/collections', (c) => c.json({ role: c.get('role') }));
  app.post('/search', (c) => c.json({ ok: true }));
  app.post('/v1/embeddings', (c) => c.json({ ok: true }));
  app.post('/feedback', (c) => c.json({ ok: true }));
  app.post('/collections', (c) => c.json({ ok: true }, 201));
  app.delete('/collections/:name', (c) => c.json({ ok: true }));
  app.post('/models/:v/rollback', (c) => c.json({ ok: true }));
  app.get('/secret', requireRole('admin'), (c) => c.json({ ok: true }));
  app.onError((err, c) => {
    if (err instanceof AppError) {
      for (const [k, v] of Object.entries(err.headers ?? {})) c.header(k, v);
      return c.json(errorBody(err.code, err.message), err.status as 401);
    }
    return c.json(errorBody('internal', String(err)), 500);
  });
  return app;
}

describe('apiKeyAuth', () => {
  let store: Store;
  let dir: string;
  let adminKey: string;
  let readKey: string;
  beforeAll(async () => {
    dir = tempDir('auth-mw-');
    store = await openStore({ dataDir: dir });
    adminKey = (await createApiKey(store, { role: 'admin' })).key;
    readKey = (await createApiKey(store, { role: 'read' })).key;
  });
  afterAll(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const call = async (app: Hono<AppEnv>, method: string, path: string, headers: Record<string, string> = {}) => {
    const res = await app.request(path, { method, headers });
    const body = (await res.json()) as { error?: { code: string; message: string } };
    return { status: res.status, code: body.error?.code, headers: res.headers };
  };

  it('maps routes to roles: GET and read POSTs are read, everything else admin', () => {
    expect(defaultRoleFor('GET', '/collections/x')).toBe('read');
    expect(defaultRoleFor('POST', '/search')).toBe('read');
    expect(defaultRoleFor('POST', '/search/')).toBe('read');
    expect(defaultRoleFor('POST', '/v1/embeddings')).toBe('read');
    expect(defaultRoleFor('POST', '/feedback')).toBe('read');
    expect(defaultRoleFor('POST', '/collections')).toBe('admin');
    expect(defaultRoleFor('POST', '/collections/c/retrain')).toBe('admin');
    expect(defaultRoleFor('DELETE', '/collections/c')).toBe('admin');
    expect(defaultRoleFor('post', '/models/v1/rollback')).toBe('admin');
  });

  it('AUTH=on: 401 without or with a bad key, 403 for a read key on a write, 200 otherwise', async () => {
    const { logger } = memLogger();
    const app = appWith(apiKeyAuth({ store, mode: 'on', logger }));
    const bearer = (k: string) => ({ authorization: `Bearer ${k}` });

    expect((await call(app, 'GET', '/healthz')).status).toBe(200);
    const none = await call(app, 'GET', '/collections');
    expect([none.status, none.code]).toEqual([401, 'unauthorized']);
    expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect((await call(app, 'GET', '/collections', bearer('rk_' + 'x'.repeat(43)))).code).toBe('unauthorized');
    expect((await call(app, 'GET', '/collections', { authorization: 'Basic dXNlcjpwYXNz' })).code).toBe('unauthorized');
    expect((await call(app, 'GET', '/collections', { authorization: `Bearer ${readKey} extra` })).code).toBe('unauthorized');

    for (const [m, p] of [
      ['GET', '/collections'],
      ['POST', '/search'],
      ['POST', '/v1/embeddings'],
      ['POST', '/feedback'],
    ] as const) {
      expect((await call(app, m, p, bearer(readKey))).status, `${m} ${p}`).toBe(200);
      expect((await call(app, m, p, { 'x-api-key': readKey })).status, `${m} ${p} x-api-key`).toBe(200);
    }
    for (const [m, p] of [
      ['POST', '/collections'],
      ['DELETE', '/collections/c'],
      ['POST', '/models/v1/rollback'],
      ['GET', '/secret'],
    ] as const) {
      const r = await call(app, m, p, bearer(readKey));
      expect([r.status, r.code], `${m} ${p}`).toEqual([403, 'forbidden']);
      expect((await call(app, m, p, bearer(adminKey))).status, `${m} ${p} admin`).toBeLessThan(300);
    }
    const res = await app.request('/collections', { headers: { authorization: `bearer ${adminKey}` } });
    expect(await res.json()).toEqual({ role: 'admin' });
  });

  it('the bootstrap admin key works alongside stored keys', async () => {
    const { logger } = memLogger();
    const app = appWith(apiKeyAuth({ store, mode: 'on', logger, bootstrapAdminKey: 'let-me-in-please' }));
    expect((await call(app, 'POST', '/collections', { authorization: 'Bearer let-me-in-please' })).status).toBe(201);
    expect((await call(app, 'POST', '/collections', { authorization: 'Bearer let-me-in-pleasE' })).status).toBe(401);
    expect((await call(app, 'POST', '/collections', { authorization: `Bearer ${adminKey}` })).status).toBe(201);
  });

  it('AUTH=off: everything is allowed as admin and a warning is logged once', async () => {
    const { logger, lines } = memLogger();
    const app = appWith(apiKeyAuth({ store, mode: 'off', logger }));
    expect((await call(app, 'POST', '/collections')).status).toBe(201);
    expect((await call(app, 'DELETE', '/collections/c')).status).toBe(200);
    expect((await call(app, 'GET', '/secret')).status).toBe(200);
    expect(lines.filter((l) => l.level === 'warn' && /AUTH=off/.test(l.msg))).toHaveLength(1);
  });

  it('AUTH=on with no keys and no bootstrap key logs an error at start', async () => {
    const emptyDir = tempDir('auth-empty-');
    const empty = await openStore({ dataDir: emptyDir });
    const { logger, lines } = memLogger();
    apiKeyAuth({ store: empty, mode: 'on', logger });
    await new Promise((r) => setTimeout(r, 20));
    expect(lines.some((l) => l.level === 'error' && /no API keys exist/.test(l.msg))).toBe(true);
    await empty.close();
    rmSync(emptyDir, { recursive: true, force: true });
  });
});
