import type { Hono } from 'hono';
import { z } from 'zod';
import { AppError } from '../../errors.js';
import type { Config } from '../../config.js';
import type { CollectionCatalog } from '../../serving/catalog.js';
import type { Collections } from '../../serving/collections.js';
import type { Engine } from '../../serving/engine.js';
import type { CollectionStore, DocumentStore } from '../../store/types.js';
import type { AppEnv } from '../app.js';
import { defineRoute } from '../route.js';
import {
  CollectionInfo,
  CollectionList,
  CollectionName,
  CreateCollectionBody,
  Deleted,
  Reindexed,
  StoredDocument,
  UpsertDocumentsBody,
  UpsertResult,
} from '../schemas.js';

const name = { name: CollectionName };
const nameAndId = { name: CollectionName, id: z.string() };

interface CollectionRoutesDeps {
  collections: Collections;
  catalog: CollectionCatalog;
  /** Reads: the collection list and stored documents. */
  store: CollectionStore & DocumentStore;
  /** POST /collections/:name/reindex rebuilds the serving index. */
  engine: Pick<Engine, 'rebuildCollection'>;
  config: Pick<Config, 'MAX_BATCH_DOCS' | 'MAX_TEXT_BYTES'>;
}

export function collectionRoutes(app: Hono<AppEnv>, deps: CollectionRoutesDeps) {
  const { collections, catalog, store, engine, config: cfg } = deps;
  const tags = ['collections'];

  defineRoute(app, {
    method: 'post',
    path: '/collections',
    operationId: 'createCollection',
    summary: 'Create a collection',
    role: 'admin',
    tags,
    request: { body: CreateCollectionBody, bodyName: 'CreateCollection' },
    responses: { 201: { description: 'The new collection', schema: CollectionInfo } },
    handler: async (c, { body }) => {
      const col = await collections.create(body.name, body.hnsw, body.chunk);
      return c.json(await collections.describe(col), 201);
    },
  });

  defineRoute(app, {
    method: 'get',
    path: '/collections',
    operationId: 'listCollections',
    summary: 'List collections',
    role: 'read',
    tags,
    responses: { 200: { description: 'Every collection', schema: CollectionList } },
    handler: async (c) => {
      const cols = await store.listCollections();
      return c.json({ collections: await Promise.all(cols.map((x) => collections.describe(x))) });
    },
  });

  defineRoute(app, {
    method: 'get',
    path: '/collections/:name',
    operationId: 'getCollection',
    summary: 'Describe a collection (documents, chunks, model, strategy, params)',
    role: 'read',
    tags,
    request: { params: name },
    responses: { 200: { description: 'The collection', schema: CollectionInfo } },
    handler: async (c, { params }) => c.json(await collections.describe(await catalog.require(params.name))),
  });

  defineRoute(app, {
    method: 'delete',
    path: '/collections/:name',
    operationId: 'deleteCollection',
    summary: 'Delete a collection with its documents and indexes',
    role: 'admin',
    tags,
    request: { params: name },
    responses: { 200: { description: 'Deleted', schema: Deleted } },
    handler: async (c, { params }) => {
      await collections.delete(params.name);
      return c.json({ deleted: true });
    },
  });

  defineRoute(app, {
    method: 'post',
    path: '/collections/:name/documents',
    operationId: 'upsertDocuments',
    summary: 'Batch upsert documents (re-upsert replaces)',
    role: 'admin',
    tags,
    request: { params: name, body: UpsertDocumentsBody, bodyName: 'UpsertDocuments' },
    responses: { 200: { description: 'Documents and chunks written; seq orders the write', schema: UpsertResult } },
    handler: async (c, { params, body }) => {
      const docs = body.documents;
      if (docs.length === 0 || docs.length > cfg.MAX_BATCH_DOCS) {
        throw new AppError('too_many_documents', `documents must hold 1..${cfg.MAX_BATCH_DOCS} items (got ${docs.length})`);
      }
      const ids = new Set<string>();
      const clean = docs.map((d, i) => {
        if (typeof d.text !== 'string' || d.text.trim().length === 0) {
          throw new AppError('empty_text', `documents[${i}].text must be a non-empty string`);
        }
        const bytes = Buffer.byteLength(d.text, 'utf8');
        if (bytes > cfg.MAX_TEXT_BYTES)
          throw new AppError('text_too_large', `documents[${i}].text is ${bytes} bytes; the limit is ${cfg.MAX_TEXT_BYTES}`);
        if (ids.has(d.id)) throw new AppError('invalid_request', `documents[${i}].id "${d.id}" appears twice in this batch`);
        ids.add(d.id);
        return { id: d.id, text: d.text, metadata: d.metadata };
      });
      // Validate the collection before the (slow) embedding step.
      await catalog.require(params.name);
      const r = await collections.upsertDocuments(params.name, clean);
      return c.json(r, 200);
    },
  });

  defineRoute(app, {
    method: 'get',
    path: '/collections/:name/documents/:id',
    operationId: 'getDocument',
    summary: 'Get a stored document',
    role: 'read',
    tags,
    request: { params: nameAndId },
    responses: { 200: { description: 'The document', schema: StoredDocument } },
    handler: async (c, { params }) => {
      const col = await catalog.require(params.name);
      const doc = await store.getDocument(col.id, params.id);
      if (!doc) throw new AppError('document_not_found', `document "${params.id}" not found`);
      return c.json(doc);
    },
  });

  defineRoute(app, {
    method: 'delete',
    path: '/collections/:name/documents/:id',
    operationId: 'deleteDocument',
    summary: 'Delete a document',
    role: 'admin',
    tags,
    request: { params: nameAndId },
    responses: { 200: { description: 'Deleted', schema: Deleted } },
    handler: async (c, { params }) => {
      await collections.deleteDocument(params.name, params.id);
      return c.json({ deleted: true });
    },
  });

  defineRoute(app, {
    method: 'post',
    path: '/collections/:name/reindex',
    operationId: 'reindexCollection',
    summary: 'Rebuild the index from the database',
    role: 'admin',
    tags,
    request: { params: name },
    responses: { 200: { description: 'Rebuilt; chunks indexed', schema: Reindexed } },
    handler: async (c, { params }) => {
      const n = await engine.rebuildCollection(await catalog.require(params.name));
      return c.json({ reindexed: true, chunks: n });
    },
  });
}
