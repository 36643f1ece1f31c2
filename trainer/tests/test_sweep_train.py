"""Cold start, recipe sweeps and candidate embeddings, trained for real on the tiny fixture model (torch required).
Sweeps run on the CPU (CUDA_VISIBLE_DEVICES="") where training is deterministic for a seed, so that the members
trained side by side in spawned processes can be compared with the same members trained one after the other."""
import json
import os

from .conftest import TINY, needs_torch, run_cli, write_bundle

CPU = {"CUDA_VISIBLE_DEVICES": ""}
TOPICS = ["cell division", "dna transcription", "mitochondrial membrane", "protein synthesis", "glucose breakdown",
          "proteasome degradation", "ion channels", "blood vessel growth", "lipid storage", "immune response"]
CORPUS = [{"id": f"d{i}", "text": f"This passage is about {t}. It explains {t} in some detail for readers.",
           "group": f"g{i // 2}"} for i, t in enumerate(TOPICS)]
# 40 distinct anchors with a positive_id: enough for a validation split carved from pairs.jsonl
PAIRS = [{"anchor": f"{w} {t}", "positive": CORPUS[i]["text"], "positive_id": CORPUS[i]["id"]}
         for i, t in enumerate(TOPICS) for w in ("what is", "explain", "facts on", "overview of")]
EVAL_A = [{"query": "chromosome separation", "relevant": ["d0"]}, {"query": "new blood vessels", "relevant": ["d7"]}]
EVAL_B = [{"query": "fat storage", "relevant": ["d8"]}, {"query": "channels for ions", "relevant": ["d6"]},
          {"query": "transcription of genes", "relevant": ["d1"]}]


def _events(r):
    return [json.loads(l) for l in r.stdout.strip().splitlines()]


def _weights(path):
    from safetensors.torch import load_file

    return load_file(os.path.join(path, "pytorch", "model.safetensors"))


@needs_torch
def test_cold_start_sweep_best_and_corpus_embeddings(tmp_path):
    """Empty pairs.jsonl: the corpus pairs alone are trained on, the sweep's validation queries are carved from the
    corpus (their passages' corpus pairs leave training), "auto" epochs follow the rule, and OUT/embeddings/ holds
    every corpus row, equal to what the exported ONNX model gives."""
    from trainer.artifact import OnnxEncoder
    from trainer.embed_corpus import read_embeddings
    from trainer.sweep import auto_epochs

    b = write_bundle(str(tmp_path / "b"), pairs=[], corpus=CORPUS, queries=EVAL_A,
                     job={"batch_size": 16, "corpus_pairs": {"group": 1, "ict": 1},
                          "sweep": {"lr": [1e-4, 5e-4], "select": "best", "val_fraction": 0.3},
                          "embed_corpus": {"batch_size": 3}})
    r = run_cli("train", b, str(tmp_path / "m"), env=CPU)
    assert r.returncode == 0, r.stderr[-3000:]
    ev = _events(r)
    plan = next(e for e in ev if e["event"] == "sweep" and e["phase"] == "plan")
    v = plan["validation"]
    assert v["source"] == "corpus" and v["queries"] >= 1 and v["held_out_passages"] >= 1 and v["excluded_corpus_pairs"] > 0
    cp = next(e for e in ev if e["event"] == "corpus_pairs")
    assert cp["rows_after_validation_split"] == cp["rows"] - v["excluded_corpus_pairs"] == plan["train_rows"]
    assert plan["epochs"] == auto_epochs(plan["train_rows"]) == [10, 20] and plan["epochs_rule"] == "auto"
    members = [e for e in ev if e["event"] == "sweep" and e["phase"] == "member"]
    assert sorted((m["lr"], m["epochs"]) for m in members) == [(1e-4, 10), (1e-4, 20), (5e-4, 10), (5e-4, 20)]
    sel = next(e for e in ev if e["event"] == "sweep" and e["phase"] == "selected")
    best = max(members, key=lambda m: (m["val_ndcg@10"], -m["member"]))
    assert sel["chosen"] == [best["member"]] and sel["val_ndcg@10"] == best["val_ndcg@10"]
    assert not [e for e in ev if e["event"] == "eval" and e.get("when") == "member"]  # members never see eval.jsonl
    rep = json.loads((tmp_path / "m" / "train_report.json").read_text())
    assert rep["pairs"] == 0 and rep["train_rows"] == plan["train_rows"] and rep["soup"] is None
    s = rep["sweep"]
    assert s["select"] == "best" and s["chosen"] == sel["chosen"] and len(s["members"]) == 4 and s["greedy"] == []
    assert s["validation"] == v and all("state" not in m and "ndcg@10" in m["val"] for m in s["members"])
    assert rep["steps"] == sum(m["steps"] for m in s["members"])
    # embeddings of corpus.jsonl, row i = ids[i], equal to the served ONNX model's
    emb = tmp_path / "m" / "embeddings"
    ids, vec = read_embeddings(str(emb))
    man = json.loads((emb / "manifest.json").read_text())
    assert ids == [c["id"] for c in CORPUS] and vec.shape == (len(CORPUS), 64) and man["source"] == "corpus.jsonl"
    assert man["format"] == "f32le" and man["normalized"] and man["max_seq_length"] == 64 and man["count"] == len(CORPUS)
    assert man["dtype_compute"] == "float32" and man["fp32_check"] is None and rep["embeddings"] == man
    from transformers import AutoTokenizer

    enc = OnnxEncoder(str(tmp_path / "m" / "onnx" / "model.onnx"), AutoTokenizer.from_pretrained(str(tmp_path / "m")), 64)
    ref = enc.encode([c["text"] for c in CORPUS])
    assert float(abs(ref - vec).max()) < 1e-4
    card = json.loads((tmp_path / "m" / "model_card.json").read_text())
    assert card["files"]["embeddings"] == "embeddings/"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "m"]  # no scratch left behind


