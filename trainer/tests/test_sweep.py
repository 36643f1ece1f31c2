"""job.json "sweep": validation, the validation split, auto epochs and greedy-soup selection (no torch), plus
positive_id / cold start / embed.jsonl / embed_corpus input checks through the CLI."""
import json

import pytest

from trainer.corpus_pairs import build_corpus_pairs, normalize_spec, resolve_spec
from trainer.data import BundleError
from trainer.sweep import (auto_epochs, exclude_corpus_rows, greedy_soup, held_out, norm_text, normalize_sweep,
                           plan_validation, side_hash)

from .conftest import run_cli, write_bundle
from .test_bad_input import _err

SPEC = normalize_sweep(True)


def test_sweep_spec_defaults_and_values():
    assert normalize_sweep(False) is None and normalize_sweep(None) is None
    assert SPEC == {"lr": [3e-4, 8e-4], "epochs": "auto", "val_fraction": 0.1, "val_max": 500, "val_min_anchors": 30,
                    "select": "greedy_soup"}
    s = normalize_sweep({"lr": 1e-4, "epochs": [1, 2, 2.0, 1.5], "select": "best"})
    assert s["lr"] == [1e-4] and s["epochs"] == [1, 2, 1.5] and s["select"] == "best"
    assert isinstance(s["epochs"][0], int)
    for bad, word in (({"lr": []}, "sweep.lr"), ({"lr": [0]}, "sweep.lr"), ({"lr": ["1e-4"]}, "sweep.lr"),
                      ({"lr": [True]}, "sweep.lr"), ({"epochs": "many"}, "sweep.epochs"), ({"epochs": [0]}, "sweep.epochs"),
                      ({"epochs": []}, "sweep.epochs"), ({"val_fraction": 0}, "val_fraction"),
                      ({"val_fraction": 0.9}, "val_fraction"), ({"val_max": 0}, "val_max"), ({"val_max": 2.5}, "val_max"),
                      ({"select": "worst"}, "select"), ({"seeds": 3}, "unknown"), ("yes", "boolean"),
                      ({"lr": [1e-4 * i for i in range(1, 10)]}, "at most 16")):
        with pytest.raises(BundleError, match=word):
            normalize_sweep(bad)


def test_auto_epochs_rule():
    assert auto_epochs(84_000) == [2, 4]  # GO-sized: round(1.79) = 2
    assert auto_epochs(150_000) == [1, 2]
    assert auto_epochs(1_000_000) == [1, 2]  # never below one epoch
    assert auto_epochs(30_000) == [5, 10]
    assert auto_epochs(14_000) == [10, 20]  # round(10.7) capped at 10
    assert auto_epochs(100) == [10, 20] and auto_epochs(0) == [10, 20]


def test_side_hash_is_stable_and_normalized():
    assert side_hash(1, "What is  Mitosis?") == side_hash(1, "what is mitosis?")
    assert side_hash(1, "what is mitosis?") != side_hash(2, "what is mitosis?")
    assert norm_text("  A\tB  c ") == "a b c"
    assert 0 <= side_hash(1, "x") < 1
    keys = [f"q{i}" for i in range(20_000)]
    held = held_out(keys, 1, SPEC)
    assert len(held) == 500  # about 2,000 under the 0.1 threshold, capped at val_max: the smallest hashes
    assert max(side_hash(1, k) for k in held) < min(side_hash(1, k) for k in set(keys) - set(held))
    small = held_out(keys[:1000], 1, SPEC)
    assert 70 < len(small) < 130 and all(side_hash(1, k) < 0.1 for k in small)
    assert len(held_out(["only"], 1, SPEC)) == 1 and held_out([], 1, SPEC) == []  # at least one when there is one


def _pairs(n_anchors, rows_per=2, with_id=True):
    anchors, positives, pids = [], [], []
    for a in range(n_anchors):
        for r in range(rows_per):
            anchors.append(f"Query {a}" if r % 2 == 0 else f"query  {a}")  # same anchor up to case/space
            positives.append(f"passage {a}-{r}")
            pids.append(f"d{a}-{r}" if with_id else None)
    return anchors, positives, pids


