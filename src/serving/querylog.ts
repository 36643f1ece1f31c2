import type { Metrics } from '../metrics.js';
import type { QueryLogRow, QueryLogStore } from '../store/types.js';
import type { Logger } from '../util/log.js';

// Searches never wait on the query log: rows are buffered and written in one transaction per tick.
// If the store falls behind, the oldest unwritten rows are dropped (and counted) rather than
// letting memory grow or slowing the response path. The tick is armed by the first row after a write,
// so an idle server does not wake up for it.
export class QueryLogBuffer {
  private buf: QueryLogRow[] = [];
  private timer: NodeJS.Timeout | undefined;
  private started = false;
  private flushing: Promise<void> | undefined;

  constructor(
    private readonly store: QueryLogStore,
    private readonly metrics: Metrics,
    private readonly log: Logger,
    private readonly opts: { flushMs: number; maxBuffer: number },
  ) {}

  start(): void {
    this.started = true;
    this.schedule();
  }

  push(row: QueryLogRow): void {
    if (this.buf.length >= this.opts.maxBuffer) {
      this.buf.shift();
      this.metrics.queryLogDropped.inc();
    }
    this.buf.push(row);
    this.metrics.queryLogBuffered.set(this.buf.length);
    this.schedule();
  }

  /** One write `flushMs` from now, unless one is already due. */
  private schedule(): void {
    if (!this.started || this.timer || this.buf.length === 0) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, this.opts.flushMs);
    this.timer.unref();
  }

  /**
   * Writes everything buffered so far; concurrent callers share one write. A write already under way
   * holds only older rows, so wait for it and then write what came since (/feedback relies on this to
   * find the search it names).
   */
  async flush(): Promise<void> {
    while (this.flushing) await this.flushing;
    if (this.buf.length === 0) return;
    const rows = this.buf;
    this.buf = [];
    this.flushing = this.store
      .insertQueryLogs(rows)
      .catch((err) => {
        this.metrics.queryLogDropped.inc(rows.length);
        this.log.error('query log write failed', { rows: rows.length, err: String(err) });
      })
      .finally(() => {
        this.flushing = undefined;
        this.metrics.queryLogBuffered.set(this.buf.length);
      });
    return this.flushing;
  }

  async stop(): Promise<void> {
    this.started = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.flushing;
    await this.flush();
  }
}
