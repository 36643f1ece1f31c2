import { createHash } from 'node:crypto';
import { closeSync, createReadStream, existsSync, openSync, readFileSync, readSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { RetrievalError, type DocumentInput, type Metadata, type RetrievalClient } from '../client/index.js';
import { ProgressBar, type ProgressSink } from './progress.js';

export interface IngestOptions {
  file: string;
  collection: string;
  batch: number;
  /** Cut a batch early once its JSON would exceed this many bytes (server MAX_BODY_BYTES). */
  maxBatchBytes: number;
  /** Batches in flight at once; 2 keeps the server's embedder busy while the next batch uploads. */
  concurrency: number;
  create: boolean;
  restart: boolean;
  progress: boolean;
  stderr: ProgressSink;
  /** Set by the caller (SIGINT): stop reading, let in-flight batches finish, save the checkpoint. */
  signal?: AbortSignal;
}

export interface IngestSummary {
  collection: string;
  docs: number;
  chunks: number;
  lines: number;
  resumedFromLine: number;
  seconds: number;
  done: boolean;
  alreadyDone?: boolean;
}

/**
 * The checkpoint next to the input file. `line`/`bytes` is a watermark: every line up to it has been
 * acknowledged by the server (upserts are idempotent, so anything after it is simply sent again).
 */
interface Checkpoint {
  version: 1;
  collection: string;
  line: number;
  bytes: number;
  docs: number;
  chunks: number;
  /**
   * sha256 of the acknowledged prefix's first 64 KiB: a different file under the same name must not
   * resume, but fixing a bad line after the watermark (the usual reason to rerun) must.
   */
  head: string;
  /** How many leading bytes `head` covers: min(64 KiB, bytes). */
  headBytes: number;
  done: boolean;
  updatedAt: string;
}

export class IngestError extends Error {}

export const checkpointPath = (file: string) => `${file}.progress`;

// Synchronous on purpose: it runs inside the checkpoint write, which must not interleave with another.
function headHash(file: string, upTo: number): string {
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.alloc(Math.min(65_536, upTo));
    const n = readSync(fd, buf, 0, buf.length, 0);
    return createHash('sha256').update(buf.subarray(0, n)).digest('hex');
  } finally {
    closeSync(fd);
  }
}

function readCheckpoint(path: string): Checkpoint | undefined {
  if (!existsSync(path)) return undefined;
  try {
    const c = JSON.parse(readFileSync(path, 'utf8')) as Checkpoint;
    if (c.version !== 1 || typeof c.line !== 'number' || typeof c.bytes !== 'number' || typeof c.headBytes !== 'number')
      throw new Error('unknown format');
    return c;
  } catch (err) {
    throw new IngestError(
      `cannot read checkpoint ${path} (${err instanceof Error ? err.message : String(err)}); delete it or pass --restart`,
    );
  }
}

function writeCheckpoint(path: string, c: Checkpoint): void {
  // Write-then-rename: a crash mid-write leaves the previous checkpoint, never a torn one.
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, JSON.stringify(c) + '\n');
  renameSync(tmp, path);
}

const RESERVED = new Set(['id', 'text', 'metadata']);

/** One JSONL record → a document. Top-level fields besides id/text/metadata become metadata. */
function toDocument(raw: unknown, lineNo: number): DocumentInput {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new IngestError(`line ${lineNo}: expected a JSON object`);
  const r = raw as Record<string, unknown>;
  const id = typeof r.id === 'number' ? String(r.id) : r.id;
  if (typeof id !== 'string' || id.length === 0) throw new IngestError(`line ${lineNo}: "id" must be a non-empty string or a number`);
  if (typeof r.text !== 'string') throw new IngestError(`line ${lineNo}: "text" must be a string`);
  if (r.metadata !== undefined && (typeof r.metadata !== 'object' || r.metadata === null || Array.isArray(r.metadata))) {
    throw new IngestError(`line ${lineNo}: "metadata" must be an object`);
  }
  const extra: Metadata = {};
  for (const [k, v] of Object.entries(r)) if (!RESERVED.has(k)) extra[k] = v;
  const metadata = { ...extra, ...(r.metadata as Metadata | undefined) };
  return Object.keys(metadata).length > 0 ? { id, text: r.text, metadata } : { id, text: r.text };
}