CORPUS = [{"id": f"c{i}", "text": f"Passage number {i} talks about topic {i}. It has a second sentence about item {i}."}
          for i in range(50)]


def test_plan_from_pairs_holds_out_whole_anchors():
    anchors, _, pids = _pairs(200)
    plan = plan_validation(anchors, pids, CORPUS, SPEC, seed=7)
    n_held = sum(1 for a in range(200) if side_hash(7, f"query {a}") < 0.1)
    assert plan["source"] == "pairs" and plan["eligible"] == 200 and len(plan["queries"]) == n_held > 5
    held = {norm_text(q["query"]) for q in plan["queries"]}
    kept = plan["train_rows"]
    assert not held & {norm_text(anchors[i]) for i in kept}  # no held-out anchor in training
    assert len(kept) + plan["held_out_rows"] == len(anchors) == len(kept) + 2 * n_held
    q = plan["queries"][0]
    a = int(q["query"].split()[-1])
    assert sorted(q["relevant"]) == [f"d{a}-0", f"d{a}-1"]  # both rows of the anchor are relevant
    # deterministic, and another seed holds out other anchors
    assert plan_validation(anchors, pids, CORPUS, SPEC, seed=7) == plan
    assert {x["query"] for x in plan_validation(anchors, pids, CORPUS, SPEC, seed=8)["queries"]} != \
        {x["query"] for x in plan["queries"]}
    # an anchor's side depends on itself only: with more data (the next training round) the held-out anchors stay
    # held out and no anchor trained on becomes a validation query
    more_a, _, more_p = _pairs(400)
    big = {norm_text(x["query"]) for x in plan_validation(more_a, more_p, CORPUS, SPEC, seed=7)["queries"]}
    assert held <= big and not big & {norm_text(anchors[i]) for i in kept}


def test_plan_falls_back_to_corpus_sentences():
    anchors, _, pids = _pairs(10)  # fewer than 30 anchors with positive_id
    plan = plan_validation(anchors, pids, CORPUS, SPEC, seed=1)
    assert plan["source"] == "corpus" and plan["eligible"] == 50 and 1 <= len(plan["queries"]) <= 15
    assert plan["train_rows"] == list(range(len(anchors)))  # labelled pairs all stay
    by_id = {c["id"]: c["text"] for c in CORPUS}
    for q in plan["queries"]:
        assert all(q["query"] in by_id[r] for r in q["relevant"])
    assert sorted(plan["val_passages"]) == sorted(int(r[1:]) for q in plan["queries"] for r in q["relevant"])
    # no positive_id at all: corpus too
    assert plan_validation(anchors, [None] * len(anchors), CORPUS, SPEC, seed=1)["source"] == "corpus"
    # val_min_anchors lowered: the pairs are used
    assert plan_validation(anchors, pids, CORPUS, dict(SPEC, val_min_anchors=5), seed=1)["source"] == "pairs"


def test_plan_from_corpus_holds_out_val_fraction_of_passages():
    """The side is drawn per passage: passages of five sentences are held out at val_fraction, not at
    1 - (1 - val_fraction)^5 as a per-sentence draw (each passage offering its lowest-hash sentence) would give."""
    corpus = [{"id": f"p{i}", "text": " ".join(f"Sentence {k} of passage number {i} here." for k in range(5))}
              for i in range(2000)]
    plan = plan_validation([], [], corpus, dict(SPEC, val_max=2000), seed=4)
    assert plan["eligible"] == 2000 and 0.08 < len(plan["queries"]) / 2000 < 0.12
    assert len(plan["val_passages"]) == len(plan["queries"])


def test_plan_corpus_query_relevant_to_every_passage_containing_it():
    corpus = [{"id": "a", "text": "Shared boilerplate sentence here. Unique words for passage a."},
              {"id": "b", "text": "Shared boilerplate sentence here. Unique words for passage b."},
              {"id": "c", "text": "Only one sentence here without a second"}]
    seed = next(sd for sd in range(100) if plan_validation([], [], corpus, dict(SPEC, val_max=1), seed=sd)["queries"][0]
                ["query"].startswith("Shared"))  # a seed that holds out the shared sentence
    plan = plan_validation([], [], corpus, dict(SPEC, val_max=1), seed=seed)
    assert plan["queries"][0]["relevant"] == ["a", "b"] and plan["val_passages"] == [0, 1]


