import { z } from 'zod';

// Request schemas are strict: an unknown field is a client bug worth reporting, not ignoring.
// The OpenAPI document is generated from these same schemas.
export const CollectionName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/, 'letters, digits, "_", "-", "." (1-128, starting with a letter or digit)');

export const CreateCollectionBody = z.strictObject({
  name: CollectionName,
  hnsw: z.strictObject({
    M: z.number().int().min(2).max(128).optional(),
    efConstruction: z.number().int().min(10).max(2000).optional(),
    efSearch: z.number().int().min(1).max(5000).optional(),
  }).optional(),
  chunk: z.strictObject({
    size: z.number().int().min(50).max(100_000).optional(),
    overlap: z.number().int().min(0).max(50_000).optional(),
  }).optional(),
});

export const Scalar = z.union([z.string(), z.number(), z.boolean(), z.null()]);

export const DocumentBody = z.strictObject({
  id: z.string().min(1).max(512),
  // Checked by the route so a missing/non-string text gets the specific `empty_text` code.
  text: z.unknown().optional(),
  metadata: z.record(z.string(), z.unknown()).optional(),
});

export const UpsertDocumentsBody = z.strictObject({
  documents: z.array(DocumentBody),
});

export const SearchBody = z.strictObject({
  collection: CollectionName,
  query: z.string().optional(),
  // Element types are checked by the route: NaN/Infinity must answer `invalid_vector`, not a schema error.
  vector: z.array(z.unknown()).optional(),
  k: z.number().optional(),
  filter: z.record(z.string(), Scalar).optional(),
  efSearch: z.number().int().min(1).max(10_000).optional(),
  mode: z.enum(['auto', 'vector', 'keyword', 'hybrid']).default('auto'),
});

export const EmbeddingsBody = z.strictObject({
  input: z.union([z.string(), z.array(z.string())]),
  model: z.string().optional(),
  encoding_format: z.enum(['float', 'base64']).default('float'),
  dimensions: z.number().int().optional(),
  user: z.string().optional(),
  /** "query" or "document" (the model's prompt for it, as sentence-transformers' encode_query / encode_document), or one of its prompt names. */
  input_type: z.string().min(1).max(128).optional(),
});

export const FeedbackBody = z.strictObject({
  queryId: z.string().min(1).max(128),
  documentId: z.string().min(1).max(512),
  relevant: z.boolean().default(true),
});
