// Promotion gate: a candidate encoder may replace the champion only if, on the same held-out queries,
// NDCG@10 rises by at least `margin` (absolute) and none of the guarded metrics drops by more than
// `tolerance` (absolute). The decision carries every number so it can be stored in eval_reports.

const GATE_PRIMARY = 'ndcg@10';
const GATE_GUARDED = ['recall@1', 'recall@5', 'recall@10', 'mrr@10'] as const;

export interface GateOptions {
  /** Minimum absolute NDCG@10 gain (default 0.01). */
  margin?: number;
  /** Largest allowed absolute drop of each guarded metric (default 0.005). */
  tolerance?: number;
}

export interface GateDecision {
  pass: boolean;
  /** Same as `pass` (the job runner reads `passed`). */
  passed: boolean;
  reasons: string[];
  /** candidate - champion for every metric present in both. */
  deltas: Record<string, number>;
  candidate: Record<string, number>;
  champion: Record<string, number>;
  margin: number;
  tolerance: number;
  primary: string;
  guarded: string[];
}

const fmt = (x: number): string => (Number.isFinite(x) ? x.toFixed(4) : String(x));
// Comparisons get a tiny epsilon so that exactly-at-threshold values (0.01 vs 0.0099999...) are not flipped by float noise.
const EPS = 1e-12;

export function decideGate(candidate: Record<string, number>, champion: Record<string, number>, opts: GateOptions = {}): GateDecision {
  const margin = opts.margin ?? 0.01;
  const tolerance = opts.tolerance ?? 0.005;
  if (!(margin >= 0) || !(tolerance >= 0)) throw new RangeError('gate margin and tolerance must be >= 0');
  const reasons: string[] = [];
  const deltas: Record<string, number> = {};
  for (const k of Object.keys(candidate)) {
    const c = candidate[k];
    const h = champion[k];
    if (typeof c === 'number' && typeof h === 'number') deltas[k] = c - h;
  }
  let pass = true;
  const need = [GATE_PRIMARY, ...GATE_GUARDED];
  for (const k of need) {
    const c = candidate[k];
    const h = champion[k];
    if (typeof c !== 'number' || !Number.isFinite(c) || typeof h !== 'number' || !Number.isFinite(h)) {
      pass = false;
      reasons.push(`${k}: missing or not finite (candidate ${String(c)}, champion ${String(h)})`);
    }
  }
  const d = deltas[GATE_PRIMARY];
  if (d !== undefined && Number.isFinite(d)) {
    if (d + EPS >= margin) {
      reasons.push(
        `${GATE_PRIMARY} +${fmt(d)} >= margin ${fmt(margin)} (${fmt(champion[GATE_PRIMARY] ?? NaN)} -> ${fmt(candidate[GATE_PRIMARY] ?? NaN)})`,
      );
    } else {
      pass = false;
      reasons.push(
        `${GATE_PRIMARY} ${d >= 0 ? '+' : ''}${fmt(d)} < margin ${fmt(margin)} (${fmt(champion[GATE_PRIMARY] ?? NaN)} -> ${fmt(candidate[GATE_PRIMARY] ?? NaN)})`,
      );
    }
  }
  for (const k of GATE_GUARDED) {
    const dk = deltas[k];
    if (dk === undefined || !Number.isFinite(dk)) continue;
    if (dk + tolerance + EPS < 0) {
      pass = false;
      reasons.push(`${k} dropped ${fmt(-dk)} > tolerance ${fmt(tolerance)} (${fmt(champion[k] ?? NaN)} -> ${fmt(candidate[k] ?? NaN)})`);
    }
  }
  return {
    pass,
    passed: pass,
    reasons,
    deltas,
    candidate: { ...candidate },
    champion: { ...champion },
    margin,
    tolerance,
    primary: GATE_PRIMARY,
    guarded: [...GATE_GUARDED],
  };
}
