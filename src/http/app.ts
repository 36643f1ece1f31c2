import { Hono, type MiddlewareHandler } from 'hono';
import { z } from 'zod';
import { bodyLimit } from 'hono/body-limit';
import { HTTPException } from 'hono/http-exception';
import { routePath } from 'hono/route';
import { AppError, ERROR_CODES, errorBody } from '../errors.js';
import type { Config } from '../config.js';
import type { Metrics } from '../metrics.js';
import type { CollectionCatalog } from '../serving/catalog.js';
import type { Collections } from '../serving/collections.js';
import type { Engine } from '../serving/engine.js';
import type { Store } from '../store/types.js';
import type { Logger } from '../util/log.js';
import { mountConsole } from '../console/index.js';
import { defineRoute, openApiDocument } from './route.js';
import { Health, Readiness, Text } from './schemas.js';
import { collectionRoutes } from './routes/collections.js';
import { searchRoutes } from './routes/search.js';

export type AppEnv = { Variables: { role?: 'read' | 'admin' } };

export interface AppOptions {
  engine: Engine;
  collections: Collections;
  catalog: CollectionCatalog;
  store: Store;
  config: Config;
  metrics: Metrics;
  log: Logger;
  /** Authentication/authorization middleware (API keys); runs before every route but health checks. */
  auth?: MiddlewareHandler<AppEnv>;
  /** Extra route groups (the self-tuning loop) mounted on the same app. */
  extraRoutes?: ((app: Hono<AppEnv>) => void)[];
  /** Set while draining on shutdown: new requests get 503. */
  isDraining?: () => boolean;
}

