import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import type { ApiKeyRow, KeyStore } from '../store/types.js';

export type Role = ApiKeyRow['role'];
const ROLES: readonly Role[] = ['read', 'admin'];

const KEY_PREFIX = 'rk_';
// 32 random bytes = 256 bits: a stored sha256 without salt is then safe (no dictionary to try).
const KEY_BYTES = 32;
const KEY_SHAPE = /^rk_[A-Za-z0-9_-]{43}$/;

/** A new secret key, `rk_` + 43 base64url characters. Shown once; only its hash is stored. */
export function generateApiKey(): string {
  return KEY_PREFIX + randomBytes(KEY_BYTES).toString('base64url');
}

export function hashApiKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

/**
 * Constant-time equality of two secrets. Comparing their sha256 digests gives equal-length inputs
 * to timingSafeEqual, so neither content nor length of the expected key leaks through timing.
 */
export function keysEqual(a: string, b: string): boolean {
  const da = createHash('sha256').update(a, 'utf8').digest();
  const db = createHash('sha256').update(b, 'utf8').digest();
  return timingSafeEqual(da, db);
}

/** Constant-time equality of two hex sha256 hashes (e.g. a computed hash against a stored one). */
export function hashesEqual(a: string, b: string): boolean {
  const ba = Buffer.from(a, 'hex');
  const bb = Buffer.from(b, 'hex');
  return ba.length === 32 && bb.length === 32 && timingSafeEqual(ba, bb);
}

export function isRole(x: string): x is Role {
  return (ROLES as readonly string[]).includes(x);
}

export interface CreatedKey {
  id: string;
  key: string;
  role: Role;
  name: string | null;
}

export async function createApiKey(store: KeyStore, opts: { role: Role; name?: string | null }): Promise<CreatedKey> {
  const key = generateApiKey();
  const id = `key_${randomUUID().replace(/-/g, '').slice(0, 16)}`;
  const name = opts.name ?? null;
  await store.insertApiKey({ id, hash: hashApiKey(key), role: opts.role, name });
  return { id, key, role: opts.role, name };
}

export interface VerifiedKey {
  id: string;
  role: Role;
}

/**
 * The role a presented key grants, or undefined. The bootstrap admin key (ADMIN_API_KEY) is any
 * string the operator chose; stored keys have the generated shape, so anything else is rejected
 * before touching the database.
 */
export async function verifyApiKey(store: KeyStore, presented: string, bootstrapAdminKey?: string): Promise<VerifiedKey | undefined> {
  if (bootstrapAdminKey && keysEqual(presented, bootstrapAdminKey)) return { id: 'bootstrap', role: 'admin' };
  if (!KEY_SHAPE.test(presented)) return undefined;
  const hash = hashApiKey(presented);
  // The lookup is by an indexed hash of a 256-bit secret: its timing can reveal at most facts about
  // the hash, which do not help forge a key. The final compare is constant-time anyway.
  const row = await store.findApiKeyByHash(hash);
  if (!row || !hashesEqual(row.hash, hash)) return undefined;
  return { id: row.id, role: row.role };
}
