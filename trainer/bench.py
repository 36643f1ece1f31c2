"""`python -m trainer bench BUNDLE`: the reference engine ("st", SentenceTransformerTrainer) and the fast engine
on the same bundle and seed, each as a real `python -m trainer train` process, side by side.

Per run: samples/s of the training loop, the process's wall time and its phases (train_report.json "timings":
load, eval before, tokenize, train, eval after, export, int8 eval, embed), GPU utilisation sampled every 0.5 s
during the training phase (nvidia-smi, else torch.cuda.utilization()), peak GPU memory, and NDCG@10 / MRR@10 /
R@10 on the bundle's eval.jsonl (int8 NDCG@10: on the int8 sample, queries x passages in the table). `--parallel N` adds runs with N members training side by side in their own
processes (a soup of N: the machinery the sweep uses); `--job JSON` overrides job.json keys for every run (e.g.
'{"sweep": true}' times the default sweep). A run's `gpus=N` (not a job key) lets its process see only the first N
of this process's GPUs (CUDA_VISIBLE_DEVICES; 0 = CPU): 'fast:gpus=1,fast:gpus=2' with '{"sweep": true}' compares a
sweep on one GPU with its members spread over two. Ratios are against the first run (the reference).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class GpuSampler:
    """GPU utilisation (%) every `period` s in a background thread while on."""

    def __init__(self, period: float = 0.5):
        self.period, self.samples, self.on = period, [], False
        self._stop = threading.Event()
        self.how = None
        if shutil.which("nvidia-smi"):
            self.how = "nvidia-smi"
        else:
            try:
                import torch

                if torch.cuda.is_available():
                    torch.cuda.utilization()
                    self.how = "torch"
            except Exception:  # noqa: BLE001 - no GPU or no NVML: no samples
                self.how = None
        self._t = threading.Thread(target=self._loop, daemon=True)
        if self.how:
            self._t.start()

    def _read(self) -> float | None:
        try:
            if self.how == "nvidia-smi":
                r = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                   capture_output=True, text=True, timeout=5)
                vals = [float(x) for x in r.stdout.split()]
                return max(vals) if vals else None
            import torch

            return float(torch.cuda.utilization())
        except Exception:  # noqa: BLE001
            return None

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self.on:
                v = self._read()
                if v is not None:
                    self.samples.append(v)
            self._stop.wait(self.period)

    def stop(self) -> None:
        self._stop.set()


def make_variant(bundle: str, dst: str, overrides: dict) -> str:
    """A bundle that links BUNDLE's files and has job.json with `overrides`."""
    os.makedirs(dst, exist_ok=True)
    for name in os.listdir(bundle):
        if name != "job.json":
            os.symlink(os.path.abspath(os.path.join(bundle, name)), os.path.join(dst, name))
    with open(os.path.join(bundle, "job.json"), encoding="utf-8") as f:
        job = json.load(f)
    job.update(overrides)
    with open(os.path.join(dst, "job.json"), "w", encoding="utf-8") as f:
        json.dump(job, f)
    return dst


