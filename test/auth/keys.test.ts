import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey, generateApiKey, hashApiKey, hashesEqual, keysEqual, verifyApiKey } from '../../src/auth/keys.js';
import { openStore } from '../../src/store/index.js';
import type { Store } from '../../src/store/types.js';
import { tempDir } from '../helpers.js';

describe('API keys', () => {
  let store: Store;
  let dir: string;
  let lookups = 0;
  beforeAll(async () => {
    dir = tempDir('auth-keys-');
    const real = await openStore({ dataDir: dir });
    // Count hash lookups to prove malformed keys never reach the database.
    store = new Proxy(real, {
      get(target, prop, recv) {
        if (prop === 'findApiKeyByHash')
          return (h: string) => {
            lookups++;
            return target.findApiKeyByHash(h);
          };
        const v: unknown = Reflect.get(target, prop, recv);
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
  });
  afterAll(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('generates unguessable rk_ keys and hashes them with sha256', () => {
    const keys = new Set(Array.from({ length: 200 }, generateApiKey));
    expect(keys.size).toBe(200);
    for (const k of keys) expect(k).toMatch(/^rk_[A-Za-z0-9_-]{43}$/);
    expect(hashApiKey('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });

  it('compares in constant time without throwing on different lengths', () => {
    expect(keysEqual('secret', 'secret')).toBe(true);
    expect(keysEqual('secret', 'secreT')).toBe(false);
    expect(keysEqual('short', 'a much longer secret')).toBe(false);
    expect(keysEqual('', '')).toBe(true);
    const h = hashApiKey('x');
    expect(hashesEqual(h, h)).toBe(true);
    expect(hashesEqual(h, hashApiKey('y'))).toBe(false);
    expect(hashesEqual(h, 'zz')).toBe(false);
  });

  it('stores only the hash and verifies keys by role', async () => {
    const admin = await createApiKey(store, { role: 'admin', name: 'ops' });
    const read = await createApiKey(store, { role: 'read' });
    expect(admin.key).not.toBe(read.key);
    const row = await store.findApiKeyByHash(hashApiKey(admin.key));
    expect(row).toMatchObject({ id: admin.id, role: 'admin', name: 'ops', hash: hashApiKey(admin.key) });
    expect(JSON.stringify(row)).not.toContain(admin.key.slice(3));
    expect(await verifyApiKey(store, admin.key)).toEqual({ id: admin.id, role: 'admin' });
    expect(await verifyApiKey(store, read.key)).toEqual({ id: read.id, role: 'read' });
    expect(await verifyApiKey(store, generateApiKey())).toBeUndefined();
  });

  it('accepts the bootstrap admin key and rejects malformed keys before any lookup', async () => {
    expect(await verifyApiKey(store, 'operator-chosen secret', 'operator-chosen secret')).toEqual({ id: 'bootstrap', role: 'admin' });
    const before = lookups;
    for (const bad of ['', 'nope', 'rk_', 'rk_' + 'a'.repeat(42), 'Bearer rk_x', "rk_' OR 1=1 --", 'x'.repeat(10_000)]) {
      expect(await verifyApiKey(store, bad, 'operator-chosen secret')).toBeUndefined();
    }
    expect(lookups).toBe(before);
  });
});
