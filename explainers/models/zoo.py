"""Loading the live models: the bundled "shapes" models, or torchvision's COCO/VOC ones.

``load(task, weights="auto", device=None)`` returns a :class:`LiveModel` whatever
the source of the weights; every model and batch goes to one device, results come
back on the CPU.
"""
from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import torch

from .device import default_device
from .nets import PatchClassifier, SegNet, small_mask_rcnn
from .shapes import CLASSES

TASKS = ("segmentation", "detection", "instance", "patch")
WEIGHTS_DIR = Path(__file__).parent / "weights"
SHAPES_FILES = {"segmentation": "segnet.pt", "detection": "mask_rcnn.pt", "instance": "mask_rcnn.pt",
                "patch": "patch_classifier.pt"}
#: torchvision builders and weight enums behind weights="coco" (and "voc" for segmentation)
COCO = {
    "detection": ("fasterrcnn_mobilenet_v3_large_fpn", "FasterRCNN_MobileNet_V3_Large_FPN_Weights"),
    "instance": ("maskrcnn_resnet50_fpn_v2", "MaskRCNN_ResNet50_FPN_V2_Weights"),
    "segmentation": ("lraspp_mobilenet_v3_large", "LRASPP_MobileNet_V3_Large_Weights"),
}
OFFLINE_ENV = "EXPLAINERS_OFFLINE"
_notified: set[str] = set()


class ModelUnavailable(RuntimeError):
    """The requested weights cannot be had here; the message says how to get them."""


def _check_task(task: str) -> str:
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}; got {task!r}")
    return task


def _coco_enum(task: str):
    import torchvision.models as tvm
    import torchvision.models.detection as tvd
    import torchvision.models.segmentation as tvs

    builder_name, enum_name = COCO[task]
    for mod in (tvd, tvs, tvm):
        if hasattr(mod, enum_name):
            return getattr(mod, builder_name), getattr(mod, enum_name).DEFAULT
    raise ModelUnavailable(f"this torchvision has no {enum_name}")  # pragma: no cover


def coco_cache_file(task: str) -> Path:
    """Where torchvision keeps the downloaded COCO weights of ``task``."""
    _, w = _coco_enum(task)
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(w.url)


def local_weights_path(task: str) -> Path | None:
    """A checkpoint configured with ``$EXPLAINERS_WEIGHTS_<TASK>`` (e.g. ``EXPLAINERS_WEIGHTS_DETECTION``)."""
    p = os.environ.get(f"EXPLAINERS_WEIGHTS_{task.upper()}")
    return Path(p) if p else None


def _online(host: str = "download.pytorch.org", timeout: float = 3.0) -> bool:
    if os.environ.get(OFFLINE_ENV, "") not in ("", "0"):
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _build_shapes(task: str) -> torch.nn.Module:
    return {"segmentation": SegNet, "patch": PatchClassifier}.get(task, small_mask_rcnn)()


def _load_shapes(task: str) -> torch.nn.Module:
    path = WEIGHTS_DIR / SHAPES_FILES[task]
    if not path.exists():
        raise ModelUnavailable(f"the bundled {task} weights are missing ({path}); "
                               f"train them with `python -m explainers.models.train {task}`")
    model = _build_shapes(task)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model


