// The console: a small client app served by the server itself at /console (issue 17). Everything it
// loads comes from this process — its own script and stylesheet (src/console/client/) and Chart.js from
// node_modules — so it works offline and behind a strict Content-Security-Policy. The page itself is
// public (it holds no data); every number it shows comes from the API with the key the user typed,
// which lives in the tab's sessionStorage only.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { Hono, MiddlewareHandler } from 'hono';
import { z } from 'zod';
import type { Config } from '../config.js';
import { AppError } from '../errors.js';
import type { Engine } from '../serving/engine.js';
import { modelsDir } from '../serving/models.js';
import type { JobStore } from '../store/types.js';
import type { AppEnv } from '../http/app.js';
import { defineRoute } from '../http/route.js';
import { LossCurve, Text, WhoAmI } from '../http/schemas.js';

const CLIENT_DIR = join(import.meta.dirname, 'client');
const CHART_JS = join(dirname(createRequire(import.meta.url).resolve('chart.js')), 'chart.umd.min.js');

interface Asset {
  body: Buffer;
  type: string;
}

const TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/** The files the page may load, read once at mount: a fixed list, so no request path ever reaches the disk. */
function loadAssets(): Map<string, Asset> {
  const files: Record<string, string> = {
    'app.js': join(CLIENT_DIR, 'app.js'),
    'app.css': join(CLIENT_DIR, 'app.css'),
    'icon.svg': join(CLIENT_DIR, 'icon.svg'),
    'chart.umd.min.js': CHART_JS,
  };
  const out = new Map<string, Asset>();
  for (const [name, path] of Object.entries(files)) {
    out.set(name, { body: readFileSync(path), type: TYPES[name.slice(name.lastIndexOf('.'))]! });
  }
  return out;
}

const SECURITY_HEADERS = {
  // Same-origin everything; Chart.js sets styles through CSSOM, which style-src does not restrict.
  'Content-Security-Policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
};

