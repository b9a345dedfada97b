"""Which device the models run on."""
from __future__ import annotations

import os

import torch

ENV = "EXPLAINERS_DEVICE"


def resolve_device(device=None) -> torch.device:
    """``device`` as a ``torch.device`` (None: :func:`default_device`); a name this machine cannot use is
    one ValueError in words (torch's own is a RuntimeError deep in the first ``.to()``)."""
    if device is None:
        return default_device()
    return _usable(device, f"device={device!r}")


def default_device() -> torch.device:
    """CUDA if available, else Apple MPS, else CPU; ``$EXPLAINERS_DEVICE`` overrides (e.g. ``cpu``, ``cuda:1``).

    An override naming a device this machine lacks raises ``ValueError``.
    """
    want = os.environ.get(ENV, "").strip()
    if want:
        return _usable(want, f"{ENV}={want!r}")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _usable(name, said: str) -> torch.device:
    """``name`` as a ``torch.device`` this machine has, or a ValueError that starts with ``said``."""
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"{said} is not a device name (try cpu, cuda, cuda:0, mps)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{said}, but this machine has no usable CUDA GPU (use device='cpu')")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"{said}, but this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                         f"numbered from 0 (use cuda:0)")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"{said}, but Apple MPS is not available here (use device='cpu')")
    return dev


def exact_float32(device) -> None:
    """On a CUDA device, make convolutions compute in IEEE float32 (TF32 off), process-wide.

    cuDNN convolutions use TF32 by default on Ampere and later GPUs (about 10 bits of mantissa),
    so a live model's intermediate tensors would differ from the explainers' float32
    re-implementations by ~1e-3 and a page's check lines would show ✘ where nothing is wrong.
    The live models call this when they are put on a GPU; set
    ``torch.backends.cudnn.allow_tf32 = True`` afterwards to trade exactness for speed.
    (Matrix products already default to full float32: ``torch.get_float32_matmul_precision()``.)
    """
    if torch.device(device).type == "cuda":
        torch.backends.cudnn.allow_tf32 = False      # the legacy switch: conv and RNN together