def visible_gpus() -> list[str]:
    """This process's GPUs as CUDA_VISIBLE_DEVICES entries: its own setting, else one per `nvidia-smi -L` line."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g for g in env.split(",") if g.strip()]
    if not shutil.which("nvidia-smi"):
        return []
    r = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    return [str(i) for i, line in enumerate(r.stdout.splitlines()) if line.startswith("GPU ")]


def gpu_env(gpus: int | None) -> dict | None:
    """The environment of a run limited to the first `gpus` GPUs (None: unchanged)."""
    if gpus is None:
        return None
    have = visible_gpus()
    if not isinstance(gpus, int) or gpus < 0 or gpus > len(have):
        raise SystemExit(f"bench: gpus={gpus!r}, but this process sees {len(have)} GPU(s)")
    return {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(have[:gpus])}


def run_one(name: str, bundle: str, out: str, sampler: GpuSampler, timeout: float, env: dict | None = None) -> dict:
    """One `python -m trainer train` process; GPU sampling on from the "before" evaluation's end to the "after" one's
    start (the training phase)."""
    cmd = [sys.executable, "-m", "trainer", "train", bundle, out]
    t0 = time.time()
    p = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    err_lines: list[str] = []
    t_err = threading.Thread(target=lambda: err_lines.extend(p.stderr), daemon=True)
    t_err.start()
    util: list[float] = []
    assert p.stdout is not None
    for line in p.stdout:
        try:
            ev = json.loads(line)
        except json.JSONDecodeError:
            continue
        if ev.get("event") == "eval" and ev.get("when") == "before":
            sampler.samples, sampler.on = [], True
        elif ev.get("event") == "eval" and ev.get("when") == "after" and sampler.on:
            sampler.on = False
            util = list(sampler.samples)
        if time.time() - t0 > timeout:
            p.kill()
            break
    sampler.on = False
    rc = p.wait()
    wall = time.time() - t0
    t_err.join(timeout=5)
    if rc != 0:
        sys.stderr.write("".join(err_lines[-40:]))
        return {"name": name, "rc": rc, "wall": round(wall, 2)}
    with open(os.path.join(out, "train_report.json"), encoding="utf-8") as f:
        rep = json.load(f)
    tm = rep.get("timings", {})
    return {"name": name, "rc": 0, "process_wall": round(wall, 2), "samples_per_second": rep["samples_per_second"],
            "train_seconds": rep["train_seconds"], "steps": rep["steps"], "engine": tm.get("engine"),
            "timings": tm, "gpu_util_mean": round(sum(util) / len(util), 1) if util else None,
            "gpu_util_samples": len(util), "gpu_peak_mem_mb": tm.get("gpu_peak_mem_mb"),
            "ndcg@10": rep["eval_after"]["ndcg@10"], "mrr@10": rep["eval_after"]["mrr@10"],
            "recall@10": rep["eval_after"]["recall@10"], "ndcg@10_before": rep["eval_before"]["ndcg@10"],
            "int8_ndcg@10": rep["eval_int8"]["ndcg@10"], "int8_sample": _sample_size(rep.get("int8_sample"))}


def _sample_size(s: dict | None) -> str | None:
    """"1000x5000" (queries x passages the int8 metric loss was measured on), "full 10348x35140" without sampling."""
    if not s:
        return None
    return f"{'full ' if s.get('full') else ''}{s['n_queries']}x{s['n_corpus']}"


ROWS = [("samples/s (training loop)", "samples_per_second"), ("train loop s", "train_seconds"), ("steps", "steps"),
        ("GPUs visible", "gpus"),
        ("process wall s", "process_wall"), ("  load s", "t:load"), ("  eval before s", "t:eval_before"),
        ("  train phase s", "t:train_phase"), ("    tokenize s", "t:tokenize"), ("  eval after s", "t:eval_after"),
        ("  export s", "t:export"), ("  int8 eval s", "t:eval_int8"), ("  embed s", "t:embed"),
        ("  step ms (wall)", "step:wall"), ("  step ms host: batch", "step:batch"),
        ("  step ms host: forward", "step:forward"), ("  step ms host: backward", "step:backward"),
        ("  step ms host: optimizer", "step:optimizer"), ("  pad_to (fast)", "t:pad_to"),
        ("  distinct widths (fast)", "t:distinct_widths"),
        ("GPU util % (train)", "gpu_util_mean"), ("GPU peak MiB", "gpu_peak_mem_mb"), ("NDCG@10", "ndcg@10"),
        ("MRR@10", "mrr@10"), ("R@10", "recall@10"), ("NDCG@10 before", "ndcg@10_before"),
        ("int8 NDCG@10 (on the int8 sample)", "int8_ndcg@10"), ("int8 sample queries x passages", "int8_sample")]


def table(results: list[dict]) -> str:
    def val(r: dict, key: str):
        if key.startswith("step:"):
            sm = r.get("timings", {}).get("step_ms") or {}
            if key == "step:wall" and not sm and r.get("steps"):
                return round(1000 * r["train_seconds"] / r["steps"], 2)
            return sm.get(key[5:])
        return r.get("timings", {}).get(key[2:]) if key.startswith("t:") else r.get(key)

    def fmt(v) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.4f}" if abs(v) < 1 else f"{v:.1f}"
        return str(v)

    names = [r["name"] for r in results]
    w0 = max(len(a) for a, _ in ROWS) + 2
    w = max(12, *(len(n) + 2 for n in names))
    lines = ["".ljust(w0) + "".join(n.rjust(w) for n in names) + ("   ratio vs " + names[0] if len(names) > 1 else "")]
    for label, key in ROWS:
        vals = [val(r, key) for r in results]
        line = label.ljust(w0) + "".join(fmt(v).rjust(w) for v in vals)
        base = vals[0]
        if len(vals) > 1 and isinstance(base, (int, float)) and base:
            line += "   " + " ".join(f"{v / base:.2f}x" if isinstance(v, (int, float)) else "-" for v in vals[1:])
        lines.append(line)
    return "\n".join(lines)


def parse_run(spec: str, over: dict) -> tuple[str, dict]:
    """'fast:bucket=false:lr=3e-4' -> ("fast:bucket=false:lr=3e-4", {**over, "engine": "fast", "bucket": False,
    "lr": 3e-4}): every run of one bench call shares the bundle, seed and the --job overrides; only these differ."""
    engine, *kvs = spec.split(":")
    if engine not in ("st", "fast"):
        raise SystemExit(f"bench: unknown engine {engine!r} in --engines (st or fast)")
    job = {**over, "engine": engine}
    for kv in kvs:
        k, sep, v = kv.partition("=")
        if not sep or not k:
            raise SystemExit(f"bench: expected KEY=VALUE after the engine, got {kv!r} in {spec!r}")
        try:
            job[k] = json.loads(v)
        except json.JSONDecodeError:
            job[k] = v
    return spec, job


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m trainer bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle")
    ap.add_argument("--engines", default="st,fast",
                    help="comma-separated runs: an engine (st, fast), optionally with job overrides after a colon, "
                         "e.g. 'st,fast,fast:bucket=false,fast:pad_to=0' or 'fast:bucket=false:merge_columns=true' (values are JSON, "
                         "else strings); default st,fast")
    ap.add_argument("--parallel", type=int, default=0, help="also run N members side by side (soup of N), per engine in --parallel-engines")
    ap.add_argument("--parallel-engines", default="fast")
    ap.add_argument("--job", default="{}", help="job.json overrides for every run (JSON object)")
    ap.add_argument("--keep", default="", help="keep the runs' artifacts under this directory")
    ap.add_argument("--json", default="", help="also write the results as JSON to this file")
    ap.add_argument("--timeout", type=float, default=3600)
    a = ap.parse_args(argv)
    over = json.loads(a.job)
    runs = [parse_run(e, over) for e in a.engines.split(",") if e]
    if a.parallel > 1:
        runs += [(f"{e} x{a.parallel}", {**over, "engine": e, "soup": a.parallel, "soup_concurrency": a.parallel})
                 for e in a.parallel_engines.split(",") if e]
    work = a.keep or tempfile.mkdtemp(prefix="trainer-bench-")
    os.makedirs(work, exist_ok=True)
    sampler = GpuSampler()
    results = []
    try:
        for i, (name, ov) in enumerate(runs):
            ov = dict(ov)
            env = gpu_env(ov.pop("gpus", None))
            b = make_variant(a.bundle, os.path.join(work, f"bundle{i}"), ov)
            sys.stderr.write(f"bench: {name} ...\n")
            r = run_one(name, b, os.path.join(work, f"out{i}"), sampler, a.timeout, env)
            if env is not None:
                r["gpus"] = len([g for g in env["CUDA_VISIBLE_DEVICES"].split(",") if g])
            results.append(r)
            print(json.dumps({"event": "bench_run", **r}), flush=True)
    finally:
        sampler.stop()
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(table(results), flush=True)
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    return 0 if all(r["rc"] == 0 for r in results) else 1
