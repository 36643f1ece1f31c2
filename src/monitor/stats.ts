// Two-sample drift statistics over embedding windows and retrieval-score distributions.
//
// No maintained statistics package is installed in this repo (npm `simple-statistics` and `jstat` would
// cover the KS distribution, neither covers a cross-validated classifier or kernel MMD), so these are small
// pure-TS implementations of the textbook methods, each cited where it is defined. All randomness comes
// from a seeded PRNG so a drift report can be reproduced from the same query log.

export { seededRandom } from '../util/random.js';
import { seededRandom, shuffleInPlace } from '../util/random.js';

function dot(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

function mean(vs: readonly Float32Array[]): Float64Array {
  const dim = vs[0]?.length ?? 0;
  const m = new Float64Array(dim);
  for (const v of vs) for (let i = 0; i < dim; i++) m[i]! += v[i]!;
  for (let i = 0; i < dim; i++) m[i]! /= Math.max(1, vs.length);
  return m;
}

/** 1 − cos(mean(ref), mean(cur)): 0 when both windows point the same way on average. */
export function centroidCosineDistance(ref: readonly Float32Array[], cur: readonly Float32Array[]): number {
  if (ref.length === 0 || cur.length === 0) return 0;
  const a = mean(ref);
  const b = mean(cur);
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i]! * b[i]!;
    aa += a[i]! * a[i]!;
    bb += b[i]! * b[i]!;
  }
  if (aa === 0 || bb === 0) return 0;
  return 1 - ab / Math.sqrt(aa * bb);
}

/**
 * ROC-AUC as the Mann–Whitney U statistic: P(score of a positive > score of a negative), ties counted ½
 * (Hanley & McNeil 1982). Uses mid-ranks so it is O(n log n).
 */
export function rocAuc(scores: readonly number[], labels: readonly (0 | 1)[]): number {
  const idx = scores.map((s, i) => ({ s, y: labels[i]! })).sort((a, b) => a.s - b.s);
  let nPos = 0;
  let rankSumPos = 0;
  for (let i = 0; i < idx.length; ) {
    let j = i;
    while (j < idx.length && idx[j]!.s === idx[i]!.s) j++;
    const midRank = (i + 1 + j) / 2;
    for (let k = i; k < j; k++)
      if (idx[k]!.y === 1) {
        nPos++;
        rankSumPos += midRank;
      }
    i = j;
  }
  const nNeg = idx.length - nPos;
  if (nPos === 0 || nNeg === 0) return 0.5;
  return (rankSumPos - (nPos * (nPos + 1)) / 2) / (nPos * nNeg);
}

export interface LogisticOptions {
  /** L2 penalty; keeps a high-dimensional, small-sample fit from memorizing the folds. */
  l2?: number;
  epochs?: number;
  lr?: number;
}

/**
 * L2-regularized logistic regression fit by full-batch gradient descent (the loss is
 * convex, so plain GD converges; Hastie et al., ESL §4.4). Returns weights + bias.
 */
function fitLogistic(xs: readonly Float32Array[], ys: readonly (0 | 1)[], opts: LogisticOptions = {}): { w: Float64Array; b: number } {
  const dim = xs[0]?.length ?? 0;
  const l2 = opts.l2 ?? 1e-2;
  const epochs = opts.epochs ?? 150;
  const lr = opts.lr ?? 0.5;
  const w = new Float64Array(dim);
  let b = 0;
  const n = xs.length;
  const grad = new Float64Array(dim);
  for (let e = 0; e < epochs; e++) {
    grad.fill(0);
    let gb = 0;
    for (let i = 0; i < n; i++) {
      const x = xs[i]!;
      let z = b;
      for (let d = 0; d < dim; d++) z += w[d]! * x[d]!;
      const p = 1 / (1 + Math.exp(-z));
      const r = p - ys[i]!;
      gb += r;
      for (let d = 0; d < dim; d++) grad[d]! += r * x[d]!;
    }
    for (let d = 0; d < dim; d++) w[d]! -= lr * (grad[d]! / n + l2 * w[d]!);
    b -= lr * (gb / n);
  }
  return { w, b };
}

