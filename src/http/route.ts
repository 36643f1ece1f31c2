import type { Context, Hono, MiddlewareHandler } from 'hono';
import { z } from 'zod';
import { ERROR_CODES } from '../errors.js';
import type { AppEnv } from './app.js';
import { parseBody, parseJson, parseValue } from './validate.js';

// One object per route: the hono handler and its /openapi.json entry are both made from it, so a served
// route cannot be missing from the document, and the document's schemas are the ones that validate.
// (Not @hono/zod-openapi: its validators read bodies with c.req.json(), which would turn malformed JSON
// into a generic 400 and skip the nesting-depth check; the stable codes invalid_json / nesting_too_deep
// / invalid_request come from validate.ts, which this helper calls.)

type Method = 'get' | 'post' | 'delete';
type Role = 'public' | 'read' | 'admin';

interface ResponseSpec {
  description: string;
  /** The body: JSON unless contentType says otherwise (then a z.string()). */
  schema?: z.ZodType;
  contentType?: string;
  headers?: Record<string, string>;
}

type Shape = Record<string, z.ZodType>;
type Infer<T> = T extends z.ZodType ? z.output<T> : T extends Shape ? { [K in keyof T]: z.output<T[K]> } : undefined;

export interface RouteSpec<
  P extends Shape | undefined = Shape | undefined,
  Q extends z.ZodType | undefined = z.ZodType | undefined,
  B extends z.ZodType | undefined = z.ZodType | undefined,
> {
  method: Method;
  /** hono syntax (`/collections/:name`); the document writes `{name}`. */
  path: string;
  operationId: string;
  summary: string;
  /** Who may call it: public (no key), read or admin key. Documented as x-role. */
  role: Role;
  tags?: string[];
  request?: {
    /** Each path parameter's schema, checked one by one in declaration order. */
    params?: P;
    /** The whole query string (strict objects refuse unknown parameters). */
    query?: Q;
    body?: B;
    /** The component name the body schema is published under. */
    bodyName?: string;
    /** An empty body counts as `{}` (POST /collections/:name/retrain). */
    bodyOptional?: boolean;
  };
  /** Success responses by status; errors are the shared Error schema. */
  responses: Record<number, ResponseSpec>;
  /** Runs before validation (auth variants, role checks that must answer before a 400). */
  middleware?: MiddlewareHandler<AppEnv>[];
  handler: (c: Context<AppEnv>, input: { params: Infer<P>; query: Infer<Q>; body: Infer<B> }) => Response | Promise<Response>;
}

const specs = new WeakMap<Hono<AppEnv>, RouteSpec[]>();

/** Registers the hono handler and records the route for the OpenAPI document. */
export function defineRoute<
  P extends Shape | undefined = undefined,
  Q extends z.ZodType | undefined = undefined,
  B extends z.ZodType | undefined = undefined,
>(app: Hono<AppEnv>, spec: RouteSpec<P, Q, B>): void {
  const list = specs.get(app) ?? [];
  specs.set(app, list);
  list.push(spec as unknown as RouteSpec);
  const req = spec.request ?? {};
  const handler = async (c: Context<AppEnv>) => {
    const params: Record<string, unknown> = {};
    for (const [name, schema] of Object.entries(req.params ?? {})) params[name] = parseValue(schema as z.ZodType, c.req.param(name));
    const query = req.query ? parseValue(req.query, c.req.query()) : undefined;
    let body: unknown;
    if (req.body) {
      if (req.bodyOptional) {
        const text = await c.req.text();
        body = parseValue(req.body, text.trim() === '' ? {} : parseJson(text));
      } else {
        body = await parseBody(c, req.body);
      }
    }
    return spec.handler(c, { params, query, body } as { params: Infer<P>; query: Infer<Q>; body: Infer<B> });
  };
  app.on([spec.method.toUpperCase()], [spec.path], ...[...(spec.middleware ?? []), handler]);
}

/** The routes defined on an app, in registration order (tests check responses against them). */
export function routeSpecs(app: Hono<AppEnv>): readonly RouteSpec[] {
  return specs.get(app) ?? [];
}

// OpenAPI 3.1 uses JSON Schema 2020-12, which zod 4 emits natively.
function jsonSchema(s: z.ZodType, io: 'input' | 'output'): Record<string, unknown> {
  const { $schema: _drop, ...rest } = z.toJSONSchema(s, { target: 'draft-2020-12', io, unrepresentable: 'any' }) as Record<string, unknown>;
  return rest;
}

const ErrorSchema = {
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message'],
      properties: { code: { type: 'string', enum: Object.keys(ERROR_CODES) }, message: { type: 'string' }, details: {} },
    },
  },
};

export function openApiDocument(app: Hono<AppEnv>, version: string) {
  const errorRef = { $ref: '#/components/schemas/Error' };
  const paths: Record<string, Record<string, unknown>> = {};
  const components: Record<string, unknown> = {};
  for (const r of routeSpecs(app)) {
    const path = r.path.replace(/:(\w+)/g, '{$1}');
    const req = r.request ?? {};
    const parameters: unknown[] = Object.entries(req.params ?? {}).map(([name, s]) => ({
      name,
      in: 'path',
      required: true,
      schema: jsonSchema(s, 'input'),
    }));
    if (req.query) {
      const q = jsonSchema(req.query, 'input') as { properties?: Record<string, unknown>; required?: string[] };
      for (const [name, s] of Object.entries(q.properties ?? {}))
        parameters.push({ name, in: 'query', required: q.required?.includes(name) ?? false, schema: s });
    }
    let requestBody: unknown;
    if (req.body) {
      const s = jsonSchema(req.body, 'input');
      let ref: unknown = s;
      if (req.bodyName) {
        components[req.bodyName] = s;
        ref = { $ref: `#/components/schemas/${req.bodyName}` };
      }
      requestBody = { required: !req.bodyOptional, content: { 'application/json': { schema: ref } } };
    }
    const responses: Record<string, unknown> = {};
    for (const [status, res] of Object.entries(r.responses)) {
      responses[status] = {
        description: res.description,
        ...(res.headers
          ? {
              headers: Object.fromEntries(Object.entries(res.headers).map(([h, d]) => [h, { description: d, schema: { type: 'string' } }])),
            }
          : {}),
        ...(res.schema ? { content: { [res.contentType ?? 'application/json']: { schema: jsonSchema(res.schema, 'output') } } } : {}),
      };
    }
    responses['4XX'] = { description: 'Client error (see the error codes)', content: { 'application/json': { schema: errorRef } } };
    responses['5XX'] = { description: 'Server error or not ready', content: { 'application/json': { schema: errorRef } } };
    paths[path] ??= {};
    paths[path][r.method] = {
      operationId: r.operationId,
      summary: r.summary,
      ...(r.tags ? { tags: r.tags } : {}),
      'x-role': r.role,
      ...(r.role === 'public' ? { security: [] } : {}),
      ...(parameters.length ? { parameters } : {}),
      ...(requestBody ? { requestBody } : {}),
      responses,
    };
  }
  return {
    openapi: '3.1.0',
    info: { title: 'tuned-retrieval', version, description: 'Self-tuning retrieval server.' },
    paths,
    components: {
      securitySchemes: { apiKey: { type: 'http', scheme: 'bearer', description: 'API key (rk_…); read or admin role' } },
      schemas: { ...components, Error: ErrorSchema },
    },
    security: [{ apiKey: [] }],
  };
}
