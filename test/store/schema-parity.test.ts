// The two drizzle schemas are hand-written twins; this keeps them from drifting apart silently.
// Repository code, the drift monitor and ops queries assume one set of table and column names.
import { getTableConfig as pgConfig, PgTable } from 'drizzle-orm/pg-core';
import { getTableConfig as sqliteConfig, SQLiteTable } from 'drizzle-orm/sqlite-core';
import { describe, expect, it } from 'vitest';
import * as pgSchema from '../../src/store/schema/pg.js';
import * as sqliteSchema from '../../src/store/schema/sqlite.js';

type Shape = Record<string, { columns: Record<string, { notNull: boolean; primary: boolean }>; indexes: string[] }>;

function shapeOf(tables: Record<string, unknown>): Shape {
  const out: Shape = {};
  for (const t of Object.values(tables)) {
    let cfg: ReturnType<typeof pgConfig> | ReturnType<typeof sqliteConfig>;
    if (t instanceof PgTable) cfg = pgConfig(t);
    else if (t instanceof SQLiteTable) cfg = sqliteConfig(t);
    else continue;
    const columns: Shape[string]['columns'] = {};
    for (const c of cfg.columns) columns[c.name] = { notNull: c.notNull, primary: c.primary };
    out[cfg.name] = { columns, indexes: cfg.indexes.map((i) => i.config.name ?? '(unnamed)').sort() };
  }
  return out;
}

describe('schema parity', () => {
  it('SQLite and Postgres schemas declare the same tables, columns, nullability and indexes', () => {
    const a = shapeOf(sqliteSchema);
    const b = shapeOf(pgSchema);
    expect(Object.keys(a).sort()).toEqual(Object.keys(b).sort());
    expect(Object.keys(a).length).toBeGreaterThanOrEqual(13);
    expect(b).toEqual(a);
  });
});