/** Lines with exact byte offsets (readline hides them), so a resume can seek straight to a line. */
async function* linesFrom(
  file: string,
  startByte: number,
  startLine: number,
): AsyncGenerator<{ line: string; lineNo: number; endByte: number }> {
  let pending: Buffer = Buffer.alloc(0);
  let offset = startByte;
  let lineNo = startLine;
  for await (const chunk of createReadStream(file, { start: startByte, highWaterMark: 1 << 20 })) {
    let buf = pending.length ? Buffer.concat([pending, chunk as Buffer]) : (chunk as Buffer);
    let from = 0;
    for (let nl = buf.indexOf(10, from); nl !== -1; nl = buf.indexOf(10, from)) {
      let end = nl;
      if (end > from && buf[end - 1] === 13) end--;
      offset += nl + 1 - from;
      yield { line: buf.toString('utf8', from, end), lineNo: ++lineNo, endByte: offset };
      from = nl + 1;
    }
    pending = buf.subarray(from);
    buf = Buffer.alloc(0);
  }
  if (pending.length > 0) {
    offset += pending.length;
    const end = pending[pending.length - 1] === 13 ? pending.length - 1 : pending.length;
    yield { line: pending.toString('utf8', 0, end), lineNo: ++lineNo, endByte: offset };
  }
}

interface Batch {
  seq: number;
  docs: DocumentInput[];
  ids: Set<string>;
  lastLine: number;
  endByte: number;
  bytes: number;
}

