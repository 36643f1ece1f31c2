"""Weight-average ("model soup", Wortsman et al. 2022) fine-tunes of one base, and score each and the soup
with the trainer's evaluator on a bundle's eval set.
  python3 scripts/gpu/soup.py --bundle B --models A/pytorch C/pytorch [--out SOUP_DIR] [--no-singles]
Prints one JSON line per model and one for the soup."""
from __future__ import annotations

import argparse
import json
import sys

sys.path.insert(0, ".")

from trainer.bundle import load_bundle  # noqa: E402
from trainer.evaluate import evaluate  # noqa: E402
from trainer.soup import accumulate_state, finish_average  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--models", nargs="+", required=True)
    ap.add_argument("--out")
    ap.add_argument("--no-singles", action="store_true", help="score only the soup")
    a = ap.parse_args()
    import torch
    from sentence_transformers import SentenceTransformer

    b = load_bundle(a.bundle)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    models = [SentenceTransformer(p, device=dev) for p in a.models]
    for p, m in zip(a.models, models if not a.no_singles else []):
        print(json.dumps({"event": "single", "model": p, **evaluate(m, b.queries, b.corpus)}), flush=True)
    acc = None
    for m in models:
        acc = accumulate_state(acc, m.state_dict())
    models[0].load_state_dict(finish_average(acc, len(models), models[0].state_dict()))
    print(json.dumps({"event": "soup", "models": a.models, **evaluate(models[0], b.queries, b.corpus)}), flush=True)
    if a.out:
        models[0].save(a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
