import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(REPO, "test", "fixtures", "models", "tiny")


def run_cli(*args, env=None, timeout=900):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "trainer", *args], cwd=REPO, capture_output=True, text=True,
                          env=e, timeout=timeout)


def write_bundle(d, pairs=None, queries=None, corpus=None, job=None, base=True):
    import shutil

    os.makedirs(d, exist_ok=True)
    corpus = corpus if corpus is not None else [
        {"id": f"d{i}", "text": t} for i, t in enumerate([
            "The process of cell division in which chromosomes separate.",
            "Binding to a DNA sequence that regulates transcription.",
            "The membrane that surrounds the mitochondrion.",
            "Any process that decreases the rate of protein synthesis.",
            "The chemical reactions resulting in the breakdown of glucose.",
            "A complex of proteins that degrades ubiquitinated proteins.",
            "Movement of ions across a membrane through a channel.",
            "The formation of new blood vessels from existing ones.",
        ])]
    if pairs is None:
        qs = ["cell division", "dna binding transcription regulator", "mitochondrial membrane",
              "negative regulation of translation", "glucose catabolism", "proteasome complex",
              "ion channel transport", "angiogenesis"]
        pairs = [{"anchor": q, "positive": corpus[i]["text"]} for i, q in enumerate(qs)] * 8
    if queries is None:
        queries = [{"query": "chromosome separation", "relevant": ["d0"]},
                   {"query": "breakdown of glucose", "relevant": ["d4"]},
                   {"query": "new blood vessel formation", "relevant": ["d7"]}]
    for name, rows in (("pairs.jsonl", pairs), ("eval.jsonl", queries), ("corpus.jsonl", corpus)):
        with open(os.path.join(d, name), "w") as f:
            for r in rows:
                f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    j = {"loss": "mnrl", "batch_size": 8, "epochs": 1, "lr": 1e-4, "seed": 1, "max_seq_length": 64, "gpu": "auto"}
    j.update(job or {})
    with open(os.path.join(d, "job.json"), "w") as f:
        json.dump(j, f)
    if base:
        shutil.copytree(TINY, os.path.join(d, "base"), dirs_exist_ok=True)
    return d


def have_torch():
    try:
        import sentence_transformers  # noqa: F401
        import torch  # noqa: F401

        return True
    except Exception:
        return False


needs_torch = pytest.mark.skipif(not have_torch(), reason="needs torch + sentence-transformers")
