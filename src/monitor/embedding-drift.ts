import { centroidCosineDistance, domainClassifierAuc, mmdPermutationTest, type MmdResult } from './stats.js';

export interface EmbeddingDriftInput {
  ref: Float32Array[];
  cur: Float32Array[];
  permutations: number;
  seed: number;
  /** Windows are subsampled to this many vectors each for MMD (its cost is quadratic). */
  mmdMaxPerWindow: number;
}

export interface EmbeddingDrift {
  centroidDistance: number;
  domainAuc: number;
  mmd: MmdResult;
}

function subsample<T>(xs: T[], max: number): T[] {
  if (xs.length <= max) return xs;
  const step = xs.length / max;
  return Array.from({ length: max }, (_, i) => xs[Math.floor(i * step)]!);
}

export function computeEmbeddingDrift(input: EmbeddingDriftInput): EmbeddingDrift {
  return {
    centroidDistance: centroidCosineDistance(input.ref, input.cur),
    domainAuc: domainClassifierAuc(input.ref, input.cur, { seed: input.seed }),
    mmd: mmdPermutationTest(subsample(input.ref, input.mmdMaxPerWindow), subsample(input.cur, input.mmdMaxPerWindow), {
      permutations: input.permutations,
      seed: input.seed,
    }),
  };
}
