"""`python -m trainer train BUNDLE OUT`: MNRL fine-tuning with SentenceTransformerTrainer."""
from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from typing import Any, Callable

from .artifact import OnnxEncoder, prompts_of_model, sha256_files, write_artifact
from .bundle import Bundle
from .data import BundleError
from .fast_train import engine_of
from .soup import accumulate_state, finish_average


class NoGpuError(Exception):
    pass


def dump_stacks_on_sigusr1() -> None:
    """`kill -USR1 PID` makes this process print every thread's Python stack to stderr and carry on: how a trainer
    (or one of its soup members) that seems hung shows where it is."""
    import faulthandler
    import signal

    try:
        faulthandler.register(signal.SIGUSR1, file=sys.__stderr__ or sys.stderr, all_threads=True, chain=False)
    except (AttributeError, ValueError, OSError, RuntimeError):  # no SIGUSR1 here, or no stderr with a file descriptor
        pass


def pick_device(job: dict, warn: Callable[[str], None]) -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if job["gpu"] == "required":
        raise NoGpuError("no CUDA GPU available and job.json has gpu: 'required'")
    warn("no CUDA GPU available; training on CPU (slow). Set gpu: 'required' to refuse instead.")
    return "cpu"


def load_model(base: str, device: str, max_seq_length: int):
    import torch
    from sentence_transformers import SentenceTransformer

    from .artifact import build_st_model

    if os.path.isdir(base) and not os.path.isfile(os.path.join(base, "modules.json")):
        model = build_st_model(base, max_seq_length)  # plain HF encoder dir: add mean pooling + normalize
        model.to(device)
    else:
        model = SentenceTransformer(base, device=device, model_kwargs={"dtype": torch.float32})
    model.float()
    model.max_seq_length = max_seq_length
    return model


def nested_flat(scores: dict) -> dict:
    """ST compute_all_metrics() {'cosine': {'ndcg@k': {10: v}}} -> {'ndcg@10': v}."""
    s = scores["cosine"]
    out = {}
    for metric, vals in s.items():
        for k, v in vals.items():
            out[metric.replace("@k", f"@{k}")] = float(v)
    return out


class _OnnxAsST:
    """Minimal encode_query/encode_document facade so ST's evaluator can score an ONNX model: queries get the query
    prompt and documents the document prompt prepended (an explicit prompt= from the evaluator wins), as served."""

    def __init__(self, enc: OnnxEncoder, prompts: tuple[str, str] = ("", "")):
        self.enc = enc
        self.query_prompt, self.document_prompt = prompts

    def _encode(self, sentences, convert_to_tensor=True, prompt=None, **_kw):
        import numpy as np
        import torch

        # longest first, in batches of like length (as SentenceTransformer.encode orders them): far less padding
        # for onnxruntime on the CPU to run through; the rows come back in input order
        sentences = list(sentences)
        order = sorted(range(len(sentences)), key=lambda i: -len(sentences[i]))
        emb = self.enc.encode([sentences[i] for i in order], batch_size=128, prompt=prompt or None)
        out = np.empty_like(emb)
        out[order] = emb
        return torch.from_numpy(out)

    def encode_query(self, sentences, prompt=None, **kw):
        return self._encode(sentences, prompt=self.query_prompt if prompt is None else prompt, **kw)

    def encode_document(self, sentences, prompt=None, **kw):
        return self._encode(sentences, prompt=self.document_prompt if prompt is None else prompt, **kw)

    encode = _encode


def column_prompts(model) -> dict[str, str]:
    """SentenceTransformerTrainingArguments(prompts=...): the training columns get the prompts the model is served
    with (anchor: the query prompt; positive, negative: the document prompt); only non-empty ones, so a model
    without prompts trains exactly as before (no prompts argument at all)."""
    qp, dp = prompts_of_model(model)
    return {k: v for k, v in (("anchor", qp), ("positive", dp), ("negative", dp)) if v}


def make_loss(model, job: dict):
    """MNRL (or its cached variant) with the job's scale, interaction directions and hardness weighting."""
    from sentence_transformers import util
    from sentence_transformers.losses import CachedMultipleNegativesRankingLoss, MultipleNegativesRankingLoss

    kw: dict[str, Any] = {"scale": job["scale"], "similarity_fct": util.cos_sim,
                          "directions": tuple(job["directions"]), "partition_mode": job["partition_mode"]}
    if job["hardness"]:
        kw["hardness_mode"] = job["hardness"]["mode"]
        kw["hardness_strength"] = job["hardness"]["strength"]
    if job["loss"] == "cached_mnrl":
        return CachedMultipleNegativesRankingLoss(model, mini_batch_size=job["mini_batch_size"], **kw)
    return MultipleNegativesRankingLoss(model, **kw)


def make_evaluator(b: Bundle, model, name: str = "eval"):
    return make_ir_evaluator(b.queries, b.corpus, name, prompts_of_model(model))


def make_ir_evaluator(queries: list[dict], corpus: list[dict], name: str, prompts: tuple[str, str] = ("", "")):
    """queries [{"id", "query", "relevant"}] against corpus [{"id", "text"}]; queries encoded with the query prompt
    and the corpus with the document prompt (prompts_of_model: what the server prepends), none when "" ."""
    from sentence_transformers import util
    from sentence_transformers.evaluation import InformationRetrievalEvaluator

    return InformationRetrievalEvaluator(
        query_prompt=prompts[0] or None, corpus_prompt=prompts[1] or None,
        queries={q["id"]: q["query"] for q in queries},
        corpus={c["id"]: c["text"] for c in corpus},
        relevant_docs={q["id"]: set(q["relevant"]) for q in queries},
        name=name, accuracy_at_k=[1, 3, 5, 10], precision_recall_at_k=[1, 3, 5, 10], mrr_at_k=[10],
        ndcg_at_k=[10], map_at_k=[100], show_progress_bar=False, batch_size=256,
        score_functions={"cosine": util.cos_sim})


