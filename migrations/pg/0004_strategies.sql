CREATE TABLE "strategies" (
	"collection_id" integer NOT NULL,
	"model_version" text NOT NULL,
	"strategy" jsonb NOT NULL,
	"decided_at" bigint DEFAULT ((extract(epoch from clock_timestamp()) * 1000)::bigint) NOT NULL,
	CONSTRAINT "strategies_collection_id_model_version_pk" PRIMARY KEY("collection_id","model_version")
);
--> statement-breakpoint
ALTER TABLE "strategies" ADD CONSTRAINT "strategies_collection_id_collections_id_fk" FOREIGN KEY ("collection_id") REFERENCES "public"."collections"("id") ON DELETE cascade ON UPDATE no action;