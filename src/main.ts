import { ConfigError } from './config.js';
import { ModelLoadError } from './embed/registry.js';
import { ObjectStoreError } from './objects/types.js';
import { startServer } from './server.js';
import { StoreOpenError } from './store/errors.js';

// The process entry point: configuration and model errors are one line, not a stack trace.
try {
  const server = await startServer({ loop: true });
  let stopping = false;
  const stop = (sig: string) => {
    if (stopping) return;
    stopping = true;
    server.log.info('shutting down', { signal: sig });
    server.close().then(
      () => process.exit(0),
      (err) => {
        server.log.error('shutdown failed', { err: String(err) });
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
} catch (err) {
  if (err instanceof ConfigError || err instanceof ModelLoadError || err instanceof ObjectStoreError || err instanceof StoreOpenError) {
    process.stderr.write(`error: ${err.message}\n`);
    process.exit(2);
  }
  throw err;
}
