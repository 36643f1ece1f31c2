import { connect, type Socket } from 'node:net';
import { parentPort, workerData } from 'node:worker_threads';

import { threadCpuMs } from '../cpu.js';

// Load generator for the HTTP leg: a wrk-style closed loop over raw keep-alive sockets, in its own
// thread. node:http's client costs several times more CPU per request than the server's own work,
// and on a 2-core box that CPU is taken from the server being measured; prebuilt request bytes and a
// Content-Length scan keep the generator's share small.
export interface ClientJob {
  url: string;
  bodies: string[];
  concurrency: number;
  warmupMs: number;
  durationMs: number;
  /** The server's process id, when it runs on this machine: its CPU over the window is reported. */
  serverPid?: number;
}

export interface ClientResult {
  requests: number;
  errors: number;
  elapsedMs: number;
  latenciesMs: number[];
  firstError?: string;
  /** This thread's CPU time over the measuring window (Linux only; NaN elsewhere), ms. */
  clientCpuMs: number;
  /** With `serverPid`: the server's CPU over the window, all threads and its main thread alone, ms (Linux). */
  serverCpuMs?: { all: number; main: number };
}

const job = workerData as ClientJob;
const target = new URL(job.url);
const requests = job.bodies.map((b) =>
  Buffer.from(
    `POST ${target.pathname} HTTP/1.1\r\nHost: ${target.host}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(b)}\r\n\r\n${b}`,
  ),
);

const HEADER_END = Buffer.from('\r\n\r\n');

/** One connection: send, wait for the complete response, repeat. Resolves when `stop()` says so. */
function connection(next: () => Buffer | null, onDone: (status: number, ms: number) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const sock: Socket = connect(Number(target.port), target.hostname);
    sock.setNoDelay(true);
    let buf: Buffer = Buffer.alloc(0);
    let t0 = 0;
    const send = () => {
      const req = next();
      if (!req) {
        sock.end();
        resolve();
        return;
      }
      t0 = performance.now();
      sock.write(req);
    };
    sock.on('connect', send);
    sock.on('data', (chunk: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      for (;;) {
        const he = buf.indexOf(HEADER_END);
        if (he < 0) return;
        const head = buf.subarray(0, he).toString('latin1');
        const status = Number(head.slice(9, 12));
        const m = /\r\ncontent-length:\s*(\d+)/i.exec(head);
        let total: number;
        if (m) {
          total = he + 4 + Number(m[1]);
        } else if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) {
          const end = buf.indexOf('\r\n0\r\n\r\n', he);
          if (end < 0) return;
          total = end + 7;
        } else {
          reject(new Error(`response without length: ${head}`));
          return;
        }
        if (buf.length < total) return;
        buf = buf.subarray(total);
        onDone(status, performance.now() - t0);
        send();
      }
    });
    sock.on('error', reject);
  });
}

async function run(): Promise<ClientResult> {
  let i = 0;
  let measuring = false;
  let stop = false;
  let count = 0;
  let errors = 0;
  let firstError: string | undefined;
  const latenciesMs: number[] = [];
  const next = () => (stop ? null : (requests[i++ % requests.length] as Buffer));
  const onDone = (status: number, ms: number) => {
    if (status !== 200) {
      errors++;
      firstError ??= `HTTP ${status}`;
    } else if (measuring) {
      latenciesMs.push(ms);
      count++;
    }
  };
  parentPort?.postMessage('started');
  const conns = Array.from({ length: job.concurrency }, () =>
    connection(next, onDone).catch((err: Error) => {
      errors++;
      firstError ??= err.message;
    }),
  );
  await new Promise((r) => setTimeout(r, job.warmupMs));
  measuring = true;
  const server = () =>
    job.serverPid === undefined
      ? undefined
      : { all: threadCpuMs(`/proc/${job.serverPid}/stat`), main: threadCpuMs(`/proc/${job.serverPid}/task/${job.serverPid}/stat`) };
  const server0 = server();
  const cpu0 = threadCpuMs();
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, job.durationMs));
  measuring = false;
  const elapsedMs = performance.now() - t0;
  const clientCpuMs = threadCpuMs() - cpu0;
  const server1 = server();
  const serverCpuMs = server0 && server1 ? { all: server1.all - server0.all, main: server1.main - server0.main } : undefined;
  stop = true;
  await Promise.all(conns);
  return { requests: count, errors, elapsedMs, latenciesMs, firstError, clientCpuMs, serverCpuMs };
}

run().then((res) => parentPort?.postMessage(res));
