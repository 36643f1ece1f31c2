"""Command line: `python -m trainer train BUNDLE OUT` | `validate BUNDLE` | `export MODEL_DIR` | `bench BUNDLE` (bench.py).

stdout: JSON lines ({"event": "progress", "step", "total", "loss", ...}); everything else goes to stderr.
Exit codes: 0 ok, 2 bad input (bundle/job/output path), 3 no GPU while gpu: 'required',
4 export/parity failure, 1 anything else. Errors end with one line `trainer: error: <reason>` on stderr.
"""
from __future__ import annotations

import argparse
import json
import os
import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["bench"]:  # its own argument parser: trainer/bench.py
        from .bench import main as bench_main

        return bench_main(args[1:])
    real_stdout = sys.stdout

    def emit(**kw) -> None:
        real_stdout.write(json.dumps(kw, default=str) + "\n")
        real_stdout.flush()

    def fail(code: int, msg: str) -> int:
        sys.stderr.write(f"trainer: error: {' '.join(str(msg).split())}\n")
        sys.stderr.flush()
        return code

    def warn(msg: str) -> None:
        sys.stderr.write(f"trainer: warning: {msg}\n")

    ap = argparse.ArgumentParser(prog="python -m trainer")
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="fine-tune BUNDLE's base model; write the artifact to OUT")
    t.add_argument("bundle")
    t.add_argument("out")
    v = sub.add_parser("validate", help="check a bundle without training")
    v.add_argument("bundle")
    x = sub.add_parser("export", help="(re)write onnx/model.onnx (+ model_quantized.onnx) of an artifact from its pytorch/ weights")
    x.add_argument("model")
    x.add_argument("--no-quantize", action="store_true")
    a = ap.parse_args(argv)
    if a.cmd == "export":
        sys.stdout = sys.stderr
        try:
            from .artifact import export_existing

            info = export_existing(a.model, quantize=not a.no_quantize)
        except Exception as e:  # noqa: BLE001
            sys.stdout = real_stdout
            return fail(4 if "parity" in str(e) else 1, f"{type(e).__name__}: {e}")
        sys.stdout = real_stdout
        emit(event="exported", model=a.model, **info)
        return 0

    from .bundle import load_bundle
    from .data import BundleError

    try:
        b = load_bundle(a.bundle)
    except BundleError as e:
        return fail(2, str(e))
    if b.info.get("unknown_positive_ids"):
        warn(f"pairs.jsonl: {b.info['unknown_positive_ids']} positive_id(s) not in corpus.jsonl; ignored")
    if a.cmd == "validate":
        emit(event="valid", pairs=len(b.anchors), queries=len(b.queries), corpus=len(b.corpus), base=b.base_path,
             job=b.job, **b.info)
        return 0
    out = os.path.abspath(a.out)
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        return fail(2, f"output exists and is not an empty directory: {a.out}")
    if not os.path.isdir(os.path.dirname(out)):
        return fail(2, f"output parent directory does not exist: {os.path.dirname(out)}")

    sys.stdout = sys.stderr  # library prints must not corrupt the JSON-lines protocol
    try:
        from .train import NoGpuError, run

        run(b, out, emit, warn)
    except BundleError as e:
        return fail(2, str(e))
    except NoGpuError as e:
        return fail(3, str(e))
    except RuntimeError as e:
        if "parity" in str(e):
            return fail(4, str(e))
        import traceback

        traceback.print_exc()
        return fail(1, f"{type(e).__name__}: {e}")
    except Exception as e:  # noqa: BLE001
        import traceback

        traceback.print_exc()
        return fail(1, f"{type(e).__name__}: {e}")
    finally:
        sys.stdout = real_stdout
    return 0
