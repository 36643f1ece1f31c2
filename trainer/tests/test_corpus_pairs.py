"""job.json "corpus_pairs" and corpus.jsonl "group": validation (no torch) and pair/batch construction."""
import json
import random

import pytest

from trainer.corpus_pairs import (build_corpus_pairs, conflict_free_batches, normalize_spec, resolve_spec, row_keys,
                                  split_sentences)
from trainer.data import BundleError

from .conftest import needs_torch, run_cli, write_bundle
from .test_bad_input import _err

DOCS = {
    "a": ["Cell division separates the chromosomes. It needs the spindle apparatus to work.",
          "Mitosis is followed by cytokinesis in most cells. The cell membrane then pinches off.",
          "Errors in chromosome separation cause aneuploidy."],
    "b": ["Glucose is broken down in glycolysis. The pathway yields two molecules of pyruvate.",
          "Pyruvate then enters the citric acid cycle in the mitochondrion."],
    "c": ["New blood vessels form from existing ones. This process is called angiogenesis in adults."],
}


PAIRS = [{"anchor": "chromosome separation", "positive": DOCS["a"][0]}]


def grouped_corpus(with_groups=True):
    rows = []
    for g, texts in DOCS.items():
        for i, t in enumerate(texts):
            r = {"id": f"{g}{i}", "text": t}
            if with_groups:
                r["group"] = g
            rows.append(r)
    return rows


def test_spec_normalization():
    assert normalize_spec(False) is None and normalize_spec(None) is None
    s = normalize_spec(True)
    assert s == {"group": None, "group_span": 0, "ict": 1, "ict_keep": 0.1, "min_words": 4, "max_pairs": 0}
    assert resolve_spec(s, has_groups=True)["group"] == 1
    assert resolve_spec(s, has_groups=False)["group"] == 0
    assert normalize_spec({"group": 2, "ict": 0})["group"] == 2
    for bad, word in (({"ict": -1}, "ict"), ({"group": 1.5}, "group"), ({"ict_keep": 2}, "ict_keep"),
                      ({"bogus": 1}, "unknown"), ("yes", "boolean"), ({"max_pairs": True}, "max_pairs")):
        with pytest.raises(BundleError, match=word):
            normalize_spec(bad)
    with pytest.raises(BundleError, match="needs a 'group'"):
        resolve_spec(normalize_spec({"group": 1}), has_groups=False)
    with pytest.raises(BundleError, match="group_span"):
        resolve_spec(normalize_spec({"group_span": 1}), has_groups=False)
    with pytest.raises(BundleError, match="neither"):
        resolve_spec(normalize_spec({"group": 0, "ict": 0}), has_groups=True)


def test_split_sentences():
    assert split_sentences("One two three. Four five six! Seven (eight)? 9 cases were seen. p<.001 held.") == [
        "One two three.", "Four five six!", "Seven (eight)?", "9 cases were seen. p<.001 held."]
    assert split_sentences("  single sentence  ") == ["single sentence"]


def test_build_pairs_group_and_ict():
    corpus = grouped_corpus()
    spec = resolve_spec(normalize_spec({"group": 1, "ict": 1, "ict_keep": 0.0}), True)
    rows, groups, st = build_corpus_pairs(corpus, spec, seed=3)
    group_of = {c["text"]: c["group"] for c in corpus}
    # group pairs: every passage of a multi-passage group -> a different passage of the same group
    gp = [(r, g) for r, g in zip(rows, groups) if r["anchor"] in group_of and r["positive"] in group_of]
    assert st["group_pairs"] == 5 and len(gp) == 5  # 3 in a, 2 in b, none in single-passage c
    for r, g in gp:
        assert r["anchor"] != r["positive"] and group_of[r["anchor"]] == group_of[r["positive"]] == g
    # ict pairs: a sentence of a multi-sentence passage -> that passage without it (ict_keep 0)
    ip = [(r, g) for r, g in zip(rows, groups) if r["anchor"] not in group_of]
    assert st["ict_pairs"] == len(ip) == 4  # a0, a1, b0, c0: passages with >= 2 sentences
    for r, g in ip:
        src = next(c for c in corpus if r["anchor"] in c["text"])
        assert g == src["group"] and r["anchor"] not in r["positive"] and r["positive"] in src["text"]
    assert st["rows"] == len(rows) == len(groups) == 9
    # deterministic per seed
    assert build_corpus_pairs(corpus, spec, seed=3)[0] == rows
    # cap
    capped, cg, st2 = build_corpus_pairs(corpus, dict(spec, max_pairs=4), seed=3)
    assert len(capped) == len(cg) == 4 and st2["capped"]
    # no groups: ICT only
    spec0 = resolve_spec(normalize_spec(True), False)
    rows0, g0, st0 = build_corpus_pairs(grouped_corpus(False), spec0, seed=3)
    assert st0["group_pairs"] == 0 and st0["ict_pairs"] == 4 and set(g0) == {None}


