import type { Hono } from 'hono';
import { AppError } from '../../errors.js';
import type { Engine } from '../../serving/engine.js';
import { CollectionName, CreateCollectionBody, UpsertDocumentsBody } from '../schemas.js';
import { parseBody, parseValue } from '../validate.js';
import type { AppEnv } from '../app.js';

export function collectionRoutes(app: Hono<AppEnv>, engine: Engine) {
  const cfg = engine.config;

  app.post('/collections', async (c) => {
    const body = await parseBody(c, CreateCollectionBody);
    const col = await engine.createCollection(body.name, body.hnsw, body.chunk);
    return c.json(await engine.describeCollection(col), 201);
  });

  app.get('/collections', async (c) => {
    const cols = await engine.store.listCollections();
    return c.json({ collections: await Promise.all(cols.map((x) => engine.describeCollection(x))) });
  });

  app.get('/collections/:name', async (c) => {
    const col = await engine.requireCollection(parseValue(CollectionName, c.req.param('name')));
    return c.json(await engine.describeCollection(col));
  });

  app.delete('/collections/:name', async (c) => {
    await engine.deleteCollection(parseValue(CollectionName, c.req.param('name')));
    return c.json({ deleted: true });
  });

  app.post('/collections/:name/documents', async (c) => {
    const name = parseValue(CollectionName, c.req.param('name'));
    const body = await parseBody(c, UpsertDocumentsBody);
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
      if (bytes > cfg.MAX_TEXT_BYTES) throw new AppError('text_too_large', `documents[${i}].text is ${bytes} bytes; the limit is ${cfg.MAX_TEXT_BYTES}`);
      if (ids.has(d.id)) throw new AppError('invalid_request', `documents[${i}].id "${d.id}" appears twice in this batch`);
      ids.add(d.id);
      return { id: d.id, text: d.text, metadata: d.metadata };
    });
    // Validate the collection before the (slow) embedding step.
    await engine.requireCollection(name);
    const r = await engine.upsertDocuments(name, clean);
    return c.json(r, 200);
  });

  app.get('/collections/:name/documents/:id', async (c) => {
    const col = await engine.requireCollection(parseValue(CollectionName, c.req.param('name')));
    const doc = await engine.store.getDocument(col.id, c.req.param('id'));
    if (!doc) throw new AppError('document_not_found', `document "${c.req.param('id')}" not found`);
    return c.json(doc);
  });

  app.delete('/collections/:name/documents/:id', async (c) => {
    await engine.deleteDocument(parseValue(CollectionName, c.req.param('name')), c.req.param('id'));
    return c.json({ deleted: true });
  });

  app.post('/collections/:name/reindex', async (c) => {
    const col = await engine.requireCollection(parseValue(CollectionName, c.req.param('name')));
    const n = await engine.rebuildCollection(col);
    return c.json({ reindexed: true, chunks: n });
  });
}