/**
 * Domain-classifier drift test ("classifier two-sample test", Lopez-Paz & Oquab 2017): a linear model
 * learns to tell reference from current; its k-fold cross-validated ROC-AUC is ≈0.5 when the windows come
 * from the same distribution and approaches 1 as they separate. Out-of-fold scores only, so the AUC is not
 * inflated by memorization.
 */
export function domainClassifierAuc(
  ref: readonly Float32Array[],
  cur: readonly Float32Array[],
  opts: { folds?: number; seed?: number } & LogisticOptions = {},
): number {
  const folds = opts.folds ?? 5;
  const rand = seededRandom(opts.seed ?? 1);
  const items = [...ref.map((x) => ({ x, y: 0 as 0 | 1 })), ...cur.map((x) => ({ x, y: 1 as 0 | 1 }))];
  if (ref.length < folds || cur.length < folds) return 0.5;
  shuffleInPlace(items, rand);
  const scores = new Array<number>(items.length).fill(0);
  for (let f = 0; f < folds; f++) {
    const trainX: Float32Array[] = [];
    const trainY: (0 | 1)[] = [];
    for (let i = 0; i < items.length; i++)
      if (i % folds !== f) {
        trainX.push(items[i]!.x);
        trainY.push(items[i]!.y);
      }
    // Standardize with the training fold's statistics (as a sklearn StandardScaler → LogisticRegression
    // pipeline would): embedding coordinates have tiny, uneven variances, and unscaled gradient descent
    // under-fits them, understating real drift.
    const { mu, sd } = standardizer(trainX);
    const { w, b } = fitLogistic(
      trainX.map((x) => scale(x, mu, sd)),
      trainY,
      opts,
    );
    for (let i = f; i < items.length; i += folds) {
      const x = scale(items[i]!.x, mu, sd);
      let z = b;
      for (let d = 0; d < x.length; d++) z += w[d]! * x[d]!;
      scores[i] = z;
    }
  }
  return rocAuc(
    scores,
    items.map((it) => it.y),
  );
}

function standardizer(xs: readonly Float32Array[]): { mu: Float64Array; sd: Float64Array } {
  const dim = xs[0]?.length ?? 0;
  const mu = mean(xs);
  const sd = new Float64Array(dim);
  for (const x of xs) for (let d = 0; d < dim; d++) sd[d]! += (x[d]! - mu[d]!) ** 2;
  for (let d = 0; d < dim; d++) sd[d] = Math.sqrt(sd[d]! / Math.max(1, xs.length)) || 1;
  return { mu, sd };
}

function scale(x: Float32Array, mu: Float64Array, sd: Float64Array): Float32Array {
  const out = new Float32Array(x.length);
  for (let d = 0; d < x.length; d++) out[d] = (x[d]! - mu[d]!) / sd[d]!;
  return out;
}

export interface MmdResult {
  /** Unbiased MMD² estimate (Gretton et al. 2012, eq. 3). */
  mmd2: number;
  /** Permutation p-value with the +1 correction (Phipson & Smyth 2010). */
  pValue: number;
  /** RBF bandwidth σ from the median heuristic. */
  sigma: number;
  permutations: number;
}

/**
 * Kernel two-sample test: MMD² with an RBF kernel k(x,y)=exp(−‖x−y‖²/(2σ²)), σ² = median pairwise squared
 * distance of the pooled sample / 2 (median heuristic), p-value by permuting window labels over the one
 * pooled kernel matrix (Gretton et al., JMLR 2012).
 */