export async function ingestFile(client: RetrievalClient, o: IngestOptions): Promise<IngestSummary> {
  const t0 = performance.now();
  if (!existsSync(o.file)) throw new IngestError(`no such file: ${o.file}`);
  const total = statSync(o.file).size;
  const cpPath = checkpointPath(o.file);
  let cp = o.restart ? undefined : readCheckpoint(cpPath);
  if (cp) {
    if (cp.collection !== o.collection) {
      throw new IngestError(`${cpPath} belongs to collection "${cp.collection}", not "${o.collection}"; pass --restart to start over`);
    }
    if (cp.bytes > total || cp.head !== headHash(o.file, cp.headBytes))
      throw new IngestError(`${o.file} changed since ${cpPath} was written; pass --restart to ingest it from the start`);
    if (cp.done && cp.bytes === total) {
      return {
        collection: o.collection,
        docs: cp.docs,
        chunks: cp.chunks,
        lines: cp.line,
        resumedFromLine: cp.line,
        seconds: 0,
        done: true,
        alreadyDone: true,
      };
    }
  }
  cp ??= {
    version: 1,
    collection: o.collection,
    line: 0,
    bytes: 0,
    docs: 0,
    chunks: 0,
    head: '',
    headBytes: -1,
    done: false,
    updatedAt: new Date().toISOString(),
  };
  const resumedFromLine = cp.line;

  try {
    await client.getCollection(o.collection);
  } catch (err) {
    if (!(err instanceof RetrievalError && err.code === 'collection_not_found' && o.create)) {
      if (err instanceof RetrievalError && err.code === 'collection_not_found') {
        throw new IngestError(`collection "${o.collection}" does not exist; create it first or pass --create`);
      }
      throw err;
    }
    await client.createCollection({ name: o.collection });
  }

  const bar = new ProgressBar(
    o.stderr,
    `ingest ${o.collection}`,
    { bytesDone: cp.bytes, bytesTotal: total, docs: cp.docs, chunks: cp.chunks },
    o.progress,
  );
  const state = cp;
  const save = () => {
    state.updatedAt = new Date().toISOString();
    const headBytes = Math.min(65_536, state.bytes);
    if (state.headBytes !== headBytes) {
      state.head = headHash(o.file, headBytes);
      state.headBytes = headBytes;
    }
    writeCheckpoint(cpPath, state);
  };

  // Batches may finish out of order; the watermark only moves over a contiguous acknowledged prefix.
  const finished = new Map<number, { batch: Batch; chunks: number }>();
  let nextToCommit = 0;
  const commit = () => {
    for (let f = finished.get(nextToCommit); f; f = finished.get(nextToCommit)) {
      finished.delete(nextToCommit++);
      state.line = f.batch.lastLine;
      state.bytes = f.batch.endByte;
      state.docs += f.batch.docs.length;
      state.chunks += f.chunks;
      save();
    }
    bar.update({ bytesDone: state.bytes, bytesTotal: total, docs: state.docs, chunks: state.chunks });
  };

  const inflight = new Map<number, { batch: Batch; p: Promise<void> }>();
  let failure: unknown;
  let batchSeq = 0;
  const dispatch = async (batch: Batch) => {
    // Keep per-id order: a later version of a document must not overtake an earlier one in flight. (Not
    // p-limit: a batch waits for in-flight batches that share an id, not only for a free slot.)
    for (;;) {
      const clash = [...inflight.values()].filter((f) => [...batch.ids].some((id) => f.batch.ids.has(id)));
      if (clash.length === 0 && inflight.size < o.concurrency) break;
      await Promise.race((clash.length ? clash : [...inflight.values()]).map((f) => f.p));
      if (failure) return;
    }
    const p = client
      .upsertDocuments(o.collection, batch.docs)
      .then(
        (r) => {
          finished.set(batch.seq, { batch, chunks: r.chunks });
          commit();
        },
        (err: unknown) => {
          failure ??= err;
        },
      )
      .finally(() => inflight.delete(batch.seq));
    inflight.set(batch.seq, { batch, p });
  };

  let cur: Batch = { seq: batchSeq++, docs: [], ids: new Set(), lastLine: state.line, endByte: state.bytes, bytes: 0 };
  for await (const { line, lineNo, endByte } of linesFrom(o.file, state.bytes, state.line)) {
    if (failure || o.signal?.aborted) break;
    if (line.trim() === '') {
      cur.lastLine = lineNo;
      cur.endByte = endByte;
      continue;
    }
    let raw: unknown;
    try {
      raw = JSON.parse(line);
    } catch {
      failure = new IngestError(`line ${lineNo}: invalid JSON`);
      break;
    }
    let d: DocumentInput;
    try {
      d = toDocument(raw, lineNo);
    } catch (err) {
      failure = err;
      break;
    }
    const size = Buffer.byteLength(line) + 2;
    // The server rejects a batch naming one id twice, so a repeated id starts a new batch.
    if (cur.docs.length > 0 && (cur.docs.length >= o.batch || cur.bytes + size > o.maxBatchBytes || cur.ids.has(d.id))) {
      await dispatch(cur);
      cur = { seq: batchSeq++, docs: [], ids: new Set(), lastLine: cur.lastLine, endByte: cur.endByte, bytes: 0 };
    }
    cur.docs.push(d);
    cur.ids.add(d.id);
    cur.bytes += size;
    cur.lastLine = lineNo;
    cur.endByte = endByte;
  }
  if (!failure && !o.signal?.aborted) {
    if (cur.docs.length > 0) await dispatch(cur);
    else if (cur.lastLine > state.line) {
      // Trailing blank lines: nothing to send, but the watermark may still move past them.
      finished.set(cur.seq, { batch: cur, chunks: 0 });
      commit();
    }
  }
  while (inflight.size > 0) await Promise.all([...inflight.values()].map((f) => f.p));
  commit();

  state.done = !failure && !o.signal?.aborted && state.bytes === total;
  save();
  bar.finish({ bytesDone: state.bytes, bytesTotal: total, docs: state.docs, chunks: state.chunks });
  if (failure) {
    const msg = failure instanceof Error ? failure.message : String(failure);
    const resume = `${state.line} line(s) are acknowledged and recorded in ${cpPath}; rerun the same command to resume`;
    if (failure instanceof RetrievalError) throw new RetrievalError(failure.code, `${msg}. ${resume}`, failure.status, failure.details);
    throw new IngestError(`${msg}. ${resume}`);
  }
  return {
    collection: o.collection,
    docs: state.docs,
    chunks: state.chunks,
    lines: state.line,
    resumedFromLine,
    seconds: (performance.now() - t0) / 1000,
    done: state.done,
  };
}

export { readCheckpoint };
