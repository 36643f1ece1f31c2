import type { Hono } from 'hono';
import type { StrategyTuner } from '../../search/tuner.js';
import type { CollectionCatalog } from '../../serving/catalog.js';
import type { AppEnv } from '../app.js';
import { defineRoute } from '../route.js';
import { CollectionName, StrategyResult } from '../schemas.js';

// The serving strategy of mode "auto" (src/search/tuner.ts). GET /collections/:name shows it too; this
// route re-measures now (after a bulk load, or to see the numbers behind it) instead of waiting for the
// tuner's growth and feedback triggers.
export function strategyRoutes(catalog: CollectionCatalog, tuner: StrategyTuner) {
  return (app: Hono<AppEnv>) => {
    defineRoute(app, {
      method: 'post',
      path: '/collections/:name/strategy',
      operationId: 'decideStrategy',
      role: 'admin',
      tags: ['collections'],
      summary: 'Re-measure and set the collection\'s serving strategy for mode "auto" now',
      request: { params: { name: CollectionName } },
      responses: { 200: { description: 'The strategy (null: not measurable yet)', schema: StrategyResult } },
      handler: async (c, { params }) => {
        const col = await catalog.require(params.name);
        const s = await tuner.decide(col, 'asked for by POST /collections/:name/strategy', { fresh: true });
        return c.json({ collection: col.name, strategy: s ?? null });
      },
    });
  };
}
