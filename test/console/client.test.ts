// The console's client app is plain JavaScript with JSDoc types, served without a build step: the
// TypeScript compiler checks it here (strict, DOM lib), as `npm run typecheck` does for the rest.
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO } from '../helpers.js';

describe('console client', () => {
  it('type-checks (tsc --checkJs, strict)', () => {
    const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
    let out = '';
    try {
      execFileSync(process.execPath, [tsc, '-p', join(REPO, 'src/console/client/tsconfig.json')], { encoding: 'utf8', stdio: 'pipe' });
    } catch (err) {
      out = String((err as { stdout?: string }).stdout ?? err);
    }
    expect(out).toBe('');
  }, 120_000);
});
