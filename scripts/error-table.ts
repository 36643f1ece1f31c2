// Prints the README's error table from src/errors.ts (`npx tsx scripts/error-table.ts`).
import { ERROR_CODES } from '../src/errors.js';

console.log('| code | HTTP | meaning |\n| --- | --- | --- |');
for (const [code, { status, description }] of Object.entries(ERROR_CODES)) console.log(`| \`${code}\` | ${status} | ${description} |`);
