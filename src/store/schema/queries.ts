import { and, eq, gt, sql, type Column, type SQL } from 'drizzle-orm';

// Query pieces both dialect stores (../sqlite/store.ts, ../pg/store.ts) build the same way over their own tables:
// written once here, each store only joins and runs them the way its engine plans best.

interface FeedbackColumns {
  id: Column;
  queryId: Column;
  documentId: Column;
  relevant: Column;
  createdAt: Column;
}

interface QueryLogColumns {
  id: Column;
  collection: Column;
  query: Column;
}

/**
 * feedbackPairs: relevant feedback with its logged query text, in one collection, after `afterId`. `columns` is
 * the select list (each dialect's column types kept), `on` the feedback → query-log join, `where` the rest.
 */
export function feedbackPairsQuery<F extends FeedbackColumns, Q extends QueryLogColumns>(
  feedback: F,
  queryLog: Q,
  collection: string,
  afterId: number | undefined,
) {
  const conds: SQL[] = [eq(queryLog.collection, collection), eq(feedback.relevant, true), sql`${queryLog.query} IS NOT NULL`];
  if (afterId !== undefined) conds.push(gt(feedback.id, afterId));
  return {
    columns: {
      id: feedback.id as F['id'],
      queryId: feedback.queryId as F['queryId'],
      query: queryLog.query as Q['query'],
      documentId: feedback.documentId as F['documentId'],
      createdAt: feedback.createdAt as F['createdAt'],
    },
    on: eq(queryLog.id, feedback.queryId),
    where: and(...conds)!,
  };
}
