"""IR evaluation with sentence-transformers' InformationRetrievalEvaluator."""
from __future__ import annotations

import os

from .data import load_jsonl

KEYS = ["accuracy@1", "accuracy@3", "accuracy@5", "accuracy@10", "precision@1", "precision@3", "precision@5",
        "precision@10", "recall@1", "recall@3", "recall@5", "recall@10", "mrr@10", "ndcg@10", "map@100"]


def make_evaluator(queries: list[dict], corpus: list[dict], name: str = "eval", **kw):
    """queries: [{"query", "relevant":[ids]} | {"id", "query", "relevant"}]; corpus: [{"id","text"}]."""
    from sentence_transformers.evaluation import InformationRetrievalEvaluator

    q = {}
    rel = {}
    for i, o in enumerate(queries):
        qid = str(o.get("id", f"q{i}"))
        q[qid] = o["query"]
        rel[qid] = set(str(x) for x in o["relevant"])
    c = {str(o["id"]): o["text"] for o in corpus}
    return InformationRetrievalEvaluator(
        queries=q, corpus=c, relevant_docs=rel, name=name,
        accuracy_at_k=[1, 3, 5, 10], precision_recall_at_k=[1, 3, 5, 10], mrr_at_k=[10], ndcg_at_k=[10],
        map_at_k=[100], show_progress_bar=False, batch_size=256, corpus_chunk_size=50000, **kw)


def flat(results: dict, name: str) -> dict:
    """ST result dict -> {"ndcg@10": ...} for the cosine score function."""
    out = {}
    for k in KEYS:
        key = f"{name}_cosine_{k}"
        if key in results:
            out[k] = float(results[key])
    return out


def evaluate(model, queries, corpus, name="eval") -> dict:
    """Queries with the model's query prompt, the corpus with its document prompt (as the server embeds them)."""
    from .artifact import prompts_of_model

    qp, dp = prompts_of_model(model)
    ev = make_evaluator(queries, corpus, name=name, query_prompt=qp or None, corpus_prompt=dp or None)
    return flat(ev(model), name)


def eval_dataset(model, data_dir: str, ds: str, split: str = "dev") -> dict:
    queries = load_jsonl(os.path.join(data_dir, ds, f"queries.{split}.jsonl"))
    corpus = load_jsonl(os.path.join(data_dir, ds, "corpus.jsonl"))
    return evaluate(model, queries, corpus, name=f"{ds}_{split}")


def eval_sample(queries: list[dict], corpus: list[dict], seed: int, max_queries: int = 1000,
                max_corpus: int = 5000) -> tuple[list[dict], list[dict], dict]:
    """A fixed, seeded sample of an evaluation set, small enough to score a CPU model on quickly: at most
    `max_queries` queries (a seeded random choice, in their order in `queries`) and a corpus of all their relevant
    passages plus seeded random other passages up to `max_corpus` in all (every relevant passage stays even when
    they alone are more). 0 (or a limit at least the set's size) keeps all of it. Same inputs and seed, same sample.
    -> (queries, corpus, info {"n_queries", "n_corpus", "of_queries", "of_corpus", "seed", "full"})."""
    import random

    rng = random.Random(seed)
    qs = list(queries)
    if max_queries and len(qs) > max_queries:
        keep = sorted(rng.sample(range(len(qs)), max_queries))
        qs = [qs[i] for i in keep]
    cs = list(corpus)
    if max_corpus and len(cs) > max_corpus:
        rel = {str(r) for q in qs for r in q["relevant"]}
        is_rel = [str(c["id"]) in rel for c in cs]
        others = [i for i, r in enumerate(is_rel) if not r]
        room = max(0, max_corpus - (len(cs) - len(others)))
        pick = set(rng.sample(others, min(room, len(others))))
        cs = [c for i, c in enumerate(cs) if is_rel[i] or i in pick]
    full = len(qs) == len(queries) and len(cs) == len(corpus)
    return qs, cs, {"n_queries": len(qs), "n_corpus": len(cs), "of_queries": len(queries), "of_corpus": len(corpus),
                    "seed": seed, "full": full}
