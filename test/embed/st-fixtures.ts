// sentence-transformers fixtures (scripts/gpu/st_fixtures.py): models saved by sentence-transformers 6.0.1
// and references.json, its own embeddings of a few queries and passages per model.
import { join, resolve } from 'node:path';

export const ST_FIXTURES = join(resolve(import.meta.dirname, '../..'), 'test/fixtures/models/st');
