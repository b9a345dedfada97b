"""Small argument checks shared by the operators.

Every check raises :class:`ValueError` with a sentence a student can act on,
instead of the shape errors torch would raise deep inside an operator.

Size limits
-----------
The operators build traces that are much larger than their results (every
sampling point, every source cell, a whole matrix), so a careless argument
(``roi_align_trace(f, box, 10000)``, ``unpool(x, "nearest", 100000)``) would
otherwise try to allocate gigabytes.  Each operator computes, from its
arguments alone, the size of what it is about to build and calls
:func:`check_size` *before* allocating anything, which raises ``ValueError``
naming the limit.  A call at a limit stays well under 1 GB (figures measured
on 2 cores, float32, as the growth of the peak resident size):

``MAX_ELEMENTS`` = 2**24 = 16,777,216
    elements of the largest tensor one call builds (an output, a matrix, a
    trace table): 64 MiB as float32, 128 MiB as int64.  At the limit:
    ``unpool`` 0.35-0.47 GB, ``max_pool_with_switches`` 0.45 GB, ``box_iou``
    0.29 GB, ``conv_transpose_via_matrix`` 0.19 GB, ``roi_align_trace`` 0.13 GB.
``MAX_NMS_BOXES`` = 2**17 = 131,072
    boxes given to ``nms_trace`` / ``batched_nms_trace``; their time grows as
    (kept boxes) x (boxes): 8-16 s and 75 MB for 10**5 random boxes, 47 s and
    0.1 GB for 131,072 boxes that are all kept.
``MAX_TRACE_ENTRIES`` = 2**22 = 4,194,304
    (candidate, IoU) pairs an NMS trace keeps for its animation (50 MB).  A
    budget, not an error: the first steps get their full IoU rows until it is
    spent, the later ones only the boxes they suppress (``NMSTrace.detailed_steps``).
``MAX_LOOP_STEPS`` = 2**14 = 16,384
    iterations of a Python loop (the bins of ``roi_pool_trace``: 0.4-0.5 s).
``MAX_WINDOWS`` = 2**15 = 32,768
    windows ``sliding_window_predict`` classifies, one forward pass each (the
    slowness being shown): about 12 s with the bundled patch classifier on 2
    idle cores (0.37 ms a window), 43 s measured at the limit on a busy machine.
``MAX_PIXELS`` = 2**21 = 2,097,152
    pixels of the image ``dense_predict`` runs a network on (1920 x 1080 fits;
    the live models see at most 1024 x 1024): 0.5 GB with the bundled classifier.
``MAX_LABELS`` = 2**16 = 65,536
    entries of a symbolic matrix (Python strings, ``conv_matrix_labels``).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch


class Limit(int):
    """A size limit: an ``int`` that also carries its name, for the error message."""

    name: str

    def __new__(cls, value: int, name: str):
        self = super().__new__(cls, value)
        self.name = name
        return self


MAX_ELEMENTS = Limit(2**24, "MAX_ELEMENTS")
MAX_NMS_BOXES = Limit(2**17, "MAX_NMS_BOXES")
MAX_TRACE_ENTRIES = Limit(2**22, "MAX_TRACE_ENTRIES")
MAX_LOOP_STEPS = Limit(2**14, "MAX_LOOP_STEPS")
MAX_WINDOWS = Limit(2**15, "MAX_WINDOWS")
MAX_PIXELS = Limit(2**21, "MAX_PIXELS")
MAX_LABELS = Limit(2**16, "MAX_LABELS")


def check_size(n: int, limit: int, what: str, hint: str, unit: str = "elements") -> int:
    """Raise ``ValueError`` if ``n`` (the size of ``what``, counted in ``unit``) exceeds ``limit``.

    Called with sizes computed from the arguments, before anything is allocated::

        check_size(4 * 10**8, MAX_ELEMENTS, "the unpooled output", "use a smaller scale")
        # ValueError: the unpooled output would have 400,000,000 elements, more than the
        # 16,777,216 allowed (MAX_ELEMENTS in explainers/ops/_checks.py); use a smaller scale
    """
    n = int(n)
    if n > limit:
        name = getattr(limit, "name", None)
        where = f"{name} in explainers/ops/_checks.py" if name else "see explainers/ops/_checks.py"
        raise ValueError(f"{what} would have {n:,} {unit}, more than the {limit:,} allowed ({where}); {hint}")
    return n


def prod(values) -> int:
    """Product of Python ints (no overflow, unlike a product of tensor sizes in int64)."""
    return math.prod(int(v) for v in values)


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
