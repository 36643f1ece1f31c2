"""The default training loop for loss "mnrl" (job "engine": "fast"): the same loss, samplers, prompts, schedule and
progress events as SentenceTransformerTrainer (engine "st", the reference), without its per-batch costs.

A 6M-parameter encoder does so little arithmetic per batch that the GPU waits on the host: the reference tokenizes
every batch in its collator, pads every batch to the longest text in it, and goes through HF Trainer's per-step
bookkeeping (loss .item() for the NaN filter, callbacks). Here:
- every text is tokenized once, up front (fast tokenizer, batched, no padding; each distinct text once);
- batches are length-bucketed: within a mega-batch of MEGA batches' rows (in random order) rows are sorted by
  token length before they are cut into batches, and the order of all batches is shuffled, so a batch pads to
  little more than its own texts while the data order stays random at the scale of an epoch;
- a batch's tensors are built in pinned memory and copied with non_blocking, and nothing waits on the GPU except
  the logging steps (the loss is summed on the device);
- bf16 autocast on CUDA (as the reference's bf16=True), fused AdamW.

What stays as the reference does it:
- the loss is sentence-transformers' own MultipleNegativesRankingLoss (train.make_loss): its
  compute_loss_from_embeddings on embeddings from sentence-transformers' embed_columns, so scale, cos_sim,
  directions, partition_mode and hardness are its code, not a copy. The loss runs in fp32 (the reference runs its
  similarity matmul under bf16 autocast; fp32 is the more exact of the two);
- batches never hold a text twice (NO_DUPLICATES: the texts of every column of a row) nor, when the corpus has
  groups, two rows of one group (train.group_batch_sampler's keys); every row is used once per epoch;
- labelled pairs and corpus pairs are separate datasets, each batch from one of them, batches of both in one
  random order (sentence-transformers' PROPORTIONAL multi-dataset sampler);
- HF Trainer's defaults: AdamW betas (0.9, 0.999), eps 1e-8, weight decay 0, gradient clipping at norm 1.0,
  linear warmup over ceil(warmup_ratio * steps) then linear decay to 0, steps = ceil(epochs * batches per
  epoch), logging every max(1, steps // 50) steps; an epoch-end evaluation when epochs > 1.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable, Sequence

MEGA = 50  # batches per length-sorted mega-batch


class Unsupported(Exception):
    """The model's inputs cannot be reproduced by pre-tokenization (a tokenizer or module this path does not
    model); the caller trains with the reference engine instead."""


def engine_of(job: dict) -> str:
    """"fast" for loss mnrl unless job engine is "st"; CachedMNRL always trains with the reference."""
    return "fast" if job.get("engine", "fast") == "fast" and job["loss"] == "mnrl" else "st"


class Column:
    """One text column, tokenized once: token ids of each row (flat int64 + offsets), with the column's prompt
    prepended to the text as sentence-transformers' collator does."""

    def __init__(self, tok, texts: Sequence[str], prompt: str, max_len: int):
        import numpy as np

        uniq: dict[str, int] = {}
        idx = np.fromiter((uniq.setdefault(t, len(uniq)) for t in texts), dtype=np.int64, count=len(texts))
        distinct = list(uniq)
        enc = tok([prompt + t for t in distinct] if prompt else distinct, truncation=True, max_length=max_len,
                  padding=False, return_attention_mask=False, return_token_type_ids=False)["input_ids"]
        lens = np.fromiter((len(e) for e in enc), dtype=np.int64, count=len(enc))
        self.flat = np.fromiter((t for e in enc for t in e), dtype=np.int64, count=int(lens.sum()))
        self.starts = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64) if len(lens) else lens
        self.text_lens = lens
        self.row = idx  # row -> distinct text
        self.lens = lens[idx] if len(idx) else lens  # tokens per row

    def batch(self, rows: Sequence[int], pad_id: int):
        """(input_ids, attention_mask) numpy int64 arrays, right-padded to the batch's longest row."""
        import numpy as np

        t = self.row[np.asarray(rows, dtype=np.int64)]
        lens = self.text_lens[t]
        width = int(lens.max())
        ids = np.full((len(t), width), pad_id, dtype=np.int64)
        mask = np.arange(width)[None, :] < lens[:, None]
        # the tokens of row r are flat[starts[t[r]] : starts[t[r]] + lens[r]], laid into ids[r, :lens[r]]
        src = (self.starts[t][:, None] + np.arange(width)[None, :])[mask]
        ids[mask] = self.flat[src]
        return ids, mask.astype(np.int64)


