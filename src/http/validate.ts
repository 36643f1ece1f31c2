import type { Context } from 'hono';
import type { z } from 'zod';
import { AppError } from '../errors.js';

/**
 * Objects and arrays may nest at most this deep in a request body (the body is level 1; a document's
 * `metadata` object is level 4). Everything downstream (zod, JSON.stringify into the stores, the query
 * log) recurses; a body nested thousands deep would overflow the stack there, so it is refused here.
 */
export const MAX_JSON_DEPTH = 32;

/** Parses the JSON body against `schema`; malformed JSON and schema violations become stable codes. */
export async function parseBody<S extends z.ZodType>(c: Context, schema: S): Promise<z.infer<S>> {
  return parseValue(schema, parseJson(await c.req.text()));
}

/** JSON.parse (which does not recurse) plus the depth check; both failures are stable 400 codes. */
export function parseJson(text: string): unknown {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new AppError('invalid_json', 'request body is not valid JSON');
  }
  if (nestedDeeperThan(raw, MAX_JSON_DEPTH)) {
    throw new AppError('nesting_too_deep', `request body nests objects/arrays deeper than ${MAX_JSON_DEPTH} levels`);
  }
  return raw;
}

/** Iterative, so it cannot overflow the stack it protects. */
function nestedDeeperThan(value: unknown, max: number): boolean {
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (depth > max) return true;
    // Only containers go on the stack: a 256-float vector would otherwise push 256 pairs per request.
    // An array is walked as it is: Object.values would copy a query vector on every search.
    const children: unknown[] = Array.isArray(v) ? v : Object.values(v);
    for (const child of children) if (child !== null && typeof child === 'object') stack.push([child, depth + 1]);
  }
  return false;
}

export function parseValue<S extends z.ZodType>(schema: S, raw: unknown): z.infer<S> {
  const r = schema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    const path = issue.path.join('.') || '(body)';
    const message =
      issue.code === 'unrecognized_keys'
        ? `unknown field(s) ${issue.keys.map((k) => `"${k}"`).join(', ')} at ${path}`
        : `${path}: ${issue.message}`;
    throw new AppError('invalid_request', message, { issues: r.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message })) });
  }
  return r.data;
}