@needs_torch
def test_sweep_greedy_soup_side_by_side_equals_sequential_and_ignores_eval(tmp_path):
    """A greedy-soup sweep over pairs.jsonl with positive_ids: the same members (lr x epochs, one seed) trained
    one after the other and side by side in spawned processes get the same validation scores, the same selection
    and the same weights -- also when eval.jsonl differs between the two runs, because eval.jsonl is not used to
    choose."""
    sweep = {"lr": [2e-4, 1e-3], "epochs": [1, 2], "val_fraction": 0.25}
    outs = {}
    for name, conc, queries in (("seq", 1, EVAL_A), ("par", 2, EVAL_B)):
        b = write_bundle(str(tmp_path / f"b-{name}"), pairs=PAIRS, corpus=CORPUS, queries=queries,
                         job={"batch_size": 8, "sweep": sweep, "soup_concurrency": conc, "seed": 5})
        # one torch thread in both runs: the sequential trainer and each side-by-side member (which gets its share
        # of the parent's threads) then do the same float arithmetic; with 2 threads against 1 the sums' order
        # differed, and Adam turned those last-bit differences in near-zero gradients into 3e-3 weight differences
        r = run_cli("train", b, str(tmp_path / name), env={**CPU, "OMP_NUM_THREADS": "1"})
        assert r.returncode == 0, r.stderr[-3000:]
        outs[name] = (_events(r), json.loads((tmp_path / name / "train_report.json").read_text()))
    (ev_s, rep_s), (ev_p, rep_p) = outs["seq"], outs["par"]
    plan = next(e for e in ev_s if e["event"] == "sweep" and e["phase"] == "plan")
    v = plan["validation"]
    assert v["source"] == "pairs" and v["eligible"] == 40 and v["queries"] >= 1
    assert v["held_out_pair_rows"] == v["queries"] and plan["train_rows"] == 40 - v["queries"]
    assert plan["concurrency"] == 1 and rep_p["sweep"]["concurrency"] == 2
    assert rep_s["sweep"]["validation"] == rep_p["sweep"]["validation"]
    ms, mp = rep_s["sweep"]["members"], rep_p["sweep"]["members"]
    assert [(m["lr"], m["epochs"]) for m in ms] == [(2e-4, 1), (2e-4, 2), (1e-3, 1), (1e-3, 2)]
    for a, c in zip(ms, mp):
        assert abs(a["val"]["ndcg@10"] - c["val"]["ndcg@10"]) < 1e-6 and a["steps"] == c["steps"]
    s = rep_s["sweep"]
    assert s["chosen"] == rep_p["sweep"]["chosen"] and s["select"] == "greedy_soup"
    scores = [m["val"]["ndcg@10"] for m in ms]
    assert s["chosen"][0] == max(range(4), key=lambda i: (scores[i], -i))
    assert len(s["greedy"]) == 3 and [g["member"] for g in s["greedy"] if g["added"]] == s["chosen"][1:]
    assert s["val_ndcg@10"] >= scores[s["chosen"][0]]  # a greedy soup never scores below its best member
    greedy_ev = [e for e in ev_p if e["event"] == "sweep" and e["phase"] == "greedy"]
    assert [g["member"] for g in greedy_ev] == [g["member"] for g in s["greedy"]]
    ws, wp = _weights(str(tmp_path / "seq")), _weights(str(tmp_path / "par"))
    assert max(float((ws[k].float() - wp[k].float()).abs().max()) for k in ws) < 1e-5
    prog = [e for e in ev_p if e["event"] == "progress"]
    assert {p["member"] for p in prog} == {0, 1, 2, 3} and prog[-1]["step"] == prog[-1]["total"] == rep_p["steps"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b-par", "b-seq", "par", "seq"]


@needs_torch
def test_cold_start_plain_training_and_embed_jsonl(tmp_path):
    """No sweep: an empty pairs.jsonl trains on the corpus pairs alone; embed.jsonl rows are embedded instead of
    corpus.jsonl."""
    import numpy as np

    from trainer.embed_corpus import read_embeddings

    b = write_bundle(str(tmp_path / "b"), pairs=[], corpus=CORPUS, queries=EVAL_A,
                     job={"batch_size": 4, "corpus_pairs": {"group": 1, "ict": 1}, "embed_corpus": True,
                          "hard_negatives": True})
    chunks = [{"id": f"chunk-{i}", "text": c["text"].split(". ")[0] + "."} for i, c in enumerate(CORPUS[:5])]
    with open(os.path.join(b, "embed.jsonl"), "w") as f:
        f.write("".join(json.dumps(c) + "\n" for c in chunks))
    r = run_cli("train", b, str(tmp_path / "m"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "hard_negatives: no labelled pairs" in r.stderr
    ev = _events(r)
    cp = next(e for e in ev if e["event"] == "corpus_pairs")
    rep = json.loads((tmp_path / "m" / "train_report.json").read_text())
    assert rep["pairs"] == 0 and rep["train_rows"] == cp["rows"] > 0 and rep["steps"] > 0 and rep["sweep"] is None
    ids, vec = read_embeddings(str(tmp_path / "m" / "embeddings"))
    assert ids == [c["id"] for c in chunks] and vec.shape == (5, 64)
    assert np.allclose(np.linalg.norm(vec, axis=1), 1, atol=1e-5)
    done = [e for e in ev if e["event"] == "embed" and e["step"] == "done"]
    assert done and done[0]["count"] == 5 and rep["embeddings"]["source"] == "embed.jsonl"


@needs_torch
def test_embed_rows_matches_sentence_transformers(tmp_path):
    """embed_rows (pre-tokenized, length-sorted batches) gives what SentenceTransformer.encode gives, in the input
    order; on a GPU also under fp16 and bf16 autocast, within half-precision error."""
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    from trainer.embed_corpus import embed_rows, read_embeddings

    model = SentenceTransformer(os.path.join(TINY, "pytorch"), device="cpu", model_kwargs={"dtype": torch.float32})
    texts = [("word " * n).strip() + f" item {n}." for n in (3, 40, 1, 200, 12, 7, 90, 2, 55)]
    ids = [f"r{i}" for i in range(len(texts))]
    ref = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    m = embed_rows(model, ids, texts, str(tmp_path / "cpu"), "cpu", {"batch_size": 4, "chunk": 5})
    got_ids, vec = read_embeddings(str(tmp_path / "cpu"))
    assert got_ids == ids and m["count"] == 9 and m["dim"] == 64 and m["dtype_compute"] == "float32"
    assert float(np.abs(vec - ref).max()) < 1e-5
    assert os.path.getsize(tmp_path / "cpu" / "vectors.f32") == 9 * 64 * 4
    if torch.cuda.is_available():
        model.to("cuda")
        for dtype in ("float16", "bfloat16"):
            m = embed_rows(model, ids, texts, str(tmp_path / dtype), "cuda", {"dtype": dtype, "batch_size": 4})
            _, v = read_embeddings(str(tmp_path / dtype))
            assert m["dtype_compute"] == dtype and m["fp32_check"]["n"] == 9
            assert float(np.abs(v - ref).max()) < 3e-2 and m["fp32_check"]["max_abs_diff"] < 3e-2
            assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)


@needs_torch
def test_server_default_recipe_trains_with_the_fast_engine(tmp_path):
    """What the server's jobs ask for by default (src/train/jobs.ts trainRecipe: the fast engine, a greedy-soup
    sweep over learning rates, corpus group + inverse-cloze pairs, in-batch hardness weighting, candidate
    embeddings) trains end to end with the fast engine in every sweep member, without falling back."""
    job = {"batch_size": 8, "engine": "fast", "lr": 3e-4, "epochs": 1,
           "sweep": {"lr": [3e-4, 8e-4], "epochs": [1, 2], "select": "greedy_soup", "val_fraction": 0.25},
           "corpus_pairs": {"group": 3, "ict": 2}, "hardness": {"mode": "in_batch_negatives", "strength": 5},
           "embed_corpus": True}
    b = write_bundle(str(tmp_path / "b"), pairs=PAIRS, corpus=CORPUS, queries=EVAL_A, job=job)
    r = run_cli("train", b, str(tmp_path / "m"), env=CPU)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "fast training path unavailable" not in r.stderr
    rep = json.loads((tmp_path / "m" / "train_report.json").read_text())
    assert rep["timings"]["engine"] == "fast"
    assert len(rep["sweep"]["members"]) == 4 and rep["sweep"]["select"] == "greedy_soup"
    assert rep["corpus_pairs"] and rep["embeddings"]["count"] == len(CORPUS)