export function mmdPermutationTest(
  ref: readonly Float32Array[],
  cur: readonly Float32Array[],
  opts: { permutations?: number; seed?: number } = {},
): MmdResult {
  const permutations = opts.permutations ?? 200;
  const pooled = [...ref, ...cur];
  const n = pooled.length;
  const m = ref.length;
  if (m < 2 || cur.length < 2) return { mmd2: 0, pValue: 1, sigma: 0, permutations: 0 };
  const sq = new Float64Array(n);
  for (let i = 0; i < n; i++) sq[i] = dot(pooled[i]!, pooled[i]!);
  const d2 = new Float64Array(n * n);
  const upper: number[] = [];
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const v = Math.max(0, sq[i]! + sq[j]! - 2 * dot(pooled[i]!, pooled[j]!));
      d2[i * n + j] = v;
      d2[j * n + i] = v;
      upper.push(v);
    }
  }
  upper.sort((a, b) => a - b);
  const med = upper[Math.floor(upper.length / 2)] ?? 1;
  const twoSigma2 = med > 0 ? med : 1;
  const K = new Float64Array(n * n);
  for (let i = 0; i < n * n; i++) K[i] = Math.exp(-d2[i]! / twoSigma2);

  const stat = (inRef: Uint8Array): number => {
    // Unbiased estimator: diagonal terms excluded from the within-sample sums.
    let xx = 0,
      yy = 0,
      xy = 0;
    for (let i = 0; i < n; i++) {
      const ri = inRef[i]!;
      const row = i * n;
      for (let j = i + 1; j < n; j++) {
        const k = K[row + j]!;
        const rj = inRef[j]!;
        if (ri && rj) xx += k;
        else if (!ri && !rj) yy += k;
        else xy += k;
      }
    }
    const q = n - m;
    return (2 * xx) / (m * (m - 1)) + (2 * yy) / (q * (q - 1)) - (2 * xy) / (m * q);
  };

  const labels = new Uint8Array(n);
  for (let i = 0; i < m; i++) labels[i] = 1;
  const observed = stat(labels);
  const rand = seededRandom(opts.seed ?? 7);
  const perm = Array.from(labels);
  let atLeast = 0;
  for (let p = 0; p < permutations; p++) {
    shuffleInPlace(perm, rand);
    if (stat(Uint8Array.from(perm)) >= observed) atLeast++;
  }
  return { mmd2: observed, pValue: (atLeast + 1) / (permutations + 1), sigma: Math.sqrt(twoSigma2 / 2), permutations };
}

export interface KsResult {
  statistic: number;
  pValue: number;
}

/**
 * Two-sample Kolmogorov–Smirnov test. D = sup|F₁−F₂|; the p-value uses the asymptotic Kolmogorov
 * distribution with Stephens' small-sample correction λ = (√nₑ + 0.12 + 0.11/√nₑ)·D
 * (Numerical Recipes 3rd ed. §14.3.3, `kstwo`).
 */
export function ksTwoSample(a: readonly number[], b: readonly number[]): KsResult {
  if (a.length === 0 || b.length === 0) return { statistic: 0, pValue: 1 };
  const x = [...a].sort((p, q) => p - q);
  const y = [...b].sort((p, q) => p - q);
  let i = 0,
    j = 0,
    d = 0;
  while (i < x.length && j < y.length) {
    const v = Math.min(x[i]!, y[j]!);
    while (i < x.length && x[i]! <= v) i++;
    while (j < y.length && y[j]! <= v) j++;
    d = Math.max(d, Math.abs(i / x.length - j / y.length));
  }
  const ne = (x.length * y.length) / (x.length + y.length);
  const sne = Math.sqrt(ne);
  return { statistic: d, pValue: kolmogorovQ((sne + 0.12 + 0.11 / sne) * d) };
}

/** Q_KS(λ) = 2 Σ_{j≥1} (−1)^{j−1} exp(−2 j² λ²), the Kolmogorov survival function. */
export function kolmogorovQ(lambda: number): number {
  if (lambda < 1e-3) return 1;
  let sum = 0;
  let prev = 0;
  for (let j = 1; j <= 100; j++) {
    const term = 2 * (j % 2 === 1 ? 1 : -1) * Math.exp(-2 * j * j * lambda * lambda);
    sum += term;
    if (Math.abs(term) <= 1e-10 * Math.abs(prev) || Math.abs(term) < 1e-300) break;
    prev = term;
  }
  return Math.min(1, Math.max(0, sum));
}
