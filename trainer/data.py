"""JSONL helpers shared by the trainer and the device scripts (plain Python, no torch)."""
from __future__ import annotations

import gzip
import json
import os
from typing import Iterator


class BundleError(Exception):
    """Bad training bundle; the message is the one-line reason printed on stderr."""


def job_option(raw, name: str, defaults: dict, known=None) -> dict | None:
    """A job.json option that is false/null (off), true (the defaults) or an object of known keys over the
    defaults. Raises BundleError with a one-line reason."""
    if raw is None or raw is False:
        return None
    if raw is True:
        raw = {}
    if not isinstance(raw, dict):
        raise BundleError(f"job.json: '{name}' must be a boolean or an object")
    known = list(defaults if known is None else known)
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise BundleError(f"job.json: unknown '{name}' key {unknown[0]!r} (known: {', '.join(known)})")
    spec = dict(defaults)
    spec.update(raw)
    return spec


def open_text(path: str):
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, "r", encoding="utf-8")


def resolve(path: str) -> str:
    """path or path + '.gz' (device data under .carry is gzipped)."""
    if os.path.exists(path):
        return path
    if os.path.exists(path + ".gz"):
        return path + ".gz"
    raise BundleError(f"missing file: {path}")


def read_jsonl(path: str) -> Iterator[tuple[int, dict]]:
    """Yields (line_number, object); blank lines are skipped; malformed lines raise BundleError."""
    name = os.path.basename(path)
    with open_text(path) as f:
        for i, line in enumerate(f, 1):
            s = line.strip()
            if not s:
                continue
            try:
                obj = json.loads(s)
            except json.JSONDecodeError as e:
                raise BundleError(f"{name}:{i}: malformed JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise BundleError(f"{name}:{i}: expected a JSON object")
            yield i, obj


def load_jsonl(path: str) -> list[dict]:
    return [o for _, o in read_jsonl(resolve(path))]
