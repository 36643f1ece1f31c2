import { z } from 'zod';
import { ERROR_CODES } from '../errors.js';
import { CreateCollectionBody, EmbeddingsBody, FeedbackBody, SearchBody, UpsertDocumentsBody } from './schemas.js';

// OpenAPI 3.1 uses JSON Schema 2020-12, which zod 4 emits natively: the document is generated from the
// very schemas that validate requests, so it cannot drift from what the server accepts.
const schema = (s: z.ZodType) => {
  const { $schema: _drop, ...rest } = z.toJSONSchema(s, { target: 'draft-2020-12', io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  return rest;
};

interface Op {
  summary: string;
  body?: string;
  role: 'public' | 'read' | 'admin';
  params?: string[];
  query?: string[];
  ok?: number;
}

const ROUTES: Record<string, Record<string, Op>> = {
  '/collections': {
    post: { summary: 'Create a collection', body: 'CreateCollection', role: 'admin', ok: 201 },
    get: { summary: 'List collections', role: 'read' },
  },
  '/collections/{name}': {
    get: { summary: 'Describe a collection (documents, chunks, model, params)', role: 'read', params: ['name'] },
    delete: { summary: 'Delete a collection with its documents and indexes', role: 'admin', params: ['name'] },
  },
  '/collections/{name}/documents': {
    post: { summary: 'Batch upsert documents (re-upsert replaces)', body: 'UpsertDocuments', role: 'admin', params: ['name'] },
  },
  '/collections/{name}/documents/{id}': {
    get: { summary: 'Get a stored document', role: 'read', params: ['name', 'id'] },
    delete: { summary: 'Delete a document', role: 'admin', params: ['name', 'id'] },
  },
  '/collections/{name}/reindex': { post: { summary: 'Rebuild the index from the database', role: 'admin', params: ['name'] } },
  '/collections/{name}/retrain': { post: { summary: 'Start a retrain job', role: 'admin', params: ['name'], ok: 202 } },
  '/search': { post: { summary: 'Search (vector, keyword or hybrid)', body: 'Search', role: 'read' } },
  '/v1/embeddings': { post: { summary: 'OpenAI-compatible embeddings (input_type "query" / "document" or a prompt name picks the model\'s prompt)', body: 'Embeddings', role: 'read' } },
  '/v1/models': { get: { summary: 'OpenAI-compatible model list: the serving model, its pooling, prompts and weights file', role: 'read' } },
  '/v1/models/{id}': { get: { summary: 'The serving model (OpenAI-compatible retrieve)', role: 'read', params: ['id'] } },
  '/feedback': { post: { summary: 'Mark a document relevant to a logged query', body: 'Feedback', role: 'read', ok: 201 } },
  '/drift': { get: { summary: 'Run a drift check now', role: 'read', query: ['collection'] } },
  '/jobs': { get: { summary: 'List retrain jobs', role: 'read' } },
  '/jobs/{id}': { get: { summary: 'A retrain job: state, progress, timings, gate decision', role: 'read', params: ['id'] } },
  '/models': { get: { summary: 'Model versions with their eval reports', role: 'read' } },
  '/models/{version}/rollback': { post: { summary: 'Switch serving back to a retained version', role: 'admin', params: ['version'] } },
  '/healthz': { get: { summary: 'Liveness', role: 'public' } },
  '/readyz': { get: { summary: 'Readiness: model and indexes loaded', role: 'public' } },
  '/metrics': { get: { summary: 'Prometheus metrics', role: 'public' } },
};

export function openApiDocument(version: string) {
  const errorRef = { $ref: '#/components/schemas/Error' };
  const paths: Record<string, Record<string, unknown>> = {};
  for (const [path, ops] of Object.entries(ROUTES)) {
    paths[path] = {};
    for (const [method, op] of Object.entries(ops)) {
      const parameters = [
        ...(op.params ?? []).map((name) => ({ name, in: 'path', required: true, schema: { type: 'string' } })),
        ...(op.query ?? []).map((name) => ({ name, in: 'query', required: true, schema: { type: 'string' } })),
      ];
      paths[path]![method] = {
        summary: op.summary,
        'x-role': op.role,
        ...(op.role === 'public' ? { security: [] } : {}),
        ...(parameters.length ? { parameters } : {}),
        ...(op.body ? { requestBody: { required: true, content: { 'application/json': { schema: { $ref: `#/components/schemas/${op.body}` } } } } } : {}),
        responses: {
          [String(op.ok ?? 200)]: { description: 'OK' },
          '4XX': { description: 'Client error (see the error codes)', content: { 'application/json': { schema: errorRef } } },
          '5XX': { description: 'Server error or not ready', content: { 'application/json': { schema: errorRef } } },
        },
      };
    }
  }
  return {
    openapi: '3.1.0',
    info: { title: 'tuned-retrieval', version, description: 'Self-tuning retrieval server.' },
    paths,
    components: {
      securitySchemes: { apiKey: { type: 'http', scheme: 'bearer', description: 'API key (rk_…); read or admin role' } },
      schemas: {
        CreateCollection: schema(CreateCollectionBody),
        UpsertDocuments: schema(UpsertDocumentsBody),
        Search: schema(SearchBody),
        Embeddings: schema(EmbeddingsBody),
        Feedback: schema(FeedbackBody),
        Error: {
          type: 'object',
          required: ['error'],
          properties: {
            error: {
              type: 'object',
              required: ['code', 'message'],
              properties: { code: { type: 'string', enum: Object.keys(ERROR_CODES) }, message: { type: 'string' }, details: {} },
            },
          },
        },
      },
    },
    security: [{ apiKey: [] }],
  };
}
