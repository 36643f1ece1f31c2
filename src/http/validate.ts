import type { Context } from 'hono';
import type { z } from 'zod';
import { AppError } from '../errors.js';

/** Parses the JSON body against `schema`; malformed JSON and schema violations become stable codes. */
export async function parseBody<S extends z.ZodType>(c: Context, schema: S): Promise<z.infer<S>> {
  let raw: unknown;
  const text = await c.req.text();
  try {
    raw = JSON.parse(text);
  } catch {
    throw new AppError('invalid_json', 'request body is not valid JSON');
  }
  return parseValue(schema, raw);
}

export function parseValue<S extends z.ZodType>(schema: S, raw: unknown): z.infer<S> {
  const r = schema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    const path = issue.path.join('.') || '(body)';
    const message = issue.code === 'unrecognized_keys' ? `unknown field(s) ${issue.keys.map((k) => `"${k}"`).join(', ')} at ${path}` : `${path}: ${issue.message}`;
    throw new AppError('invalid_request', message, { issues: r.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message })) });
  }
  return r.data;
}
