#!/usr/bin/env python3
"""The trainer on sentence-transformers-layout bases (issue 13): test/fixtures/models/st/{st-bge-tiny (CLS + query
prompt), st-e5-tiny (mean, query/passage prompts)} as a bundle's plain base/.

  python3 scripts/gpu/st_trainer_check.py [--train]          # results -> $OUT/st_trainer_check.json

1. export: trainer.bundle.resolve_base + trainer.train.load_model + trainer.artifact.write_artifact with the default
   ONNX parity tolerance (1e-4): the candidate artifact must pass parity with its own pooling (CLS included), carry
   pytorch/ with the same pooling and prompts, and its OnnxEncoder must pick the pooling up from the artifact.
2. --train (needs `datasets`: bash scripts/gpu/setup.sh with .whl carried): `python -m trainer train` end to end on
   a small bundle (the fixture's reference queries -> passages, repeated) for each base; the artifact's pytorch/
   must keep the pooling and prompts.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)
ST = os.path.join(REPO, "test/fixtures/models/st")


def st_files(d: str) -> dict:
    out = {}
    for name in ("modules.json", "config_sentence_transformers.json", "1_Pooling/config.json"):
        p = os.path.join(d, name)
        out[name] = json.load(open(p)) if os.path.exists(p) else None
    return out


def make_bundle(base_src: str, dest: str) -> None:
    refs = json.load(open(os.path.join(ST, "references.json")))
    qs, ps = refs["queries"], refs["passages"]
    os.makedirs(dest)
    shutil.copytree(base_src, os.path.join(dest, "base"))
    with open(os.path.join(dest, "pairs.jsonl"), "w") as f:
        for r in range(20):
            for i, (q, p) in enumerate(zip(qs, ps)):
                f.write(json.dumps({"anchor": f"{q} {r}", "positive": p}) + "\n")
    with open(os.path.join(dest, "corpus.jsonl"), "w") as f:
        for i, p in enumerate(ps):
            f.write(json.dumps({"id": f"p{i}", "text": p}) + "\n")
    with open(os.path.join(dest, "eval.jsonl"), "w") as f:
        for i, q in enumerate(qs):
            f.write(json.dumps({"query": q, "relevant": [f"p{i}"]}) + "\n")
    with open(os.path.join(dest, "job.json"), "w") as f:
        json.dump({"loss": "mnrl", "batch_size": 6, "epochs": 1, "lr": 1e-4, "seed": 1, "max_seq_length": 64, "gpu": "auto",
                   "version": "st-check", "parent_version": os.path.basename(base_src)}, f)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", action="store_true")
    a = ap.parse_args()
    out_dir = os.environ.get("OUT", ".")
    res: dict = {"export": {}, "train": {}}
    work = tempfile.mkdtemp(prefix="st-trainer-check-")
    for name in ("st-bge-tiny", "st-e5-tiny"):
        try:
            from trainer.artifact import OnnxEncoder, pooling_of_model, write_artifact
            from trainer.bundle import resolve_base
            from trainer.train import load_model

            b = os.path.join(work, f"bundle-{name}")
            make_bundle(os.path.join(ST, name), b)
            base = resolve_base(b, {})
            model = load_model(base, "cpu", 64)
            art = os.path.join(work, f"art-{name}")
            info = write_artifact(model, art, {"version": f"{name}-x"}, quantize=True)
            enc = OnnxEncoder(os.path.join(art, "onnx", "model_quantized.onnx"), model[0].tokenizer, 64)
            card = json.load(open(os.path.join(art, "model_card.json")))
            res["export"][name] = {"ok": True, "resolve_base": os.path.relpath(base, b), "pooling": pooling_of_model(model),
                                   "onnx_encoder_pooling": enc.pooling, "card_pooling": card.get("pooling"), "info": info,
                                   "pytorch": st_files(os.path.join(art, "pytorch"))}
        except Exception as e:  # noqa: BLE001
            res["export"][name] = {"ok": False, "error": repr(e), "trace": traceback.format_exc()}
        if a.train:
            try:
                b = os.path.join(work, f"train-bundle-{name}")
                make_bundle(os.path.join(ST, name), b)
                o = os.path.join(work, f"train-out-{name}")
                p = subprocess.run([sys.executable, "-m", "trainer", "train", b, o], cwd=REPO, capture_output=True, text=True, timeout=900)
                events = [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]
                res["train"][name] = {"rc": p.returncode, "stderr_tail": p.stderr.splitlines()[-15:],
                                      "events": [e for e in events if e.get("event") != "progress"],
                                      "pytorch": st_files(os.path.join(o, "pytorch")) if p.returncode == 0 else None,
                                      "card": json.load(open(os.path.join(o, "model_card.json"))) if p.returncode == 0 else None}
            except Exception as e:  # noqa: BLE001
                res["train"][name] = {"rc": None, "error": repr(e)}
    with open(os.path.join(out_dir, "st_trainer_check.json"), "w") as f:
        json.dump(res, f, indent=1, default=str)
    ok = all(v.get("ok") for v in res["export"].values()) and all(v.get("rc") == 0 for v in res["train"].values())
    print(json.dumps({"event": "done", "ok": ok, "export": {k: {kk: v.get(kk) for kk in ("ok", "pooling", "onnx_encoder_pooling", "card_pooling", "error")} for k, v in res["export"].items()},
                      "train": {k: v.get("rc") for k, v in res["train"].items()}}), flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