def test_plan_without_any_validation_source_is_bad_input():
    corpus = [{"id": "a", "text": "one sentence only"}]
    with pytest.raises(BundleError, match="no validation queries"):
        plan_validation(["q"], [None], corpus, SPEC, seed=1)
    # a few pairs with ids and no usable corpus: the pairs, however few
    plan = plan_validation(["q1", "q2"], ["a", None], corpus, SPEC, seed=1)
    assert plan["source"] == "pairs" and plan["queries"] == [{"id": "v0", "query": "q1", "relevant": ["a"]}]
    assert plan["train_rows"] == [1]


def test_exclude_corpus_rows_drops_pairs_of_held_out_passages():
    corpus = [{"id": f"p{i}", "text": f"Sentence one of passage {i} is here. Sentence two of passage {i} is here.",
               "group": f"g{i // 2}"} for i in range(6)]
    spec = resolve_spec(normalize_spec({"group": 1, "ict": 1}), True)
    rows, groups, _ = build_corpus_pairs(corpus, spec, seed=2)
    keep = exclude_corpus_rows(rows, [1, 4])
    assert len(keep) < len(rows)
    for k in range(len(rows)):
        touches = rows[k]["src"] in (1, 4) or rows[k]["dst"] in (1, 4)
        assert (k in keep) != touches
    texts = [c["text"] for c in corpus]
    for r in rows:  # src/dst name the passages the texts come from
        assert r["anchor"] in texts[r["src"]] and (r["positive"] == texts[r["dst"]] or r["positive"] in texts[r["dst"]]
                                                    or set(r["positive"].split()) <= set(texts[r["dst"]].split()))


def test_greedy_soup_adds_members_that_do_not_lower_validation():
    scores = [0.50, 0.70, 0.60, 0.65]
    soups = {(1,): 0.70, (1, 3): 0.72, (1, 3, 2): 0.71, (1, 3, 0): 0.72}
    calls = []

    def evaluate(members):
        calls.append(tuple(members))
        return soups[tuple(members)]

    chosen, score, trace = greedy_soup(scores, evaluate)
    assert calls == [(1, 3), (1, 3, 2), (1, 3, 0)]  # by own score: 1, 3, 2, 0
    assert chosen == [1, 3, 0] and score == 0.72  # 2 lowered it; 0 tied and so was kept
    assert [t["added"] for t in trace] == [True, False, True]
    assert greedy_soup([0.3], evaluate) == ([0], 0.3, [])
    # ties in members' own scores: the lower index first
    assert greedy_soup([0.5, 0.5], lambda m: 0.0)[0] == [0]


# --- through the CLI (no torch); bad sweep / embed_corpus values: test_bad_input.py ---

def test_validate_sweep_defaults(tmp_path):
    b = write_bundle(str(tmp_path / "b"), corpus=CORPUS, queries=[{"query": "q", "relevant": ["c1"]}],
                     job={"sweep": {"lr": [1e-4, 2e-4], "epochs": [1, 2]}, "embed_corpus": True})
    r = run_cli("validate", b)
    assert r.returncode == 0, r.stderr
    ev = json.loads(r.stdout.strip().splitlines()[-1])
    job = ev["job"]
    assert job["sweep"]["select"] == "greedy_soup" and job["sweep"]["val_fraction"] == 0.1
    assert job["embed_corpus"] == {"dtype": "float16", "batch_size": 256, "chunk": 32768}
    # the default pairs carry no positive_id: validation queries come from the corpus's two-sentence passages
    assert ev["sweep_validation"]["source"] == "corpus" and ev["sweep_validation"]["eligible"] == 50


def test_sweep_without_validation_queries_is_bad_input(tmp_path):
    # one-sentence passages and no positive_id: nothing to validate on
    b = write_bundle(str(tmp_path / "b"), job={"sweep": True}, base=False)
    r = run_cli("validate", b)
    assert r.returncode == 2 and "'sweep' has no validation queries" in _err(r), _err(r)


