"""Recipe sweep: job.json "sweep" validation, the validation split, the auto-epochs rule and greedy-soup selection
(plain Python, no torch: runs at bundle validation and is unit-tested without torch).

The members of a sweep (lr x epochs) are chosen between on validation queries carved out of the *training* data,
never on eval.jsonl: eval.jsonl is what the server compares champion and candidate on, so picking on it would make
that comparison optimistic for the candidate.
"""
from __future__ import annotations

import hashlib
from typing import Any, Callable, Sequence

from .corpus_pairs import split_sentences
from .data import BundleError, job_option

# measured recipes (trainer/RESULTS.md): 3e-4 for the 84k-pair GO job, 8e-4 for the PubMedQA corpus-pair job
SWEEP_DEFAULTS: dict[str, Any] = {"lr": [3e-4, 8e-4], "epochs": "auto", "val_fraction": 0.1, "val_max": 500,
                                  "val_min_anchors": 30, "select": "greedy_soup"}
SELECT = ("greedy_soup", "best")
MAX_SWEEP_MEMBERS = 16
# "auto" epochs: the smaller setting sees about this many training samples (rows x epochs)
AUTO_SAMPLES = 150_000
AUTO_MAX_EPOCHS = 10


def normalize_sweep(raw: Any) -> dict | None:
    """job.json sweep: false/null (off) | true (defaults) | object. Raises BundleError with a one-line reason."""
    s = job_option(raw, "sweep", SWEEP_DEFAULTS)
    if s is None:
        return None
    lr = s["lr"]
    if isinstance(lr, (int, float)) and not isinstance(lr, bool):
        lr = [lr]
    if (not isinstance(lr, list) or not lr
            or any(isinstance(x, bool) or not isinstance(x, (int, float)) or not 0 < x < 1 for x in lr)):
        raise BundleError("job.json: 'sweep.lr' must be a non-empty list of numbers in (0, 1)")
    s["lr"] = list(dict.fromkeys(float(x) for x in lr))
    ep = s["epochs"]
    if ep != "auto":
        if isinstance(ep, (int, float)) and not isinstance(ep, bool):
            ep = [ep]
        if (not isinstance(ep, list) or not ep
                or any(isinstance(x, bool) or not isinstance(x, (int, float)) or not 0 < x <= 100 for x in ep)):
            raise BundleError("job.json: 'sweep.epochs' must be \"auto\" or a non-empty list of numbers in (0, 100]")
        s["epochs"] = list(dict.fromkeys(int(x) if x == int(x) else float(x) for x in ep))
    n = len(s["lr"]) * (2 if s["epochs"] == "auto" else len(s["epochs"]))
    if n > MAX_SWEEP_MEMBERS:
        raise BundleError(f"job.json: 'sweep' has {n} members (lr x epochs); at most {MAX_SWEEP_MEMBERS}")
    f = s["val_fraction"]
    if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f <= 0.5:
        raise BundleError("job.json: 'sweep.val_fraction' must be a number in (0, 0.5]")
    s["val_fraction"] = float(f)
    for key, lo in (("val_max", 1), ("val_min_anchors", 1)):
        v = s[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v or v < lo:
            raise BundleError(f"job.json: 'sweep.{key}' must be an integer >= {lo}")
        s[key] = int(v)
    if s["select"] not in SELECT:
        raise BundleError(f"job.json: 'sweep.select' must be 'greedy_soup' or 'best', got {s['select']!r}")
    return s


def auto_epochs(train_rows: int) -> list[int]:
    """The "auto" epochs of a sweep: [e, 2e] with e = max(1, round(150000 / rows)) capped at 10 (so 2e <= 20).
    A small data set needs more passes to move the model; a large one reaches the same number of samples in fewer."""
    e = min(AUTO_MAX_EPOCHS, max(1, round(AUTO_SAMPLES / max(1, train_rows))))
    return [e, 2 * e]


def norm_text(text: str) -> str:
    """What makes two anchors "the same query": case and whitespace are ignored."""
    return " ".join(text.casefold().split())


def side_hash(seed: int, text: str) -> float:
    """A query's place in [0, 1): the first 8 bytes of sha256(seed, normalized text). It depends on the query alone,
    so a query is held out (side_hash < val_fraction) or trained on whatever else the data holds."""
    return int.from_bytes(hashlib.sha256(f"{seed}\n{norm_text(text)}".encode("utf-8")).digest()[:8], "big") / 2.0 ** 64


def held_out(keys: Sequence[str], seed: int, spec: dict) -> list[str]:
    """The keys (normalized queries) that go to validation: those with side_hash < val_fraction, at most val_max of
    them (the smallest hashes), at least one. A threshold rather than a rank: as pairs.jsonl grows from one
    training round to the next (same seed), a query trained on never becomes a validation query (the champion the
    next round starts from may have trained on it), and validation queries move to training only when val_max binds."""
    ranked = sorted(keys, key=lambda k: (side_hash(seed, k), k))
    n = sum(1 for k in ranked if side_hash(seed, k) < spec["val_fraction"])
    return ranked[:min(spec["val_max"], max(1, n))] if ranked else []


def plan_validation(anchors: Sequence[str], positive_ids: Sequence[str | None], corpus: Sequence[dict], spec: dict,
                    seed: int, min_words: int = 4) -> dict:
    """Choose the validation queries of a sweep.

    From pairs.jsonl when at least `val_min_anchors` distinct (normalized) anchors carry a known `positive_id`: those
    chosen by held_out() leave training with *all* their rows (relevant = the positive_ids of those rows).
    Otherwise from the corpus: passages of >= 2 sentences are held out by held_out() on their text, and each
    held-out passage's sentence of >= min_words words with the smallest side_hash is an inverse-cloze query whose
    relevant documents are the passages that contain it; the corpus pairs of those passages must then leave
    training (see exclude_corpus_rows), the labelled pairs all stay.

    -> {"source": "pairs"|"corpus", "queries": [{"id","query","relevant"}], "train_rows": [pairs.jsonl row indices
        kept for training], "val_passages": [corpus indices held out], "eligible": int, "held_out_rows": int}
    Raises BundleError when no validation query can be made.
    """
    by_anchor: dict[str, list[int]] = {}
    for i, a in enumerate(anchors):
        by_anchor.setdefault(norm_text(a), []).append(i)
    eligible = [k for k, rows in by_anchor.items() if any(positive_ids[i] is not None for i in rows)]
    use_pairs = len(eligible) >= spec["val_min_anchors"]
    if not use_pairs:
        plan = _plan_from_corpus(corpus, spec, seed, min_words)
        if plan is not None:
            plan["train_rows"] = list(range(len(anchors)))
            plan["pair_anchors_eligible"] = len(eligible)
            return plan
        if not eligible:
            raise BundleError("job.json: 'sweep' has no validation queries: no pairs.jsonl row has a known "
                              "'positive_id' and no corpus passage has two sentences")
    held = held_out(eligible, seed, spec)
    queries, held_rows = [], set()
    for n, k in enumerate(held):
        rows = by_anchor[k]
        held_rows.update(rows)
        rel = list(dict.fromkeys(positive_ids[i] for i in rows if positive_ids[i] is not None))
        queries.append({"id": f"v{n}", "query": anchors[rows[0]], "relevant": rel})
    train_rows = [i for i in range(len(anchors)) if i not in held_rows]
    return {"source": "pairs", "queries": queries, "train_rows": train_rows, "val_passages": [],
            "eligible": len(eligible), "held_out_rows": len(held_rows)}


def _plan_from_corpus(corpus: Sequence[dict], spec: dict, seed: int, min_words: int) -> dict | None:
    # passage (normalized text) -> its query sentence. The side is drawn per passage, from its text: drawing it per
    # sentence, with each passage offering its lowest-hash sentence, would hold out 1 - (1 - val_fraction)^k of the
    # passages of k sentences instead of val_fraction.
    cands: dict[str, str] = {}
    for c in corpus:
        sents = split_sentences(c["text"])
        if len(sents) < 2:
            continue  # the sentence would be the whole passage: a query that matches its document verbatim
        ok = [s for s in sents if len(s.split()) >= min_words]
        if ok:
            cands.setdefault(norm_text(c["text"]), min(ok, key=lambda x: (side_hash(seed, x), x)))
    if not cands:
        return None
    held: dict[str, str] = {}  # normalized sentence -> its text: one query per distinct sentence
    for k in held_out(list(cands), seed, spec):
        held.setdefault(norm_text(cands[k]), cands[k])
    # every passage that contains a held-out sentence is relevant to it (boilerplate repeats across passages)
    contains: dict[str, list[int]] = {k: [] for k in held}
    for i, c in enumerate(corpus):
        for s in split_sentences(c["text"]):
            k = norm_text(s)
            if k in contains and (not contains[k] or contains[k][-1] != i):
                contains[k].append(i)
    queries, passages = [], set()
    for n, (k, s) in enumerate(held.items()):
        passages.update(contains[k])
        queries.append({"id": f"v{n}", "query": s, "relevant": [corpus[i]["id"] for i in contains[k]]})
    return {"source": "corpus", "queries": queries, "val_passages": sorted(passages), "eligible": len(cands),
            "held_out_rows": 0}


def exclude_corpus_rows(rows: Sequence[dict], val_passages: Sequence[int]) -> list[int]:
    """Indices of the corpus pairs that may be trained on: none made from a held-out passage, as anchor or as
    positive (an ICT pair of another sentence of that passage has the held-out sentence in its positive)."""
    held = set(val_passages)
    return [k for k, r in enumerate(rows) if r.get("src") not in held and r.get("dst") not in held]


def greedy_soup(scores: Sequence[float], evaluate: Callable[[list[int]], float]) -> tuple[list[int], float, list[dict]]:
    """Greedy soup (Wortsman et al. 2022, "Model soups", recipe 2): members in order of their own validation score,
    each added to the uniform weight average when the average with it scores no lower on validation.
    `evaluate(member indices)` scores the uniform average of those members. -> (members kept, score, trace)."""
    if not scores:
        raise ValueError("no members")
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    soup, best = [order[0]], float(scores[order[0]])
    trace = []
    for i in order[1:]:
        s = float(evaluate(soup + [i]))
        added = s >= best
        trace.append({"member": i, "soup": soup + [i], "val_ndcg@10": s, "added": added})
        if added:
            soup.append(i)
            best = s
    return soup, best, trace
