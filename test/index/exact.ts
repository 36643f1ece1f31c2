// Exact nearest neighbours by brute force: the reference the index suites measure recall against.
export function dot(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] as number) * (b[i] as number);
  return s;
}

/** Labels of the k vectors with the highest inner product with q (only labels in `allow` when given). */
export function exactTopK(q: Float32Array, vecs: Map<number, Float32Array>, k: number, allow?: Set<number>): number[] {
  const scored: [number, number][] = [];
  for (const [label, v] of vecs) if (!allow || allow.has(label)) scored.push([label, dot(q, v)]);
  scored.sort((a, b) => b[1] - a[1]);
  return scored.slice(0, k).map(([l]) => l);
}
