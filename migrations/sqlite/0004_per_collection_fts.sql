-- Keyword search: one FTS5 table per collection (chunks_fts_<collection id>) instead of one for all, so
-- bm25()'s row count, average length and document frequencies are the collection's own. SQL cannot create
-- a table per row, so the store builds each collection's table from its live chunks when it opens
-- (src/store/sqlite/fts.ts, ensureCollectionFts); nothing is lost with the shared index, which only
-- mirrored `chunks`.
DROP TRIGGER IF EXISTS `chunks_fts_ai`;
--> statement-breakpoint
DROP TRIGGER IF EXISTS `chunks_fts_tomb`;
--> statement-breakpoint
DROP TRIGGER IF EXISTS `chunks_fts_ad`;
--> statement-breakpoint
DROP TABLE IF EXISTS `chunks_fts`;