def _load_coco(task: str, flavour: str):
    builder, w = _coco_enum(task)
    cached = coco_cache_file(task)
    if not cached.exists() and not _online():
        raise ModelUnavailable(
            f"the {flavour.upper()} weights for {task} ({cached.name}) are not in the torch cache "
            f"({cached.parent}) and download.pytorch.org cannot be reached; connect once and run "
            f"`explainers download {task}`, copy the file there, or pass a checkpoint path as weights=")
    try:
        model = builder(weights=w, progress=True)
    except Exception as exc:  # network errors arrive as many types; one line for the user
        raise ModelUnavailable(f"could not get the {flavour.upper()} weights for {task}: "
                               f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    return model, list(w.meta["categories"])


def _load_checkpoint(task: str, path: Path):
    if not path.exists():
        raise ModelUnavailable(f"no checkpoint file at {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelUnavailable(f"{path} is not a readable PyTorch checkpoint ({type(exc).__name__})") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ModelUnavailable(f"{path} does not hold a state dict")
    # which architecture? try the bundled one, then torchvision's
    candidates = [("shapes", lambda: (_build_shapes(task), list(CLASSES)))]
    if task in COCO:
        def coco_arch():
            builder, w = _coco_enum(task)
            return builder(weights=None, weights_backbone=None, num_classes=len(w.meta["categories"])), \
                list(w.meta["categories"])
        candidates.append(("coco", coco_arch))
    errors = []
    for name, make in candidates:
        model, classes = make()
        try:
            model.load_state_dict(obj, strict=True)
            return model, classes, name
        except RuntimeError as exc:
            errors.append(f"{name}: {str(exc).splitlines()[0]}")
    raise ModelUnavailable(f"{path} matches no known {task} architecture ({'; '.join(errors)})")


def load(task: str, weights: str | os.PathLike = "auto", device: torch.device | str | None = None):
    """Load the model for ``task``.

    Args:
        task: ``"segmentation"`` (semantic), ``"detection"`` (boxes), ``"instance"``
            (boxes and masks) or ``"patch"`` (the sliding-window classifier).
        weights: ``"shapes"`` (bundled, offline), ``"coco"`` (``"voc"`` for segmentation:
            torchvision's pretrained weights, downloaded with a progress bar into
            torch's cache), ``"auto"`` (COCO when already cached or configured with
            ``$EXPLAINERS_WEIGHTS_<TASK>``, else shapes with a one-line notice), or a
            path to a checkpoint (a state dict of either architecture).
        device: default :func:`explainers.models.default_device`.

    Returns:
        :class:`explainers.models.live.LiveModel`.
    """
    from .live import make_live_model

    task = _check_task(task)
    if not isinstance(weights, (str, os.PathLike)) or not str(weights).strip():
        got = repr(weights) if weights is None or isinstance(weights, (bool, int, float, str)) else \
            f"a {type(weights).__name__}"
        raise ValueError(f'weights must be "auto", "shapes", "coco" ("voc" for segmentation) or the path of a '
                         f'checkpoint file; got {got}')
    device = torch.device(device) if device is not None else default_device()
    notice = ""
    if isinstance(weights, (str, os.PathLike)) and str(weights) == "auto":
        local = local_weights_path(task)
        if task != "patch" and local is not None:
            weights = local
        elif task != "patch" and coco_cache_file(task).exists():
            weights = "coco"
        else:
            weights = "shapes"
            if task != "patch":
                notice = (f"using the bundled shapes model for {task}: COCO weights are not cached; "
                          f"run `explainers download {task}` once online to get them")
                if task not in _notified:
                    _notified.add(task)
                    print(notice, file=sys.stderr)
    if str(weights) == "shapes":
        model, classes, weights_name = _load_shapes(task), list(CLASSES), "shapes"
    elif str(weights) in ("coco", "voc"):
        if task == "patch":
            raise ValueError("the patch classifier only exists as bundled shapes weights")
        if str(weights) == "voc" and task != "segmentation":
            raise ValueError('weights="voc" exists for semantic segmentation only; use "coco"')
        model, classes = _load_coco(task, str(weights))
        weights_name = str(weights)
    else:
        model, classes, arch = _load_checkpoint(task, Path(weights))
        weights_name = f"checkpoint:{Path(weights).name}" + ("" if arch == "coco" else " (shapes architecture)")
    return make_live_model(task, model, classes, weights_name, device, notice)


def download(task: str) -> Path:
    """Fetch the COCO weights of ``task`` into torch's cache (with a progress bar)."""
    load(task, "coco", device="cpu")
    return coco_cache_file(task)
