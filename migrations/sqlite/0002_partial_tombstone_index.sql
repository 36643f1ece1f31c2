DROP INDEX `chunks_deleted_seq`;--> statement-breakpoint
CREATE INDEX `chunks_deleted_seq` ON `chunks` (`collection_id`,`deleted_seq`) WHERE deleted_seq IS NOT NULL;