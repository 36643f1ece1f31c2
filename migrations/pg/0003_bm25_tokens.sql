-- Keyword search: tokenise and count like SQLite's FTS5 (unicode61), so BM25 ranks the same in both
-- dialects. The 'simple' parser alone keeps "protein-dna", "3.5" and e-mail addresses as extra compound
-- tokens, and length(tsvector) counts distinct lexemes where FTS5 counts tokens. Punctuation now splits
-- words before parsing, and tsv_len is the number of tokens.
DROP INDEX IF EXISTS "chunks_tsv_live";
--> statement-breakpoint
DROP INDEX IF EXISTS "chunks_live_len";
--> statement-breakpoint
ALTER TABLE "chunks" DROP COLUMN "tsv";
--> statement-breakpoint
ALTER TABLE "chunks" DROP COLUMN "tsv_len";
--> statement-breakpoint
ALTER TABLE "chunks" ADD COLUMN "tsv" tsvector GENERATED ALWAYS AS (to_tsvector('simple', regexp_replace("text", '[[:punct:]]+', ' ', 'g'))) STORED;
--> statement-breakpoint
ALTER TABLE "chunks" ADD COLUMN "tsv_len" integer GENERATED ALWAYS AS (
  CASE WHEN btrim(regexp_replace("text", '[[:punct:][:space:]]+', ' ', 'g')) = '' THEN 0
       ELSE array_length(regexp_split_to_array(btrim(regexp_replace("text", '[[:punct:][:space:]]+', ' ', 'g')), ' '), 1) END
) STORED;
--> statement-breakpoint
CREATE INDEX "chunks_tsv_live" ON "chunks" USING gin ("tsv") WHERE "deleted_seq" IS NULL;
--> statement-breakpoint
CREATE INDEX "chunks_live_len" ON "chunks" ("collection_id", "tsv_len") WHERE "deleted_seq" IS NULL;
