import type { Hono } from 'hono';
import { AppError } from '../../errors.js';
import type { Config } from '../../config.js';
import type { CollectionCatalog } from '../../serving/catalog.js';
import type { Engine } from '../../serving/engine.js';
import type { DocumentStore, ModelStore, QueryLogStore } from '../../store/types.js';
import { z } from 'zod';
import type { AppEnv } from '../app.js';
import { defineRoute } from '../route.js';
import { decodeVector, encodeVector } from '../vector.js';
import {
  EmbeddingsBody,
  EmbeddingsResponse,
  FeedbackBody,
  FeedbackResult,
  ModelCard,
  ModelList,
  SearchBody,
  SearchResponse,
} from '../schemas.js';

interface SearchRoutesDeps {
  /** The serving pair: search, embeddings, the model it serves, and the query log /feedback looks in. */
  engine: Pick<Engine, 'search' | 'embedTexts' | 'serving' | 'flushQueryLog'>;
  catalog: CollectionCatalog;
  /** Feedback checks the logged query and the document, and records the judgement; /v1/models reads the model row. */
  store: DocumentStore & ModelStore & QueryLogStore;
  config: Pick<Config, 'MAX_K' | 'MAX_TEXT_BYTES' | 'MAX_BATCH_DOCS'>;
}