class TrainSet:
    """One dataset (labelled pairs, or corpus pairs): its columns tokenized and each row's conflict keys."""

    def __init__(self, cols: dict[str, list[str]], tok, prompts: dict[str, str], max_len: int, text_groups: dict):
        from .corpus_pairs import row_keys

        self.names = list(cols)
        self.n = len(cols[self.names[0]])
        self.columns = [Column(tok, cols[c], prompts.get(c, ""), max_len) for c in self.names]
        # NO_DUPLICATES compares the raw values of every column; with groups the keys carry the texts' groups
        self.keys = [row_keys((cols[c][i] for c in self.names), text_groups) for i in range(self.n)]
        lens = self.columns[0].lens.copy()
        for c in self.columns[1:]:
            lens = lens + c.lens
        self.lens = lens  # sort key for length bucketing: tokens of the whole row


def epoch_batches(sets: Sequence[TrainSet], batch_size: int, seed: int, epoch: int,
                  mega: int = MEGA) -> list[tuple[int, list[int]]]:
    """One epoch's batches [(dataset index, row indices)]: per dataset a seeded permutation, sorted by length within
    each mega-batch, cut greedily into conflict-free batches (corpus_pairs.conflict_free_batches: a row whose
    text or group is already in the batch waits for the next one); then the batches of all datasets shuffled
    together. Every row appears exactly once."""
    import torch

    from .corpus_pairs import conflict_free_batches

    g = torch.Generator()
    g.manual_seed(seed + epoch)
    out: list[tuple[int, list[int]]] = []
    span = max(1, mega * batch_size)
    for d, s in enumerate(sets):
        perm = torch.randperm(s.n, generator=g).tolist()
        order: list[int] = []
        for c0 in range(0, len(perm), span):
            chunk = perm[c0:c0 + span]
            chunk.sort(key=lambda i: s.lens[i])
            order.extend(chunk)
        out.extend((d, b) for b in conflict_free_batches(s.keys, order, batch_size, False))
    shuffle = torch.randperm(len(out), generator=g).tolist()
    return [out[i] for i in shuffle]


