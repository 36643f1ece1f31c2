"""Where a fast-engine training step's time goes on this machine, in one process (issue 16: 118 ms a step at 6.5 %
GPU use on the H200). Run from the repo root:

  python3 scripts/gpu/step_probe.py --bundle /tmp/go [--steps 40] [--json $OUT/step_probe.json]

Prints, for this host and device:
- facts: torch/CUDA versions, CPU threads torch uses, affinity, cgroup CPU quota, kernel (gVisor reports 4.4.0);
- micro costs: host microseconds per tiny kernel launch (10k x.add_(1)), per torch.cuda.synchronize() on an idle
  device, per pinned 256x128 int64 copy to the device, per pageable copy;
- ms per training step (host time without sync, wall with a final sync, GPU time by CUDA events) of step variants
  on the bundle's first pairs with models' real base (bundle base/), batch = job batch_size:
    old      numpy batch -> pinned copy -> sentence-transformers embed_columns (2-D mask)  [the engine before]
    device   batch gathered on the device (DeviceTokens) + embed_columns
    direct   DeviceTokens + DirectEncoder (4-D mask: no masking_utils sync), columns merged into one forward
    fixed    direct with the width padded to a multiple of 32 (few shapes): the engine's step since job "pad_to"
             (default 32; fast_train.padded_width)
    graph    direct, one static shape, forward+backward+clip+AdamW(capturable) captured as one CUDA graph
             (the ceiling when host launches are the cost; not in the trainer)
Each variant runs in a try block: a failure prints its error and the rest go on.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def facts() -> dict:
    import torch

    f = {"python": sys.version.split()[0], "torch": torch.__version__, "cuda": torch.version.cuda,
         "kernel": platform.release(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
         "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None}
    for p in ("/sys/fs/cgroup/cpu.max", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"):
        try:
            f[p] = open(p).read().strip()
        except OSError:
            pass
    if torch.cuda.is_available():
        f["gpu"] = torch.cuda.get_device_name(0)
    return f


def micro(device: str) -> dict:
    import torch

    out = {}
    x = torch.zeros(16, device=device)
    for _ in range(100):
        x.add_(1)
    torch.cuda.synchronize()
    t = time.perf_counter()
    n = 10000
    for _ in range(n):
        x.add_(1)
    out["launch_us_host"] = round(1e6 * (time.perf_counter() - t) / n, 2)
    torch.cuda.synchronize()
    out["launch_us_wall"] = round(1e6 * (time.perf_counter() - t) / n, 2)
    t = time.perf_counter()
    for _ in range(1000):
        torch.cuda.synchronize()
    out["sync_idle_us"] = round(1e6 * (time.perf_counter() - t) / 1000, 2)
    t = time.perf_counter()
    for _ in range(200):
        x.add_(1)
        float(x[0])
    out["add_then_item_us"] = round(1e6 * (time.perf_counter() - t) / 200, 2)
    a = torch.zeros(256, 128, dtype=torch.long)
    for kind in ("pinned", "pageable"):
        t = time.perf_counter()
        for _ in range(200):
            src = a.pin_memory() if kind == "pinned" else a
            src.to(device, non_blocking=kind == "pinned")
        torch.cuda.synchronize()
        out[f"h2d_{kind}_256x128_us"] = round(1e6 * (time.perf_counter() - t) / 200, 2)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--json", default="")
    ap.add_argument("--variants", default="old,device,direct,fixed,graph")
    a = ap.parse_args()
    import numpy as np
    import torch

    from trainer import fast_train
    from trainer.bundle import load_bundle
    from trainer.train import column_prompts, load_model, make_loss

    res: dict = {"facts": facts()}
    print(json.dumps(res["facts"]), flush=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        res["micro"] = micro(device)
        print(json.dumps(res["micro"]), flush=True)
    b = load_bundle(a.bundle)
    job = b.job
    bs = job["batch_size"]
    n_rows = bs * (a.steps + 10)
    cols = {"anchor": b.anchors[:n_rows], "positive": b.positives[:n_rows]}
    model = load_model(b.base_path, device, job["max_seq_length"])
    tok = model.tokenizer
    pad_id = tok.pad_token_id or 0
    prompts = column_prompts(model)
    s = fast_train.TrainSet(cols, tok, prompts, job["max_seq_length"], {})
    extras = {c: fast_train._extra_features(model, prompts.get(c, "")) for c in cols}
    with_tt = "token_type_ids" in model.preprocess(["x"])
    from sentence_transformers.base.losses.merged_forward import embed_columns

    loss_fn = make_loss(model, job)
    model.train()
    use_bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
    batches = fast_train.epoch_batches([s], bs, job["seed"], 0)
    ds = fast_train.DeviceTokens(s, device)
    ds.load_epoch(batches, 0)
    direct = fast_train.DirectEncoder(model)
    params = [p for p in model.parameters() if p.requires_grad]

    def make_opt(capturable=False):
        kw = {"capturable": True} if capturable else ({"fused": True} if device == "cuda" else {})
        return torch.optim.AdamW(params, lr=job["lr"], **kw)

    def enc_direct(i, fixed=0):
        off, n, widths = ds.offsets[i]
        cs = [ds.column(c, off, n, w, pad_id) for c, w in enumerate(widths)]
        w = max(x[0].shape[1] for x in cs)
        if fixed:  # the engine's rule (job pad_to): up to a multiple of `fixed`, at most the set's longest text
            w = fast_train.padded_width(w, fixed, ds.max_width)
        ids = torch.cat([torch.nn.functional.pad(x[0], (0, w - x[0].shape[1]), value=pad_id) for x in cs])
        mask = torch.cat([torch.nn.functional.pad(x[1], (0, w - x[1].shape[1])) for x in cs])
        return list(direct(ids, mask, with_tt).split(n))

    def enc_old(i):
        feats = fast_train.features(s, batches[i][1], pad_id, with_tt, extras, device)
        return embed_columns(model, feats)

    def enc_device(i):
        off, n, widths = ds.offsets[i]
        feats = []
        for name, c, w in zip(s.names, range(len(widths)), widths):
            ids, mask = ds.column(c, off, n, w, pad_id)
            f = {"input_ids": ids, "attention_mask": mask.long()}
            if with_tt:
                f["token_type_ids"] = torch.zeros_like(ids)
            f.update(extras.get(name, {}))
            feats.append(f)
        return embed_columns(model, feats)

    def run(name, enc):
        opt = make_opt()
        n_b = min(len(batches), a.steps + 5)

        def step(i):
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_bf16):
                embs = enc(i)
            loss = loss_fn.compute_loss_from_embeddings([e.float() for e in embs], None)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)

        for i in range(5):
            step(i)
        if device == "cuda":
            torch.cuda.synchronize()
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            e0.record()
        t = time.perf_counter()
        for i in range(5, n_b):
            step(i)
        host = time.perf_counter() - t
        gpu = None
        if device == "cuda":
            e1.record()
            torch.cuda.synchronize()
            gpu = e0.elapsed_time(e1) / (n_b - 5)
        wall = time.perf_counter() - t
        r = {"host_ms": round(1000 * host / (n_b - 5), 2), "wall_ms": round(1000 * wall / (n_b - 5), 2),
             "gpu_event_ms": round(gpu, 2) if gpu else None,
             "samples_per_s": round(bs * (n_b - 5) / wall, 1)}
        return r

    def run_graph():
        """One static batch shape (the widest bucket rounded to 32), the whole step as one CUDA graph."""
        opt = make_opt(capturable=True)
        w = int(ds.pos.numel())
        ncol = len(s.names)
        static_ids = torch.full((ncol * bs, w), pad_id, dtype=torch.long, device=device)
        static_mask = torch.zeros((ncol * bs, w), dtype=torch.bool, device=device)

        def fill(i):
            off, n, widths = ds.offsets[i]
            if n != bs:
                return False
            static_ids.fill_(pad_id)
            static_mask.zero_()
            for c, wc in enumerate(widths):
                ids, mask = ds.column(c, off, n, wc, pad_id)
                static_ids[c * bs:(c + 1) * bs, :wc].copy_(ids)
                static_mask[c * bs:(c + 1) * bs, :wc].copy_(mask)
            return True

        def body():
            opt.zero_grad(set_to_none=False)
            # no autocast weight cache in a captured graph (its casts must be in the graph)
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_bf16, cache_enabled=False):
                embs = list(direct(static_ids, static_mask, with_tt).split(bs))
            loss = loss_fn.compute_loss_from_embeddings([e.float() for e in embs], None)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            return loss

        fill(0)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                body()
        torch.cuda.current_stream().wait_stream(side)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            static_loss = body()
        torch.cuda.synchronize()
        idx = [i for i in range(len(batches)) if ds.offsets[i][1] == bs][: a.steps]
        t = time.perf_counter()
        for i in idx:
            fill(i)
            g.replay()
        host = time.perf_counter() - t
        torch.cuda.synchronize()
        wall = time.perf_counter() - t
        return {"host_ms": round(1000 * host / len(idx), 2), "wall_ms": round(1000 * wall / len(idx), 2),
                "samples_per_s": round(bs * len(idx) / wall, 1), "width": w, "loss": float(static_loss)}

    res["variants"] = {}
    for v in a.variants.split(","):
        try:
            if v == "old":
                r = run(v, enc_old)
            elif v == "device":
                r = run(v, enc_device)
            elif v == "direct":
                r = run(v, enc_direct)
            elif v == "fixed":
                r = run(v, lambda i: enc_direct(i, 32))
            elif v == "graph":
                if device != "cuda":
                    continue
                r = run_graph()
            else:
                continue
        except Exception as e:  # noqa: BLE001 - report and go on
            traceback.print_exc()
            r = {"error": f"{type(e).__name__}: {e}"[:300]}
        res["variants"][v] = r
        print(v, json.dumps(r), flush=True)
    if device == "cuda":
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as p:
            for i in range(3):
                with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_bf16):
                    embs = enc_old(i)
                loss = loss_fn.compute_loss_from_embeddings([e.float() for e in embs], None)
                loss.backward()
            torch.cuda.synchronize()
        ka = p.key_averages()
        print("old path, 3 forward+backward: aten ops", sum(e.count for e in ka if e.key.startswith("aten::")))
        print(ka.table(sort_by="self_cpu_time_total", row_limit=25))
    print("\nvariant   host ms/step   wall ms/step   GPU ms/step   samples/s")
    for v, r in res["variants"].items():
        g = lambda k: str(r.get(k) if r.get(k) is not None else "-")  # noqa: E731
        print(f"{v:8s} {g('host_ms'):>13} {g('wall_ms'):>14} {g('gpu_event_ms'):>13} "
              f"{str(r.get('samples_per_s', r.get('error', '-'))):>11}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
