import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../config.js';
import { defaultDtype, loadEmbedder } from '../embed/registry.js';
import type { Embedder, EmbedderOptions, ModelSpec } from '../embed/types.js';
import type { Metrics } from '../metrics.js';

/** Same knobs as the serving embedder (server.ts), so a candidate is measured the way it will serve. */
function embedOptions(cfg: Config, metrics?: Metrics, overrides: Partial<EmbedderOptions> = {}): EmbedderOptions {
  return {
    cacheDir: `${cfg.DATA_DIR}/models/cache`,
    workers: cfg.EMBED_WORKERS,
    lazy: true,
    maxBatch: cfg.EMBED_MAX_BATCH,
    maxWaitMs: cfg.EMBED_MAX_WAIT_MS,
    maxQueue: Math.max(cfg.EMBED_MAX_QUEUE, 8192),
    maxTokens: cfg.EMBED_MAX_TOKENS,
    observer: metrics
      ? {
          onBatch(size: number, ms: number) {
            metrics.embedBatchSize.observe(size);
            metrics.embedBatchDuration.observe(ms / 1000);
          },
        }
      : undefined,
    ...overrides,
  };
}

function cardDtype(dir: string): ModelSpec['dtype'] | undefined {
  try {
    const card: unknown = JSON.parse(readFileSync(join(dir, 'model_card.json'), 'utf8'));
    const d = card !== null && typeof card === 'object' ? (card as { dtype?: unknown }).dtype : undefined;
    return d === 'fp32' || d === 'fp16' || d === 'q8' ? d : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A spec for a model directory under our own version name. The dtype follows EMBED_DTYPE, then the card,
 * then whichever weights exist — the same order resolveModelSpec uses for the configured model.
 */
export function specForDir(version: string, dir: string, cfg: Pick<Config, 'EMBED_DTYPE'>): ModelSpec {
  const dtype = cfg.EMBED_DTYPE ?? cardDtype(dir) ?? defaultDtype(dir) ?? 'fp32';
  return { version, source: { kind: 'dir', path: dir }, dtype };
}

export function loadModel(spec: ModelSpec, cfg: Config, metrics?: Metrics, overrides: Partial<EmbedderOptions> = {}): Promise<Embedder> {
  return loadEmbedder(spec, embedOptions(cfg, metrics, overrides));
}