function shell(version: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Console · tuned-retrieval</title>
<link rel="icon" href="/console/assets/icon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/console/assets/app.css?v=${version}">
<script src="/console/assets/chart.umd.min.js?v=${version}" defer></script>
<script src="/console/assets/app.js?v=${version}" type="module"></script>
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<div id="banner" role="status"></div>
<header class="top">
  <a class="brand" href="#/collections"><img src="/console/assets/icon.svg" alt="" width="22" height="22"> tuned-retrieval</a>
  <nav id="nav" aria-label="Console pages"></nav>
  <div id="who"></div>
</header>
<main id="main" tabindex="-1"><p class="muted">Loading…</p></main>
<noscript>The console needs JavaScript; the API itself is documented at <a href="/openapi.json">/openapi.json</a>.</noscript>
</body>
</html>`;
}

export interface ConsoleOptions {
  /** Readiness, which whoami reports. */
  engine: Pick<Engine, 'isReady'>;
  /** Jobs, for a job's loss curve. */
  store: JobStore;
  /** AUTH, and DATA_DIR where the candidates' train_report.json files are. */
  config: Pick<Config, 'AUTH' | 'DATA_DIR'>;
  /** The API-key middleware the API runs behind; /console/api/whoami answers with the role it sets. */
  auth?: MiddlewareHandler<AppEnv>;
}

/**
 * Mounts the console on the app. Call it before the readiness and auth middlewares: the page and its
 * assets are served while the server loads and without a key; /console/api/whoami runs the same auth.
 */
export function mountConsole(app: Hono<AppEnv>, opts: ConsoleOptions): void {
  const assets = loadAssets();
  const version = process.env.npm_package_version ?? '0';
  const page = shell(encodeURIComponent(version));
  const authMode = opts.config.AUTH;

  const tags = ['console'];
  defineRoute(app, {
    method: 'get',
    path: '/console',
    operationId: 'consolePage',
    summary: 'The web console (served before readiness and without a key)',
    role: 'public',
    tags,
    responses: { 200: { description: 'The console page', schema: Text, contentType: 'text/html' } },
    handler: (c) => c.html(page, 200, { ...SECURITY_HEADERS, 'Cache-Control': 'no-cache' }),
  });
  defineRoute(app, {
    method: 'get',
    path: '/console/',
    operationId: 'consoleRedirect',
    summary: 'Redirects to /console',
    role: 'public',
    tags,
    responses: { 301: { description: 'To /console', headers: { Location: '/console' } } },
    handler: (c) => c.redirect('/console', 301),
  });
  defineRoute(app, {
    method: 'get',
    path: '/console/assets/:file',
    operationId: 'consoleAsset',
    summary: 'A console script, stylesheet or image',
    role: 'public',
    tags,
    request: { params: { file: z.string() } },
    responses: { 200: { description: 'The asset', schema: Text, contentType: 'application/octet-stream' } },
    handler: (c, { params }) => {
      const a = assets.get(params.file);
      if (!a) return c.json({ error: { code: 'not_found', message: `no console asset "${params.file}"` } }, 404);
      return c.body(new Uint8Array(a.body), 200, { 'Content-Type': a.type, 'Cache-Control': 'public, max-age=300', ...SECURITY_HEADERS });
    },
  });

  // Who the presented key is: the console shows admin buttons only to admin keys (the API refuses them anyway).
  const noAuth: MiddlewareHandler<AppEnv> = async (_c, next) => {
    await next();
  };
  // No key at all is a question, not a failure: the sign-in page asks it first (a 401 would be a console error).
  const askFirst: MiddlewareHandler<AppEnv> = async (c, next) => {
    if (authMode === 'on' && !c.req.header('authorization') && !c.req.header('x-api-key')) {
      return c.json({ role: null, auth: authMode, ready: opts.engine.isReady() });
    }
    await next();
  };
  defineRoute(app, {
    method: 'get',
    path: '/console/api/whoami',
    operationId: 'whoami',
    summary: "The presented key's role (null without a key), the auth mode and readiness",
    role: 'public',
    tags,
    middleware: [askFirst, opts.auth ?? noAuth],
    responses: { 200: { description: 'Who the key is', schema: WhoAmI } },
    handler: (c) => c.json({ role: c.get('role') ?? 'admin', auth: authMode, ready: opts.engine.isReady() }),
  });

  // The trainer's whole loss curve, from the candidate's train_report.json (a job's progress keeps only the
  // trainer's last line). Empty while training runs, for failed jobs, and for artifacts without a curve.
  defineRoute(app, {
    method: 'get',
    path: '/console/api/jobs/:id/loss',
    operationId: 'jobLossCurve',
    summary: "A retrain job's training loss curve (empty until the candidate is written)",
    role: 'read',
    tags,
    middleware: [opts.auth ?? noAuth],
    // The id is checked in the handler: its message predates the shared JobId schema.
    request: { params: { id: z.string() } },
    responses: { 200: { description: 'The curve', schema: LossCurve } },
    handler: async (c, { params: { id } }) => {
      if (!/^[0-9a-f-]{8,64}$/i.test(id)) throw new AppError('invalid_request', 'id: a job id');
      const job = await opts.store.getJob(id);
      if (!job) throw new AppError('job_not_found', `no retrain job "${id}"`);
      return c.json({
        jobId: id,
        points: job.candidateVersion ? lossCurve(join(modelsDir(opts.config), job.candidateVersion, 'train_report.json')) : [],
      });
    },
  });
}

interface LossPoint {
  step: number;
  loss: number;
  member?: number;
}

function lossCurve(path: string): LossPoint[] {
  if (!existsSync(path)) return [];
  try {
    const r = JSON.parse(readFileSync(path, 'utf8')) as { loss_curve?: unknown };
    if (!Array.isArray(r.loss_curve)) return [];
    return r.loss_curve.flatMap((p: unknown): LossPoint[] => {
      const o = p as Record<string, unknown>;
      if (typeof o?.step !== 'number' || typeof o.loss !== 'number') return [];
      // A soup's members each count their own steps: plot member_step per member.
      const member = typeof o.member === 'number' ? o.member : undefined;
      const step = member !== undefined && typeof o.member_step === 'number' ? o.member_step : o.step;
      return [{ step, loss: o.loss, ...(member !== undefined ? { member } : {}) }];
    });
  } catch {
    return [];
  }
}
