import { defineConfig } from 'drizzle-kit';

// `npx drizzle-kit generate --config drizzle.pg.config.ts` after changing src/store/schema/pg.ts.
// Keyword search (tsvector + GIN) is a hand-written migration, like FTS5 on the SQLite side.
export default defineConfig({ dialect: 'postgresql', schema: './src/store/schema/pg.ts', out: './migrations/pg' });
