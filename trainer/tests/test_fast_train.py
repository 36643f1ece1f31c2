"""The fast training engine (fast_train.py) against its reference, sentence-transformers' trainer: the same loss
values and gradients, the batch samplers' rules, training that learns, and the bench on CPU."""
import json
import os

import pytest

from .conftest import REPO, needs_torch, run_cli, write_bundle

ST_FIXTURES = os.path.join(REPO, "test", "fixtures", "models", "st")


def _model(path=None, max_len=64):
    from trainer.train import load_model

    return load_model(path or os.path.join(REPO, "test", "fixtures", "models", "tiny", "pytorch"), "cpu", max_len)


TEXTS_A = ["cell division", "dna binding transcription regulator", "mitochondrial membrane", "glucose catabolism",
           "a rather long query about the negative regulation of protein synthesis in the cytoplasm", "angiogenesis"]
TEXTS_P = ["The process of cell division in which chromosomes separate.", "Binding to a DNA sequence.",
           "The membrane that surrounds the mitochondrion.", "The chemical reactions resulting in the breakdown of glucose.",
           "Any process that decreases the rate of protein synthesis.", "The formation of new blood vessels."]
TEXTS_N = ["Movement of ions across a membrane.", "A complex of proteins that degrades ubiquitinated proteins.",
           "Transport of lipids.", "Synthesis of RNA.", "The cytoskeleton.", "Apoptosis of neurons."]


@needs_torch
@pytest.mark.parametrize("shape", [
    {},
    {"directions": ["query_to_doc", "doc_to_query"]},
    {"directions": ["query_to_doc", "doc_to_query"], "partition_mode": "per_direction"},
    {"directions": ["query_to_doc", "query_to_query", "doc_to_doc"], "hardness": {"mode": "in_batch_negatives", "strength": 5.0}},
    {"hardness": {"mode": "all_negatives", "strength": 3.0}, "negatives": True},
    {"hardness": {"mode": "hard_negatives", "strength": 2.0}, "negatives": True, "scale": 33.0},
])
def test_loss_and_gradients_equal_the_reference(shape):
    """ST's loss on its collator's features (model.preprocess) vs the fast path's pre-tokenized batch through
    embed_columns + compute_loss_from_embeddings: equal loss and parameter gradients."""
    import torch

    from trainer import fast_train
    from trainer.train import make_loss

    job = {"loss": "mnrl", "scale": shape.get("scale", 20.0), "directions": shape.get("directions", ["query_to_doc"]),
           "partition_mode": shape.get("partition_mode", "joint"), "hardness": shape.get("hardness")}
    cols = {"anchor": TEXTS_A, "positive": TEXTS_P, **({"negative": TEXTS_N} if shape.get("negatives") else {})}
    model = _model()
    model.train()
    torch.manual_seed(0)
    # reference: the features the collator builds, the loss module's forward
    ref_loss_fn = make_loss(model, job)
    feats = [dict(model.preprocess(v)) for v in cols.values()]
    for m in model.modules():  # dropout off: both passes must see the same network
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    ref = ref_loss_fn(feats, None)
    ref.backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)

    s = fast_train.TrainSet(cols, model.tokenizer, {}, 64, {})
    mine_feats = fast_train.features(s, list(range(s.n)), model.tokenizer.pad_token_id, True,
                                     {c: fast_train._extra_features(model, "") for c in cols}, "cpu")
    from sentence_transformers.base.losses.merged_forward import embed_columns

    embs = embed_columns(model, mine_feats)
    mine = make_loss(model, job).compute_loss_from_embeddings([e.float() for e in embs], None)
    mine.backward()
    assert abs(float(mine) - float(ref)) < 1e-5
    for n, p in model.named_parameters():
        if n in ref_grads:
            assert torch.allclose(p.grad, ref_grads[n], atol=1e-5, rtol=1e-4), n


@needs_torch
@pytest.mark.parametrize("fixture,prompt", [("tiny", ""), ("st-e5-tiny", "query: "), ("st-bge-tiny", "")])
def test_pretokenized_batches_equal_the_models_preprocess(fixture, prompt):
    from trainer import fast_train

    path = os.path.join(REPO, "test", "fixtures", "models", "tiny", "pytorch") if fixture == "tiny" else os.path.join(ST_FIXTURES, fixture)
    if not os.path.isdir(path):
        pytest.skip(f"no fixture {fixture}")
    model = _model(path, 16)  # 16: the long text is truncated
    extra = fast_train.check_tokenization(model, model.tokenizer, TEXTS_A + TEXTS_P, prompt, 16)
    if prompt:
        assert "prompt_length" in extra or extra.get("modality") == "text"