export function searchRoutes(app: Hono<AppEnv>, deps: SearchRoutesDeps) {
  const { engine, catalog, store, config: cfg } = deps;

  defineRoute(app, {
    method: 'post',
    path: '/search',
    operationId: 'search',
    summary: "Search (vector, keyword, hybrid, or auto: the collection's tuned strategy)",
    role: 'read',
    tags: ['search'],
    request: { body: SearchBody, bodyName: 'Search' },
    responses: { 200: { description: 'Ranked results; queryId is what POST /feedback refers to', schema: SearchResponse } },
    handler: async (c, { body: b }) => {
      const k = b.k ?? 10;
      if (!Number.isInteger(k) || k < 1 || k > cfg.MAX_K) throw new AppError('invalid_k', `k must be an integer in 1..${cfg.MAX_K}`);
      if (b.query !== undefined && b.vector !== undefined)
        throw new AppError('invalid_request', 'send either "query" or "vector", not both');
      if (b.query === undefined && b.vector === undefined) throw new AppError('invalid_request', 'send "query" (text) or "vector"');
      if (b.query !== undefined) {
        if (b.query.trim().length === 0) throw new AppError('empty_text', 'query must be a non-empty string');
        if (Buffer.byteLength(b.query, 'utf8') > cfg.MAX_TEXT_BYTES)
          throw new AppError('text_too_large', `query is longer than ${cfg.MAX_TEXT_BYTES} bytes`);
      }
      if (b.vector) {
        if (b.mode !== 'vector' && b.mode !== 'auto') throw new AppError('invalid_request', `mode "${b.mode}" needs a text "query"`);
      }
      const res = await engine.search({
        collection: b.collection,
        query: b.query,
        vector: b.vector === undefined ? undefined : decodeVector(b.vector),
        k,
        filter: b.filter,
        efSearch: b.efSearch,
        mode: b.mode,
      });
      return c.json(res);
    },
  });

  // OpenAI-compatible: the official `openai` client asks for base64 by default.
  defineRoute(app, {
    method: 'post',
    path: '/v1/embeddings',
    operationId: 'createEmbeddings',
    role: 'read',
    tags: ['openai'],
    summary: 'OpenAI-compatible embeddings (input_type "query" / "document" or a prompt name picks the model\'s prompt)',
    request: { body: EmbeddingsBody, bodyName: 'Embeddings' },
    responses: { 200: { description: 'One embedding per input, in order', schema: EmbeddingsResponse } },
    handler: async (c, { body: b }) => {
      const input = typeof b.input === 'string' ? [b.input] : b.input;
      if (input.length === 0 || input.length > cfg.MAX_BATCH_DOCS)
        throw new AppError('too_many_documents', `input must hold 1..${cfg.MAX_BATCH_DOCS} strings`);
      input.forEach((t, i) => {
        if (t.length === 0) throw new AppError('empty_text', `input[${i}] is empty`);
        if (Buffer.byteLength(t, 'utf8') > cfg.MAX_TEXT_BYTES)
          throw new AppError('text_too_large', `input[${i}] is longer than ${cfg.MAX_TEXT_BYTES} bytes`);
      });
      // input_type: "query" / "document" get the model's prompt for them; any other value names a prompt.
      const kind = b.input_type === 'query' || b.input_type === 'document' ? b.input_type : undefined;
      const prompts = engine.serving.embedder.model?.prompts ?? {};
      if (b.input_type !== undefined && kind === undefined && !(b.input_type in prompts)) {
        throw new AppError(
          'invalid_request',
          `input_type must be "query", "document" or one of the model's prompt names (${Object.keys(prompts).join(', ') || 'none'}), got "${b.input_type}"`,
        );
      }
      const { vectors, model } = await engine.embedTexts(
        input,
        kind ? { kind } : b.input_type !== undefined ? { promptName: b.input_type } : {},
      );
      if (b.dimensions !== undefined && b.dimensions !== vectors[0]!.length) {
        throw new AppError('invalid_request', `model ${model} produces ${vectors[0]!.length} dimensions; "dimensions" cannot change that`);
      }
      const tokens = input.reduce((n, t) => n + (t.match(/\S+/g)?.length ?? 0), 0);
      return c.json({
        object: 'list',
        data: vectors.map((v, index) => ({
          object: 'embedding',
          index,
          embedding: b.encoding_format === 'base64' ? encodeVector(v) : Array.from(v),
        })),
        model,
        usage: { prompt_tokens: tokens, total_tokens: tokens },
      });
    },
  });

  // OpenAI-compatible model list: the serving model (the `openai` client's models.list() / retrieve()),
  // with how it embeds: dimensions, pooling, prompts per input_type, token limit and the ONNX file that serves.
  const describeModel = async () => {
    const pair = engine.serving;
    const row = await store.getModelVersion(pair.version);
    const m = pair.embedder.model;
    return {
      id: pair.version,
      object: 'model' as const,
      created: Math.floor((row?.createdAt ?? Date.now()) / 1000),
      owned_by: 'tuned-retrieval',
      dimensions: pair.embedder.dim,
      ...(m
        ? {
            pooling: m.pooling,
            normalize: m.normalize,
            max_tokens: m.maxTokens,
            dtype: m.dtype,
            file: m.file,
            prompts: m.prompts,
            default_prompt_name: m.defaultPromptName,
            input_types: { query: m.queryPrompt, document: m.documentPrompt },
            config: m.configSource,
          }
        : {}),
    };
  };
  defineRoute(app, {
    method: 'get',
    path: '/v1/models',
    operationId: 'listOpenAIModels',
    role: 'read',
    tags: ['openai'],
    summary: 'OpenAI-compatible model list: the serving model, its pooling, prompts and weights file',
    responses: { 200: { description: 'The serving model', schema: ModelList } },
    handler: async (c) => c.json({ object: 'list', data: [await describeModel()] }),
  });
  defineRoute(app, {
    method: 'get',
    path: '/v1/models/:id',
    operationId: 'retrieveOpenAIModel',
    summary: 'The serving model (OpenAI-compatible retrieve)',
    role: 'read',
    tags: ['openai'],
    request: { params: { id: z.string() } },
    responses: { 200: { description: 'The serving model', schema: ModelCard } },
    handler: async (c, { params }) => {
      const m = await describeModel();
      if (params.id !== m.id) throw new AppError('model_not_found', `model "${params.id}" is not the serving model (${m.id})`);
      return c.json(m);
    },
  });

  defineRoute(app, {
    method: 'post',
    path: '/feedback',
    operationId: 'sendFeedback',
    summary: 'Mark a document relevant to a logged query',
    role: 'read',
    tags: ['search'],
    request: { body: FeedbackBody, bodyName: 'Feedback' },
    responses: { 201: { description: 'Recorded', schema: FeedbackResult } },
    handler: async (c, { body: b }) => {
      let q = await store.getQueryLog(b.queryId);
      if (!q) {
        // The search may still sit in the write buffer.
        await engine.flushQueryLog();
        q = await store.getQueryLog(b.queryId);
      }
      if (!q) throw new AppError('query_not_found', `no logged query has id "${b.queryId}"`);
      const col = await catalog.require(q.collection);
      if (!(await store.getDocument(col.id, b.documentId))) {
        throw new AppError('document_not_found', `document "${b.documentId}" not found in "${q.collection}"`);
      }
      const row = await store.insertFeedback({ queryId: b.queryId, documentId: b.documentId, relevant: b.relevant });
      return c.json({ id: row.id, queryId: row.queryId, documentId: row.documentId, relevant: row.relevant }, 201);
    },
  });
}
