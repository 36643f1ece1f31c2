"""Uniform weight averaging of fine-tunes of one base ("model soup", Wortsman et al. 2022).

Members start from the same pretrained weights and differ only in seed (pair sampling, batch order, dropout), so
they stay in one loss basin and their average generalizes better than a typical member. The running sum is kept
in fp32 on the CPU: a soup never holds more than one extra copy of the weights."""
from __future__ import annotations

from typing import Any


def accumulate_state(acc: dict | None, state: dict) -> dict:
    if acc is None:
        acc = {}
    for k, v in state.items():
        if v.is_floating_point():
            x = v.detach().float().cpu()
            acc[k] = x.clone() if k not in acc else acc[k].add_(x)
    return acc


def finish_average(acc: dict | None, n: int, like: dict) -> dict:
    """The average as a state dict shaped like `like` (its dtypes and devices); non-float buffers come from `like`."""
    if acc is None or n < 1:
        raise ValueError("nothing to average")
    out: dict[str, Any] = {}
    for k, v in like.items():
        out[k] = (acc[k] / n).to(dtype=v.dtype, device=v.device) if k in acc else v
    return out
