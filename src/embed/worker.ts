// Worker-thread entry for the embed pool: loads one TransformersEncoder and serves batches from the pool.
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import type { FromWorker, ToWorker, WorkerInit } from './protocol.js';
import { ModelLoadFailure, TransformersEncoder } from './transformers.js';

async function main(port: MessagePort, init: WorkerInit): Promise<void> {
  const post = (msg: FromWorker, transfer: ArrayBuffer[] = []) => port.postMessage(msg, transfer);
  let encoder: TransformersEncoder;
  try {
    encoder = await TransformersEncoder.load(init);
  } catch (err) {
    const failure = err instanceof ModelLoadFailure ? err : new ModelLoadFailure('invalid', String(err));
    post({ type: 'load-error', reason: failure.reason, message: failure.message });
    // Closing the port lets the thread end on its own; the pool decides whether to retry.
    port.close();
    return;
  }
  post({ type: 'ready', dim: encoder.dim, maxTokens: encoder.maxTokens });

  // One batch at a time: a second concurrent session.run would fight the first for the same intra-op cores.
  let chain: Promise<void> = Promise.resolve();
  port.on('message', (msg: ToWorker) => {
    // A message is handled between native calls: the ONNX run in progress, if any, has returned.
    if (msg.type === 'kill') process.exit(1);
    if (msg.type === 'close') {
      chain = chain.then(async () => {
        await encoder.dispose().catch(() => undefined);
        port.close();
      });
      return;
    }
    chain = chain.then(async () => {
      const t0 = performance.now();
      try {
        const { data, dim, tokens } = await encoder.encode(msg.texts, msg.prompts);
        post({ type: 'result', id: msg.id, dim, data, tokens, ms: performance.now() - t0 }, [data.buffer as ArrayBuffer]);
      } catch (err) {
        post({ type: 'error', id: msg.id, message: err instanceof Error ? err.message : String(err) });
      }
    });
  });
}

if (!parentPort) throw new Error('src/embed/worker.ts must run in a worker thread (use EmbedPool)');
await main(parentPort, workerData as WorkerInit);
