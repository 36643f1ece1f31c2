import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker, type WorkerOptions } from 'node:worker_threads';

const require = createRequire(import.meta.url);

// Workers are TypeScript files. A worker thread does not inherit the parent's tsx loader (neither
// from `--import tsx` nor from vitest), and `execArgv: ['--import','tsx']` is ignored for workers on
// Node 20, so a .ts entry is started through a tiny bootstrap that registers tsx first.
//
// `preload` names npm packages to import before tsx is registered. A package imported through tsx's
// loader hooks costs far more memory than a native import: @huggingface/transformers took +165 MiB of
// RSS per embed worker that way, +37 MiB natively. Modules are cached by URL, so the worker's own
// imports of a preloaded package then get the native instance.
export function spawnWorker(entry: URL, options: WorkerOptions & { preload?: readonly string[] } = {}): Worker {
  const { preload = [], ...workerOptions } = options;
  if (!entry.pathname.endsWith('.ts')) return new Worker(entry, workerOptions);
  const api = pathToFileURL(join(dirname(require.resolve('tsx/package.json')), 'dist/esm/api/index.mjs')).href;
  // Resolved here with import conditions (the ESM build), the URL the worker's own imports will resolve to.
  // (import.meta.resolve is missing under some test runners' module transforms: then no preload.)
  const resolve = typeof import.meta.resolve === 'function' ? (p: string) => import.meta.resolve(p) : undefined;
  const pre = resolve ? preload.map((p) => `import(${JSON.stringify(resolve(p))})`).join(', ') : '';
  const boot = `Promise.all([${pre}]).then(() => import(${JSON.stringify(api)})).then((m) => { m.register(); return import(${JSON.stringify(entry.href)}); })`;
  return new Worker(boot, { ...workerOptions, eval: true });
}
