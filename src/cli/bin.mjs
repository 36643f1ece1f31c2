#!/usr/bin/env node
// `retrieval` bin entry. The project runs TypeScript through tsx (as `npm start` does), so register
// its loader first; then the CLI module runs exactly as `npx tsx src/cli/index.ts` would.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('./index.ts');
await main();