def _sets(n_pairs=300, n_corpus=120, groups=True):
    """Two datasets of plain rows with duplicate texts and groups, as TrainSet-like objects (no tokenizer)."""
    import numpy as np

    from trainer.corpus_pairs import row_keys

    class S:
        def __init__(self, cols, tg):
            self.names = list(cols)
            self.n = len(cols["anchor"])
            self.keys = [row_keys((cols[c][i] for c in self.names), tg) for i in range(self.n)]
            self.lens = np.array([len(cols["anchor"][i]) + len(cols["positive"][i]) for i in range(self.n)])
            self.cols = cols

    rng = np.random.default_rng(0)
    pairs = {"anchor": [f"q{int(rng.integers(0, 150))}" + "x" * int(rng.integers(0, 30)) for _ in range(n_pairs)],
             "positive": [f"d{int(rng.integers(0, 60))}" for _ in range(n_pairs)]}
    corpus = {"anchor": [f"s{i}" for i in range(n_corpus)], "positive": [f"p{i % 40}" for i in range(n_corpus)]}
    tg = {f"p{i}": {f"g{i % 10}"} for i in range(40)} if groups else {}
    return [S(pairs, tg), S(corpus, tg)]


@needs_torch  # epoch_batches draws its permutations from a torch.Generator (the seeded order training uses)
def test_batches_use_every_row_once_without_duplicates_or_shared_groups():
    from trainer.fast_train import epoch_batches

    sets = _sets()
    for epoch in range(2):
        batches = epoch_batches(sets, 16, seed=7, epoch=epoch, mega=3)
        seen = {0: [], 1: []}
        for d, rows in batches:
            assert 0 < len(rows) <= 16
            keys = [k for r in rows for k in sets[d].keys[r]]
            assert len(keys) == len(set(keys)), "a text or group twice in one batch"
            seen[d].extend(rows)
        for d, s in enumerate(sets):
            assert sorted(seen[d]) == list(range(s.n)), "every row exactly once per epoch"
        # both datasets' batches are interleaved (proportional sampling), not one after the other
        kinds = [d for d, _ in batches]
        assert kinds != sorted(kinds) and kinds != sorted(kinds, reverse=True)
    a = epoch_batches(sets, 16, seed=7, epoch=0, mega=3)
    assert a == epoch_batches(sets, 16, seed=7, epoch=0, mega=3)
    assert a != epoch_batches(sets, 16, seed=7, epoch=1, mega=3)
    assert a != epoch_batches(sets, 16, seed=8, epoch=0, mega=3)


@needs_torch  # epoch_batches draws its permutations from a torch.Generator (the seeded order training uses)
def test_length_bucketing_keeps_batches_narrow():
    """Rows are sorted by length within a mega-batch, so a batch's length spread is far below a random batch's."""
    import numpy as np

    from trainer.fast_train import epoch_batches

    sets = _sets(groups=False)
    s = sets[0]
    spread = [np.ptp(s.lens[rows]) for d, rows in epoch_batches(sets, 16, 3, 0, mega=10) if d == 0 and len(rows) == 16]
    rng = np.random.default_rng(1)
    rand = [np.ptp(s.lens[rng.choice(s.n, 16, replace=False)]) for _ in range(50)]
    assert np.mean(spread) < 0.5 * np.mean(rand)


