// `npm run reindex [-- collection…]`: rebuilds indexes from the database on a running server
// (RETRIEVAL_URL, default http://127.0.0.1:$PORT; RETRIEVAL_API_KEY for an admin key).
const base = process.env.RETRIEVAL_URL ?? `http://127.0.0.1:${process.env.PORT ?? 8080}`;
const headers: Record<string, string> = process.env.RETRIEVAL_API_KEY ? { authorization: `Bearer ${process.env.RETRIEVAL_API_KEY}` } : {};
let names = process.argv.slice(2);
try {
  if (names.length === 0) {
    const r = await fetch(`${base}/collections`, { headers });
    names = ((await r.json()) as { collections: { name: string }[] }).collections.map((c) => c.name);
  }
  for (const name of names) {
    const t0 = performance.now();
    const r = await fetch(`${base}/collections/${encodeURIComponent(name)}/reindex`, { method: 'POST', headers });
    const body = (await r.json()) as { chunks?: number; error?: { code: string; message: string } };
    if (!r.ok) throw new Error(`${name}: ${body.error?.code}: ${body.error?.message}`);
    console.log(`${name}: ${body.chunks} chunks re-indexed in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
} catch (err) {
  console.error(`reindex failed: ${err instanceof Error ? err.message : String(err)} (is the server running at ${base}?)`);
  process.exit(1);
}
