import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { ConfigSchema } from '../../src/config.js';
import { ERROR_CODES } from '../../src/errors.js';
import { REPO } from '../helpers.js';

const readme = readFileSync(join(REPO, 'README.md'), 'utf8');

test('README documents every error code with its HTTP status', () => {
  for (const [code, { status }] of Object.entries(ERROR_CODES)) {
    expect(readme, code).toMatch(new RegExp(`\\| \`${code}\` \\| ${status} \\|`));
  }
});

test('README documents every configuration variable', () => {
  for (const key of Object.keys(ConfigSchema.shape)) expect(readme, key).toContain(`\`${key}\``);
});

test('README gives exactly two set-up commands first', () => {
  const setup = readme.split('## Set up')[1]!.split('```sh')[1]!.split('```')[0]!.trim().split('\n');
  expect(setup.map((l) => l.split('#')[0]!.trim())).toEqual(['npm ci && npm start', 'npm test']);
});