@needs_torch
def test_fast_engine_learns_and_reports(tmp_path):
    """The default engine trains (loss falls, eval NDCG@10 rises on a bundle the base model ranks badly) and writes
    the same report keys as the reference engine."""
    corpus = [{"id": f"d{i}", "text": t} for i, t in enumerate(TEXTS_P + TEXTS_N)]
    qs = ["chromosome separation", "dna sequence binding", "mitochondrion membrane", "glucose breakdown",
          "protein synthesis decrease", "blood vessel formation", "ion movement", "protein degradation complex",
          "lipid transport", "rna synthesis", "cytoskeleton", "neuron apoptosis"]
    pairs = [{"anchor": q, "positive": corpus[i]["text"]} for i, q in enumerate(qs)] * 10
    queries = [{"query": q, "relevant": [f"d{i}"]} for i, q in enumerate(qs)]
    reports = {}
    for eng in ("fast", "st"):
        b = write_bundle(str(tmp_path / f"b_{eng}"), pairs=pairs, queries=queries, corpus=corpus,
                         job={"engine": eng, "epochs": 2, "lr": 1e-3, "batch_size": 12, "seed": 3})
        r = run_cli("train", b, str(tmp_path / f"out_{eng}"))
        assert r.returncode == 0, r.stderr[-3000:]
        events = [json.loads(x) for x in r.stdout.splitlines()]
        with open(tmp_path / f"out_{eng}" / "train_report.json") as f:
            reports[eng] = (json.load(f), events)
    rep, events = reports["fast"]
    assert rep["timings"]["engine"] == "fast" and reports["st"][0]["timings"]["engine"] == "st"
    assert rep["eval_after"]["ndcg@10"] > rep["eval_before"]["ndcg@10"] + 0.05
    losses = [e["loss"] for e in events if e["event"] == "progress"]
    assert losses[-1] < losses[0]
    assert set(rep) == set(reports["st"][0])
    assert set(rep["trainer_metrics"]) == set(reports["st"][0]["trainer_metrics"])
    for when in ("progress", "eval"):
        ks = [set(e) for e in events if e["event"] == when]
        ks_st = [set(e) for e in reports["st"][1] if e["event"] == when]
        assert ks == ks_st, when
    assert rep["steps"] == reports["st"][0]["steps"]
    # same or better than the reference on this bundle, within noise
    assert rep["eval_after"]["ndcg@10"] >= reports["st"][0]["eval_after"]["ndcg@10"] - 0.1


