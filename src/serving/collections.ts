// Collections and document writes: creating and deleting a collection, describing it, and upserting or
// deleting documents (chunk, embed with the serving model, store the rows, then bring the serving indexes in
// line). The store is written first and is the source of truth; the serving pair's indexes belong to the
// engine (./engine.ts), which applies each write to them under its write lock.

import type { Config } from '../config.js';
import { AppError } from '../errors.js';
import type { Metrics } from '../metrics.js';
import type { StrategyBook } from '../search/tuner.js';
import { isCollectionGone } from '../store/errors.js';
import type { Collection, CollectionStore, DocumentStore, Metadata } from '../store/types.js';
import { chunkText } from '../util/chunk.js';
import type { CollectionCatalog } from './catalog.js';
import type { Engine } from './engine.js';

export interface DocumentIn {
  id: string;
  text: string;
  metadata?: Metadata;
}

interface CollectionsDeps {
  store: CollectionStore & DocumentStore;
  /** Defaults for a new collection's chunking and HNSW parameters. */
  config: Pick<Config, 'CHUNK_SIZE' | 'CHUNK_OVERLAP' | 'HNSW_M' | 'HNSW_EF_CONSTRUCTION' | 'HNSW_EF_SEARCH'>;
  metrics: Pick<Metrics, 'ingestDocuments' | 'ingestChunks'>;
  catalog: CollectionCatalog;
  /** Each collection's `auto` strategy: shown by describe, forgotten with the collection. */
  strategies: Pick<StrategyBook, 'get' | 'forget'>;
  /** The serving pair (embedder and indexes) and the write lock every change to them runs under. */
  engine: Pick<Engine, 'serving' | 'exclusive' | 'addCollectionIndex' | 'dropCollectionIndexes' | 'applyWrite'>;
}

export class Collections {
  constructor(private readonly deps: CollectionsDeps) {}

  async create(name: string, hnsw?: Partial<Collection['hnsw']>, chunk?: Partial<Collection['chunk']>): Promise<Collection> {
    const cfg = this.deps.config;
    const size = chunk?.size ?? cfg.CHUNK_SIZE;
    const overlap = chunk?.overlap ?? Math.min(cfg.CHUNK_OVERLAP, size - 1);
    if (overlap >= size) throw new AppError('invalid_request', 'chunk.overlap must be smaller than chunk.size');
    const { engine } = this.deps;
    return engine.exclusive(async () => {
      const c = await this.deps.store.createCollection({
        name,
        hnsw: {
          M: hnsw?.M ?? cfg.HNSW_M,
          efConstruction: hnsw?.efConstruction ?? cfg.HNSW_EF_CONSTRUCTION,
          efSearch: hnsw?.efSearch ?? cfg.HNSW_EF_SEARCH,
        },
        chunk: { size, overlap },
      });
      await engine.addCollectionIndex(c);
      return c;
    });
  }

  async delete(name: string): Promise<void> {
    const { engine, catalog } = this.deps;
    await engine.exclusive(async () => {
      const c = await catalog.require(name);
      await this.deps.store.deleteCollection(name);
      catalog.forget(name);
      this.deps.strategies.forget(c);
      await engine.dropCollectionIndexes(c);
    });
  }

  async describe(c: Collection) {
    const pair = this.deps.engine.serving;
    return {
      name: c.name,
      documents: await this.deps.store.countDocuments(c.id),
      chunks: pair.indexes.get(c.id)?.count() ?? 0,
      model: pair.version,
      // What `mode: "auto"` serves, the numbers behind it and when it was decided (null: keyword until measured).
      strategy: (await this.deps.strategies.get(c, pair.version)) ?? null,
      dim: pair.embedder.dim,
      hnsw: c.hnsw,
      chunk: c.chunk,
      createdAt: new Date(c.createdAt).toISOString(),
    };
  }

  async upsertDocuments(name: string, docs: DocumentIn[]): Promise<{ upserted: number; chunks: number; seq: number }> {
    const { engine, metrics } = this.deps;
    const c = await this.deps.catalog.require(name);
    const inputs = docs.map((d) => ({
      id: d.id,
      text: d.text,
      metadata: d.metadata ?? {},
      chunks: chunkText(d.text, c.chunk.size, c.chunk.overlap),
    }));
    let pair = engine.serving;
    // Embed outside the write lock: it is the slow part and needs no ordering.
    let vectors = await pair.embedder.embed(
      inputs.flatMap((d) => d.chunks),
      { kind: 'document' },
    );
    const res = await engine.exclusive(async () => {
      if (engine.serving !== pair) {
        // A cut-over happened while we embedded: vectors must come from the model now serving.
        pair = engine.serving;
        vectors = await pair.embedder.embed(
          inputs.flatMap((d) => d.chunks),
          { kind: 'document' },
        );
      }
      // DELETE /collections/:name may have won the lock while we embedded: that is a 404, not a FK error.
      const r = await this.deps.store.upsertDocuments(c.id, inputs).catch((err: unknown) => {
        if (isCollectionGone(err)) throw new AppError('collection_not_found', `collection "${name}" was deleted`);
        throw err;
      });
      await engine.applyWrite(pair, c, r.removed, { labels: r.added.map((a) => a.label), vectors });
      return r;
    });
    metrics.ingestDocuments.inc({ collection: name }, docs.length);
    metrics.ingestChunks.inc({ collection: name }, res.added.length);
    return { upserted: docs.length, chunks: res.added.length, seq: res.seq };
  }

  async deleteDocument(name: string, docId: string): Promise<void> {
    const { engine } = this.deps;
    const c = await this.deps.catalog.require(name);
    await engine.exclusive(async () => {
      const r = await this.deps.store.deleteDocument(c.id, docId);
      if (!r) throw new AppError('document_not_found', `document "${docId}" not found in "${name}"`);
      await engine.applyWrite(engine.serving, c, r.removed);
    });
  }
}
