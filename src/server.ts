import { serve, type ServerType } from '@hono/node-server';
import type { Hono } from 'hono';
import { existsSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createApiKey } from './auth/keys.js';
import { apiKeyAuth } from './http/auth.js';
import { ConfigError, loadConfig, DEFAULT_MODEL_DIR, type Config } from './config.js';
import { loadEmbedder, resolveModelSpec } from './embed/registry.js';
import type { ModelSpec } from './embed/types.js';
import { createApp, createLoadingApp, type AppEnv, type AppOptions } from './http/app.js';
import { IndexManager } from './index/manager.js';
import { PgVectorIndexes } from './index/pgvector.js';
import type { IndexBackend } from './index/types.js';
import { PgStore } from './store/pg/store.js';
import { createMetrics, type Metrics } from './metrics.js';
import { openObjectStore, RemoteArtifacts } from './objects/index.js';
import { CollectionCatalog } from './serving/catalog.js';
import { Collections } from './serving/collections.js';
import { Engine } from './serving/engine.js';
import { StrategyBook, StrategyTuner } from './search/tuner.js';
import { strategyRoutes } from './http/routes/strategy.js';
import { openStore } from './store/index.js';
import { loopRoutes } from './http/routes/loop.js';
import { gate, irMetrics, retrainOnDrift, startLoop, stopLoop, type Loop, type LoopOptions } from './loop.js';
import { DriftMonitor } from './monitor/drift.js';
import { Swapper } from './swap/swap.js';
import { trainerFromConfig } from './train/backends.js';
import { JobRunner } from './train/jobs.js';
import type { Store } from './store/types.js';
import { createLogger, type Logger } from './util/log.js';

export interface Server {
  url: string;
  app: Hono<AppEnv>;
  engine: Engine;
  collections: Collections;
  catalog: CollectionCatalog;
  strategies: StrategyBook;
  store: Store;
  /** The index backend: hnswlib worker threads or pgvector. */
  indexes: IndexBackend;
  config: Config;
  metrics: Metrics;
  log: Logger;
  /** Drains in-flight requests, flushes the query log, snapshots indexes, closes everything. */
  close(): Promise<void>;
}

export interface StartOptions {
  config?: Partial<Config>;
  env?: Record<string, string | undefined>;
  /** Listen on a port (default true). Tests can use app.request() without one. */
  listen?: boolean;
  /**
   * Runs the self-tuning loop (drift monitor, retrain jobs, swapper and their routes); src/main.ts turns it
   * on. Without it the server serves and tunes strategies, but never retrains.
   */
  loop?: boolean | LoopOptions;
  /**
   * A test seam: runs once the engine is up, before the app answers, and may add route groups or replace
   * the API-key middleware (tests mint keys here or probe the port while it is still loading).
   */
  extend?: (ctx: {
    engine: Engine;
    store: Store;
    config: Config;
    log: Logger;
  }) => Promise<Pick<AppOptions, 'extraRoutes' | 'auth'> & { close?: () => Promise<void> }>;
}

function modelSpecFromConfig(cfg: Config): ModelSpec {
  return resolveModelSpec({
    EMBED_MODEL: cfg.EMBED_MODEL,
    MODEL_DIR: cfg.MODEL_DIR,
    EMBED_DTYPE: cfg.EMBED_DTYPE,
    defaultDir: DEFAULT_MODEL_DIR,
  });
}

