"""Dense / BM25 / hybrid (RRF) retrieval metrics of a trained artifact on a bundle's eval.jsonl + corpus.jsonl.

  python scripts/gpu/hybrid_eval.py --model OUT/pytorch --bundle BUNDLE [--rrf-k 60] [--depth 100]
Dense: cosine of the model's normalized embeddings (exact search). BM25 (Python port of bench/eval/bm25.ts):
[a-z0-9]+ tokens, k1 1.2, b 0.75, Lucene idf. Hybrid: reciprocal-rank fusion of the two top-`depth` lists,
score = sum 1/(k + rank). Metrics as sentence-transformers' InformationRetrievalEvaluator (binary relevance):
recall@1/3/5/10, MRR@10, NDCG@10. Prints one JSON line.
"""
from __future__ import annotations

import argparse
import collections
import json
import math
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from trainer.data import load_jsonl  # noqa: E402

TOK = re.compile(r"[a-z0-9]+")


def bm25_scores(docs: list[str], k1=1.2, b=0.75):
    toks = [TOK.findall(d.lower()) for d in docs]
    n = len(toks)
    avg = sum(map(len, toks)) / n
    post: dict[str, list[tuple[int, int]]] = collections.defaultdict(list)
    for i, t in enumerate(toks):
        for w, f in collections.Counter(t).items():
            post[w].append((i, f))
    lens = np.array([len(t) for t in toks], dtype=np.float64)

    def score(q: str) -> np.ndarray:
        s = np.zeros(n)
        for w in set(TOK.findall(q.lower())):
            p = post.get(w)
            if not p:
                continue
            idf = math.log(1 + (n - len(p) + 0.5) / (len(p) + 0.5))
            idx = np.array([i for i, _ in p])
            f = np.array([f for _, f in p], dtype=np.float64)
            s[idx] += idf * f * (k1 + 1) / (f + k1 * (1 - b + b * lens[idx] / avg))
        return s

    return score


def metrics(ranked: list[list[str]], rel: list[set]) -> dict:
    out: dict[str, float] = {}
    for k in (1, 3, 5, 10):
        out[f"recall@{k}"] = float(np.mean([len(set(r[:k]) & g) / len(g) for r, g in zip(ranked, rel)]))
    mrr, ndcg = [], []
    for r, g in zip(ranked, rel):
        mrr.append(next((1 / (i + 1) for i, d in enumerate(r[:10]) if d in g), 0.0))
        dcg = sum(1 / math.log2(i + 2) for i, d in enumerate(r[:10]) if d in g)
        idcg = sum(1 / math.log2(i + 2) for i in range(min(10, len(g))))
        ndcg.append(dcg / idcg)
    out["mrr@10"] = float(np.mean(mrr))
    out["ndcg@10"] = float(np.mean(ndcg))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--rrf-k", type=int, default=60)
    ap.add_argument("--depth", type=int, default=100)
    ap.add_argument("--name", default="")
    a = ap.parse_args()
    from sentence_transformers import SentenceTransformer

    corpus = load_jsonl(os.path.join(a.bundle, "corpus.jsonl"))
    queries = load_jsonl(os.path.join(a.bundle, "eval.jsonl"))
    ids = [c["id"] for c in corpus]
    rel = [set(map(str, q["relevant"])) for q in queries]
    model = SentenceTransformer(a.model)
    d = model.encode([c["text"] for c in corpus], batch_size=256, normalize_embeddings=True, convert_to_numpy=True)
    q = model.encode([x["query"] for x in queries], batch_size=256, normalize_embeddings=True, convert_to_numpy=True)
    sims = q @ d.T
    bm = bm25_scores([c["text"] for c in corpus])
    dense, lex, hyb = [], [], []
    for i, x in enumerate(queries):
        dr = np.argsort(-sims[i], kind="stable")[: a.depth]
        bs = bm(x["query"])
        br = np.argsort(-bs, kind="stable")[: a.depth]
        fused: dict[int, float] = collections.defaultdict(float)
        for r, j in enumerate(dr):
            fused[int(j)] += 1 / (a.rrf_k + r + 1)
        for r, j in enumerate(br):
            fused[int(j)] += 1 / (a.rrf_k + r + 1)
        dense.append([ids[j] for j in dr])
        lex.append([ids[j] for j in br])
        hyb.append([ids[j] for j, _ in sorted(fused.items(), key=lambda kv: -kv[1])])
    print(json.dumps({"event": "hybrid_eval", "name": a.name, "model": a.model, "queries": len(queries),
                      "corpus": len(corpus), "rrf_k": a.rrf_k, "depth": a.depth, "dense": metrics(dense, rel),
                      "bm25_python": metrics(lex, rel), "hybrid_rrf": metrics(hyb, rel)}))


if __name__ == "__main__":
    main()
