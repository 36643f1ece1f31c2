import { AppError } from '../errors.js';

// The wire forms of a vector: a JSON array of numbers, or base64 of its little-endian float32 bytes (what
// /v1/embeddings answers with encoding_format "base64" and /search accepts). The base64 form is ~1.4 KB for 256
// dimensions instead of ~5 KB of decimal text, and decodes in a couple of µs where JSON.parse spends ~30 µs on
// the digits of 256 doubles.
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const NOT_FINITE = 'vector must hold finite numbers only (no NaN/Infinity)';

/** A vector as base64 of its float32 bytes (little-endian: a Float32Array's own bytes on every platform Node ships for). */
export function encodeVector(v: Float32Array): string {
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64');
}

/**
 * `vector` from a /search body as finite numbers: a JSON array is checked element by element; a string is
 * base64 of little-endian float32 values. Anything else answers `invalid_vector`.
 */
export function decodeVector(v: readonly unknown[] | string): ArrayLike<number> {
  if (typeof v === 'string') return fromBase64(v);
  for (let i = 0; i < v.length; i++) {
    const x = v[i];
    if (typeof x !== 'number' || !Number.isFinite(x)) throw new AppError('invalid_vector', NOT_FINITE);
  }
  return v as readonly number[];
}

function fromBase64(s: string): Float32Array {
  // Buffer.from(…, 'base64') skips characters it does not know; a typo must not become a shorter vector.
  if (s.length % 4 !== 0 || !BASE64.test(s))
    throw new AppError('invalid_vector', 'vector string must be base64 (A-Z a-z 0-9 + /, "=" padding) of float32 values');
  const bytes = Buffer.from(s, 'base64');
  if (bytes.byteLength % 4 !== 0)
    throw new AppError('invalid_vector', `base64 vector decodes to ${bytes.byteLength} bytes, not a whole number of float32 values`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(bytes.byteLength / 4);
  for (let i = 0; i < out.length; i++) {
    const x = view.getFloat32(4 * i, true);
    if (!Number.isFinite(x)) throw new AppError('invalid_vector', NOT_FINITE);
    out[i] = x;
  }
  return out;
}
