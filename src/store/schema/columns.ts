// Column groups that both dialect schemas (./sqlite.ts, ./pg.ts) declare the same way: written once here and built
// with each dialect's own column builder, so the twins cannot drift apart on them.

/** A collection's HNSW and chunking settings: integers, all required. `int` is the dialect's `integer` builder. */
export function collectionSettings<B extends { notNull(): unknown }>(int: (name: string) => B) {
  // notNull() returns NotNull<this>: ReturnType<B['notNull']> keeps the dialect's builder type for drizzle's inference
  const required = (name: string) => int(name).notNull() as ReturnType<B['notNull']>;
  return {
    hnswM: required('hnsw_m'),
    efConstruction: required('ef_construction'),
    efSearch: required('ef_search'),
    chunkSize: required('chunk_size'),
    chunkOverlap: required('chunk_overlap'),
  };
}
