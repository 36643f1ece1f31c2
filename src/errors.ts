// Every error a client can see has a stable code. The README's error table is generated from
// ERROR_CODES (npx tsx scripts/error-table.ts); a test fails when the README misses a code.
export const ERROR_CODES = {
  invalid_json: { status: 400, description: 'The body is not valid JSON.' },
  invalid_request: { status: 400, description: 'The body or query string does not match the schema (unknown fields included).' },
  empty_text: { status: 400, description: 'A document or query text is empty or not a string.' },
  too_many_documents: { status: 400, description: 'The documents array is empty or longer than MAX_BATCH_DOCS.' },
  text_too_large: { status: 413, description: 'A single text is longer than MAX_TEXT_BYTES.' },
  body_too_large: { status: 413, description: 'The request body is longer than MAX_BODY_BYTES.' },
  invalid_vector: { status: 400, description: 'The vector has the wrong dimension or holds NaN/Infinity.' },
  nesting_too_deep: { status: 400, description: 'The JSON body nests objects/arrays deeper than 32 levels (e.g. document metadata).' },
  invalid_k: { status: 400, description: 'k is not an integer in 1..MAX_K.' },
  collection_not_found: { status: 404, description: 'No collection has that name.' },
  collection_exists: { status: 409, description: 'A collection with that name already exists.' },
  document_not_found: { status: 404, description: 'No document has that id in the collection.' },
  query_not_found: { status: 404, description: 'No logged query has that queryId.' },
  model_not_found: { status: 404, description: 'No model version has that name.' },
  model_unavailable: { status: 409, description: 'That model version was purged or never served; it cannot be rolled back to.' },
  job_not_found: { status: 404, description: 'No retrain job has that id.' },
  job_running: { status: 409, description: 'A retrain job for this collection is already running.' },
  collection_empty: { status: 409, description: 'The collection has no documents to train on.' },
  not_enough_feedback: {
    status: 409,
    description: 'A drift-triggered job needs enough held-out queries with feedback for its gate; none was created.',
  },
  unauthorized: { status: 401, description: 'No valid API key was sent (Authorization: Bearer <key>).' },
  forbidden: { status: 403, description: 'The API key is valid but its role may not do this.' },
  not_found: { status: 404, description: 'No route matches.' },
  method_not_allowed: { status: 405, description: 'The route exists but not for this method.' },
  overloaded: { status: 429, description: 'The embed queue is full; retry after Retry-After seconds.' },
  not_ready: { status: 503, description: 'The server is starting or shutting down (model or indexes not loaded).' },
  internal: { status: 500, description: 'An unexpected error; the server log has details.' },
} as const satisfies Record<string, { status: number; description: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export class AppError extends Error {
  readonly status: number;
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: unknown,
    readonly headers?: Record<string, string>,
  ) {
    super(message);
    this.name = 'AppError';
    this.status = ERROR_CODES[code].status;
  }
}

export function errorBody(code: ErrorCode, message: string, details?: unknown) {
  return { error: details === undefined ? { code, message } : { code, message, details } };
}
