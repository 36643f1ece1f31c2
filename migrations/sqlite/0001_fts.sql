-- BM25 keyword search over live chunks (FTS5 ships with better-sqlite3). External content: the text
-- stays in `chunks`; triggers keep the index to exactly the chunks that are not tombstoned.
CREATE VIRTUAL TABLE `chunks_fts` USING fts5(`text`, content='chunks', content_rowid='label', tokenize='unicode61 remove_diacritics 2');
--> statement-breakpoint
CREATE TRIGGER `chunks_fts_ai` AFTER INSERT ON `chunks` WHEN new.deleted_seq IS NULL BEGIN
  INSERT INTO `chunks_fts`(rowid, `text`) VALUES (new.label, new.text);
END;
--> statement-breakpoint
CREATE TRIGGER `chunks_fts_tomb` AFTER UPDATE OF `deleted_seq` ON `chunks` WHEN old.deleted_seq IS NULL AND new.deleted_seq IS NOT NULL BEGIN
  INSERT INTO `chunks_fts`(`chunks_fts`, rowid, `text`) VALUES ('delete', old.label, old.text);
END;
--> statement-breakpoint
CREATE TRIGGER `chunks_fts_ad` AFTER DELETE ON `chunks` WHEN old.deleted_seq IS NULL BEGIN
  INSERT INTO `chunks_fts`(`chunks_fts`, rowid, `text`) VALUES ('delete', old.label, old.text);
END;