def test_positive_id_validation_and_unknown_ids(tmp_path):
    pairs = [{"anchor": "cell division", "positive": "x", "positive_id": "d0"},
             {"anchor": "glucose", "positive": "y", "positive_id": "gone"},
             {"anchor": "angiogenesis", "positive": "z"}]
    b = write_bundle(str(tmp_path / "b"), pairs=pairs)
    r = run_cli("validate", b)
    assert r.returncode == 0, r.stderr
    ev = json.loads(r.stdout.strip().splitlines()[-1])
    assert ev["positive_ids"] == 1 and ev["unknown_positive_ids"] == 1
    assert "1 positive_id(s) not in corpus.jsonl" in r.stderr
    for bad in (7.5, True, "", ["d0"]):
        b = write_bundle(str(tmp_path / f"c{len(str(bad))}{type(bad).__name__}"),
                         pairs=[{"anchor": "a", "positive": "b", "positive_id": bad}], base=False)
        r = run_cli("validate", b)
        assert r.returncode == 2 and "pairs.jsonl:1" in _err(r) and "positive_id" in _err(r), _err(r)


def test_cold_start_needs_corpus_pairs(tmp_path):
    # empty pairs + corpus_pairs that make pairs: valid
    corpus = [{"id": f"d{i}", "text": f"First sentence of passage {i} here. Second sentence of passage {i} here."}
              for i in range(4)]
    b = write_bundle(str(tmp_path / "ok"), pairs=[], corpus=corpus, queries=[{"query": "q", "relevant": ["d1"]}],
                     job={"corpus_pairs": True})
    r = run_cli("validate", b)
    assert r.returncode == 0, r.stderr
    ev = json.loads(r.stdout.strip().splitlines()[-1])
    assert ev["pairs"] == 0 and ev["cold_start_corpus_pairs"] == 4
    # corpus_pairs off: nothing to train on
    b = write_bundle(str(tmp_path / "off"), pairs=[], base=False)
    r = run_cli("validate", b)
    assert r.returncode == 2 and "nothing to train on" in _err(r) and "corpus_pairs is off" in _err(r)
    # corpus_pairs on, but one-sentence passages and no groups: no pairs either
    b = write_bundle(str(tmp_path / "none"), pairs=[], job={"corpus_pairs": True}, base=False)
    r = run_cli("validate", b)
    assert r.returncode == 2 and "makes no pairs" in _err(r), _err(r)


def test_embed_jsonl_validation(tmp_path):
    b = write_bundle(str(tmp_path / "b"))
    with open(f"{b}/embed.jsonl", "w") as f:
        f.write(json.dumps({"id": "c1", "text": "chunk one"}) + "\n" + json.dumps({"id": "c2", "text": "chunk two"}) + "\n")
    r = run_cli("validate", b)
    assert r.returncode == 0 and json.loads(r.stdout.strip().splitlines()[-1])["embed_rows"] == 2
    for rows, word in (([{"id": "c1", "text": "a"}, {"id": "c1", "text": "b"}], "embed.jsonl:2: duplicate id"),
                       ([{"id": "c1", "text": " "}], "embed.jsonl:1: empty 'text'"), ([], "embed.jsonl is empty"),
                       ([{"text": "a"}], "embed.jsonl:1: 'id'")):
        with open(f"{b}/embed.jsonl", "w") as f:
            f.write("".join(json.dumps(x) + "\n" for x in rows))
        r = run_cli("validate", b)
        assert r.returncode == 2 and word in _err(r), _err(r)


def test_member_gpu_round_robin_over_the_visible_devices():
    from trainer.train import member_gpu

    assert [member_gpu(m, 2, "") for m in range(4)] == ["0", "1", "0", "1"]
    # the parent sees physical GPUs 2 and 3 only: children are pinned to those, not to 0 and 1
    assert [member_gpu(m, 2, "2,3") for m in range(3)] == ["2", "3", "2"]
    assert [member_gpu(m, 3, "5, 6 ,7") for m in range(4)] == ["5", "6", "7", "5"]
