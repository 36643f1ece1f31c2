"""Training-bundle validation (plain Python: runs before torch is imported, so bad input fails fast).

Bundle layout (DESIGN.md "Training bundle"):
  pairs.jsonl   {"anchor": str, "positive": str[, "negative": str][, "positive_id": corpus id]}   one per line;
                may be empty when job.json corpus_pairs makes pairs from the corpus (cold start)
  eval.jsonl    {"query": str, "relevant": [corpus ids][, "id": str]}
  corpus.jsonl  {"id": str, "text": str[, "group": str]}   group: parent document (optional)
  embed.jsonl   optional {"id": str, "text": str}: what job.json embed_corpus embeds instead of corpus.jsonl
  base/         model artifact: PyTorch weights in base/pytorch/ (sentence-transformers dir) or
                an ST/HF model directly in base/; or job.json "base_model": a path or hub id
  job.json      {"loss": "mnrl"|"cached_mnrl", "batch_size", "epochs", "lr", "seed", "max_seq_length",
                 "hard_negatives"?, "gpu": "auto"|"required", "mini_batch_size"?, "warmup_ratio"?,
                 "version"?, "parent_version"?, "base_model"?, "corpus_pairs"?,
                 "dataloader_workers"?, "scale"?, "directions"?, "partition_mode"?, "hardness"?, "soup"?,
                 "soup_concurrency"?, "soup_stall_seconds"?, "sweep"?, "embed_corpus"?, "engine"?: "st"|"fast",
                 "bucket"?, "merge_columns"?, "pad_to"?, "int8_eval_queries"?, "int8_eval_corpus"?}
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from .corpus_pairs import build_corpus_pairs, normalize_spec, resolve_spec
from .data import BundleError, read_jsonl
from .embed_corpus import normalize_spec as normalize_embed_spec
from .sweep import normalize_sweep

JOB_DEFAULTS: dict[str, Any] = {
    "loss": "mnrl",
    "batch_size": 128,
    "epochs": 1,
    "lr": 5e-5,
    "seed": 42,
    "max_seq_length": 128,
    "hard_negatives": False,
    "gpu": "auto",
    "mini_batch_size": 64,
    "warmup_ratio": 0.1,
    "corpus_pairs": False,
    "dataloader_workers": 0,
    "scale": 20.0,
    "directions": ["query_to_doc"],
    "partition_mode": "joint",
    "hardness": None,
    "soup": 1,
    "soup_concurrency": 0,
    "soup_stall_seconds": 0,  # > 0: fail a side-by-side soup when no member sends anything for this long; 0: off
    "sweep": False,  # lr x epochs members picked on a validation split of the training data (sweep.py)
    "embed_corpus": False,  # write OUT/embeddings/ (embed_corpus.py)
    # "st": SentenceTransformerTrainer (the reference, the default until a one-call GPU comparison shows the fast
    # engine's NDCG@10 within noise of it: README "Engines"); "fast": fast_train.py's loop (loss mnrl only)
    "engine": "st",
    "bucket": True,  # fast engine: length-bucketed batches (false: the reference's random batches)
    "merge_columns": None,  # fast engine: one forward for all columns (None: on a GPU only)
    "pad_to": 32,  # fast engine: batch widths rounded up to a multiple of this many tokens (0: exact widths)
    # the int8 metric loss (PyTorch fp32 vs the int8 ONNX) is measured on a seeded sample of eval.jsonl: at most
    # this many queries, and a corpus of their relevant passages plus random others up to this many (0: all)
    "int8_eval_queries": 1000,
    "int8_eval_corpus": 5000,
}

DIRECTIONS = ("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc")
HARDNESS_MODES = ("in_batch_negatives", "hard_negatives", "all_negatives")
MAX_SOUP = 8


@dataclass
class Bundle:
    path: str
    job: dict
    anchors: list[str]
    positives: list[str]
    negatives: list[str] | None
    queries: list[dict]
    corpus: list[dict]
    base_path: str
    files: list[str] = field(default_factory=list)
    # pairs.jsonl positive_id per row (None: absent, or not a corpus id); not given to the model
    positive_ids: list = field(default_factory=list)
    embed: list[dict] | None = None  # embed.jsonl rows, when the bundle has one
    info: dict = field(default_factory=dict)  # counts for the validate event and the report


def _num(job: dict, key: str, typ, minimum, strict: bool = True):
    v = job[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (typ is int and int(v) != v):
        raise BundleError(f"job.json: '{key}' must be {'an integer' if typ is int else 'a number'}")
    if (v <= minimum) if strict else (v < minimum):
        raise BundleError(f"job.json: '{key}' must be {'>' if strict else '>='} {minimum}")
    return typ(v)


def load_job(path: str) -> dict:
    p = os.path.join(path, "job.json")
    if not os.path.isfile(p):
        raise BundleError(f"missing job.json in bundle {path}")
    try:
        with open(p, encoding="utf-8") as f:
            raw = json.load(f)
    except json.JSONDecodeError as e:
        raise BundleError(f"job.json: malformed JSON (line {e.lineno}: {e.msg})") from None
    if not isinstance(raw, dict):
        raise BundleError("job.json: expected a JSON object")
    job = dict(JOB_DEFAULTS)
    job.update(raw)
    if job["loss"] not in ("mnrl", "cached_mnrl"):
        raise BundleError(f"job.json: 'loss' must be 'mnrl' or 'cached_mnrl', got {job['loss']!r}")
    if job["gpu"] not in ("auto", "required"):
        raise BundleError(f"job.json: 'gpu' must be 'auto' or 'required', got {job['gpu']!r}")
    job["batch_size"] = _num(job, "batch_size", int, 1, strict=False)
    job["mini_batch_size"] = _num(job, "mini_batch_size", int, 1, strict=False)
    job["epochs"] = _num(job, "epochs", float, 0)
    if job["epochs"] == int(job["epochs"]):
        job["epochs"] = int(job["epochs"])
    job["lr"] = _num(job, "lr", float, 0)
    job["seed"] = _num(job, "seed", int, 0, strict=False)
    job["max_seq_length"] = _num(job, "max_seq_length", int, 8, strict=False)
    job["warmup_ratio"] = _num(job, "warmup_ratio", float, 0, strict=False)
    job["dataloader_workers"] = _num(job, "dataloader_workers", int, 0, strict=False)
    if job["engine"] not in ("st", "fast"):
        raise BundleError(f"job.json: 'engine' must be 'st' or 'fast', got {job['engine']!r}")
    if not isinstance(job["bucket"], bool):
        raise BundleError("job.json: 'bucket' must be true or false")
    if job["merge_columns"] is not None and not isinstance(job["merge_columns"], bool):
        raise BundleError("job.json: 'merge_columns' must be true, false or null")
    for k in ("pad_to", "int8_eval_queries", "int8_eval_corpus"):
        job[k] = _num(job, k, int, 0, strict=False)
    hn = job["hard_negatives"]
    if hn is None or hn is False:
        job["hard_negatives"] = None
    elif hn is True:
        job["hard_negatives"] = {}
    elif not isinstance(hn, dict):
        raise BundleError("job.json: 'hard_negatives' must be a boolean or an object")
    job["corpus_pairs"] = normalize_spec(job["corpus_pairs"])
    job["scale"] = _num(job, "scale", float, 0)
    job["soup"] = _num(job, "soup", int, 1, strict=False)
    if job["soup"] > MAX_SOUP:
        raise BundleError(f"job.json: 'soup' must be <= {MAX_SOUP}")
    job["soup_concurrency"] = _num(job, "soup_concurrency", int, 0, strict=False)
    job["soup_stall_seconds"] = _num(job, "soup_stall_seconds", float, 0, strict=False)
    job["sweep"] = normalize_sweep(job["sweep"])
    if job["sweep"] is not None and job["soup"] > 1:
        # the sweep's greedy soup already averages members; seeds x sweep points would multiply the cost
        raise BundleError("job.json: 'sweep' and 'soup' > 1 are alternatives (select: 'greedy_soup' is the sweep's soup)")
    job["embed_corpus"] = normalize_embed_spec(job["embed_corpus"])
    _loss_shape(job)
    return job


def _loss_shape(job: dict) -> None:
    """MNRL interaction terms (sentence-transformers `directions`/`partition_mode`) and in-batch hardness weighting."""
    d = job["directions"]
    if isinstance(d, str):
        d = [d]
    if not isinstance(d, list) or not d or any(x not in DIRECTIONS for x in d):
        raise BundleError(f"job.json: 'directions' must be a non-empty list of {', '.join(DIRECTIONS)}")
    if "query_to_doc" not in d:
        raise BundleError("job.json: 'directions' must include 'query_to_doc'")
    job["directions"] = list(dict.fromkeys(d))
    if job["partition_mode"] not in ("joint", "per_direction"):
        raise BundleError(f"job.json: 'partition_mode' must be 'joint' or 'per_direction', got {job['partition_mode']!r}")
    if job["partition_mode"] == "per_direction" and {"query_to_query", "doc_to_doc"} & set(d):
        raise BundleError("job.json: 'partition_mode' 'per_direction' works only with query_to_doc and doc_to_query")
    h = job["hardness"]
    if h is None or h is False:
        job["hardness"] = None
    elif not isinstance(h, dict) or h.get("mode", "in_batch_negatives") not in HARDNESS_MODES:
        raise BundleError(f"job.json: 'hardness' must be an object {{\"mode\": {'|'.join(HARDNESS_MODES)}, \"strength\": number}}")
    else:
        strength = h.get("strength", 0.0)
        if isinstance(strength, bool) or not isinstance(strength, (int, float)) or strength < 0:
            raise BundleError("job.json: 'hardness.strength' must be a number >= 0")
        job["hardness"] = {"mode": h.get("mode", "in_batch_negatives"), "strength": float(strength)}


def _str_field(obj: dict, key: str, fname: str, line: int) -> str:
    v = obj.get(key)
    if not isinstance(v, str):
        raise BundleError(f"{fname}:{line}: '{key}' must be a string")
    if not v.strip():
        raise BundleError(f"{fname}:{line}: empty '{key}' text")
    return v


def _jsonl(path: str, name: str) -> str:
    p = os.path.join(path, name)
    if not os.path.isfile(p):
        raise BundleError(f"missing {name} in bundle {path}")
    return p


def resolve_base(path: str, job: dict) -> str:
    if job.get("base_model"):
        b = str(job["base_model"])
        return os.path.join(path, b) if os.path.exists(os.path.join(path, b)) else b
    base = os.path.join(path, "base")
    for cand in (os.path.join(base, "pytorch"), base):
        if os.path.isfile(os.path.join(cand, "modules.json")) or (
            os.path.isfile(os.path.join(cand, "config.json"))
            and any(os.path.isfile(os.path.join(cand, w)) for w in ("model.safetensors", "pytorch_model.bin"))
        ):
            return cand
    if not os.path.isdir(base):
        raise BundleError(f"missing base/ model in bundle {path} (or job.json 'base_model')")
    raise BundleError("base/ has no PyTorch weights (expected base/pytorch/ sentence-transformers dir)")


def load_bundle(path: str) -> Bundle:
    if not os.path.isdir(path):
        raise BundleError(f"bundle not found: {path}")
    if not os.listdir(path):
        raise BundleError(f"bundle is empty: {path}")
    job = load_job(path)
    pp = _jsonl(path, "pairs.jsonl")
    anchors, positives, negatives = [], [], []
    positive_ids: list = []
    has_neg = None
    for line, o in read_jsonl(pp):
        anchors.append(_str_field(o, "anchor", "pairs.jsonl", line))
        positives.append(_str_field(o, "positive", "pairs.jsonl", line))
        pid = o.get("positive_id")
        if pid is not None and (not isinstance(pid, (str, int)) or isinstance(pid, bool) or str(pid) == ""):
            raise BundleError(f"pairs.jsonl:{line}: 'positive_id' must be a non-empty string")
        positive_ids.append(None if pid is None else str(pid))
        n = "negative" in o and o["negative"] is not None
        if has_neg is None:
            has_neg = n
        elif has_neg != n:
            raise BundleError(f"pairs.jsonl:{line}: 'negative' must be on every line or on none")
        if n:
            negatives.append(_str_field(o, "negative", "pairs.jsonl", line))
    cp = _jsonl(path, "corpus.jsonl")
    corpus, ids = [], set()
    for line, o in read_jsonl(cp):
        cid = o.get("id")
        if not isinstance(cid, (str, int)) or isinstance(cid, bool) or str(cid) == "":
            raise BundleError(f"corpus.jsonl:{line}: 'id' must be a non-empty string")
        cid = str(cid)
        if cid in ids:
            raise BundleError(f"corpus.jsonl:{line}: duplicate id {cid!r}")
        ids.add(cid)
        row = {"id": cid, "text": _str_field(o, "text", "corpus.jsonl", line)}
        g = o.get("group")
        if g is not None:
            if not isinstance(g, (str, int)) or isinstance(g, bool) or str(g) == "":
                raise BundleError(f"corpus.jsonl:{line}: 'group' must be a non-empty string")
            row["group"] = str(g)
        corpus.append(row)
    if not corpus:
        raise BundleError("corpus.jsonl is empty")
    if job["corpus_pairs"] is not None:
        job["corpus_pairs"] = resolve_spec(job["corpus_pairs"], any("group" in c for c in corpus))
    info: dict = {}
    if not anchors:
        # cold start: no labelled pairs yet, the corpus alone is the training data
        if job["corpus_pairs"] is None:
            raise BundleError("pairs.jsonl is empty and job.json corpus_pairs is off: nothing to train on")
        n_cp = build_corpus_pairs(corpus, job["corpus_pairs"], job["seed"])[2]["rows"]
        if n_cp == 0:
            raise BundleError("pairs.jsonl is empty and corpus_pairs makes no pairs from corpus.jsonl "
                              "(no passage of two sentences, nor a group of two passages): nothing to train on")
        info["cold_start_corpus_pairs"] = n_cp
    # an unknown positive_id is not an error: the server's corpus may have moved on since the pair was logged
    unknown = sum(1 for p in positive_ids if p is not None and p not in ids)
    positive_ids = [p if p is not None and p in ids else None for p in positive_ids]
    info["positive_ids"] = sum(1 for p in positive_ids if p is not None)
    info["unknown_positive_ids"] = unknown
    ep = _jsonl(path, "eval.jsonl")
    queries = []
    for line, o in read_jsonl(ep):
        q = _str_field(o, "query", "eval.jsonl", line)
        rel = o.get("relevant")
        if not isinstance(rel, list) or not rel:
            raise BundleError(f"eval.jsonl:{line}: 'relevant' must be a non-empty list of corpus ids")
        rel = [str(r) for r in rel]
        missing = [r for r in rel if r not in ids]
        if missing:
            raise BundleError(f"eval.jsonl:{line}: relevant id {missing[0]!r} not in corpus.jsonl")
        qid = str(o["id"]) if o.get("id") is not None else f"q{len(queries)}"
        queries.append({"id": qid, "query": q, "relevant": rel})
    if not queries:
        raise BundleError("eval.jsonl is empty")
    if len({q["id"] for q in queries}) != len(queries):
        raise BundleError("eval.jsonl: duplicate query ids")
    if job["sweep"] is not None:
        # where the sweep's validation queries come from, and whether there are any: known before torch is loaded
        from .sweep import plan_validation

        cpspec = job["corpus_pairs"]
        plan = plan_validation(anchors, positive_ids, corpus, job["sweep"], job["seed"],
                               min_words=cpspec["min_words"] if cpspec else 4)
        info["sweep_validation"] = {"source": plan["source"], "queries": len(plan["queries"]),
                                    "eligible": plan["eligible"]}
    embed = _embed_rows(path)
    if embed is not None:
        info["embed_rows"] = len(embed)
    base = resolve_base(path, job)
    return Bundle(path, job, anchors, positives, negatives if has_neg else None, queries, corpus, base,
                  files=[pp, ep, cp, os.path.join(path, "job.json")], positive_ids=positive_ids, embed=embed,
                  info=info)


def _embed_rows(path: str) -> list[dict] | None:
    """Optional embed.jsonl {"id", "text"}: the texts job.json embed_corpus embeds instead of corpus.jsonl (e.g. the
    server's chunks of its documents)."""
    p = os.path.join(path, "embed.jsonl")
    if not os.path.isfile(p):
        return None
    rows, seen = [], set()
    for line, o in read_jsonl(p):
        eid = o.get("id")
        if not isinstance(eid, (str, int)) or isinstance(eid, bool) or str(eid) == "":
            raise BundleError(f"embed.jsonl:{line}: 'id' must be a non-empty string")
        eid = str(eid)
        if eid in seen:
            raise BundleError(f"embed.jsonl:{line}: duplicate id {eid!r}")
        seen.add(eid)
        rows.append({"id": eid, "text": _str_field(o, "text", "embed.jsonl", line)})
    if not rows:
        raise BundleError("embed.jsonl is empty (leave it out to embed corpus.jsonl)")
    return rows
