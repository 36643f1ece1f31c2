import { createRequire } from 'node:module';

/** The usearch index both the build (peers.ts) and the search threads (peer-worker.ts) open: M 16, efC 200, f32, inner product. */
export function usearchIndex(dim: number, expansionSearch: number): import('usearch').Index {
  const usearch = createRequire(import.meta.url)('usearch') as typeof import('usearch');
  return new usearch.Index({
    metric: usearch.MetricKind.IP,
    quantization: usearch.ScalarKind.F32,
    dimensions: dim,
    connectivity: 16,
    expansion_add: 200,
    expansion_search: expansionSearch,
    multi: false,
  });
}
