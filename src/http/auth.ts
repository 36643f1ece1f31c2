import type { Context, MiddlewareHandler } from 'hono';
import { hashApiKey, verifyApiKey, type Role, type VerifiedKey } from '../auth/keys.js';
import { AppError } from '../errors.js';
import type { KeyStore } from '../store/types.js';
import type { Logger } from '../util/log.js';
import type { AppEnv } from './app.js';

export interface ApiKeyAuthOptions {
  store: KeyStore;
  mode: 'on' | 'off';
  /** ADMIN_API_KEY: lets an operator in before any key exists (and create keys with it). */
  bootstrapAdminKey?: string;
  logger: Logger;
  /** How long a verified key is remembered, so a search does not cost a key lookup. */
  cacheTtlMs?: number;
}

const RANK: Record<Role, number> = { read: 1, admin: 2 };

// POSTs that only read: searching, embedding and recording a click do not change the corpus,
// the model or the jobs, so a read key (the one a RAG app ships with) may call them.
const READ_POSTS = new Set(['/search', '/v1/embeddings', '/feedback']);

/** The role a request needs when no route attached requireRole(): GET/HEAD and read POSTs → read. */
export function defaultRoleFor(method: string, path: string): Role {
  const m = method.toUpperCase();
  if (m === 'GET' || m === 'HEAD' || m === 'OPTIONS') return 'read';
  if (m === 'POST' && READ_POSTS.has(path.replace(/\/+$/, '') || '/')) return 'read';
  return 'admin';
}

function presentedKey(c: Context): string | undefined {
  const h = c.req.header('authorization');
  if (h) {
    const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(h);
    if (!m) throw new AppError('unauthorized', 'Authorization header must be "Bearer <key>"', undefined, { 'WWW-Authenticate': 'Bearer' });
    return m[1];
  }
  return c.req.header('x-api-key')?.trim() || undefined;
}

function enforce(have: Role | undefined, need: Role): void {
  if (have === undefined)
    throw new AppError('unauthorized', 'send an API key: Authorization: Bearer <key>', undefined, { 'WWW-Authenticate': 'Bearer' });
  if (RANK[have] < RANK[need]) throw new AppError('forbidden', `this API key has role "${have}"; "${need}" is required`);
}

/**
 * Authenticates every request (mount it after health checks) and applies the default role policy.
 * Routes that need something else attach requireRole() explicitly.
 */
export function apiKeyAuth(opts: ApiKeyAuthOptions): MiddlewareHandler<AppEnv> {
  const { store, mode, bootstrapAdminKey, logger } = opts;
  if (mode === 'off') {
    logger.warn('AUTH=off: every request is treated as admin; set AUTH=on and create API keys before exposing this server');
    return async (c, next) => {
      c.set('role', 'admin');
      await next();
    };
  }
  // A server with auth on and no way in would answer 401 to everyone; say so at start, not per request.
  void store.countApiKeys().then(
    (n) => {
      if (n === 0 && !bootstrapAdminKey) {
        logger.error(
          'AUTH=on but no API keys exist and ADMIN_API_KEY is unset: every request will get 401. Create a key with `retrieval keys create --role admin` or set ADMIN_API_KEY',
        );
      }
    },
    (err: unknown) => logger.error('could not count API keys', { err: err instanceof Error ? err.message : String(err) }),
  );

  const ttl = opts.cacheTtlMs ?? 30_000;
  // A bounded map with a TTL, insertion-order eviction and successes only: lru-cache would add recency
  // ordering, which a cache of ≤ 1024 live keys refreshed every 30 s does not need.
  const cache = new Map<string, { v: VerifiedKey; until: number }>();
  const MAX_CACHE = 1024;

  const verify = async (key: string): Promise<VerifiedKey | undefined> => {
    const now = Date.now();
    // Keyed by hash so raw secrets are not kept around in a long-lived map.
    const id = hashApiKey(key);
    const hit = cache.get(id);
    if (hit && hit.until > now) return hit.v;
    const v = await verifyApiKey(store, key, bootstrapAdminKey);
    // Only successes are cached: a flood of bad keys must not evict good ones.
    if (v) {
      if (cache.size >= MAX_CACHE) cache.delete(cache.keys().next().value as string);
      cache.set(id, { v, until: now + ttl });
    }
    return v;
  };

  return async (c, next) => {
    const key = presentedKey(c);
    if (!key) enforce(undefined, 'read');
    const v = await verify(key!);
    if (!v)
      throw new AppError('unauthorized', 'the API key is not valid', undefined, { 'WWW-Authenticate': 'Bearer error="invalid_token"' });
    c.set('role', v.role);
    enforce(v.role, defaultRoleFor(c.req.method, c.req.path));
    await next();
  };
}

/**
 * Per-route guard for routes that need more than defaultRoleFor grants (e.g. a GET that reveals
 * secrets). It can only raise the bar: apiKeyAuth has already enforced the default by then.
 */
export function requireRole(role: Role): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    enforce(c.get('role'), role);
    await next();
  };
}