def batches_per_epoch(sets: Sequence[TrainSet], batch_size: int) -> int:
    """The reference's len(dataloader): ceil(rows / batch) per dataset (an upper bound when duplicates defer rows)."""
    return sum((s.n + batch_size - 1) // batch_size for s in sets)


def _extra_features(model, prompt: str) -> dict:
    """The non-tensor features model.preprocess adds to a column's batch (modality, prompt_length, ...)."""
    f = model.preprocess(["x"], prompt=prompt or None)
    return {k: v for k, v in f.items() if k not in ("input_ids", "attention_mask", "token_type_ids")}


def check_tokenization(model, tok, texts: Sequence[str], prompt: str, max_len: int) -> dict:
    """The batch this path builds for `texts` must equal model.preprocess(texts, prompt) (what the reference's
    collator feeds the model), key by key; raises Unsupported otherwise. Returns the extra non-tensor features."""
    import numpy as np

    ref = model.preprocess(list(texts), prompt=prompt or None)
    col = Column(tok, texts, prompt, max_len)
    ids, mask = col.batch(range(len(texts)), tok.pad_token_id or 0)
    mine = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in ref:
        mine["token_type_ids"] = np.zeros_like(ids)
    for k, v in ref.items():
        if hasattr(v, "shape"):
            if k not in mine or tuple(v.shape) != mine[k].shape or not np.array_equal(v.cpu().numpy(), mine[k]):
                raise Unsupported(f"pre-tokenized '{k}' differs from the model's preprocess()")
    return _extra_features(model, prompt)


def features(s: TrainSet, rows: Sequence[int], pad_id: int, with_tt: bool, extras: dict, device: str) -> list[dict]:
    """The model inputs of one batch, a dict per column as the reference's collator makes them (on CUDA copied from
    pinned memory without blocking)."""
    import torch

    out = []
    for name, col in zip(s.names, s.columns):
        ids, mask = col.batch(rows, pad_id)
        f: dict[str, Any] = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
        if with_tt:
            f["token_type_ids"] = torch.zeros_like(f["input_ids"])
        if device == "cuda":
            f = {k: v.pin_memory().to(device, non_blocking=True) for k, v in f.items()}
        f.update(extras.get(name, {}))
        out.append(f)
    return out


def fit(model, job: dict, sets_cols: Sequence[dict[str, list[str]]], text_groups: dict, prompts: dict[str, str],
        seed: int, device: str, evaluator, on_log: Callable[[dict], None],
        on_epoch: Callable[[dict], None]) -> dict:
    """Train `model` in place on the datasets `sets_cols` (each {column: texts}, columns anchor, positive[,
    negative]). -> {"steps", "train_seconds", "tokenize_seconds", "trainer_metrics"} (trainer_metrics: the keys of
    HF Trainer's train() metrics)."""
    import numpy as np
    import torch
    from transformers import get_linear_schedule_with_warmup

    from .train import make_loss

    try:
        from sentence_transformers.base.losses.merged_forward import embed_columns
    except ImportError:  # older sentence-transformers: one forward per column, as its MNRL did
        def embed_columns(m, features_list):
            return [m(f)["sentence_embedding"] for f in features_list]

    tok = model.tokenizer
    if not getattr(tok, "is_fast", False):
        raise Unsupported("the tokenizer is not a fast tokenizer")
    if getattr(tok, "padding_side", "right") != "right":
        raise Unsupported("left padding")
    max_len = int(model.max_seq_length)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    t_tok = time.time()
    extras = {}
    for c in dict.fromkeys(c for s in sets_cols for c in s):  # each column's first rows, as the reference builds them
        sample = next((s[c][:64] for s in sets_cols if s.get(c)), [])
        if sample:
            extras[c] = check_tokenization(model, tok, sample, prompts.get(c, ""), max_len)
    with_tt = "token_type_ids" in model.preprocess(["x"])
    sets = [TrainSet(s, tok, prompts, max_len, text_groups) for s in sets_cols if len(next(iter(s.values())))]
    tokenize_secs = time.time() - t_tok

    bs = job["batch_size"]
    per_epoch = batches_per_epoch(sets, bs)
    total = max(1, math.ceil(job["epochs"] * per_epoch))
    log_every = max(1, max(1, int(max(1, sum(s.n for s in sets) // bs) * job["epochs"])) // 50)  # as the reference
    use_bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
    loss_fn = make_loss(model, job)
    model.to(device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    fused = device == "cuda"
    try:
        opt = torch.optim.AdamW(params, lr=job["lr"], betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, fused=fused)
    except (RuntimeError, TypeError):
        opt = torch.optim.AdamW(params, lr=job["lr"], betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    sched = get_linear_schedule_with_warmup(opt, math.ceil(total * job["warmup_ratio"]), total)

    def to_features(s: TrainSet, rows: list[int]) -> list[dict]:
        return features(s, rows, pad_id, with_tt, extras, device)

    step = 0
    loss_sum = torch.zeros((), device=device)  # since the last log; summed on the device: no sync per step
    loss_all = torch.zeros((), device=device)
    last_logged = 0
    epochs_run = 0.0
    grad_norm = None
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.time()
    n_epochs = math.ceil(job["epochs"])
    for epoch in range(n_epochs):
        batches = epoch_batches(sets, bs, seed, epoch)
        n_b = len(batches)
        nxt = to_features(sets[batches[0][0]], batches[0][1]) if batches else None
        for i in range(n_b):
            feats = nxt
            # the next batch is built (and its copy queued) while this one runs on the GPU
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_bf16):
                embs = embed_columns(model, feats)
            nxt = to_features(sets[batches[i + 1][0]], batches[i + 1][1]) if i + 1 < n_b else None
            loss = loss_fn.compute_loss_from_embeddings([e.float() for e in embs], None)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
            lr = sched.get_last_lr()[0]  # the rate this step used: what the reference logs
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            loss_sum += loss.detach()
            loss_all += loss.detach()
            epochs_run = epoch + (i + 1) / n_b
            if step % log_every == 0:
                on_log({"step": step, "total": total, "loss": float(loss_sum) / (step - last_logged),
                        "lr": float(lr), "epoch": float(epochs_run)})
                loss_sum.zero_()
                last_logged = step
            if step >= total:
                break
        if job["epochs"] > 1 and evaluator is not None:
            t_ev = time.time()
            metrics = evaluator(model)
            model.train()
            # the reference's Trainer.evaluate prefixes "eval_" unless the evaluator's key has it already, and adds
            # its speed metrics (0 per second: there is no eval dataset, only the evaluator)
            on_epoch({"step": step, **{(k if k.startswith("eval_") else f"eval_{k}"): float(v)
                                       for k, v in metrics.items() if isinstance(v, (int, float))},
                      "eval_runtime": round(time.time() - t_ev, 4), "eval_samples_per_second": 0.0,
                      "eval_steps_per_second": 0.0})
        if step >= total:
            break
    if device == "cuda":
        torch.cuda.synchronize()
    secs = time.time() - t0
    n_samples = sum(s.n for s in sets) * job["epochs"]
    metrics = {"train_runtime": round(secs, 4), "train_samples_per_second": round(n_samples / secs, 3),
               "train_steps_per_second": round(step / secs, 3),
               "train_loss": float(loss_all) / max(1, step), "epoch": float(epochs_run)}
    del grad_norm, opt
    return {"steps": step, "train_seconds": round(secs, 3), "tokenize_seconds": round(tokenize_secs, 3),
            "trainer_metrics": metrics}
