"""Which device the models run on."""
from __future__ import annotations

import os

import torch

ENV = "EXPLAINERS_DEVICE"


def default_device() -> torch.device:
    """CUDA if available, else Apple MPS, else CPU; ``$EXPLAINERS_DEVICE`` overrides (e.g. ``cpu``, ``cuda:1``).

    An override naming a device this machine lacks raises ``ValueError``.
    """
    want = os.environ.get(ENV, "").strip()
    if want:
        try:
            device = torch.device(want)
        except RuntimeError:
            raise ValueError(f"{ENV}={want!r} is not a device name (try cpu, cuda, cuda:0, mps)") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"{ENV}={want!r} but this machine has no usable CUDA GPU")
        if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ValueError(f"{ENV}={want!r} but Apple MPS is not available here")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
