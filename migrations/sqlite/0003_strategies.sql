CREATE TABLE `strategies` (
	`collection_id` integer NOT NULL,
	`model_version` text NOT NULL,
	`strategy` text NOT NULL,
	`decided_at` integer DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)) NOT NULL,
	PRIMARY KEY(`collection_id`, `model_version`),
	FOREIGN KEY (`collection_id`) REFERENCES `collections`(`id`) ON UPDATE no action ON DELETE cascade
);
