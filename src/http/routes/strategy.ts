import type { Hono } from 'hono';
import type { StrategyTuner } from '../../search/tuner.js';
import type { Engine } from '../../serving/engine.js';
import type { AppEnv } from '../app.js';
import { CollectionName } from '../schemas.js';
import { parseValue } from '../validate.js';

// The serving strategy of mode "auto" (src/search/tuner.ts). GET /collections/:name shows it too; this
// route re-measures now (after a bulk load, or to see the numbers behind it) instead of waiting for the
// tuner's growth and feedback triggers.
export function strategyRoutes(engine: Engine, tuner: StrategyTuner) {
  return (app: Hono<AppEnv>) => {
    app.post('/collections/:name/strategy', async (c) => {
      const col = await engine.requireCollection(parseValue(CollectionName, c.req.param('name')));
      const s = await tuner.decide(col, 'asked for by POST /collections/:name/strategy', { fresh: true });
      return c.json({ collection: col.name, strategy: s ?? null });
    });
  };
}
