import { parentPort, type Worker } from 'node:worker_threads';

import { spawnWorker } from '../../util/worker.js';

// A worker thread with its own connection to the store's SQLite file, and one request/response protocol for
// all of them (the query-log writer, the keyword readers): WAL lets such connections read while the main
// connection writes, and busy_timeout waits out the writes they make themselves.

type Reply<Res> = { id: number; ok: true; value: Res } | { id: number; ok: false; error: string };

/** The thread ended (or never started): the caller does the work on the store's own connection instead. */
export class ThreadGoneError extends Error {}

/** The main-thread end: one message per call, settled when the thread answers. */
export class SqliteThread<Req, Res> {
  private readonly worker: Worker;
  private readonly pending = new Map<number, { resolve: (v: Res) => void; reject: (err: Error) => void }>();
  private nextId = 1;
  private gone: Error | undefined;
  /** Set by close() while calls are in flight: called when the last one settles. */
  private drained: (() => void) | undefined;

  constructor(entry: URL, file: string, name: string) {
    this.worker = spawnWorker(entry, { workerData: { file }, name });
    // Referenced only while a call is in flight: an idle thread must not keep the process up, and an
    // awaited call must not be cut off by the process exiting.
    this.worker.unref();
    this.worker.on('message', (m: Reply<Res>) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (this.pending.size === 0) {
        this.worker.unref();
        this.drained?.();
      }
      if (m.ok) p.resolve(m.value);
      else p.reject(new Error(m.error));
    });
    const fail = (err: Error) => {
      this.gone ??= new ThreadGoneError(`${name} thread ended: ${err.message}`);
      for (const p of this.pending.values()) p.reject(this.gone);
      this.pending.clear();
      this.drained?.();
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => fail(new Error(`exit code ${code}`)));
  }

  /** Calls in flight: a pool sends the next call to its least busy thread. */
  get inFlight(): number {
    return this.pending.size;
  }

  get alive(): boolean {
    return this.gone === undefined;
  }

  call(req: Req): Promise<Res> {
    if (this.gone) return Promise.reject(this.gone);
    const id = this.nextId++;
    return new Promise<Res>((resolve, reject) => {
      if (this.pending.size === 0) this.worker.ref();
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, req });
    });
  }

  /** Waits for the calls in flight, then ends the thread. */
  async close(): Promise<void> {
    if (this.pending.size > 0) await new Promise<void>((resolve) => (this.drained = resolve));
    this.gone ??= new ThreadGoneError('thread closed');
    await this.worker.terminate();
  }
}

/** The worker end: answers each call with `handle`'s value, or its error's message. */
export function serveSqliteThread<Req, Res>(handle: (req: Req) => Res): void {
  const port = parentPort;
  if (!port) throw new Error('an SQLite thread entry must run as a worker thread');
  port.on('message', (m: { id: number; req: Req }) => {
    let reply: Reply<Res>;
    try {
      reply = { id: m.id, ok: true, value: handle(m.req) };
    } catch (err) {
      reply = { id: m.id, ok: false, error: String(err) };
    }
    port.postMessage(reply);
  });
}
