"""The fast training loop for loss "mnrl" (job "engine": "fast"; the default engine is "st", the reference
SentenceTransformerTrainer, until a one-call GPU comparison shows this one's NDCG@10 within noise of it): the same
loss, samplers, prompts, schedule and progress events, without the reference's per-batch costs.

A 6M-parameter encoder does so little arithmetic per batch that the GPU waits on the host: the reference tokenizes
every batch in its collator, pads every batch to the longest text in it, and goes through HF Trainer's per-step
bookkeeping (loss .item() for the NaN filter, callbacks). Here:
- every text is tokenized once, up front (fast tokenizer, batched, no padding; each distinct text once), and the
  token ids live on the training device (DeviceTokens): a batch is gathered there by index, so a step copies
  nothing from the host;
- batches are length-bucketed (job "bucket", default true): within a mega-batch of MEGA batches' rows (in random
  order) rows are sorted by token length before they are cut into batches, and the order of all batches is
  shuffled, so a batch pads to little more than its own texts while the data order stays random over an epoch;
- a batch's width is rounded up to a multiple of PAD_TO tokens (job "pad_to", default 32; 0 = the exact width),
  capped at the dataset's longest text: a handful of distinct shapes instead of one per batch, so cuDNN/SDPA and
  the allocator do not plan each forward anew (scripts/gpu/step_probe.py "fixed" vs "direct"); the extra columns
  are padding (masked in attention and pooling), so the loss does not change;
- the encoder is called directly with a 4-D mask when the model is [Transformer, Pooling mean/cls, Normalize?]
  (DirectEncoder: no masking_utils host sync, no module plumbing), all columns in one forward on a GPU;
- nothing waits on the GPU except the logging steps (the loss is summed on the device);
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
PAD_TO = 32  # job "pad_to" default: batch widths rounded up to a multiple of this many tokens


def padded_width(width: int, pad_to: int, cap: int) -> int:
    """`width` rounded up to a multiple of `pad_to` (0 or 1: unchanged), at most `cap` (the longest text: never
    wider than a real row, so never past the model's positions) and never below `width`."""
    if pad_to <= 1:
        return width
    return max(width, min(cap, -(-width // pad_to) * pad_to))


class Unsupported(Exception):
    """The model's inputs cannot be reproduced by pre-tokenization (a tokenizer or module this path does not
    model); the caller trains with the reference engine instead."""


def engine_of(job: dict) -> str:
    """"fast" when job engine is "fast" and the loss is mnrl; else "st" (the default; CachedMNRL always trains with
    the reference)."""
    return "fast" if job.get("engine", "st") == "fast" and job["loss"] == "mnrl" else "st"


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
                  mega: int = MEGA, bucket: bool = True) -> list[tuple[int, list[int]]]:
    """One epoch's batches [(dataset index, row indices)]: per dataset a seeded permutation, sorted by length within
    each mega-batch (bucket=True; bucket=False keeps the permutation's order, as the reference's samplers do),
    cut greedily into conflict-free batches (corpus_pairs.conflict_free_batches: a row whose text or group is
    already in the batch waits for the next one); then the batches of all datasets shuffled together. Every row
    appears exactly once."""
    import torch

    from .corpus_pairs import conflict_free_batches

    g = torch.Generator()
    g.manual_seed(seed + epoch)
    out: list[tuple[int, list[int]]] = []
    span = max(1, mega * batch_size)
    for d, s in enumerate(sets):
        perm = torch.randperm(s.n, generator=g).tolist()
        order: list[int] = [] if bucket else perm
        for c0 in range(0, len(perm) if bucket else 0, span):
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


class DeviceTokens:
    """A TrainSet's token ids held on the training device (each column's distinct texts as one flat tensor plus
    offsets; a few MB for GO): a batch is gathered there by index, so a step copies nothing from the host and
    creates no tensor from Python data. The epoch's row order is uploaded once per epoch (load_epoch); the
    host keeps the lengths, so each batch's width is known without asking the device. pad_to > 1: each batch's
    width is rounded up (padded_width), capped at the set's longest text."""

    def __init__(self, s: TrainSet, device: str, pad_to: int = 0):
        import torch

        self.device = device
        self.flat = [torch.as_tensor(c.flat, device=device) for c in s.columns]
        self.starts = [torch.as_tensor(c.starts, device=device) for c in s.columns]
        self.lens = [torch.as_tensor(c.text_lens, device=device) for c in s.columns]
        self.host = s.columns
        width = max((int(c.text_lens.max()) for c in s.columns if len(c.text_lens)), default=1)
        self.max_width = max(1, width)
        self.pad_to = int(pad_to or 0)
        self.pos = torch.arange(self.max_width, device=device)
        self.order: list = []  # per column: the epoch's distinct-text ids of its rows, in batch order (device)
        self.offsets: dict[int, tuple[int, int, list[int]]] = {}  # batch index -> (offset, rows, width per column)

    def load_epoch(self, batches: Sequence[tuple[int, list[int]]], d: int) -> None:
        """Upload the text ids of dataset d's rows in `batches` (in order) and note each batch's slice and widths."""
        import numpy as np
        import torch

        rows = [np.asarray(r, dtype=np.int64) for k, r in batches if k == d]
        allrows = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        ts = [c.row[allrows] for c in self.host]
        self.order = [torch.as_tensor(t, device=self.device) for t in ts]
        self.offsets = {}
        off = 0
        j = 0
        for i, (k, r) in enumerate(batches):
            if k != d:
                continue
            n = len(r)
            widths = [padded_width(max(1, int(c.text_lens[t[off:off + n]].max())), self.pad_to, self.max_width)
                      for c, t in zip(self.host, ts)]
            self.offsets[i] = (off, n, widths)
            off += n
            j += 1

    def column(self, c: int, off: int, n: int, width: int, pad_id: int):
        """(input_ids int64, attention_mask bool) of rows off..off+n of the loaded epoch, column c, padded to width."""
        t = self.order[c][off:off + n]
        lens = self.lens[c][t]
        pos = self.pos[:width]
        mask = pos[None, :] < lens[:, None]
        idx = (self.starts[c][t][:, None] + pos[None, :]).clamp_(max=max(0, self.flat[c].numel() - 1))
        ids = self.flat[c][idx].masked_fill_(~mask, pad_id)
        return ids, mask


class DirectEncoder:
    """The model's forward for a [Transformer, Pooling (mean or cls), Normalize?] sentence-transformers model on
    an SDPA-attention Hugging Face encoder, called without sentence-transformers' module plumbing: the encoder gets
    a 4-D boolean attention mask (batch, 1, 1, width), which transformers passes to SDPA as it is (with a 2-D mask
    its masking_utils asks the device whether any token is padding, a host sync in every forward), and mean/CLS
    pooling and the L2 normalization are done here as sentence-transformers does them. `probe` checks it against
    the model's own forward before it is used; anything else keeps embed_columns."""

    def __init__(self, model):
        mods = list(model.children())
        names = [type(m).__name__ for m in mods]
        if not (2 <= len(mods) <= 3 and names[0] == "Transformer" and names[1] == "Pooling"
                and (len(mods) == 2 or names[2] == "Normalize")):
            raise Unsupported(f"modules {names}")
        tr, pool = mods[0], mods[1]
        self.hf = getattr(tr, "auto_model", None) or getattr(tr, "model", None)
        if self.hf is None:
            raise Unsupported("no Hugging Face model in the Transformer module")
        impl = getattr(getattr(self.hf, "config", None), "_attn_implementation", None)
        if impl != "sdpa":
            raise Unsupported(f"attention implementation {impl!r}")
        mode = pool.pooling_mode
        mode = mode if isinstance(mode, str) else (mode[0] if len(mode) == 1 else None)
        if mode not in ("mean", "cls"):
            raise Unsupported(f"pooling {pool.pooling_mode!r}")
        self.mode = mode
        self.normalize = len(mods) == 3
        self.include_prompt = bool(getattr(pool, "include_prompt", True))

    def __call__(self, ids, mask, with_tt: bool):
        import torch.nn.functional as F

        kw = {"token_type_ids": ids.new_zeros(ids.shape)} if with_tt else {}
        h = self.hf(input_ids=ids, attention_mask=mask[:, None, None, :], return_dict=True, **kw).last_hidden_state
        if self.mode == "cls":
            e = h[:, 0]
        else:
            m = mask.unsqueeze(-1).to(h.dtype)
            e = (h * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)
        return F.normalize(e, p=2, dim=-1) if self.normalize else e


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

    # the step's encoder: DirectEncoder (no host sync, no module plumbing) when the model is one it reproduces,
    # checked against the model's own forward on a first batch; else sentence-transformers' embed_columns
    direct = None
    direct_note = "embed_columns"
    try:
        direct = DirectEncoder(model)
        if not direct.include_prompt and any(prompts.get(c) for c in sets_cols[0]):
            raise Unsupported("a Pooling with include_prompt false and prompts")
        _probe_direct(model, direct, sets[0], pad_id, with_tt, extras, device)
        direct_note = f"direct ({direct.mode} pooling{', normalize' if direct.normalize else ''})"
    except Unsupported as e:
        direct = None
        direct_note = f"embed_columns ({e})"
    # one forward for all columns on a GPU (a small encoder is bound by launches there, not arithmetic); on a CPU
    # the anchor keeps its own forward as embed_columns does (padding short queries to the documents' width
    # costs real arithmetic there)
    merge_all = device == "cuda" if job.get("merge_columns") is None else bool(job["merge_columns"])
    pad_to = int(job.get("pad_to", PAD_TO) or 0)
    pad_to = pad_to if pad_to > 1 else 0
    dev_sets = [DeviceTokens(s, device, pad_to) for s in sets]
    bucket = bool(job.get("bucket", True))
    widths_seen: set[int] = set()  # distinct forward widths: the shapes the kernels were planned for
    timers = {"batch": 0.0, "forward": 0.0, "loss": 0.0, "backward": 0.0, "optimizer": 0.0}
    perf = time.perf_counter

    def embed(d: int, i: int) -> list:
        """The sentence embeddings of batch i (dataset d) of the loaded epoch, one tensor per column."""
        ds = dev_sets[d]
        off, n, widths = ds.offsets[i]
        t_b = perf()
        cols = [ds.column(c, off, n, w, pad_id) for c, w in enumerate(widths)]
        t_f = perf()
        timers["batch"] += t_f - t_b
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_bf16):
            if direct is not None:
                groups = [list(range(len(cols)))] if merge_all else [[0], list(range(1, len(cols)))]
                out = []
                for g in groups:
                    if not g:
                        continue
                    if len(g) == 1:
                        ids, mask = cols[g[0]]
                        widths_seen.add(int(ids.shape[1]))
                    else:
                        w = max(cols[c][0].shape[1] for c in g)
                        widths_seen.add(int(w))
                        ids = torch.cat([torch.nn.functional.pad(cols[c][0], (0, w - cols[c][0].shape[1]), value=pad_id) for c in g])
                        mask = torch.cat([torch.nn.functional.pad(cols[c][1], (0, w - cols[c][1].shape[1])) for c in g])
                    e = direct(ids, mask, with_tt)
                    out.extend(e.split(n) if len(g) > 1 else [e])
            else:
                feats = []
                for name, (ids, mask) in zip(sets[d].names, cols):
                    widths_seen.add(int(ids.shape[1]))
                    f: dict[str, Any] = {"input_ids": ids, "attention_mask": mask.long()}
                    if with_tt:
                        f["token_type_ids"] = torch.zeros_like(ids)
                    f.update(extras.get(name, {}))
                    feats.append(f)
                out = embed_columns(model, feats)
        timers["forward"] += perf() - t_f
        return out

    step = 0
    loss_sum = torch.zeros((), device=device)  # since the last log; summed on the device: no sync per step
    loss_all = torch.zeros((), device=device)
    last_logged = 0
    epochs_run = 0.0
    grad_norm = None
    profiler = _step_profiler(device)
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.time()
    n_epochs = math.ceil(job["epochs"])
    for epoch in range(n_epochs):
        batches = epoch_batches(sets, bs, seed, epoch, bucket=bucket)
        n_b = len(batches)
        t_b = perf()
        for d, ds in enumerate(dev_sets):
            ds.load_epoch(batches, d)
        timers["batch"] += perf() - t_b
        for i in range(n_b):
            if profiler is not None:
                profiler.step(step)
            embs = embed(batches[i][0], i)
            t_l = perf()
            loss = loss_fn.compute_loss_from_embeddings([e.float() for e in embs], None)
            t_bw = perf()
            loss.backward()
            t_o = perf()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
            lr = sched.get_last_lr()[0]  # the rate this step used: what the reference logs
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            t_e = perf()
            timers["loss"] += t_bw - t_l
            timers["backward"] += t_o - t_bw
            timers["optimizer"] += t_e - t_o
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
    if profiler is not None:
        profiler.close()
    n_samples = sum(s.n for s in sets) * job["epochs"]
    metrics = {"train_runtime": round(secs, 4), "train_samples_per_second": round(n_samples / secs, 3),
               "train_steps_per_second": round(step / secs, 3),
               "train_loss": float(loss_all) / max(1, step), "epoch": float(epochs_run)}
    del grad_norm, opt
    # host time per step by part (no device sync: on a GPU, when the host is the bottleneck these add up to the
    # step's wall time; when the device is, the wait shows up where the host first blocks, e.g. the log steps)
    per = {k: round(1000 * v / max(1, step), 3) for k, v in timers.items()}
    per["host_total"] = round(sum(per.values()), 3)
    per["wall"] = round(1000 * secs / max(1, step), 3)
    return {"steps": step, "train_seconds": round(secs, 3), "tokenize_seconds": round(tokenize_secs, 3),
            "trainer_metrics": metrics, "step_ms": per, "forward_path": direct_note,
            "bucket": bucket, "merge_columns": merge_all, "pad_to": pad_to,
            "distinct_widths": len(widths_seen)}


def _probe_direct(model, direct: DirectEncoder, s: TrainSet, pad_id: int, with_tt: bool, extras: dict,
                  device: str) -> None:
    """DirectEncoder must give the model's own embeddings (eval mode, fp32) on the first rows of every column;
    raises Unsupported otherwise."""
    import torch

    rows = list(range(min(s.n, 16)))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            for name, col in zip(s.names, s.columns):
                ids, mask = col.batch(rows, pad_id)
                ids_t, mask_t = torch.as_tensor(ids, device=device), torch.as_tensor(mask, device=device)
                f: dict[str, Any] = {"input_ids": ids_t, "attention_mask": mask_t}
                if with_tt:
                    f["token_type_ids"] = torch.zeros_like(ids_t)
                f.update(extras.get(name, {}))
                ref = model(f)["sentence_embedding"].float()
                mine = direct(ids_t, mask_t.bool(), with_tt).float()
                if ref.shape != mine.shape or not torch.allclose(ref, mine, atol=1e-5, rtol=1e-4):
                    raise Unsupported("the direct forward differs from the model's")
    finally:
        model.train(was)


def _step_profiler(device: str):
    """TRAINER_PROFILE_STEPS=N (env): torch.profiler over N steps after 10 warm-up steps; the op table (sorted by
    host time) goes to stderr, and with TRAINER_PROFILE_TRACE=FILE a Chrome trace to FILE. None when unset."""
    import os
    import sys

    n = int(os.environ.get("TRAINER_PROFILE_STEPS", "0") or 0)
    if n <= 0:
        return None
    import torch
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])

    class P:
        def __init__(self):
            self.p = None
            self.start, self.end = 10, 10 + n

        def step(self, step: int) -> None:
            if step == self.start:
                self.p = profile(activities=acts, record_shapes=False)
                self.p.__enter__()
            elif step == self.end and self.p is not None:
                self.close()

        def close(self) -> None:
            if self.p is None:
                return
            if device == "cuda":
                torch.cuda.synchronize()
            self.p.__exit__(None, None, None)
            ka = self.p.key_averages()
            sys.stderr.write(f"trainer: profile of {n} steps (from step {self.start}); "
                             f"aten ops: {sum(e.count for e in ka if e.key.startswith('aten::'))}\n")
            sys.stderr.write(ka.table(sort_by="self_cpu_time_total", row_limit=40) + "\n")
            if device == "cuda":
                sys.stderr.write(ka.table(sort_by="self_cuda_time_total", row_limit=25) + "\n")
            trace = os.environ.get("TRAINER_PROFILE_TRACE")
            if trace:
                self.p.export_chrome_trace(trace)
            self.p = None

    return P()
