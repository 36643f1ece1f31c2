"""Build a training bundle (docs/ARCHITECTURE.md contract) from the GO / PubMedQA splits.

  python scripts/gpu/make_bundle.py --dataset go --base models/base --out /tmp/b --job '{"batch_size":256}'
pairs.jsonl = train queries -> each relevant passage; eval.jsonl = dev queries; corpus.jsonl = full corpus.
--shuffle-positives builds a deliberately bad bundle (positives permuted: mismatched pairs).
--group-field pmid copies that corpus field into corpus.jsonl "group" (parent document: the abstract of a PubMedQA
section), used by job.json "corpus_pairs" and the group-aware batch sampler. --ungroup-eval (ablation only) leaves
"group" off the passages relevant to any eval query, so no group pairs are built from the eval abstracts.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from trainer.data import load_jsonl  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--data", default=".carry/data")
    ap.add_argument("--base", required=True, help="model artifact dir (copied to bundle/base)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--max-pairs", type=int, default=0)
    ap.add_argument("--eval-split", default="dev")
    ap.add_argument("--eval-max-queries", type=int, default=0)
    ap.add_argument("--shuffle-positives", action="store_true")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--job", default="{}")
    ap.add_argument("--group-field", default="")
    ap.add_argument("--ungroup-eval", action="store_true")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    d = os.path.join(a.data, a.dataset)
    corpus = load_jsonl(os.path.join(d, "corpus.jsonl"))
    text = {c["id"]: c["text"] for c in corpus}
    train = load_jsonl(os.path.join(d, "queries.train.jsonl"))
    pairs = [{"anchor": q["query"], "positive": text[r]} for q in train for r in q["relevant"] if r in text]
    rng.shuffle(pairs)
    if a.max_pairs:
        pairs = pairs[: a.max_pairs]
    if a.shuffle_positives:
        pos = [p["positive"] for p in pairs]
        rng.shuffle(pos)
        pairs = [{"anchor": p["anchor"], "positive": x} for p, x in zip(pairs, pos)]
    ev = load_jsonl(os.path.join(d, f"queries.{a.eval_split}.jsonl"))
    if a.eval_max_queries:
        ev = rng.sample(ev, min(a.eval_max_queries, len(ev)))
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "pairs.jsonl"), "w") as f:
        for p in pairs:
            f.write(json.dumps(p, ensure_ascii=False) + "\n")
    with open(os.path.join(a.out, "eval.jsonl"), "w") as f:
        for i, q in enumerate(ev):
            f.write(json.dumps({"id": f"{a.eval_split}-{i}", "query": q["query"], "relevant": q["relevant"]}, ensure_ascii=False) + "\n")
    eval_ids = {r for q in ev for r in q["relevant"]} if a.ungroup_eval else set()
    with open(os.path.join(a.out, "corpus.jsonl"), "w") as f:
        for c in corpus:
            row = {"id": c["id"], "text": c["text"]}
            if a.group_field and c.get(a.group_field) is not None and c["id"] not in eval_ids:
                row["group"] = str(c[a.group_field])
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    job = {"loss": "mnrl", "batch_size": 256, "epochs": 1, "lr": 2e-4, "seed": 42, "max_seq_length": 128,
           "gpu": "auto"}
    job.update(json.loads(a.job))
    with open(os.path.join(a.out, "job.json"), "w") as f:
        json.dump(job, f, indent=2)
    dst = os.path.join(a.out, "base")
    if os.path.exists(dst):
        shutil.rmtree(dst)
    shutil.copytree(a.base, dst)
    print(json.dumps({"event": "bundle", "out": a.out, "pairs": len(pairs), "eval": len(ev), "corpus": len(corpus)}))


if __name__ == "__main__":
    main()
