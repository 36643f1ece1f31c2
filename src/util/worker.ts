import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker, type WorkerOptions } from 'node:worker_threads';

const require = createRequire(import.meta.url);

// Workers are TypeScript files. A worker thread does not inherit the parent's tsx loader (neither
// from `--import tsx` nor from vitest), and `execArgv: ['--import','tsx']` is ignored for workers on
// Node 20, so a .ts entry is started through a tiny bootstrap that registers tsx first.
//
// Cheaper: an entry that can be bundled (its own TypeScript compiled into one ES module by the esbuild
// tsx runs on, packages imported by their resolved file URLs) starts from a data: URL with no loader in
// the thread at all. tsx's loader in a worker costs ~8 MiB of RSS per thread (an hnsw worker: ~26 MiB
// through tsx, ~18 MiB bundled); the bundle is built once per entry per process (~50-150 ms).
//
// `preload` names npm packages to import before tsx is registered. A package imported through tsx's
// loader hooks costs far more memory than a native import: @huggingface/transformers took +165 MiB of
// RSS per embed worker that way, +37 MiB natively. Modules are cached by URL, so the worker's own
// imports of a preloaded package then get the native instance.
export function spawnWorker(entry: URL, options: WorkerOptions & { preload?: readonly string[] } = {}): Worker {
  return tracked(startWorker(entry, options));
}

function startWorker(entry: URL, options: WorkerOptions & { preload?: readonly string[] }): Worker {
  const { preload = [], ...workerOptions } = options;
  if (!entry.pathname.endsWith('.ts')) return new Worker(entry, workerOptions);
  const bundled = bundleWorker(entry);
  if (bundled) return new Worker(bundled, workerOptions);
  const api = pathToFileURL(join(dirname(require.resolve('tsx/package.json')), 'dist/esm/api/index.mjs')).href;
  // Resolved here with import conditions (the ESM build), the URL the worker's own imports will resolve to.
  // (import.meta.resolve is missing under some test runners' module transforms: then no preload.)
  const resolve = typeof import.meta.resolve === 'function' ? (p: string) => import.meta.resolve(p) : undefined;
  const pre = resolve ? preload.map((p) => `import(${JSON.stringify(resolve(p))})`).join(', ') : '';
  const boot = `Promise.all([${pre}]).then(() => import(${JSON.stringify(api)})).then((m) => { m.register(); return import(${JSON.stringify(entry.href)}); })`;
  return new Worker(boot, { ...workerOptions, eval: true });
}

const exited = new WeakSet<Worker>();

function tracked(w: Worker): Worker {
  w.once('exit', () => exited.add(w));
  return w;
}

/**
 * Asks a worker to finish what it is doing and end on its own (it closes its port on `closeMessage`), and
 * terminates it only past `graceMs`. Terminating a thread in the middle of a native call (an ONNX run, an
 * hnswlib insert) can abort the whole process from inside the addon (a `Napi::Error` at teardown).
 */
export async function stopWorker(worker: Worker, closeMessage: unknown, graceMs = 5000): Promise<void> {
  if (exited.has(worker)) return;
  const gone = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  try {
    worker.postMessage(closeMessage);
  } catch {
    // The port is already closed: the thread is ending.
  }
  const timer = setTimeout(() => void worker.terminate(), graceMs);
  await gone;
  clearTimeout(timer);
}

const bundles = new Map<string, URL | null>();

/** The entry and its relative imports as one ES module in a data: URL; null where that is not possible. */
function bundleWorker(entry: URL): URL | null {
  let url = bundles.get(entry.href);
  if (url !== undefined) return url;
  url = null;
  // Packages are imported from the URL this module would import them from (import conditions); without
  // import.meta.resolve (some test runners' transforms) the worker takes the tsx path.
  const resolve = typeof import.meta.resolve === 'function' ? (p: string) => import.meta.resolve(p) : undefined;
  if (resolve) {
    try {
      const esbuild = createRequire(require.resolve('tsx/package.json'))('esbuild') as typeof import('esbuild');
      const out = esbuild.buildSync({
        entryPoints: [fileURLToPath(entry)],
        bundle: true,
        write: false,
        platform: 'node',
        format: 'esm',
        target: 'node20',
        packages: 'external',
        keepNames: true,
        logLevel: 'silent',
        metafile: true,
      });
      let code = out.outputFiles[0]?.text;
      // import.meta.url would name the data: URL, not the module's file (relative paths, createRequire).
      if (code?.includes('import.meta')) code = undefined;
      // A data: module resolves no bare specifier but builtins: name each package by its file URL.
      const externals = new Set(Object.values(out.metafile.outputs).flatMap((o) => o.imports.filter((i) => i.external).map((i) => i.path)));
      for (const spec of externals) {
        if (spec.startsWith('node:') || !code) continue;
        const q = JSON.stringify(spec);
        code = code
          .replaceAll(`from ${q}`, `from ${JSON.stringify(resolve(spec))}`)
          .replaceAll(`import ${q}`, `import ${JSON.stringify(resolve(spec))}`)
          .replaceAll(`import(${q})`, `import(${JSON.stringify(resolve(spec))})`);
      }
      if (code) url = new URL(`data:text/javascript;base64,${Buffer.from(code).toString('base64')}`);
    } catch {
      // No esbuild next to tsx, or an entry esbuild cannot bundle: tsx compiles it in the worker instead.
      url = null;
    }
  }
  bundles.set(entry.href, url);
  return url;
}
