CREATE TABLE `api_keys` (
	`id` text PRIMARY KEY NOT NULL,
	`hash` text NOT NULL,
	`role` text NOT NULL,
	`name` text,
	`created_at` integer DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)) NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `api_keys_hash_unique` ON `api_keys` (`hash`);--> statement-breakpoint
CREATE TABLE `chunks` (
	`label` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`collection_id` integer NOT NULL,
	`doc_id` text NOT NULL,
	`n` integer NOT NULL,
	`text` text NOT NULL,
	`seq` integer NOT NULL,
	`deleted_seq` integer,
	FOREIGN KEY (`collection_id`) REFERENCES `collections`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `chunks_doc` ON `chunks` (`collection_id`,`doc_id`);--> statement-breakpoint
CREATE INDEX `chunks_seq` ON `chunks` (`collection_id`,`seq`);--> statement-breakpoint
CREATE INDEX `chunks_deleted_seq` ON `chunks` (`collection_id`,`deleted_seq`);--> statement-breakpoint
CREATE TABLE `collections` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`name` text NOT NULL,
	`hnsw_m` integer NOT NULL,
	`ef_construction` integer NOT NULL,
	`ef_search` integer NOT NULL,
	`chunk_size` integer NOT NULL,
	`chunk_overlap` integer NOT NULL,
	`created_at` integer DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)) NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `collections_name_unique` ON `collections` (`name`);--> statement-breakpoint
CREATE TABLE `counters` (
	`name` text PRIMARY KEY NOT NULL,
	`value` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `documents` (
	`collection_id` integer NOT NULL,
	`id` text NOT NULL,
	`text` text NOT NULL,
	`metadata` text NOT NULL,
	`seq` integer NOT NULL,
	`updated_at` integer DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)) NOT NULL,
	PRIMARY KEY(`collection_id`, `id`),
	FOREIGN KEY (`collection_id`) REFERENCES `collections`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE TABLE `drift_reports` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`collection` text NOT NULL,
	`model_version` text NOT NULL,
	`metrics` text NOT NULL,
	`drifted` integer NOT NULL,
	`job_id` text,
	`created_at` integer DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)) NOT NULL
);
--> statement-breakpoint
CREATE INDEX `drift_reports_coll_time` ON `drift_reports` (`collection`,`created_at`);--> statement-breakpoint
CREATE TABLE `eval_reports` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`job_id` text,
	`candidate_version` text NOT NULL,
	`champion_version` text NOT NULL,
	`metrics` text NOT NULL,
	`decision` text NOT NULL,
	`passed` integer NOT NULL,
	`created_at` integer DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)) NOT NULL
);
--> statement-breakpoint
CREATE TABLE `feedback` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`query_id` text NOT NULL,
	`document_id` text NOT NULL,
	`relevant` integer NOT NULL,
	`created_at` integer DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)) NOT NULL
);
--> statement-breakpoint
CREATE INDEX `feedback_query` ON `feedback` (`query_id`);--> statement-breakpoint
CREATE TABLE `indexes` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`collection_id` integer NOT NULL,
	`model_version` text NOT NULL,
	`path` text,
	`snapshot_seq` integer DEFAULT 0 NOT NULL,
	`count` integer DEFAULT 0 NOT NULL,
	`status` text NOT NULL,
	`created_at` integer DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)) NOT NULL,
	FOREIGN KEY (`collection_id`) REFERENCES `collections`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE UNIQUE INDEX `indexes_coll_model` ON `indexes` (`collection_id`,`model_version`);--> statement-breakpoint
CREATE TABLE `model_versions` (
	`version` text PRIMARY KEY NOT NULL,
	`parent_version` text,
	`source` text NOT NULL,
	`dim` integer NOT NULL,
	`status` text NOT NULL,
	`card` text NOT NULL,
	`created_at` integer DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)) NOT NULL,
	`promoted_at` integer
);
--> statement-breakpoint
CREATE TABLE `query_log` (
	`id` text PRIMARY KEY NOT NULL,
	`collection` text NOT NULL,
	`query` text,
	`mode` text NOT NULL,
	`k` integer NOT NULL,
	`result_ids` text NOT NULL,
	`scores` text NOT NULL,
	`model_version` text NOT NULL,
	`latency_ms` real NOT NULL,
	`created_at` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `query_log_coll_time` ON `query_log` (`collection`,`created_at`);--> statement-breakpoint
CREATE TABLE `serving` (
	`id` integer PRIMARY KEY NOT NULL,
	`model_version` text NOT NULL,
	`generation` integer NOT NULL,
	`changed_at` integer DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)) NOT NULL
);
--> statement-breakpoint
CREATE TABLE `train_jobs` (
	`id` text PRIMARY KEY NOT NULL,
	`collection` text NOT NULL,
	`trigger` text NOT NULL,
	`state` text NOT NULL,
	`progress` text NOT NULL,
	`timings` text NOT NULL,
	`parent_version` text NOT NULL,
	`candidate_version` text,
	`error` text,
	`created_at` integer DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)) NOT NULL,
	`updated_at` integer DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)) NOT NULL
);
--> statement-breakpoint
CREATE INDEX `train_jobs_coll_state` ON `train_jobs` (`collection`,`state`);