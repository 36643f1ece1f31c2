import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../util/log.js';
import { PgStore } from './pg/store.js';
import { SqliteStore } from './sqlite/store.js';
import type { Store } from './types.js';
import { StoreOpenError } from './errors.js';

export type { Store } from './types.js';

export interface StoreConfig {
  /** `postgres://…` / `postgresql://…` (a server), `pglite://memory` or `pglite:///dir` (in-process). */
  databaseUrl?: string;
  /** SQLite lives at `${dataDir}/retrieval.db` when no databaseUrl is given. */
  dataDir: string;
  logger?: Logger;
  /** INDEX_BACKEND=pgvector: the Postgres store also carries the vectors (the pgvector migration runs). */
  vectors?: boolean;
  /** SQLite: keyword-search threads (KEYWORD_THREADS); 0 or unset = on the caller's thread. */
  keywordThreads?: number;
}

// Walk up from this module to the directory holding `migrations/`: the same code runs from src/ under
// tsx and from dist/src/ when compiled, and the server may be started from any working directory.
function findMigrationsRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'migrations', 'sqlite', 'meta', '_journal.json'))) return join(dir, 'migrations');
    const up = dirname(dir);
    if (up === dir) throw new Error(`no migrations/ folder found above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}

export const MIGRATIONS_ROOT = findMigrationsRoot();

export type StoreTarget =
  | { kind: 'sqlite'; file: string }
  | { kind: 'postgres'; url: string }
  | { kind: 'pglite'; dataDir: string | undefined };

/** Which store a configuration selects; exported so a bad URL fails before anything is opened. */
export function resolveStoreTarget(config: StoreConfig): StoreTarget {
  const url = config.databaseUrl?.trim();
  if (!url) return { kind: 'sqlite', file: join(resolve(config.dataDir), 'retrieval.db') };
  if (/^postgres(ql)?:\/\//i.test(url)) return { kind: 'postgres', url };
  if (/^pglite:\/\//i.test(url)) {
    const rest = url.slice('pglite://'.length);
    if (rest === '' || rest === 'memory' || rest === '/memory') return { kind: 'pglite', dataDir: undefined };
    return { kind: 'pglite', dataDir: resolve(rest) };
  }
  if (/^(sqlite|file):/i.test(url)) {
    const file = url.replace(/^(sqlite|file):(\/\/)?/i, '');
    return { kind: 'sqlite', file: file === ':memory:' ? file : resolve(file) };
  }
  throw new StoreOpenError(`DATABASE_URL must start with postgres://, postgresql://, pglite:// or sqlite: (got "${url.split(':')[0]}:…")`);
}

export async function openStore(config: StoreConfig): Promise<Store> {
  const target = resolveStoreTarget(config);
  switch (target.kind) {
    case 'sqlite':
      return new SqliteStore(target.file, join(MIGRATIONS_ROOT, 'sqlite'), { keywordThreads: config.keywordThreads });
    case 'postgres':
      return PgStore.connect(target.url, {
        migrationsFolder: join(MIGRATIONS_ROOT, 'pg'),
        logger: config.logger,
        vectors: config.vectors,
      }).catch((err: unknown) => {
        // The pgvector migration's own line already says what is wrong and what to do.
        if (err instanceof StoreOpenError) throw err;
        throw new StoreOpenError(`cannot open the Postgres database ${redactUrl(target.url)}: ${describe(err)}`, { cause: err });
      });
    case 'pglite':
      return PgStore.pglite(target.dataDir, {
        migrationsFolder: join(MIGRATIONS_ROOT, 'pg'),
        logger: config.logger,
        vectors: config.vectors,
      });
  }
}

/** postgres://user:secret@host/db → postgres://user:***@host/db (the message goes to a terminal or a log). */
function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(an unparsable URL)';
  }
}

/** node-postgres reports a refused connection to several addresses as an AggregateError with no message. */
function describe(err: unknown): string {
  if (err instanceof AggregateError && !err.message) return err.errors.map(describe).join('; ');
  if (err instanceof Error) return err.message || String((err as { code?: unknown }).code ?? err.name);
  return String(err);
}
