import { afterAll, beforeAll, expect, test } from 'vitest';
import { startTestServer, type TestServer } from '../helpers.js';

let s: TestServer;
beforeAll(async () => {
  s = await startTestServer({ MAX_BODY_BYTES: 100_000 });
  await s.req('POST', '/collections', { name: 'f' });
  await s.req('POST', '/collections/f/documents', { documents: [{ id: '1', text: 'seed document' }] });
}, 60_000);
afterAll(async () => {
  await s?.dispose();
});

test('/openapi.json documents exactly the routes the app serves', async () => {
  const r = await s.req('GET', '/openapi.json');
  expect(r.status).toBe(200);
  expect(r.body.openapi).toBe('3.1.0');
  const documented = new Set<string>();
  for (const [path, ops] of Object.entries(r.body.paths as Record<string, Record<string, unknown>>)) {
    for (const m of Object.keys(ops)) documented.add(`${m.toUpperCase()} ${path.replace(/\{(\w+)\}/g, ':$1')}`);
  }
  const served = new Set(s.app.routes.filter((x) => x.method !== 'ALL' && x.path !== '/openapi.json').map((x) => `${x.method} ${x.path}`));
  // Loop routes are mounted only with startServer's `loop` option (src/main.ts turns it on); the core app must not serve undocumented routes.
  for (const route of served) expect(documented, route).toContain(route);
  expect(r.body.components.schemas.Search.additionalProperties).toBe(false);
});

// A seeded generator of hostile bodies: the edge must answer 4xx, never 5xx, and keep serving.
function* hostileBodies(seed: number): Generator<string> {
  let x = seed;
  const rnd = () => (x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const atoms = [
    'null',
    'true',
    '1e309',
    '-0',
    '"\\u0000"',
    '"\\ud800"',
    '"💥"',
    '[]',
    '{}',
    '"a"',
    '0.5',
    '-1',
    '9007199254740993',
    '"\\u202e"',
    '"' + 'x'.repeat(5000) + '"',
  ];
  const keys = [
    'collection',
    'query',
    'vector',
    'k',
    'filter',
    'mode',
    'documents',
    'id',
    'text',
    'metadata',
    'input',
    '__proto__',
    'constructor',
    '',
  ];
  const value = (depth: number): string => {
    const r = rnd();
    if (depth > 3 || r < 0.5) return atoms[Math.floor(rnd() * atoms.length)]!;
    if (r < 0.75) return `[${Array.from({ length: Math.floor(rnd() * 4) }, () => value(depth + 1)).join(',')}]`;
    return `{${Array.from({ length: Math.floor(rnd() * 4) }, () => `"${keys[Math.floor(rnd() * keys.length)]}":${value(depth + 1)}`).join(',')}}`;
  };
  for (let i = 0; i < 150; i++) {
    const v = value(0);
    yield rnd() < 0.1 ? v.slice(0, Math.floor(rnd() * v.length)) : v; // some truncated (malformed) JSON
  }
  yield '\u0000\u0001\u0002';
  yield '{"collection":"f","query":"' + '\u{1F600}'.repeat(2000) + '"}';
  yield '{"collection":"f","query":"\ud800\udfff\ufffe"}';
  yield '{"collection":"f","query":"x","filter":{"a.b\\"c":1}}';
  yield '{"collection":"f","query":"x","filter":{"__proto__":{"polluted":true}}}';
  yield '{"documents":[{"id":"' + 'i'.repeat(600) + '","text":"x"}]}';
}

test('fuzzed bodies never produce a 5xx and the server keeps serving', async () => {
  const targets = [
    ['POST', '/search'],
    ['POST', '/collections/f/documents'],
    ['POST', '/collections'],
    ['POST', '/v1/embeddings'],
    ['POST', '/feedback'],
  ] as const;
  let n = 0;
  for (const body of hostileBodies(7)) {
    for (const [method, path] of targets) {
      const r = await s.req(method, path, body);
      expect(r.status, `${path} ${body.slice(0, 200)} → ${JSON.stringify(r.body).slice(0, 200)}`).toBeLessThan(500);
      if (r.status >= 400) expect(typeof r.body.error?.code).toBe('string');
      n++;
    }
  }
  expect(n).toBeGreaterThan(700);
  expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  const q = await s.req('POST', '/search', { collection: 'f', query: 'seed document', k: 1 });
  expect(q.body.results[0].id).toBe('1');
}, 120_000);

test('huge headers and odd paths are answered without a crash', async () => {
  const r = await s.req('GET', '/collections/' + encodeURIComponent('a'.repeat(3000)), undefined, { 'x-big': 'y'.repeat(16_000) });
  expect(r.status).toBe(400);
  const p = await s.req('GET', '/collections/%E2%80%AE%F0%9F%98%80');
  expect(p.status).toBe(400);
  const m = await s.req('PUT', '/search', {});
  expect([404, 405]).toContain(m.status);
});
