import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { stopWorker } from '../../src/util/worker.js';

// A worker that honours `close` ends on its own (exit code 0: it was never terminated mid-call); one that
// ignores it is terminated after the grace period (exit code 1).
const worker = (honoursClose: boolean) =>
  new Worker(
    `
const { parentPort } = require('node:worker_threads');
parentPort.on('message', (m) => {
  if (m === 'work') { const t = Date.now(); while (Date.now() - t < 200); parentPort.postMessage('done'); }
  if (m === 'close' && ${honoursClose}) parentPort.close();
});`,
    { eval: true },
  );

describe('stopWorker', () => {
  it('lets the worker finish what it was sent and end on its own', async () => {
    const w = worker(true);
    const code = new Promise<number>((r) => w.once('exit', r));
    const done = new Promise((r) => w.once('message', r));
    w.postMessage('work');
    await stopWorker(w, 'close', 10_000);
    expect(await done).toBe('done');
    expect(await code).toBe(0);
  });

  it('terminates a worker that does not end within the grace period', async () => {
    const w = worker(false);
    const code = new Promise<number>((r) => w.once('exit', r));
    await stopWorker(w, 'close', 300);
    expect(await code).toBe(1);
  });
});