export async function startServer(opts: StartOptions = {}): Promise<Server> {
  const config = loadConfig(opts.env ?? process.env, opts.config);
  const log = createLogger(config.LOG_LEVEL);
  const metrics = createMetrics();
  const configuredModel = modelSpecFromConfig(config);
  // The port opens first: while the model and indexes load, /healthz answers 200 and /readyz (like every
  // other route) 503 not_ready; the full app takes over once everything below is up.
  let ready: Hono<AppEnv> | undefined;
  let server: ServerType | undefined;
  let url = '';
  let draining = false;
  let stopTuner: (() => Promise<void>) | undefined;
  let loop: Loop | undefined;
  if (opts.listen !== false) {
    const loading = createLoadingApp();
    server = await new Promise<ServerType>((res, rej) => {
      const s = serve({ fetch: (req, env) => (ready ?? loading).fetch(req, env), port: config.PORT, hostname: config.HOST }, () => res(s));
      // A taken port is a configuration problem: one line (main.ts), not a stack trace.
      s.once('error', (err: Error) => rej(new ConfigError(`cannot listen on ${config.HOST}:${config.PORT}: ${err.message}`)));
    });
    const addr = server.address() as AddressInfo;
    url = `http://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address === '0.0.0.0' ? '127.0.0.1' : addr.address}:${addr.port}`;
    log.info('listening; loading model and indexes', { url });
  }
  let booted: Awaited<ReturnType<typeof boot>>;
  try {
    booted = await boot();
  } catch (err) {
    server?.close();
    throw err;
  }
  const { store, indexes, engine, collections, catalog, strategies, ext, app } = booted;
  ready = app;
  if (server) log.info('ready', { url, model: engine.serving.version, store: store.dialect });

  async function boot() {
    // The object store is checked before anything else opens: a wrong bucket or key is a one-line error.
    const objects = await openObjectStore(config);
    await objects?.check();
    const remote = objects ? new RemoteArtifacts(objects, { log, metrics }) : undefined;
    if (remote) log.info('object store', { location: remote.location });
    const vectors = config.INDEX_BACKEND === 'pgvector';
    const store = await openStore({
      databaseUrl: config.DATABASE_URL,
      dataDir: config.DATA_DIR,
      logger: log,
      vectors,
      keywordThreads: config.KEYWORD_THREADS,
    });
    let indexes: IndexBackend;
    if (vectors) {
      if (!(store instanceof PgStore)) {
        await store.close();
        throw new ConfigError('invalid configuration: INDEX_BACKEND=pgvector needs a Postgres DATABASE_URL (postgres://… or pglite://…)');
      }
      indexes = await PgVectorIndexes.open(store.sql);
    } else {
      indexes = new IndexManager({ workers: config.INDEX_WORKERS, replicas: config.INDEX_REPLICAS, vectorCopy: config.INDEX_VECTOR_COPY });
    }
    const embedOpts = {
      cacheDir: `${config.DATA_DIR}/models/cache`,
      workers: config.EMBED_WORKERS,
      lazy: true,
      maxBatch: config.EMBED_MAX_BATCH,
      maxWaitMs: config.EMBED_MAX_WAIT_MS,
      maxQueue: config.EMBED_MAX_QUEUE,
      maxTokens: config.EMBED_MAX_TOKENS,
      observer: {
        onBatch(size: number, ms: number) {
          metrics.embedBatchSize.observe(size);
          metrics.embedBatchDuration.observe(ms / 1000);
        },
      },
    };
    const catalog = new CollectionCatalog(store);
    const strategies = new StrategyBook({ store, metrics });
    const engine = new Engine({
      config,
      store,
      indexes,
      metrics,
      log,
      configuredModel,
      remote,
      catalog,
      strategies,
      loadEmbedder: (spec) => loadEmbedder(spec, embedOpts),
    });
    try {
      await engine.start();
    } catch (err) {
      await indexes.close().catch(() => undefined);
      await store.close().catch(() => undefined);
      throw err;
    }
    // Collections and document writes: the store first, then the engine's serving indexes under its write lock.
    const collections = new Collections({ store, config, metrics, catalog, strategies, engine });
    // A fresh LLM miner per use (its usage counters are per job), when LLM_BASE_URL and LLM_MODEL are set. The
    // openai client is loaded only then (~14 MiB of a server's idle memory otherwise).
    const LlmMiner = config.LLM_BASE_URL && config.LLM_MODEL ? (await import('./train/llm.js')).LlmMiner : undefined;
    const llm = LlmMiner
      ? () =>
          new LlmMiner(
            { baseURL: config.LLM_BASE_URL!, model: config.LLM_MODEL!, apiKey: config.LLM_API_KEY, concurrency: config.LLM_CONCURRENCY },
            log,
          )
      : undefined;
    // Chooses each collection's serving strategy (mode "auto") by measurement; see src/search/tuner.ts.
    const tuner = new StrategyTuner({
      store,
      config,
      log,
      book: strategies,
      rank: (c, q, depth) => engine.rankBoth(c, q, depth),
      servingVersion: () => engine.serving.version,
      llmQuestions: llm
        ? async (passages) => (await llm().questionsFor(passages, 1)).map((list) => list.map((q) => q.question))
        : undefined,
    });
    // A failed listing (the store closing under a tick at shutdown, a database blip) skips that tick: the
    // rejection would otherwise be unhandled (tick is fire-and-forget) and end the process.
    tuner.start(() =>
      store.listCollections().catch((err: unknown) => {
        log.warn('strategy check skipped: cannot list collections', { err: String(err) });
        return [];
      }),
    );
    stopTuner = () => tuner.stop();
    // The self-tuning loop (src/loop.ts): the drift monitor asks for retrain jobs; a job mines pairs, runs
    // the trainer, gates the candidate and hands it to the swapper (shadow re-embed, cut-over).
    if (opts.loop) {
      const loopOpts = opts.loop === true ? {} : opts.loop;
      const swapper = new Swapper({ engine, store, indexes, config, metrics, log });
      const jobs = new JobRunner({
        engine,
        catalog,
        strategies,
        store,
        indexes,
        remote,
        config,
        metrics,
        log,
        swapper,
        irMetrics,
        gate,
        llm,
        trainer: loopOpts.trainer ?? trainerFromConfig(config),
        evalMaxChunks: loopOpts.evalMaxChunks,
        mining: loopOpts.mining,
      });
      const monitor = new DriftMonitor({
        store,
        config,
        metrics,
        log,
        // The serving model, in the 'bulk' lane: re-embedding a window must not delay live searches.
        embed: async (texts) => {
          const pair = engine.serving;
          return { vectors: await pair.embedder.embed(texts, { priority: 'bulk', kind: 'query' }), model: pair.version };
        },
        servingVersion: () => engine.serving.version,
        onDrift: retrainOnDrift(jobs, log),
      });
      loop = { monitor, jobs, swapper };
      await startLoop(loop, store, log);
      loopOpts.onReady?.(loop);
    }
    const ext = opts.extend ? await opts.extend({ engine, store, config, log }) : {};
    await bootstrapAdminKey(config, store, log);
    const auth = apiKeyAuth({ store, mode: config.AUTH, bootstrapAdminKey: config.ADMIN_API_KEY, logger: log });
    const routes = [
      strategyRoutes(catalog, tuner),
      ...(loop ? [loopRoutes({ engine, catalog, store, ...loop })] : []),
      ...(ext.extraRoutes ?? []),
    ];
    const app = createApp({
      engine,
      collections,
      catalog,
      store,
      config,
      metrics,
      log,
      isDraining: () => draining,
      auth,
      ...ext,
      extraRoutes: routes,
    });
    return { store, indexes, engine, collections, catalog, strategies, ext, app };
  }
  let closed: Promise<void> | undefined;
  const close = () =>
    (closed ??= (async () => {
      draining = true;
      if (server) {
        const s = server;
        // Stop accepting, let in-flight requests finish (bounded by the grace period).
        await new Promise<void>((res) => {
          const t = setTimeout(() => {
            (s as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
            res();
          }, config.SHUTDOWN_GRACE_MS);
          t.unref();
          s.close(() => {
            clearTimeout(t);
            res();
          });
          (s as unknown as { closeIdleConnections?: () => void }).closeIdleConnections?.();
        });
      }
      await ext.close?.();
      if (loop) await stopLoop(loop);
      await stopTuner?.();
      await engine.stop();
      await store.close();
    })());
  return { url, app, engine, collections, catalog, strategies, store, indexes, config, metrics, log, close };
}

/**
 * AUTH=on with no key anywhere would lock everyone out. On the very first start, mint an admin key and
 * leave it in DATA_DIR/admin.key (mode 0600) rather than in the log, where secrets do not belong.
 */
async function bootstrapAdminKey(config: Config, store: Store, log: Logger): Promise<void> {
  if (config.AUTH !== 'on' || config.ADMIN_API_KEY || (await store.countApiKeys()) > 0) return;
  const file = join(config.DATA_DIR, 'admin.key');
  if (existsSync(file)) return;
  const created = await createApiKey(store, { role: 'admin', name: 'bootstrap' });
  writeFileSync(file, created.key + '\n', { mode: 0o600 });
  log.warn('created the first admin API key', {
    file,
    hint: 'curl -H "Authorization: Bearer $(cat ' + file + ')" …; create read keys with `npx retrieval keys create --role read`',
  });
}
