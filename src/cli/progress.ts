// A one-line progress bar on stderr. On a terminal it redraws in place; when stderr is a file or a
// CI log it prints a plain line every few seconds instead of flooding the log with carriage returns.
export interface ProgressSink {
  write(s: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface ProgressState {
  bytesDone: number;
  bytesTotal: number;
  docs: number;
  chunks: number;
}

const fmtInt = (n: number) => Math.round(n).toLocaleString('en-US');

function fmtDuration(s: number): string {
  if (!Number.isFinite(s) || s < 0) return '--:--';
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = Math.floor(s % 60);
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${String(sec).padStart(2, '0')}` : `${m}:${String(sec).padStart(2, '0')}`;
}

export class ProgressBar {
  private readonly t0 = performance.now();
  private readonly startDocs: number;
  private readonly startBytes: number;
  private lastDraw = 0;
  private drawn = false;

  constructor(
    private readonly sink: ProgressSink,
    private readonly label: string,
    start: ProgressState,
    private readonly enabled = true,
  ) {
    this.startDocs = start.docs;
    this.startBytes = start.bytesDone;
  }

  update(s: ProgressState, force = false): void {
    if (!this.enabled) return;
    const now = performance.now();
    const interval = this.sink.isTTY ? 100 : 5000;
    if (!force && now - this.lastDraw < interval) return;
    this.lastDraw = now;
    const secs = (now - this.t0) / 1000;
    // Rates count only this run's work, so a resumed ingest does not report an inflated speed.
    const rate = secs > 0 ? (s.docs - this.startDocs) / secs : 0;
    const byteRate = secs > 0 ? (s.bytesDone - this.startBytes) / secs : 0;
    const frac = s.bytesTotal > 0 ? Math.min(1, s.bytesDone / s.bytesTotal) : 1;
    const eta = byteRate > 0 ? (s.bytesTotal - s.bytesDone) / byteRate : Number.NaN;
    const stats = `${(frac * 100).toFixed(1).padStart(5)}%  ${fmtInt(s.docs)} docs  ${fmtInt(s.chunks)} chunks  ${fmtInt(rate)} docs/s  ETA ${fmtDuration(eta)}`;
    if (this.sink.isTTY) {
      const width = Math.max(10, Math.min(40, (this.sink.columns ?? 100) - stats.length - this.label.length - 6));
      const full = Math.round(frac * width);
      this.sink.write(`\r${this.label} [${'#'.repeat(full)}${'.'.repeat(width - full)}] ${stats}\x1b[K`);
      this.drawn = true;
    } else {
      this.sink.write(`${this.label}: ${stats}\n`);
    }
  }

  /** Final state on its own line. */
  finish(s: ProgressState): void {
    if (!this.enabled) return;
    this.update(s, true);
    if (this.sink.isTTY && this.drawn) this.sink.write('\n');
  }
}
