"""Self-supervised training pairs from the bundle's corpus (plain Python, no torch).

job.json "corpus_pairs" turns the passages the server already holds into extra MNRL pairs, trained together
with the labelled pairs.jsonl (domain adaptation; no queries needed):

  "group": N   per passage, N pairs  passage -> another passage of the same parent document
               (corpus.jsonl rows with the same optional "group" field, e.g. the chunks of one document or
               the sections of one abstract). Teaches the encoder that all parts of a document belong together.
  "group_span": N  per passage, N pairs  one sentence of it -> another passage of the same group (a query-like
               span -> the rest of its document).
  "ict":   N   per passage, N inverse-cloze pairs  one sentence -> the passage without that sentence
               (kept in the positive with probability "ict_keep"). Teaches query-like spans -> passage.

Rows derived from one group are never put into one batch (nor a labelled pair whose positive is a passage of
that group): in-batch negatives are then never parts of the anchor's own document. See conflict_free_batches.
"""
from __future__ import annotations

import random
import re
from typing import Any, Iterable, Iterator, Sequence

from .data import BundleError, job_option

SPEC_DEFAULTS: dict[str, Any] = {"group": None, "group_span": 0, "ict": 1, "ict_keep": 0.1, "min_words": 4, "max_pairs": 0}

# sentence boundary: . ! ? followed by whitespace and an upper-case letter, digit or opening bracket
_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])")


def normalize_spec(raw: Any) -> dict | None:
    """job.json corpus_pairs: false/null (off) | true (defaults) | object. Raises BundleError on bad values."""
    spec = job_option(raw, "corpus_pairs", SPEC_DEFAULTS)
    if spec is None:
        return None
    for key in ("group", "group_span", "ict", "min_words", "max_pairs"):
        v = spec[key]
        if key == "group" and v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v or v < 0:
            raise BundleError(f"job.json: 'corpus_pairs.{key}' must be an integer >= 0")
        spec[key] = int(v)
    k = spec["ict_keep"]
    if isinstance(k, bool) or not isinstance(k, (int, float)) or not 0 <= k <= 1:
        raise BundleError("job.json: 'corpus_pairs.ict_keep' must be a number in [0, 1]")
    spec["ict_keep"] = float(k)
    return spec


def resolve_spec(spec: dict, has_groups: bool) -> dict:
    """Fill the group default from the corpus (1 when rows carry "group", else 0); an explicit group > 0 needs groups."""
    spec = dict(spec)
    if spec["group"] is None:
        spec["group"] = 1 if has_groups else 0
    elif spec["group"] > 0 and not has_groups:
        raise BundleError("job.json: 'corpus_pairs.group' needs a 'group' field on corpus.jsonl rows")
    if spec["group_span"] > 0 and not has_groups:
        raise BundleError("job.json: 'corpus_pairs.group_span' needs a 'group' field on corpus.jsonl rows")
    if spec["group"] == 0 and spec["ict"] == 0 and spec["group_span"] == 0:
        raise BundleError("job.json: 'corpus_pairs' has neither 'group' nor 'ict' pairs enabled")
    return spec


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENT.split(text.strip()) if s.strip()]


def build_corpus_pairs(corpus: Sequence[dict], spec: dict, seed: int) -> tuple[list[dict], list[str | None], dict]:
    """-> (rows [{"anchor", "positive", "src", "dst"}], the group of each row (None if the passage has none), stats).
    src/dst: corpus indices of the passages the anchor and the positive come from (a sweep's validation split
    drops the pairs of its held-out passages).

    corpus: [{"id", "text"[, "group"]}]; spec: resolve_spec() output. Deterministic for a given seed.
    """
    rng = random.Random(seed)
    members: dict[str, list[int]] = {}
    for i, c in enumerate(corpus):
        if c.get("group") is not None:
            members.setdefault(c["group"], []).append(i)
    rows: list[dict] = []
    groups: list[str | None] = []
    n_group = n_ict = n_span = 0
    for i, c in enumerate(corpus):
        g = c.get("group")
        text = c["text"]
        if spec["group"] and g is not None:
            others = [j for j in members[g] if j != i and corpus[j]["text"] != text]
            for j in rng.sample(others, min(spec["group"], len(others))):
                rows.append({"anchor": text, "positive": corpus[j]["text"], "src": i, "dst": j})
                groups.append(g)
                n_group += 1
        if spec["group_span"] and g is not None:
            others = [j for j in members[g] if j != i and corpus[j]["text"] != text]
            cand = [s for s in split_sentences(text) if len(s.split()) >= spec["min_words"]]
            if others and cand:
                for _ in range(spec["group_span"]):
                    anchor, j = rng.choice(cand), rng.choice(others)
                    rows.append({"anchor": anchor, "positive": corpus[j]["text"], "src": i, "dst": j})
                    groups.append(g)
                    n_span += 1
        if spec["ict"]:
            sents = split_sentences(text)
            if len(sents) < 2:
                continue
            cand = [k for k, s in enumerate(sents) if len(s.split()) >= spec["min_words"]]
            for k in rng.sample(cand, min(spec["ict"], len(cand))):
                keep = rng.random() < spec["ict_keep"]
                pos = text if keep else " ".join(s for m, s in enumerate(sents) if m != k)
                if pos.strip() and pos != sents[k]:
                    rows.append({"anchor": sents[k], "positive": pos, "src": i, "dst": i})
                    groups.append(g)
                    n_ict += 1
    if spec["max_pairs"] and len(rows) > spec["max_pairs"]:
        keep_idx = sorted(rng.sample(range(len(rows)), spec["max_pairs"]))
        rows = [rows[k] for k in keep_idx]
        groups = [groups[k] for k in keep_idx]
    stats = {"rows": len(rows), "group_pairs": n_group, "group_span_pairs": n_span, "ict_pairs": n_ict,
             "groups": len(members), "capped": bool(spec["max_pairs"] and n_group + n_span + n_ict > spec["max_pairs"])}
    return rows, groups, stats


def row_keys(texts: Iterable[str], text_groups: dict[str, set]) -> frozenset:
    """Conflict keys of one training row: its texts and the groups of any of them."""
    keys: set = set()
    for t in texts:
        keys.add(("t", t))
        for g in text_groups.get(t, ()):
            keys.add(("g", g))
    return frozenset(keys)


def conflict_free_batches(keys: Sequence[frozenset], order: Sequence[int], batch_size: int,
                          drop_last: bool) -> Iterator[list[int]]:
    """Greedy batching over `order`: a row joins the current batch only if none of its keys is already in it
    (same algorithm as sentence-transformers' NoDuplicatesBatchSampler, with group keys added). Conflicting rows
    are deferred to later batches; the last batches may be smaller (dropped with drop_last)."""
    remaining = list(order)
    while remaining:
        batch: list[int] = []
        seen: set = set()
        rest: list[int] = []
        for pos, i in enumerate(remaining):
            if keys[i].isdisjoint(seen):
                batch.append(i)
                seen.update(keys[i])
                if len(batch) == batch_size:
                    rest.extend(remaining[pos + 1:])
                    break
            else:
                rest.append(i)
        if len(batch) < batch_size and drop_last:
            return
        yield batch
        remaining = rest
