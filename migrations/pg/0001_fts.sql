-- Keyword search over live chunks (the Postgres side of SQLite's FTS5 migration). The 'simple'
-- configuration lowercases without stemming or stop words, closest to FTS5's unicode61 tokenizer.
-- tsv_len (distinct lexemes) is the document length BM25 normalises by; stored so the collection's
-- average length is an index-only scan instead of re-parsing every chunk per query.
ALTER TABLE "chunks" ADD COLUMN "tsv" tsvector GENERATED ALWAYS AS (to_tsvector('simple', "text")) STORED;
--> statement-breakpoint
ALTER TABLE "chunks" ADD COLUMN "tsv_len" integer GENERATED ALWAYS AS (length(to_tsvector('simple', "text"))) STORED;
--> statement-breakpoint
-- Partial indexes: a tombstoned chunk drops out of keyword search the moment deleted_seq is set.
CREATE INDEX "chunks_tsv_live" ON "chunks" USING gin ("tsv") WHERE "deleted_seq" IS NULL;
--> statement-breakpoint
CREATE INDEX "chunks_live_len" ON "chunks" ("collection_id", "tsv_len") WHERE "deleted_seq" IS NULL;
