// Character windows that prefer to break on whitespace, so a chunk boundary rarely splits a word.
// Chunk n of document d is addressed as `${d}#${n}`.
export function chunkText(text: string, size: number, overlap: number): string[] {
  if (text.length <= size) return [text];
  const out: string[] = [];
  let start = 0;
  while (start < text.length) {
    let end = Math.min(text.length, start + size);
    if (end < text.length) {
      const space = text.lastIndexOf(' ', end);
      if (space > start + size / 2) end = space;
    }
    out.push(text.slice(start, end).trim());
    if (end >= text.length) break;
    let next = end - overlap;
    if (next <= start) next = end;
    // Start the next window on a word boundary too.
    const sp = text.indexOf(' ', next);
    start = sp !== -1 && sp < end ? sp + 1 : next;
  }
  return out.filter((c) => c.length > 0);
}