@needs_torch
def test_bench_runs_on_cpu(tmp_path):
    """One bench call compares engines and variants (same bundle, seed and lr): st and the fast engine without
    length bucketing; the fast run reports its step diagnostics."""
    b = write_bundle(str(tmp_path / "b"), job={"epochs": 1})
    out = tmp_path / "bench.json"
    r = run_cli("bench", b, "--engines", "st,fast:bucket=false", "--json", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "samples/s (training loop)" in r.stdout and "ratio vs st" in r.stdout and "NDCG@10" in r.stdout
    res = json.loads(out.read_text())
    assert [x["name"] for x in res] == ["st", "fast:bucket=false"] and [x["engine"] for x in res] == ["st", "fast"]
    assert all(x["samples_per_second"] > 0 and x["timings"]["export"] >= 0 for x in res)
    t = res[1]["timings"]
    assert t["bucket"] is False and t["forward_path"].startswith("direct") and t["step_ms"]["wall"] > 0


def test_bench_run_specs():
    from trainer.bench import parse_run

    assert parse_run("st", {"lr": 2e-4}) == ("st", {"lr": 2e-4, "engine": "st"})
    assert parse_run("fast:bucket=false:merge_columns=true:x=abc", {}) == (
        "fast:bucket=false:merge_columns=true:x=abc", {"engine": "fast", "bucket": False, "merge_columns": True, "x": "abc"})
    with pytest.raises(SystemExit):
        parse_run("turbo", {})
    with pytest.raises(SystemExit):
        parse_run("fast:bucket", {})


def test_bench_gpus_limits_a_run_to_the_first_n_gpus(monkeypatch):
    from trainer.bench import gpu_env, parse_run

    assert parse_run("fast:gpus=2", {"sweep": True})[1] == {"sweep": True, "engine": "fast", "gpus": 2}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert gpu_env(None) is None
    assert gpu_env(1)["CUDA_VISIBLE_DEVICES"] == "3" and gpu_env(2)["CUDA_VISIBLE_DEVICES"] == "3,5"
    assert gpu_env(0)["CUDA_VISIBLE_DEVICES"] == ""
    with pytest.raises(SystemExit, match="sees 2 GPU"):
        gpu_env(3)


@needs_torch
def test_device_batches_equal_host_batches():
    """DeviceTokens gathers on the device exactly the padded ids and mask Column.batch builds on the host."""
    import numpy as np

    from trainer import fast_train

    model = _model()
    cols = {"anchor": TEXTS_A * 3, "positive": TEXTS_P + TEXTS_N + TEXTS_P}
    s = fast_train.TrainSet(cols, model.tokenizer, {"anchor": "q: "}, 16, {})
    ds = fast_train.DeviceTokens(s, "cpu")
    batches = fast_train.epoch_batches([s], 5, seed=1, epoch=0, mega=2)
    ds.load_epoch(batches, 0)
    for i, (_, rows) in enumerate(batches):
        off, n, widths = ds.offsets[i]
        assert n == len(rows)
        for c, col in enumerate(s.columns):
            ids, mask = col.batch(rows, 0)
            dids, dmask = ds.column(c, off, n, widths[c], 0)
            assert np.array_equal(dids.numpy(), ids) and np.array_equal(dmask.long().numpy(), mask)


@needs_torch
@pytest.mark.parametrize("fixture", ["tiny", "st-e5-tiny", "st-bge-tiny"])
def test_direct_encoder_equals_the_model(fixture):
    """The fast engine's direct forward (4-D mask, pooling and normalize in torch) gives the model's own sentence
    embeddings (mean and CLS pooling); a pooling it does not reproduce is refused."""
    import torch

    from trainer import fast_train

    path = os.path.join(REPO, "test", "fixtures", "models", "tiny", "pytorch") if fixture == "tiny" else os.path.join(ST_FIXTURES, fixture)
    if not os.path.isdir(path):
        pytest.skip(f"no fixture {fixture}")
    model = _model(path)
    enc = fast_train.DirectEncoder(model)
    s = fast_train.TrainSet({"anchor": TEXTS_A, "positive": TEXTS_P}, model.tokenizer, {}, 64, {})
    with_tt = "token_type_ids" in model.preprocess(["x"])
    extras = {c: fast_train._extra_features(model, "") for c in ("anchor", "positive")}
    fast_train._probe_direct(model, enc, s, model.tokenizer.pad_token_id or 0, with_tt, extras, "cpu")
    model[1].pooling_mode = "max"
    with pytest.raises(fast_train.Unsupported):
        fast_train.DirectEncoder(model)
    assert torch.is_grad_enabled()


@needs_torch
def test_bucketing_off_keeps_the_permutation_order():
    from trainer.fast_train import epoch_batches

    sets = _sets(groups=False)
    on = epoch_batches(sets, 16, 3, 0, mega=10)
    off = epoch_batches(sets, 16, 3, 0, mega=10, bucket=False)
    assert on != off
    for batches in (on, off):
        for d, s in enumerate(sets):
            assert sorted(r for k, rows in batches if k == d for r in rows) == list(range(s.n))


def test_padded_width():
    from trainer.fast_train import padded_width

    assert [padded_width(w, 32, 100) for w in (1, 31, 32, 33, 64, 65, 97, 100)] == [32, 32, 32, 64, 64, 96, 100, 100]
    assert [padded_width(w, 0, 100) for w in (1, 33, 100)] == [1, 33, 100]
    assert padded_width(7, 1, 100) == 7 and padded_width(20, 32, 20) == 20  # off; the cap is the longest text


# 30, 36 and 42 tokens: batches narrower and wider than 32, the longest text (42) is the cap
LONG = ["a long passage about " + " ".join(["mitochondrial membrane transport"] * k) for k in (8, 10, 12)]
PADDING_COLS = {"anchor": TEXTS_A + [f"membrane transport question {k}" for k in range(3)], "positive": TEXTS_P + LONG}


def _padding_set(model, max_len=64):
    from trainer import fast_train

    return fast_train.TrainSet(PADDING_COLS, model.tokenizer, {}, max_len, {})


@needs_torch
def test_device_batches_padded_to_32():
    """pad_to=32: every batch width is a multiple of 32 or the set's longest text; the first columns are exactly the
    unpadded batch and the rest is padding (pad id, mask false)."""
    import numpy as np

    from trainer import fast_train

    model = _model()
    s = _padding_set(model)
    exact, padded = fast_train.DeviceTokens(s, "cpu"), fast_train.DeviceTokens(s, "cpu", pad_to=32)
    assert padded.max_width > 32
    batches = fast_train.epoch_batches([s], 3, seed=1, epoch=0, mega=2)
    exact.load_epoch(batches, 0)
    padded.load_epoch(batches, 0)
    seen = set()
    for i in range(len(batches)):
        off, n, we = exact.offsets[i]
        _, _, wp = padded.offsets[i]
        for c in range(len(s.columns)):
            assert wp[c] >= we[c] and (wp[c] % 32 == 0 or wp[c] == padded.max_width), (we, wp)
            seen.add(wp[c])
            ids, mask = exact.column(c, off, n, we[c], 0)
            pids, pmask = padded.column(c, off, n, wp[c], 0)
            assert np.array_equal(pids[:, :we[c]].numpy(), ids.numpy())
            assert np.array_equal(pmask[:, :we[c]].numpy(), mask.numpy())
            assert not pmask[:, we[c]:].any() and (pids[:, we[c]:] == 0).all()
    assert seen == {32, padded.max_width}


@needs_torch
@pytest.mark.parametrize("fixture", ["tiny", "st-bge-tiny"])
def test_padding_to_32_keeps_embeddings_and_loss(fixture):
    """Padding a batch to a multiple of 32 (and columns merged to one width, as on a GPU) gives the same embeddings,
    loss and gradients as the exact width, through the direct forward and through embed_columns (mean and CLS)."""
    import torch
    from sentence_transformers.base.losses.merged_forward import embed_columns

    from trainer import fast_train
    from trainer.train import make_loss

    path = os.path.join(REPO, "test", "fixtures", "models", "tiny", "pytorch") if fixture == "tiny" else os.path.join(ST_FIXTURES, fixture)
    if not os.path.isdir(path):
        pytest.skip(f"no fixture {fixture}")
    model = _model(path)
    model.train()
    for m in model.modules():  # dropout off: every pass must see the same network
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    s = _padding_set(model)
    with_tt = "token_type_ids" in model.preprocess(["x"])
    direct = fast_train.DirectEncoder(model)
    job = {"loss": "mnrl", "scale": 20.0, "directions": ["query_to_doc", "doc_to_query"], "partition_mode": "joint",
           "hardness": None}
    loss_fn = make_loss(model, job)
    results = {}
    for pad_to in (0, 32):
        ds = fast_train.DeviceTokens(s, "cpu", pad_to=pad_to)
        ds.load_epoch([(0, list(range(s.n)))], 0)
        off, n, widths = ds.offsets[0]
        cols = [ds.column(c, off, n, w, 0) for c, w in enumerate(widths)]
        w = max(x[0].shape[1] for x in cols)
        ids = torch.cat([torch.nn.functional.pad(x[0], (0, w - x[0].shape[1])) for x in cols])
        mask = torch.cat([torch.nn.functional.pad(x[1], (0, w - x[1].shape[1])) for x in cols])
        for path_name in ("direct", "merged", "embed_columns"):
            if path_name == "direct":
                embs = [direct(i, m, with_tt) for i, m in cols]
            elif path_name == "merged":
                embs = list(direct(ids, mask, with_tt).split(n))
            else:
                feats = [{"input_ids": i, "attention_mask": m.long(), **({"token_type_ids": torch.zeros_like(i)} if with_tt else {})}
                         for i, m in cols]
                embs = embed_columns(model, feats)
            model.zero_grad(set_to_none=True)
            loss = loss_fn.compute_loss_from_embeddings([e.float() for e in embs], None)
            loss.backward()
            grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
            results[(pad_to, path_name)] = ([e.detach() for e in embs], float(loss.detach()), grads, widths)
    assert results[(0, "direct")][3] != results[(32, "direct")][3], "the batch was padded"
    for path_name in ("direct", "merged", "embed_columns"):
        e0, l0, g0, _ = results[(0, path_name)]
        e32, l32, g32, _ = results[(32, path_name)]
        for a, b in zip(e0, e32):
            assert torch.allclose(a, b, atol=1e-5), path_name
        assert abs(l0 - l32) < 1e-5, path_name
        for k in g0:
            assert torch.allclose(g0[k], g32[k], atol=1e-5, rtol=1e-4), (path_name, k)


@needs_torch
@pytest.mark.parametrize("merge", [False, True])
def test_fit_with_padding_to_32_trains_as_without(merge):
    """The engine's own loop with pad_to 32 and with exact widths (0), dropout off, same seed: the same logged
    losses and the same weights after training; the report names the padding and the widths it used."""
    import torch

    from trainer import fast_train

    out = {}
    for pad_to in (0, 32):
        model = _model()
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
        job = {"loss": "mnrl", "batch_size": 3, "epochs": 2, "lr": 1e-3, "warmup_ratio": 0.1, "scale": 20.0,
               "directions": ["query_to_doc"], "partition_mode": "joint", "hardness": None, "bucket": True,
               "merge_columns": merge, "pad_to": pad_to}
        logs = []
        res = fast_train.fit(model, job, [PADDING_COLS], {}, {}, 5, "cpu", None, logs.append, lambda rec: None)
        out[pad_to] = (res, [r["loss"] for r in logs], {k: v.detach().clone() for k, v in model.state_dict().items()})
    (r0, l0, w0), (r32, l32, w32) = out[0], out[32]
    assert r0["pad_to"] == 0 and r32["pad_to"] == 32 and r32["forward_path"].startswith("direct")
    assert r32["distinct_widths"] <= 2 < r0["distinct_widths"]
    assert len(l0) == len(l32) > 3
    for a, b in zip(l0, l32):
        assert abs(a - b) < 1e-4
    for k in w0:
        assert torch.allclose(w0[k].float(), w32[k].float(), atol=1e-4), k
