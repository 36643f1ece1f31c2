// `npm run reindex [-- --collection C]`: rebuild indexes of a running server from its store
// (the same as `retrieval reindex`; POST /collections/:name/reindex for each collection).
import { main } from './index.js';

await main(['reindex', ...process.argv.slice(2)]);
