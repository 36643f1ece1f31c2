"""Fixture for the TS evaluator test: sentence-transformers' InformationRetrievalEvaluator top-100
rankings (write_predictions) + its metric dict, for one model on PubMedQA dev and a GO dev sample."""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from trainer.data import load_jsonl  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="artifact dir (uses its pytorch/)")
    ap.add_argument("--data", default=".carry/data")
    ap.add_argument("--out", required=True)
    ap.add_argument("--go-queries", type=int, default=200)
    a = ap.parse_args()
    import torch
    from sentence_transformers import SentenceTransformer, util
    from sentence_transformers.evaluation import InformationRetrievalEvaluator

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    model = SentenceTransformer(os.path.join(a.model, "pytorch"), device=dev, model_kwargs={"dtype": torch.float32})
    card = json.load(open(os.path.join(a.model, "model_card.json")))
    out = {"model": card.get("version"), "generator": "scripts/gpu/st_fixture.py",
           "device": torch.cuda.get_device_name(0) if dev == "cuda" else "cpu",
           "sentence_transformers": __import__("sentence_transformers").__version__, "datasets": {}}
    for ds, nq in (("pubmedqa", 0), ("go", a.go_queries)):
        qs = load_jsonl(os.path.join(a.data, ds, "queries.dev.jsonl"))
        if nq:
            qs = random.Random(7).sample(qs, nq)
        corpus = {c["id"]: c["text"] for c in load_jsonl(os.path.join(a.data, ds, "corpus.jsonl"))}
        queries = {f"q{i}": q["query"] for i, q in enumerate(qs)}
        rel = {f"q{i}": set(q["relevant"]) for i, q in enumerate(qs)}
        name = f"{ds}_dev"
        ev = InformationRetrievalEvaluator(queries, corpus, rel, name=name, accuracy_at_k=[1, 3, 5, 10],
                                           precision_recall_at_k=[1, 3, 5, 10], mrr_at_k=[10], ndcg_at_k=[10],
                                           map_at_k=[100], show_progress_bar=False, write_predictions=True,
                                           score_functions={"cosine": util.cos_sim}, write_csv=False)
        with tempfile.TemporaryDirectory() as td:
            metrics = ev(model, output_path=td)
            pf = [f for f in os.listdir(td) if f.endswith(".jsonl")]
            preds = [json.loads(l) for l in open(os.path.join(td, pf[0]))]
        pre = f"{name}_cosine_"
        out["datasets"][ds] = {
            "n_queries": len(queries), "n_corpus": len(corpus),
            "relevant": {q: sorted(r) for q, r in rel.items()},
            "rankings": {p["query_id"]: [[r["corpus_id"], r["score"]] for r in p["results"]] for p in preds},
            "st_metrics": {k[len(pre):]: float(v) for k, v in metrics.items() if k.startswith(pre)},
        }
        print(json.dumps({"event": "fixture", "dataset": ds, **out["datasets"][ds]["st_metrics"]}), flush=True)
    with open(a.out, "w") as f:
        json.dump(out, f, separators=(",", ":"))


if __name__ == "__main__":
    main()