def run(b: Bundle, out: str, emit: Callable[..., None], warn: Callable[[str], None]) -> dict:
    t_start = time.time()
    dump_stacks_on_sigusr1()
    job = b.job
    import torch
    from datasets import Dataset
    from transformers import set_seed

    device = pick_device(job, warn)
    set_seed(job["seed"])
    emit(event="start", device=device, pairs=len(b.anchors), queries=len(b.queries), corpus=len(b.corpus),
         base=b.base_path, job=job)
    model = load_model(b.base_path, device, job["max_seq_length"])
    base_card = {}
    for cand in (os.path.join(b.path, "base", "model_card.json"), os.path.join(os.path.dirname(b.base_path), "model_card.json")):
        if os.path.isfile(cand):
            with open(cand) as f:
                base_card = json.load(f)
            break
    evaluator = make_evaluator(b, model)
    prompts = prompts_of_model(model)
    if any(prompts):
        emit(event="prompts", query=prompts[0], document=prompts[1], training=column_prompts(model))
    t = time.time()
    timings: dict[str, Any] = {"load": round(t - t_start, 2)}
    before = nested_flat(evaluator.compute_all_metrics(model))
    timings["eval_before"] = round(time.time() - t, 2)
    t_train_phase = time.time()
    emit(event="eval", when="before", secs=round(time.time() - t, 2), **{k: before[k] for k in ("ndcg@10", "recall@10", "mrr@10")})

    cols: dict[str, list[str]] = {"anchor": b.anchors, "positive": b.positives}
    if b.negatives is not None:
        cols["negative"] = b.negatives
    sweep_plan = sweep_rows = None
    if job["sweep"] is not None:
        # the validation queries leave the training data before anything (mining included) sees it
        sweep_plan, sweep_rows = prepare_sweep(b, job, emit, warn)
        cols = {k: [v[i] for i in sweep_plan["train_rows"]] for k, v in cols.items()}
    ds = Dataset.from_dict(cols)
    mined = None
    has_groups = any("group" in c for c in b.corpus)
    if job["hard_negatives"] is not None and b.negatives is None and len(ds) == 0:
        warn("hard_negatives: no labelled pairs to mine negatives for (corpus pairs only); skipped")
    elif job["hard_negatives"] is not None and b.negatives is None:
        from sentence_transformers.util import mine_hard_negatives

        hn = job["hard_negatives"]
        want = int(hn.get("num_negatives", 1))
        # with corpus groups, mine a few extra candidates: a "negative" from the positive's own document is not one
        extra = 4 if has_groups else 0
        t = time.time()
        ds = mine_hard_negatives(
            ds, model, anchor_column_name="anchor", positive_column_name="positive",
            corpus=list(dict.fromkeys(list(b.positives) + [c["text"] for c in b.corpus])),
            num_negatives=want + extra, range_min=int(hn.get("range_min", 10)),
            range_max=int(hn.get("range_max", 50)) + extra, max_score=float(hn.get("max_score", 0.95)),
            sampling_strategy=hn.get("sampling_strategy", "top"), batch_size=256,
            query_prompt=prompts[0] or None, corpus_prompt=prompts[1] or None,
            output_format="n-tuple" if extra else "triplet", use_faiss=False, verbose=False)
        skipped = 0
        if extra:
            g_of = text_groups(b, [], [])
            neg_cols = [c for c in ds.column_names if c.startswith("negative")]
            trip: dict[str, list[str]] = {"anchor": [], "positive": [], "negative": []}
            for r in ds:
                pg = g_of.get(r["positive"], set())
                ok = [r[c] for c in neg_cols if not (g_of.get(r[c], set()) & pg)]
                skipped += len(neg_cols) - len(ok)
                negs = ok[:want]
                for n in negs:
                    trip["anchor"].append(r["anchor"])
                    trip["positive"].append(r["positive"])
                    trip["negative"].append(n)
            ds = Dataset.from_dict(trip)
        mined = {"rows": len(ds), "same_group_skipped": skipped, "secs": round(time.time() - t, 2)}
        emit(event="hard_negatives", **mined)

    members = job["soup"]
    concurrency = soup_concurrency(job, device)
    curve: list[dict] = []
    tracker = _SoupProgress(members, emit, curve)
    sweep_report = None
    if sweep_plan is not None:
        res, sweep_report = run_sweep(b, job, model, ds, sweep_plan, sweep_rows, device, out, curve, emit)
        member_reports = []
    elif members == 1:
        res = fit_member(b, job, model, ds, job["seed"], device, evaluator, work_dir=out + ".work",
                         on_log=lambda rec: tracker.log(0, rec), on_epoch=lambda rec: tracker.epoch(0, rec),
                         on_pairs=lambda st: emit(event="corpus_pairs", **st))
        member_reports: list[dict] = []
    elif concurrency > 1 and mined is None:
        member_reports = _soup_parallel(b, job, device, members, concurrency, out, tracker, emit)
    else:
        member_reports = _soup_sequential(b, job, model, ds, device, evaluator, members, out, tracker, emit)
    if members > 1:
        acc = None
        for m in member_reports:
            acc = accumulate_state(acc, m.pop("state"))
        model.load_state_dict(finish_average(acc, members, model.state_dict()))
        res = {"steps": sum(m["steps"] for m in member_reports), "train_seconds": sum(m["train_seconds"] for m in member_reports),
               "n_rows": member_reports[0]["n_rows"], "cp_stats": member_reports[0]["cp_stats"],
               "trainer_metrics": member_reports[-1]["trainer_metrics"]}
        # members may train side by side: the phase's wall time is what samples/s is measured against
        res["train_seconds"] = tracker.wall()
    use_bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
    n_rows, cp_stats, steps, train_secs = res["n_rows"], res["cp_stats"], res["steps"], res["train_seconds"]
    trainer_metrics = res["trainer_metrics"]
    # the training phase: mining, corpus pairs, tokenization, the loop(s), a soup's or sweep's member evaluations
    timings.update(train_phase=round(time.time() - t_train_phase, 2), train=round(train_secs, 2),
                   tokenize=res.get("tokenize_seconds"), engine=res.get("engine") or engine_of(job))
    for k in ("step_ms", "forward_path", "bucket", "merge_columns", "pad_to", "distinct_widths"):  # fast engine
        if res.get(k) is not None:
            timings[k] = res[k]
    if device == "cuda":
        timings["gpu_peak_mem_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    model.eval()
    t = time.time()
    after = nested_flat(evaluator.compute_all_metrics(model))
    timings["eval_after"] = round(time.time() - t, 2)
    emit(event="eval", when="after", secs=round(time.time() - t, 2), **{k: after[k] for k in ("ndcg@10", "recall@10", "mrr@10")})
    # the int8 metric loss is measured on a seeded sample of the eval set (the int8 ONNX runs on the CPU: over a
    # whole corpus it was a GPU run's longest phase); the PyTorch model is scored on the same sample here, while it
    # is on the device (the full set's numbers stay `after`)
    t = time.time()
    from .evaluate import eval_sample

    s_q, s_c, int8_sample = eval_sample(b.queries, b.corpus, job["seed"], job["int8_eval_queries"],
                                        job["int8_eval_corpus"])
    if int8_sample["full"]:
        sample_ev, fp32_sample = evaluator, after
    else:
        sample_ev = make_ir_evaluator(s_q, s_c, "int8_sample", prompts)
        fp32_sample = nested_flat(sample_ev.compute_all_metrics(model))
    int8_secs = time.time() - t

    hashed = [os.path.join(b.path, "pairs.jsonl"), os.path.join(b.path, "job.json")]
    if job["corpus_pairs"] is not None:  # the corpus is training data too
        hashed.append(os.path.join(b.path, "corpus.jsonl"))
    data_hash = sha256_files(hashed)
    parent = job.get("parent_version") or base_card.get("version")
    version = job.get("version") or f"ft-{data_hash[:12]}"
    card = {"version": str(version), "parent_version": parent, "parent": parent,  # pooling, prompts: write_artifact
            "normalize": True, "training_data_hash": "sha256:" + data_hash,
            "base": b.base_path if not os.path.isdir(b.base_path) else os.path.relpath(b.base_path, b.path),
            "eval": {"before": before, "after": after, "n_queries": len(b.queries), "n_corpus": len(b.corpus),
                     "evaluator": "sentence_transformers InformationRetrievalEvaluator (cosine)"},
            "job": job}
    parent_dir = os.path.dirname(os.path.abspath(out)) or "."
    tmp = os.path.join(parent_dir, f".{os.path.basename(os.path.abspath(out))}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        emit(event="export", step="onnx")
        t = time.time()
        info = write_artifact(model, tmp, card, quantize=True, weights_fp16=bool(job.get("weights_fp16", False)),
                              parity_texts=[q["query"] for q in b.queries[:100]] + [c["text"] for c in b.corpus[:100]])
        export_secs = time.time() - t
        timings["export"] = round(export_secs, 2)
        # int8 metric loss: the quantized ONNX scored on the sample the PyTorch model was scored on above
        t = time.time()
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(os.path.join(tmp, "pytorch"))
        q8 = OnnxEncoder(os.path.join(tmp, "onnx", "model_quantized.onnx"), tok, job["max_seq_length"])
        int8 = nested_flat(sample_ev.compute_all_metrics(_OnnxAsST(q8, prompts)))
        int8_loss = {k: fp32_sample[k] - int8[k] for k in fp32_sample}
        int8_secs += time.time() - t
        timings["eval_int8"] = round(int8_secs, 2)
        int8_sample = {**int8_sample, "fp32": fp32_sample,
                       "note": "int8 and fp32 (PyTorch) scored on this sample of eval.jsonl/corpus.jsonl; "
                               "eval.after is the full set" if not int8_sample["full"] else
                               "the whole eval set (no sampling)"}
        emit(event="eval", when="int8", secs=round(int8_secs, 2), n_queries=int8_sample["n_queries"],
             n_corpus=int8_sample["n_corpus"], **{k: int8[k] for k in ("ndcg@10", "recall@10")})
        with open(os.path.join(tmp, "model_card.json")) as f:
            card = json.load(f)
        card["eval"]["int8"] = int8
        card["eval"]["int8_sample"] = int8_sample
        embeddings = None
        if job["embed_corpus"] is not None:
            t = time.time()
            embeddings = _embed(b, job, model, device, os.path.join(tmp, "embeddings"), emit)
            timings["embed"] = round(time.time() - t, 2)
            card["files"]["embeddings"] = "embeddings/"
        with open(os.path.join(tmp, "model_card.json"), "w") as f:
            json.dump(card, f, indent=2)
        n_samples = res["samples"] if sweep_report is not None else n_rows * job["epochs"] * members
        report: dict[str, Any] = {
            "version": card["version"], "parent_version": parent,
            "device": torch.cuda.get_device_name(0) if device == "cuda" else f"cpu ({platform.processor() or platform.machine()})",
            "precision": "bf16" if use_bf16 else "fp32",
            "loss": job["loss"], "job": job, "pairs": len(b.anchors), "train_rows": n_rows, "hard_negatives": mined,
            "corpus_pairs": cp_stats, "batch_sampler": "group-aware no-duplicates" if has_groups else "no-duplicates",
            "steps": steps, "train_seconds": round(train_secs, 3),
            "samples_per_second": round(n_samples / train_secs, 2),
            "trainer_metrics": trainer_metrics,
            "loss_config": {"scale": job["scale"], "directions": job["directions"], "partition_mode": job["partition_mode"],
                            "hardness": job["hardness"]},
            "soup": {"members": member_reports, "averaging": "uniform", "concurrency": min(concurrency, members) if mined is None else 1}
            if members > 1 else None,
            "sweep": sweep_report, "prompts": {"query": prompts[0], "document": prompts[1],
                                               "training": column_prompts(model)},
            "pooling": card.get("pooling"), "positive_ids": b.info.get("positive_ids", 0),
            "unknown_positive_ids": b.info.get("unknown_positive_ids", 0), "embeddings": embeddings,
            "loss_curve": curve, "eval_before": before, "eval_after": after,
            "eval_delta": {k: after[k] - before[k] for k in after},
            "onnx_parity_max_abs_diff": info["onnx_parity_max_abs_diff"], "onnx_parity_n": info["onnx_parity_n"],
            "int8_parity_max_abs_diff": info.get("int8_parity_max_abs_diff"),
            "eval_int8": int8, "int8_metric_loss": int8_loss, "int8_sample": int8_sample, "export_seconds": round(export_secs, 2),
            "training_data_hash": card["training_data_hash"],
            "versions": _versions(), "wall_seconds": round(time.time() - t_start, 2),
            "timings": {**timings, "wall": round(time.time() - t_start, 2)},
        }
        with open(os.path.join(tmp, "train_report.json"), "w") as f:
            json.dump(report, f, indent=2)
        if os.path.isdir(out) and not os.listdir(out):
            os.rmdir(out)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    emit(event="done", out=out, version=card["version"], wall_seconds=report["wall_seconds"],
         train_seconds=report["train_seconds"], samples_per_second=report["samples_per_second"],
         ndcg10_before=before["ndcg@10"], ndcg10_after=after["ndcg@10"])
    return report


def _embed(b: Bundle, job: dict, model, device: str, out_dir: str, emit: Callable[..., None]) -> dict:
    """OUT/embeddings/ from the final model (embed_corpus.py): embed.jsonl's rows when the bundle has them, else
    corpus.jsonl's."""
    from .embed_corpus import embed_rows

    rows, source = (b.embed, "embed.jsonl") if b.embed is not None else (b.corpus, "corpus.jsonl")
    emit(event="embed", step="start", rows=len(rows), source=source)
    model.to(device)  # write_artifact left it on the CPU
    last = [0.0]

    def progress(done: int, total: int) -> None:
        if done == total or time.time() - last[0] > 10:
            last[0] = time.time()
            emit(event="embed", step="progress", done=done, total=total)

    m = embed_rows(model, [r["id"] for r in rows], [r["text"] for r in rows], out_dir, device, job["embed_corpus"],
                   source=source, progress=progress)
    emit(event="embed", step="done", **{k: m[k] for k in ("count", "dim", "seconds", "device", "dtype_compute")},
         fp32_max_abs_diff=(m["fp32_check"] or {}).get("max_abs_diff"))
    model.to("cpu")
    return m


def soup_concurrency(job: dict, device: str) -> int:
    """How many soup members train at once. On a GPU a small encoder's training is bound by the CPU (tokenizing
    collator, kernel launches), so members side by side use the card several times better; on a CPU they would
    only compete for the same cores."""
    c = int(job.get("soup_concurrency") or 0)
    if c <= 0:
        c = job["soup"] if device == "cuda" else 1
    return max(1, min(c, job["soup"]))


class _SoupProgress:
    """One progress stream for a whole job: step/total summed over the soup's members."""

    def __init__(self, members: int, emit: Callable[..., None], curve: list[dict]):
        self.members, self.emit, self.curve = members, emit, curve
        self.steps: dict[int, int] = {}
        self.totals: dict[int, int] = {}
        self.t0 = time.time()

    def wall(self) -> float:
        return round(time.time() - self.t0, 3)

    def log(self, member: int, rec: dict) -> None:
        self.steps[member], self.totals[member] = rec["step"], rec["total"]
        known = list(self.totals.values())
        total = sum(known) + (self.members - len(known)) * max(known)
        out = {**rec, "step": sum(self.steps.values()), "total": total}
        if self.members > 1:
            out["member"] = member
            out["member_step"] = rec["step"]
        self.curve.append(out)
        self.emit(event="progress", **out)

    def epoch(self, member: int, rec: dict) -> None:
        self.emit(event="eval", when="epoch", **({"member": member} if self.members > 1 else {}), **rec)


def fit_member(b: Bundle, job: dict, model, ds, seed: int, device: str, evaluator, work_dir: str,
               on_log: Callable[[dict], None], on_epoch: Callable[[dict], None],
               on_pairs: Callable[[dict], None], corpus_rows: tuple | None = None) -> dict:
    """Train `model` in place on the pairs (+ the corpus pairs drawn with `seed`, or `corpus_rows` = (rows,
    row_groups, stats) made by the caller). `evaluator` (None: none) scores each epoch when epochs > 1."""
    import torch
    from datasets import Dataset, DatasetDict
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.training_args import BatchSamplers
    from transformers import TrainerCallback

    train_ds: Any = ds
    n_rows = len(ds)
    rows: list[dict] = []
    row_groups: list = []
    cp_stats = None
    if corpus_rows is not None:
        rows, row_groups, cp_stats = corpus_rows
    elif job["corpus_pairs"] is not None:
        from .corpus_pairs import build_corpus_pairs

        t = time.time()
        rows, row_groups, cp_stats = build_corpus_pairs(b.corpus, job["corpus_pairs"], seed)
        cp_stats["secs"] = round(time.time() - t, 2)
        on_pairs(cp_stats)
    if rows:
        cds = Dataset.from_dict({"anchor": [r["anchor"] for r in rows], "positive": [r["positive"] for r in rows]})
        # cold start (no labelled pairs): the corpus pairs alone; an empty dataset in a DatasetDict breaks batching
        train_ds = DatasetDict({"pairs": ds, "corpus": cds}) if len(ds) else cds
        n_rows += len(cds)
    if n_rows == 0:
        raise BundleError("no training rows: pairs.jsonl is empty and corpus_pairs made no pairs")
    has_groups = any("group" in c for c in b.corpus)
    from .fast_train import Unsupported, engine_of

    if engine_of(job) == "fast":
        from . import fast_train

        sets = [{c: list(ds[c]) for c in ds.column_names}]
        if rows:
            sets.append({"anchor": [r["anchor"] for r in rows], "positive": [r["positive"] for r in rows]})
        try:
            res = fast_train.fit(model, job, sets, text_groups(b, rows, row_groups) if has_groups else {},
                                 column_prompts(model), seed, device, evaluator if job["epochs"] > 1 else None,
                                 on_log, on_epoch)
            return {**res, "n_rows": n_rows, "cp_stats": cp_stats, "engine": "fast"}
        except Unsupported as e:
            sys.stderr.write(f"trainer: warning: fast training path unavailable ({e}); training with the "
                             "sentence-transformers trainer\n")
    batch_sampler: Any = BatchSamplers.NO_DUPLICATES
    if has_groups:
        batch_sampler = group_batch_sampler(text_groups(b, rows, row_groups))
    total_est = max(1, int(max(1, n_rows // job["batch_size"]) * job["epochs"]))
    prompts = column_prompts(model)
    args = SentenceTransformerTrainingArguments(
        **({"prompts": prompts} if prompts else {}),
        output_dir=work_dir, num_train_epochs=job["epochs"], per_device_train_batch_size=job["batch_size"],
        learning_rate=job["lr"], warmup_ratio=job["warmup_ratio"], bf16=device == "cuda" and torch.cuda.is_bf16_supported(),
        seed=seed, data_seed=seed, batch_sampler=batch_sampler, save_strategy="no",
        eval_strategy="epoch" if job["epochs"] > 1 and evaluator is not None else "no", logging_steps=max(1, total_est // 50),
        report_to="none", disable_tqdm=True, dataloader_drop_last=False, use_cpu=device == "cpu",
        dataloader_num_workers=job["dataloader_workers"], dataloader_persistent_workers=job["dataloader_workers"] > 0)

    class Progress(TrainerCallback):
        def on_log(self, args_, state, control, logs=None, **kw):
            logs = logs or {}
            if "loss" in logs:
                on_log({"step": state.global_step, "total": state.max_steps, "loss": float(logs["loss"]),
                        "lr": float(logs.get("learning_rate", 0.0)), "epoch": float(state.epoch or 0)})
            evals = {k: float(v) for k, v in logs.items() if k.startswith("eval_") and isinstance(v, (int, float))}
            if evals:
                on_epoch({"step": state.global_step, **evals})

    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train_ds, loss=make_loss(model, job),
                                         evaluator=evaluator if job["epochs"] > 1 else None, callbacks=[Progress()])
    try:
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.time()
        tr = trainer.train()
        if device == "cuda":
            torch.cuda.synchronize()
        secs = time.time() - t
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    return {"steps": int(tr.global_step), "train_seconds": round(secs, 3), "n_rows": n_rows, "cp_stats": cp_stats,
            "engine": "st", "tokenize_seconds": 0.0, "trainer_metrics": {k: float(v) for k, v in (tr.metrics or {}).items() if isinstance(v, (int, float))}}


def _member_result(member: int, seed: int, res: dict, after: dict, state: dict) -> dict:
    return {"member": member, "seed": seed, "steps": res["steps"], "train_seconds": res["train_seconds"],
            "n_rows": res["n_rows"], "cp_stats": res["cp_stats"], "trainer_metrics": res["trainer_metrics"],
            "eval_after": after, "state": state}


def _soup_sequential(b: Bundle, job: dict, model, ds, device: str, evaluator, members: int, out: str,
                     tracker: _SoupProgress, emit: Callable[..., None]) -> list[dict]:
    from transformers import set_seed

    reports = []
    for member in range(members):
        seed = job["seed"] + member
        if member:
            set_seed(seed)
            model = load_model(b.base_path, device, job["max_seq_length"])
        res = fit_member(b, job, model, ds, seed, device, evaluator, work_dir=f"{out}.work{member}",
                         on_log=lambda rec, m=member: tracker.log(m, rec), on_epoch=lambda rec, m=member: tracker.epoch(m, rec),
                         on_pairs=lambda st, m=member: emit(event="corpus_pairs", member=m, **st))
        model.eval()
        after = nested_flat(evaluator.compute_all_metrics(model))
        emit(event="eval", when="member", member=member, seed=seed, **{k: after[k] for k in ("ndcg@10", "recall@10", "mrr@10")})
        reports.append(_member_result(member, seed, res, after,
                                      {k: v.detach().float().cpu().clone() for k, v in model.state_dict().items()}))
    return reports


def member_gpu(member: int, gpus: int, visible: str | None = None) -> str:
    """The GPU a parallel member trains on when this process sees `gpus` > 1 of them: round robin, named as
    CUDA_VISIBLE_DEVICES names it for a child (the parent's own CUDA_VISIBLE_DEVICES entry when it has one)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES") if visible is None else visible
    ids = [x.strip() for x in (visible or "").split(",") if x.strip()]
    return ids[member % gpus] if len(ids) >= gpus else str(member % gpus)


def _member_main(bundle_path: str, member: int, seed: int, device: str, state_path: str, q, threads: int = 0,
                 spec: dict | None = None, gpu: str | None = None) -> None:
    """Entry point of a soup member trained in its own (spawned) process; talks to the parent through `q`.
    `threads` > 0: torch's intra-op thread count for this member (CPU members: the parent's share, see
    _soup_parallel). `spec`: a sweep member ({"lr", "epochs", "data": the parent's training rows and validation
    queries as JSON}); it is scored on the validation queries only, never on eval.jsonl. `gpu`: the one GPU
    this member may see (set before CUDA starts in this process, so "cuda" is that device and the trainer never
    wraps the model for several GPUs)."""
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    # the parent owns the JSON-lines stdout: this process writes nothing there, not even from native code
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    dump_stacks_on_sigusr1()
    # a spawned process inherits the "spawn" start method, and DataLoader workers would then each re-import
    # sentence-transformers (seconds) at every epoch and evaluation; fork them, as the trainer's own process does
    import multiprocessing

    multiprocessing.set_start_method("fork", force=True)
    try:
        import torch

        if threads > 0:
            torch.set_num_threads(threads)
        from datasets import Dataset
        from transformers import set_seed

        from .bundle import load_bundle

        b = load_bundle(bundle_path)
        job = b.job
        set_seed(seed)
        model = load_model(b.base_path, device, job["max_seq_length"])
        if spec is not None:
            _sweep_member(b, member, seed, device, state_path, q, spec, model)
            return
        evaluator = make_evaluator(b, model)
        ds = Dataset.from_dict({"anchor": b.anchors, "positive": b.positives, **({"negative": b.negatives} if b.negatives else {})})
        res = fit_member(b, job, model, ds, seed, device, evaluator, work_dir=f"{state_path}.work",
                         on_log=lambda rec: q.put(("log", member, rec)), on_epoch=lambda rec: q.put(("epoch", member, rec)),
                         on_pairs=lambda st: q.put(("pairs", member, st)))
        model.eval()
        after = nested_flat(evaluator.compute_all_metrics(model))
        torch.save({k: v.detach().float().cpu() for k, v in model.state_dict().items()}, state_path)
        q.put(("done", member, {**_member_result(member, seed, res, after, {}), "state": state_path}))
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which fails the job
        q.put(("error", member, f"{type(e).__name__}: {e}"))
        raise


def _soup_parallel(b: Bundle, job: dict, device: str, members: int, concurrency: int, out: str,
                   tracker: _SoupProgress, emit: Callable[..., None], *, specs: list[dict] | None = None,
                   scratch: str | None = None, on_done: Callable[[dict], None] | None = None) -> list[dict]:
    """Train the members `concurrency` at a time, each in its own spawned process. The job fails (RuntimeError
    naming the member and its seed) when a member reports an error, when a member's process ends without having
    reported its result (whatever its exit code), or, with job `soup_stall_seconds` > 0, when no running member
    has sent anything for that long (their Python stacks are dumped to stderr first).

    Sweep members: `specs[m]` goes to member m (all of them train with the job's seed); their weights stay in
    the caller's `scratch` directory (result "state" = the file), and `on_done` reports each result."""
    import queue as queue_mod
    import signal
    import tempfile

    import torch
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")  # CUDA is already initialized here: fork would break it
    q = ctx.Queue()
    tmp = scratch or tempfile.mkdtemp(prefix=".soup-", dir=os.path.dirname(os.path.abspath(out)) or ".")
    # CPU members share this machine's cores. Each would otherwise start torch's default intra-op pool (a thread per
    # core), and `concurrency` such OpenMP teams, whose threads spin-wait at every barrier, oversubscribe the CPU:
    # on a 2-core box each member of the tests' 2-member soup trained 10-70x slower than one member alone
    # (OMP_WAIT_POLICY=PASSIVE cured it too); with 64-thread teams on a busy many-core box it can pass for a hang.
    # So each CPU member gets its share of this process's threads (OMP_NUM_THREADS or torch's default, at most the
    # CPUs it may run on). GPU members keep torch's default: their CPU side is the tokenizer and kernel launches.
    cores = torch.get_num_threads()
    if hasattr(os, "sched_getaffinity"):
        cores = min(cores, len(os.sched_getaffinity(0)))
    threads = max(1, cores // concurrency) if device == "cpu" else 0
    # On a box with several GPUs the members are spread over them (member m on GPU m mod n), so the sweep's
    # members train side by side on separate devices instead of sharing one.
    gpus = torch.cuda.device_count() if device == "cuda" else 0
    if gpus > 1:
        emit(event="devices", gpus=gpus, placement={str(m): member_gpu(m, gpus) for m in range(members)})
    stall = float(job.get("soup_stall_seconds") or 0)
    procs: dict[int, Any] = {}
    done: dict[int, dict] = {}
    pending = list(range(members))

    def seed(m: int) -> int:
        return job["seed"] if specs is not None else job["seed"] + m

    def name(m: int) -> str:
        if specs is not None:
            return f"sweep member {m} (lr {specs[m]['lr']:g}, epochs {specs[m]['epochs']:g})"
        return f"soup member {m} (seed {seed(m)})"

    def running() -> list[int]:
        return [m for m in procs if m not in done]

    def handle(kind: str, m: int, payload: Any) -> None:
        if kind == "log":
            tracker.log(m, payload)
        elif kind == "epoch":
            tracker.epoch(m, payload)
        elif kind == "pairs":
            emit(event="corpus_pairs", member=m, **payload)
        elif kind == "error":
            raise RuntimeError(f"{name(m)} failed: {payload}")
        elif kind == "done" and specs is not None:
            done[m] = payload
            if on_done is not None:
                on_done(payload)
        elif kind == "done":
            payload["state"] = torch.load(payload["state"], map_location="cpu")
            done[m] = payload
            after = payload["eval_after"]
            emit(event="eval", when="member", member=m, seed=payload["seed"],
                 **{k: after[k] for k in ("ndcg@10", "recall@10", "mrr@10")})

    try:
        last_msg = time.time()
        while len(done) < members:
            while pending and len(running()) < concurrency:
                m = pending.pop(0)
                p = ctx.Process(target=_member_main, args=(os.path.abspath(b.path), m, seed(m), device,
                                                          os.path.join(tmp, f"member{m}.pt"), q, threads),
                                kwargs={**({} if specs is None else {"spec": specs[m]}),
                                        **({"gpu": member_gpu(m, gpus)} if gpus > 1 else {})})
                p.start()
                procs[m] = p
                last_msg = time.time()
            try:
                handle(*q.get(timeout=2))
                last_msg = time.time()
            except queue_mod.Empty:
                pass
            exited = [m for m in running() if not procs[m].is_alive()]
            if exited:
                # what an exited member sent is in the pipe already (a process joins its queue's feeder thread
                # before it exits): read it before judging the member
                while any(m not in done for m in exited):
                    try:
                        handle(*q.get(timeout=0.5))
                    except queue_mod.Empty:
                        break
                for m in exited:
                    if m not in done:
                        raise RuntimeError(f"{name(m)} exited with code {procs[m].exitcode} "
                                           "without reporting its result")
            if stall > 0 and time.time() - last_msg > stall:
                stuck = running()
                for m in stuck:  # each one's faulthandler prints its threads' stacks; one at a time, not interleaved
                    try:
                        os.kill(procs[m].pid, signal.SIGUSR1)
                    except OSError:
                        pass
                    time.sleep(0.5)
                names = ", ".join(name(m).split(" ", 2)[2] for m in stuck)
                kind_ = "sweep" if specs is not None else "soup"
                raise RuntimeError(f"{kind_} member{'s' if len(stuck) > 1 else ''} {names} sent nothing for {stall:g} s "
                                   "(job soup_stall_seconds); their Python stacks are on stderr above")
        return [done[m] for m in range(members)]
    finally:
        for p in procs.values():
            if p.is_alive():
                p.terminate()
        for p in procs.values():
            p.join(timeout=10)
            if p.is_alive():  # a member that ignores SIGTERM would keep the trainer's stderr open after it exits
                p.kill()
                p.join(timeout=5)
        if scratch is None:
            shutil.rmtree(tmp, ignore_errors=True)


def _sweep_member(b: Bundle, member: int, seed: int, device: str, state_path: str, q, spec: dict, model) -> None:
    """One sweep point in a spawned process: the parent's training rows (labelled pairs after the validation split,
    mined negatives, corpus pairs) from spec["data"], the point's lr and epochs; scored on the validation queries."""
    from datasets import Dataset

    with open(spec["data"], encoding="utf-8") as f:
        data = json.load(f)
    job = {**b.job, "lr": spec["lr"], "epochs": spec["epochs"]}
    ds = Dataset.from_dict(data["pairs"])
    res = fit_member(b, job, model, ds, seed, device, None, work_dir=f"{state_path}.work",
                     on_log=lambda rec: q.put(("log", member, rec)), on_epoch=lambda rec: q.put(("epoch", member, rec)),
                     on_pairs=lambda st: None, corpus_rows=(data["corpus_rows"], data["row_groups"], data["cp_stats"]))
    model.eval()
    val = nested_flat(make_ir_evaluator(data["val"], b.corpus, "val", prompts_of_model(model)).compute_all_metrics(model))
    import torch

    torch.save({k: v.detach().float().cpu() for k, v in model.state_dict().items()}, state_path)
    q.put(("done", member, _sweep_result(member, spec, seed, res, val, state_path)))


def _sweep_result(member: int, spec: dict, seed: int, res: dict, val: dict, state_path: str) -> dict:
    return {"member": member, "lr": spec["lr"], "epochs": spec["epochs"], "seed": seed, "steps": res["steps"],
            "train_seconds": res["train_seconds"], "n_rows": res["n_rows"], "cp_stats": res["cp_stats"],
            "trainer_metrics": res["trainer_metrics"], "val": val, "state": state_path}


def sweep_concurrency(job: dict, device: str, members: int) -> int:
    """Sweep members training at once: all of them (at most 8) on a GPU, as for a soup; one at a time on a CPU.
    job soup_concurrency > 0 overrides."""
    from .bundle import MAX_SOUP

    c = int(job.get("soup_concurrency") or 0)
    if c <= 0:
        c = min(members, MAX_SOUP) if device == "cuda" else 1
    return max(1, min(c, members))


def prepare_sweep(b: Bundle, job: dict, emit: Callable[..., None], warn: Callable[[str], None]) -> tuple[dict, tuple]:
    """The validation split of a sweep and the corpus pairs it leaves for training (built once, with the job's seed,
    for every member). -> (plan from sweep.plan_validation + "excluded_corpus_pairs", (rows, row_groups, stats))."""
    from .corpus_pairs import build_corpus_pairs
    from .sweep import exclude_corpus_rows, plan_validation

    spec = job["sweep"]
    cp = job["corpus_pairs"]
    plan = plan_validation(b.anchors, b.positive_ids or [None] * len(b.anchors), b.corpus, spec, job["seed"],
                           min_words=cp["min_words"] if cp else 4)
    rows: list[dict] = []
    groups: list = []
    stats = None
    if cp is not None:
        t = time.time()
        rows, groups, stats = build_corpus_pairs(b.corpus, cp, job["seed"])
        stats["secs"] = round(time.time() - t, 2)
        keep = exclude_corpus_rows(rows, plan["val_passages"])
        plan["excluded_corpus_pairs"] = len(rows) - len(keep)
        rows, groups = [rows[k] for k in keep], [groups[k] for k in keep]
        stats["rows_after_validation_split"] = len(rows)
        emit(event="corpus_pairs", **stats)
    else:
        plan["excluded_corpus_pairs"] = 0
    if len(plan["queries"]) < 30:
        warn(f"sweep: only {len(plan['queries'])} validation queries ({plan['source']}): the choice between members is noisy")
    # the sources of the rows are no training input: keep the data handed to the members plain
    rows = [{"anchor": r["anchor"], "positive": r["positive"]} for r in rows]
    return plan, (rows, groups, stats)


def run_sweep(b: Bundle, job: dict, model, ds, plan: dict, corpus_rows: tuple, device: str, out: str,
              curve: list[dict], emit: Callable[..., None]) -> tuple[dict, dict]:
    """Train every sweep point (lr x epochs) on the same training rows and seed, score each on the validation
    queries, and load the selection (greedy soup or best member) into `model`. -> (training totals, report)."""
    import itertools
    import tempfile

    import torch

    from .sweep import auto_epochs, greedy_soup

    spec = job["sweep"]
    n_train = len(ds) + len(corpus_rows[0])
    if n_train == 0:
        raise BundleError("sweep: no training rows left after the validation split")
    epochs = auto_epochs(n_train) if spec["epochs"] == "auto" else list(spec["epochs"])
    points = [{"lr": lr, "epochs": ep} for lr, ep in itertools.product(spec["lr"], epochs)]
    conc = sweep_concurrency(job, device, len(points))
    validation = {"source": plan["source"], "queries": len(plan["queries"]), "eligible": plan["eligible"],
                  "held_out_pair_rows": plan["held_out_rows"], "held_out_passages": len(plan["val_passages"]),
                  "excluded_corpus_pairs": plan["excluded_corpus_pairs"], "corpus": len(b.corpus)}
    emit(event="sweep", phase="plan", members=len(points), lr=spec["lr"], epochs=epochs,
         epochs_rule="auto" if spec["epochs"] == "auto" else "given", train_rows=n_train, select=spec["select"],
         concurrency=conc, validation=validation)
    tracker = _SoupProgress(len(points), emit, curve)
    val_ev = make_ir_evaluator(plan["queries"], b.corpus, "val", prompts_of_model(model))
    scratch = tempfile.mkdtemp(prefix=".sweep-", dir=os.path.dirname(os.path.abspath(out)) or ".")

    def report_member(r: dict) -> None:
        emit(event="sweep", phase="member", member=r["member"], lr=r["lr"], epochs=r["epochs"], steps=r["steps"],
             seconds=r["train_seconds"], **{f"val_{k}": r["val"][k] for k in ("ndcg@10", "recall@10", "mrr@10")})

    try:
        if conc > 1:
            data = os.path.join(scratch, "data.json")
            with open(data, "w", encoding="utf-8") as f:
                json.dump({"pairs": ds.to_dict(), "corpus_rows": corpus_rows[0], "row_groups": corpus_rows[1],
                           "cp_stats": corpus_rows[2], "val": plan["queries"]}, f)
            specs = [{**p, "data": data} for p in points]
            results = _soup_parallel(b, job, device, len(points), conc, out, tracker, emit, specs=specs,
                                     scratch=scratch, on_done=report_member)
        else:
            from transformers import set_seed

            results = []
            for m, p in enumerate(points):
                set_seed(job["seed"])
                mm = load_model(b.base_path, device, job["max_seq_length"])
                res = fit_member(b, {**job, **p}, mm, ds, job["seed"], device, None, work_dir=f"{out}.work{m}",
                                 on_log=lambda rec, m=m: tracker.log(m, rec), on_epoch=lambda rec, m=m: tracker.epoch(m, rec),
                                 on_pairs=lambda st: None, corpus_rows=corpus_rows)
                mm.eval()
                val = nested_flat(val_ev.compute_all_metrics(mm))
                path = os.path.join(scratch, f"member{m}.pt")
                torch.save({k: v.detach().float().cpu() for k, v in mm.state_dict().items()}, path)
                del mm
                results.append(_sweep_result(m, p, job["seed"], res, val, path))
                report_member(results[-1])
        train_wall = tracker.wall()

        t = time.time()
        scores = [r["val"]["ndcg@10"] for r in results]
        sums: dict[tuple, dict] = {}

        def soup_sum(members: tuple) -> dict:
            if members not in sums:
                base = members[:-1]
                acc = {k: v.clone() for k, v in soup_sum(base).items()} if base else None
                sums[members] = accumulate_state(acc, torch.load(results[members[-1]]["state"], map_location="cpu"))
            return sums[members]

        def evaluate(members: list[int]) -> float:
            key = tuple(members)
            acc = soup_sum(key)
            for k in [k for k in sums if k not in (key, key[:-1])]:
                del sums[k]  # at most the current soup and the candidate stay in memory
            model.load_state_dict(finish_average(acc, len(key), model.state_dict()))
            model.eval()
            return nested_flat(val_ev.compute_all_metrics(model))["ndcg@10"]

        if spec["select"] == "best":
            best = max(range(len(results)), key=lambda i: (scores[i], -i))
            chosen, chosen_score, trace = [best], scores[best], []
        else:
            chosen, chosen_score, trace = greedy_soup(scores, evaluate)
            for step in trace:
                emit(event="sweep", phase="greedy", **step)
        key = tuple(chosen)
        model.load_state_dict(finish_average(soup_sum(key), len(key), model.state_dict()))
        sums.clear()
        sel_secs = round(time.time() - t, 2)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    members_rep = [{k: v for k, v in r.items() if k != "state"} for r in results]
    picked = [{"member": i, "lr": results[i]["lr"], "epochs": results[i]["epochs"]} for i in chosen]
    emit(event="sweep", phase="selected", select=spec["select"], chosen=chosen, members=picked,
         **{"val_ndcg@10": chosen_score}, seconds=sel_secs)
    report = {"space": {"lr": spec["lr"], "epochs": epochs, "epochs_rule": "auto" if spec["epochs"] == "auto" else "given"},
              "train_rows": n_train, "validation": validation, "members": members_rep, "select": spec["select"],
              "chosen": chosen, "soup_members": picked, "val_ndcg@10": chosen_score, "greedy": trace,
              "selection_seconds": sel_secs, "concurrency": conc, "train_wall_seconds": train_wall}
    totals = {"steps": sum(r["steps"] for r in results), "train_seconds": train_wall, "n_rows": n_train,
              "cp_stats": corpus_rows[2], "trainer_metrics": results[chosen[0]]["trainer_metrics"],
              "samples": sum(r["n_rows"] * r["epochs"] for r in results)}
    return totals, report


def text_groups(b: Bundle, rows: list[dict], row_groups: list) -> dict[str, set]:
    """text -> the corpus groups it belongs to (corpus passages, and the anchor/positive texts of corpus pairs)."""
    out: dict[str, set] = {}
    for c in b.corpus:
        if "group" in c:
            out.setdefault(c["text"], set()).add(c["group"])
    for r, g in zip(rows, row_groups):
        if g is not None:
            out.setdefault(r["anchor"], set()).add(g)
            out.setdefault(r["positive"], set()).add(g)
    return out


def group_batch_sampler(tg: dict[str, set]):
    """batch_sampler callable for SentenceTransformerTrainingArguments: no duplicate texts and no two rows of one
    corpus group in a batch (in-batch negatives are never parts of the anchor's own document)."""
    import torch
    from sentence_transformers import DefaultBatchSampler

    from .corpus_pairs import conflict_free_batches, row_keys

    class GroupAwareBatchSampler(DefaultBatchSampler):
        def __init__(self, dataset, batch_size, drop_last, valid_label_columns=None, generator=None, seed=0):
            super().__init__(dataset, batch_size=batch_size, drop_last=drop_last,
                             valid_label_columns=valid_label_columns, generator=generator, seed=seed)
            cols = [c for c in dataset.column_names if c not in set(valid_label_columns or []) | {"dataset_name"}]
            data = [list(dataset[c]) for c in cols]
            self.keys = [row_keys((col[i] for col in data), tg) for i in range(len(dataset))]

        def __iter__(self):
            if self.generator is not None and self.seed is not None:
                self.generator.manual_seed(self.seed + self.epoch)
            order = torch.randperm(len(self.keys), generator=self.generator).tolist()
            yield from conflict_free_batches(self.keys, order, self.batch_size, self.drop_last)

        def __len__(self):
            n = len(self.keys)
            return n // self.batch_size if self.drop_last else (n + self.batch_size - 1) // self.batch_size

    return GroupAwareBatchSampler


def _versions() -> dict:
    out = {"python": sys.version.split()[0]}
    for m in ("torch", "transformers", "sentence_transformers", "onnx", "onnxruntime"):
        try:
            out[m] = __import__(m).__version__
        except Exception:  # pragma: no cover
            pass
    return out
