import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Config } from '../config.js';
import type { ModelSource } from '../embed/types.js';

/** Where model versions written on this machine live: DATA_DIR/models/<version> (fine-tuned, or fetched from the object store). */
export function modelsDir(config: Pick<Config, 'DATA_DIR'>): string {
  return join(config.DATA_DIR, 'models');
}

// model_versions.source is a string: "dir:/abs/path" or "hub:org/name".
export function encodeSource(src: ModelSource): string {
  return src.kind === 'dir' ? `dir:${resolve(src.path)}` : `hub:${src.id}`;
}

export function decodeSource(s: string): ModelSource {
  if (s.startsWith('dir:')) return { kind: 'dir', path: s.slice(4) };
  if (s.startsWith('hub:')) return { kind: 'hub', id: s.slice(4) };
  throw new Error(`bad model source "${s}"`);
}

export interface ModelCard {
  version?: string;
  parent_version?: string | null;
  pooling?: string;
  dim?: number;
  normalize?: boolean;
  [k: string]: unknown;
}

export function readModelCard(dir: string): ModelCard {
  const p = join(dir, 'model_card.json');
  if (!existsSync(p)) return {};
  try {
    return JSON.parse(readFileSync(p, 'utf8')) as ModelCard;
  } catch {
    return {};
  }
}
