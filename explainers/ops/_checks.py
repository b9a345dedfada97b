"""Small argument checks shared by the operators.

Every check raises :class:`ValueError` with a sentence a student can act on,
instead of the shape errors torch would raise deep inside an operator.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def as_tensor(x, name: str = "input", dtype: torch.dtype | None = None) -> torch.Tensor:
    """Turn a tensor, numpy array or nested list into a tensor (no copy when possible)."""
    if isinstance(x, torch.Tensor):
        t = x
    elif isinstance(x, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(x))
    else:
        try:
            t = torch.as_tensor(x)
        except Exception as exc:  # pragma: no cover - message path
            raise ValueError(f"{name} must be a tensor, a numpy array or a list of numbers ({exc})") from None
    if dtype is not None:
        t = t.to(dtype)
    return t


def pair(v, name: str) -> tuple[int, int]:
    """``3 -> (3, 3)``; ``(2, 3) -> (2, 3)``; checks that the values are integers."""
    if isinstance(v, (tuple, list)) and len(v) == 1:
        v = v[0]
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{name} must be one integer or a pair of integers, got {v!r}")
        a, b = v
    else:
        a = b = v
    for x in (a, b):
        if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
            raise ValueError(f"{name} must be an integer (or a pair of integers), got {v!r}")
    return int(a), int(b)


def positive(v: int, name: str) -> int:
    if v < 1:
        raise ValueError(f"{name} must be at least 1, got {v}")
    return v


def non_negative(v: int, name: str) -> int:
    if v < 0:
        raise ValueError(f"{name} must be 0 or more, got {v}")
    return v


def check_boxes(boxes, name: str = "boxes") -> torch.Tensor:
    """Boxes as an (N, 4) floating tensor of (x1, y1, x2, y2) with x1 <= x2, y1 <= y2.

    An empty list gives a (0, 4) tensor.
    """
    b = as_tensor(boxes, name)
    if b.numel() == 0:
        return b.reshape(0, 4).to(torch.float32 if not b.is_floating_point() else b.dtype)
    if not b.is_floating_point():
        b = b.to(torch.float32)
    if b.dim() == 1 and b.shape[0] == 4:
        b = b[None]
    if b.dim() != 2 or b.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4) as (x1, y1, x2, y2), got {tuple(b.shape)}")
    if not torch.isfinite(b).all():
        raise ValueError(f"{name} contain NaN or infinite coordinates")
    bad = (b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])
    if bad.any():
        i = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"{name}[{i}] = {[round(float(v), 3) for v in b[i]]} has x2 < x1 or y2 < y1; "
            "boxes are (x1, y1, x2, y2) with the top-left corner first"
        )
    return b


def check_scores(scores, n: int, name: str = "scores") -> torch.Tensor:
    s = as_tensor(scores, name)
    if not s.is_floating_point():
        s = s.to(torch.float32)
    s = s.reshape(-1)
    if s.shape[0] != n:
        raise ValueError(f"there are {n} boxes but {s.shape[0]} {name}: give one score per box")
    if torch.isnan(s).any():
        raise ValueError(f"{name} contain NaN; every box needs a real score")
    return s


def check_threshold(t: float, name: str = "iou_threshold") -> float:
    t = float(t)
    if not np.isfinite(t):
        raise ValueError(f"{name} must be a finite number, got {t}")
    return t


def shape_tuple(shape: Sequence[int] | int, name: str) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)):
        shape = (int(shape),)
    out = tuple(int(s) for s in shape)
    if any(s < 1 for s in out):
        raise ValueError(f"{name} must contain sizes of at least 1, got {out}")
    return out