def test_group_span_pairs():
    corpus = grouped_corpus()
    spec = resolve_spec(normalize_spec({"group": 0, "ict": 0, "group_span": 2}), True)
    rows, groups, st = build_corpus_pairs(corpus, spec, seed=5)
    group_of = {c["text"]: c["group"] for c in corpus}
    assert st["group_span_pairs"] == len(rows) == 2 * 5  # every passage of groups a and b, none of single c
    for r, g in zip(rows, groups):
        src = next(c for c in corpus if r["anchor"] in c["text"])
        assert src["text"] != r["positive"] and group_of[r["positive"]] == src["group"] == g


def test_conflict_free_batches_never_mix_a_group():
    rng = random.Random(0)
    tg = {}
    rows = []
    for g in range(30):
        for k in range(rng.randint(1, 6)):
            t = f"text {g}-{k}"
            tg[t] = {str(g)}
            rows.append((t, f"q {g}-{k}"))
    rows += [("shared", f"other {i}") for i in range(5)]  # duplicate text across rows
    keys = [row_keys(r, tg) for r in rows]
    order = list(range(len(rows)))
    rng.shuffle(order)
    batches = list(conflict_free_batches(keys, order, 8, drop_last=False))
    assert sorted(i for b in batches for i in b) == sorted(order)  # every row exactly once
    for b in batches:
        assert len(b) <= 8
        seen = set()
        for i in b:
            assert keys[i].isdisjoint(seen)
            seen |= keys[i]
    full = list(conflict_free_batches(keys, order, 8, drop_last=True))
    assert all(len(b) == 8 for b in full)


def test_bad_corpus_pairs_job(tmp_path):
    b = write_bundle(str(tmp_path / "b"), job={"corpus_pairs": {"ict": -2}}, base=False)
    r = run_cli("validate", b)
    assert r.returncode == 2 and "corpus_pairs.ict" in _err(r)
    b = write_bundle(str(tmp_path / "c"), job={"corpus_pairs": {"group": 1}})  # no group field in the corpus
    r = run_cli("validate", b)
    assert r.returncode == 2 and "group" in _err(r)


def test_bad_group_field(tmp_path):
    corpus = grouped_corpus()
    corpus[1]["group"] = ""
    b = write_bundle(str(tmp_path / "b"), corpus=corpus, queries=[{"query": "x", "relevant": ["a0"]}], pairs=PAIRS)
    r = run_cli("validate", b)
    assert r.returncode == 2 and "corpus.jsonl:2" in _err(r) and "group" in _err(r)


def test_validate_corpus_pairs_default(tmp_path):
    b = write_bundle(str(tmp_path / "b"), corpus=grouped_corpus(), queries=[{"query": "x", "relevant": ["a0"]}],
                     pairs=PAIRS, job={"corpus_pairs": True})
    r = run_cli("validate", b)
    assert r.returncode == 0, r.stderr
    job = json.loads(r.stdout.strip().splitlines()[-1])["job"]
    assert job["corpus_pairs"]["group"] == 1 and job["corpus_pairs"]["ict"] == 1


@needs_torch
def test_train_with_corpus_pairs_groups_and_hard_negatives(tmp_path):
    corpus = grouped_corpus()
    pairs = [{"anchor": q, "positive": corpus[i]["text"]} for q, i in
             (("how do chromosomes separate", 0), ("glucose breakdown", 3), ("pyruvate fate", 4),
              ("blood vessel growth", 5), ("cytokinesis", 1))] * 4
    queries = [{"query": "chromosome segregation", "relevant": ["a0", "a1", "a2"]},
               {"query": "glycolysis", "relevant": ["b0", "b1"]}]
    b = write_bundle(str(tmp_path / "b"), pairs=pairs, corpus=corpus, queries=queries,
                     job={"batch_size": 4, "corpus_pairs": {"group": 2, "ict": 1},
                          "hard_negatives": {"num_negatives": 1, "range_min": 0, "range_max": 3, "max_score": 1.0}})
    r = run_cli("train", b, str(tmp_path / "m"))
    assert r.returncode == 0, r.stderr[-3000:]
    ev = {e["event"]: e for e in map(json.loads, r.stdout.splitlines())}
    assert ev["corpus_pairs"]["group_pairs"] == 3 * 2 + 2 * 1 and ev["corpus_pairs"]["ict_pairs"] == 4
    assert ev["hard_negatives"]["rows"] > 0 and ev["done"]["ndcg10_after"] >= 0
    rep = json.loads((tmp_path / "m" / "train_report.json").read_text())
    assert rep["batch_sampler"] == "group-aware no-duplicates"
    assert rep["train_rows"] == ev["hard_negatives"]["rows"] + ev["corpus_pairs"]["rows"]
    card = json.loads((tmp_path / "m" / "model_card.json").read_text())
    assert card["job"]["corpus_pairs"]["group"] == 2