export function createApp(opts: AppOptions): Hono<AppEnv> {
  const { engine, collections, catalog, store, config } = opts;
  const m = opts.metrics;
  const app = new Hono<AppEnv>();

  // Latency and counts by route pattern (not raw path: ids would explode the label set).
  app.use('*', async (c, next) => {
    const t0 = performance.now();
    await next();
    // The last matched route is the endpoint even when a middleware (auth, not-ready) answered first.
    const last = routePath(c, -1);
    const route = last && last !== '*' && last !== '/*' ? last : 'unmatched';
    m.httpRequests.inc({ route, method: c.req.method, status: String(c.res.status) });
    m.httpDuration.observe({ route, method: c.req.method }, (performance.now() - t0) / 1000);
  });

  const tags = ['service'];
  defineRoute(app, {
    method: 'get',
    path: '/healthz',
    operationId: 'health',
    summary: 'Liveness',
    role: 'public',
    tags,
    responses: { 200: { description: 'The process is up', schema: Health } },
    handler: (c) => c.json({ ok: true }),
  });
  defineRoute(app, {
    method: 'get',
    path: '/readyz',
    operationId: 'ready',
    summary: 'Readiness: model and indexes loaded',
    role: 'public',
    tags,
    responses: {
      200: { description: 'Ready, with the serving model', schema: Readiness },
      503: { description: 'Loading or draining: ready is false (Retry-After while loading)', schema: Readiness },
    },
    handler: (c) => {
      const ready = engine.isReady() && !opts.isDraining?.();
      return c.json(ready ? { ready: true, model: engine.serving.version } : { ready: false }, ready ? 200 : 503);
    },
  });
  // METRICS_AUTH=read: the scrape needs a key like any read (labels name collections and model versions).
  const metricsAuth = config.METRICS_AUTH === 'read' && opts.auth;
  if (metricsAuth) app.use('/metrics', metricsAuth); // every method: a POST /metrics without a key is a 401, as before
  defineRoute(app, {
    method: 'get',
    path: '/metrics',
    operationId: 'metrics',
    summary: 'Prometheus metrics',
    role: metricsAuth ? 'read' : 'public',
    tags,
    responses: { 200: { description: 'Prometheus text exposition format', schema: Text, contentType: 'text/plain' } },
    handler: async (c) => {
      m.embedQueueDepth.set(engine.isReady() ? engine.serving.embedder.queueDepth() : 0);
      return c.body(await m.registry.metrics(), 200, { 'Content-Type': m.registry.contentType });
    },
  });

  // Built on first request: by then every route group (the loop's, the strategy route) has been defined.
  let openapi: ReturnType<typeof openApiDocument> | undefined;
  defineRoute(app, {
    method: 'get',
    path: '/openapi.json',
    operationId: 'openapi',
    summary: 'This OpenAPI 3.1 document, generated from the route definitions',
    role: 'public',
    tags,
    responses: { 200: { description: 'The document', schema: z.record(z.string(), z.unknown()) } },
    handler: (c) => c.json((openapi ??= openApiDocument(app, process.env.npm_package_version ?? '0.1.0'))),
  });
  mountConsole(app, { engine, store, config, auth: opts.auth }); // the console at /console (src/console): served before readiness and auth

  app.use('*', async (_c, next) => {
    if (opts.isDraining?.())
      throw new AppError('not_ready', 'the server is shutting down', undefined, { 'Retry-After': '5', Connection: 'close' });
    if (!engine.isReady())
      throw new AppError('not_ready', 'the server is still loading its model and indexes', undefined, { 'Retry-After': '5' });
    await next();
  });
  if (opts.auth) app.use('*', opts.auth);

  const maxBody = config.MAX_BODY_BYTES;
  const tooLarge = () => new AppError('body_too_large', `request body is larger than ${maxBody} bytes`);
  const streamedLimit = bodyLimit({
    maxSize: maxBody,
    onError: () => {
      throw tooLarge();
    },
  });
  // hono's bodyLimit looks at `c.req.raw.body`, which makes @hono/node-server build a full WHATWG Request
  // (AbortSignal, ReadableStream, undici) for every request: ~15 % of the main thread per /search. A
  // declared Content-Length is checked from the header alone (the body is then read straight off the
  // socket); only chunked bodies go through bodyLimit's counting stream.
  app.use('*', async (c, next) => {
    const len = c.req.header('content-length');
    if (len !== undefined && c.req.header('transfer-encoding') === undefined) {
      if (Number.parseInt(len, 10) > maxBody) throw tooLarge();
      return next();
    }
    if (c.req.method === 'GET' || c.req.method === 'HEAD') return next();
    return streamedLimit(c, next);
  });

  collectionRoutes(app, { collections, catalog, store, engine, config });
  searchRoutes(app, { engine, catalog, store, config });
  for (const add of opts.extraRoutes ?? []) add(app);

  const allowed = allowedMethods(app);
  app.notFound((c) => {
    const allow = allowed(c.req.path);
    if (allow.length > 0) {
      c.header('Allow', allow.join(', '));
      return c.json(errorBody('method_not_allowed', `${c.req.path} answers ${allow.join(', ')}, not ${c.req.method}`), 405);
    }
    return c.json(errorBody('not_found', `no route for ${c.req.method} ${c.req.path}`), 404);
  });
  app.onError((err, c) => {
    if (err instanceof AppError) {
      for (const [k, v] of Object.entries(err.headers ?? {})) c.header(k, v);
      return c.json(errorBody(err.code, err.message, err.details), err.status as 400);
    }
    if (err instanceof HTTPException) {
      const code =
        err.status === 413
          ? 'body_too_large'
          : err.status === 404
            ? 'not_found'
            : err.status === 405
              ? 'method_not_allowed'
              : 'invalid_request';
      return c.json(errorBody(code, err.message || ERROR_CODES[code].description), err.status);
    }
    opts.log.error('unhandled error', { path: c.req.path, err: err instanceof Error ? err.stack : String(err) });
    return c.json(errorBody('internal', 'internal error'), 500);
  });
  return app;
}

/** The methods the app's routes serve on a path (GET implies HEAD): a wrong method answers 405 with them. */
function allowedMethods(app: Hono<AppEnv>): (path: string) => string[] {
  let table: { re: RegExp; method: string }[] | undefined;
  return (path) => {
    // Built on first use: by then every route group has been mounted.
    table ??= app.routes
      .filter((r) => r.method !== 'ALL' && !r.path.includes('*'))
      .map((r) => ({
        method: r.method,
        re: new RegExp(
          `^${r.path
            .split('/')
            .map((seg) => (seg.startsWith(':') ? '[^/]+' : seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
            .join('/')}/?$`,
        ),
      }));
    const methods = new Set(table.filter((r) => r.re.test(path)).map((r) => r.method));
    if (methods.has('GET')) methods.add('HEAD');
    return [...methods];
  };
}

/**
 * What the port answers while the model and indexes load (startServer listens before it loads, so
 * orchestrators see a live process): /healthz 200, /readyz and everything else 503 not_ready.
 */
export function createLoadingApp(): Hono {
  const app = new Hono();
  const retry = { 'Retry-After': '5' };
  app.get('/healthz', (c) => c.json({ ok: true }));
  app.get('/readyz', (c) =>
    c.json({ ready: false, ...errorBody('not_ready', 'the server is still loading its model and indexes') }, 503, retry),
  );
  app.all('*', (c) => c.json(errorBody('not_ready', 'the server is still loading its model and indexes'), 503, retry));
  return app;
}
