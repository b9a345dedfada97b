"""Loading the live models: the bundled "shapes" models, or torchvision's COCO/VOC ones.

``load(task, weights="auto", device=None)`` returns a :class:`LiveModel` whatever
the source of the weights; every model and batch goes to one device, results come
back on the CPU.  ``wrap(module)`` (or ``load(task, weights=module)``) does the same for
a model you built or fine-tuned yourself ("bring your own model").
"""
from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import torch

from .device import resolve_device
from .nets import PatchClassifier, SegNet, small_fcos, small_mask_rcnn
from .shapes import CLASSES

TASKS = ("segmentation", "detection", "instance", "patch", "onestage")
WEIGHTS_DIR = Path(__file__).parent / "weights"
SHAPES_FILES = {"segmentation": "segnet.pt", "detection": "mask_rcnn.pt", "instance": "mask_rcnn.pt",
                "patch": "patch_classifier.pt", "onestage": "fcos.pt"}
#: tasks that exist only as bundled shapes weights (no COCO weights behind "auto")
SHAPES_ONLY = ("patch", "onestage")
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
    return {"segmentation": SegNet, "patch": PatchClassifier, "onestage": small_fcos}.get(task, small_mask_rcnn)()


def _load_shapes(task: str) -> torch.nn.Module:
    path = WEIGHTS_DIR / SHAPES_FILES[task]
    if not path.exists():
        raise ModelUnavailable(f"the bundled {task} weights are missing ({path}); "
                               f"train them with `python -m explainers.models.train {task}`")
    model = _build_shapes(task)
    # memory-mapped and assigned, not copied: the weights' pages are the file's pages, which
    # every kernel on the machine shares (a class runs one kernel per student)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True, mmap=True), assign=True)
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
        raise ModelUnavailable(f"no checkpoint file at {path} (weights= takes \"auto\", \"shapes\", \"coco\" "
                               f"(\"voc\" for segmentation), a checkpoint's path or a torch.nn.Module)")
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


SUPPORTED = ("torchvision detection models (Faster R-CNN with or without FPN, Mask R-CNN, Keypoint R-CNN, "
             "RetinaNet, FCOS, SSD, SSDlite) and segmentation models (FCN, DeepLabV3, LR-ASPP)")


def _module_kind(module: torch.nn.Module) -> tuple[str, tuple[str, ...]]:
    """``(default task, tasks it can serve)`` for a supported module, or ``("", ())``."""
    from torchvision.models.detection.fcos import FCOS
    from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
    from torchvision.models.detection.retinanet import RetinaNet
    from torchvision.models.detection.ssd import SSD
    from torchvision.models.segmentation import LRASPP
    from torchvision.models.segmentation._utils import _SimpleSegmentationModel

    if isinstance(module, GeneralizedRCNN):
        rh = module.roi_heads
        if all(getattr(rh, n, None) is not None for n in ("mask_roi_pool", "mask_head", "mask_predictor")):
            return "instance", ("instance", "detection")
        return "detection", ("detection",)
    if isinstance(module, (RetinaNet, FCOS, SSD)):
        return "detection", ("detection",)
    if isinstance(module, (_SimpleSegmentationModel, LRASPP, SegNet)):
        return "segmentation", ("segmentation",)
    if isinstance(module, PatchClassifier):
        return "patch", ("patch",)
    return "", ()


def _last_conv_out(module: torch.nn.Module | None) -> int | None:
    convs = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)] if module is not None else []
    return convs[-1].out_channels if convs else None


def num_classes(module: torch.nn.Module) -> int | None:
    """How many classes (background included) ``module`` predicts, read from its predictor or classifier.

    Faster/Mask/Keypoint R-CNN: ``roi_heads.box_predictor.cls_score``; RetinaNet, FCOS:
    ``head.classification_head.num_classes``; SSD(lite): ``head.classification_head.num_columns``;
    segmentation: the last convolution of ``classifier``. None when it cannot be read (a custom head).
    """
    from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN

    if isinstance(module, GeneralizedRCNN):
        cls = getattr(module.roi_heads.box_predictor, "cls_score", None)
        return cls.out_features if isinstance(cls, torch.nn.Linear) else None
    head = getattr(getattr(module, "head", None), "classification_head", None)
    if head is not None:
        n = getattr(head, "num_classes", None) or getattr(head, "num_columns", None)
        return int(n) if n else None
    if isinstance(module, PatchClassifier):
        return _last_conv_out(module)
    return _last_conv_out(getattr(module, "classifier", None))


def default_classes(n: int, module: torch.nn.Module | None = None) -> list[str]:
    """Class names for a model with ``n`` classes: COCO's for 91, Pascal VOC's for 21, the shapes
    names for our own SegNet / patch classifier with 4, else ``["background", "class 1", ...]``."""
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights
    from torchvision.models.segmentation import FCN_ResNet50_Weights

    if n == 91:
        return list(FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"])
    if n == 21:
        return list(FCN_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1.meta["categories"])
    if n == len(CLASSES) and isinstance(module, (SegNet, PatchClassifier)):
        return list(CLASSES)
    return ["background"] + [f"class {i}" for i in range(1, n)]


def wrap(module: torch.nn.Module, classes: list[str] | None = None, task: str | None = None,
         device: torch.device | str | None = None):
    """Wrap your own model - e.g. one you fine-tuned on other classes - as a live model.

    Args:
        module: a torchvision detection model (``FasterRCNN`` with or without FPN, ``MaskRCNN``,
            ``KeypointRCNN``, ``RetinaNet``, ``FCOS``, ``SSD`` / SSDlite) or segmentation model
            (``FCN``, ``DeepLabV3``, ``LRASPP``), or one of the bundled architectures.  It is put
            in eval mode and moved to ``device`` (in place).
        classes: class names, index 0 the background, one per class the model predicts;
            default: COCO names for 91 classes, Pascal VOC for 21, else ``"class 1"``, ... sized
            from the model's predictor / classifier.
        task: ``"detection"``, ``"instance"`` (needs a mask head) or ``"segmentation"``; default
            inferred (``"instance"`` when the model has a mask head).
        device: default :func:`explainers.models.default_device`.

    Returns:
        :class:`~explainers.models.live.Detector` (two-stage), :class:`~explainers.models.live.OneStageDetector`
        (RetinaNet, FCOS, SSD) or :class:`~explainers.models.live.Segmenter`; its ``weights`` reads
        ``"module:<class name>"``.

    Raises:
        ValueError: (one line) for an unsupported module, a task it cannot serve, or class names
            that do not match the model.
    """
    from .live import make_live_model

    if not isinstance(module, torch.nn.Module):
        hint = (f" (the name {module!r}: pass the model itself, or explainers.models.load('detection'))"
                if isinstance(module, str) else "")
        raise ValueError(f"the model must be one of the {SUPPORTED}; got a {type(module).__name__}{hint}")
    kind, serves = _module_kind(module)
    if not kind:
        origin = type(module).__module__
        classifier = origin.startswith("torchvision.models") and ".detection" not in origin and \
            ".segmentation" not in origin and ".video" not in origin and ".optical_flow" not in origin
        why = (f": a {type(module).__name__} is an image classifier, one label for the whole image, with no "
               "boxes or masks to draw" if classifier else f"; got a {type(module).__name__}")
        raise ValueError(f"the model must be one of the {SUPPORTED}{why}")
    if task is None:
        task = kind
    _check_task(task)
    if task not in serves:
        why = " (it has no mask head)" if task == "instance" and "detection" in serves else ""
        raise ValueError(f"a {type(module).__name__} cannot do {task!r}{why}; it can do "
                         f"{' or '.join(repr(t) for t in serves)}")
    n = num_classes(module)
    if classes is None:
        if n is None:
            raise ValueError(f"cannot read the number of classes of this {type(module).__name__}'s head; "
                             "pass classes=[...] (index 0 the background)")
        classes = default_classes(n, module)
    else:
        from collections.abc import Iterable

        if isinstance(classes, str) or not isinstance(classes, Iterable) or not all(isinstance(c, str)
                                                                                     for c in classes):
            raise ValueError("classes must be a list of class names (index 0 the background)")
        classes = list(classes)
        if n is not None and len(classes) != n:
            raise ValueError(f"classes has {len(classes)} names but the model predicts {n} classes "
                             "(index 0 is the background)")
    device = resolve_device(device)
    return make_live_model(task, module, classes, f"module:{type(module).__name__}", device)


def load(task: str, weights: str | os.PathLike = "auto", device: torch.device | str | None = None):
    """Load the model for ``task``.

    Args:
        task: ``"segmentation"`` (semantic), ``"detection"`` (boxes), ``"instance"``
            (boxes and masks), ``"patch"`` (the sliding-window classifier) or ``"onestage"``
            (the bundled one-stage FCOS detector; shapes weights only).
        weights: ``"shapes"`` (bundled, offline), ``"coco"`` (``"voc"`` for segmentation:
            torchvision's pretrained weights, downloaded with a progress bar into
            torch's cache), ``"auto"`` (COCO when already cached or configured with
            ``$EXPLAINERS_WEIGHTS_<TASK>``, else shapes with a one-line notice), or a
            path to a checkpoint (a state dict of either architecture), or a ``torch.nn.Module``
            (your own model: the same as :func:`wrap` with ``task``).
        device: default :func:`explainers.models.default_device`.

    Returns:
        :class:`explainers.models.live.LiveModel`.
    """
    from .live import make_live_model

    task = _check_task(task)
    if isinstance(weights, torch.nn.Module):
        return wrap(weights, task=task, device=device)
    if not isinstance(weights, (str, os.PathLike)) or not str(weights).strip():
        got = repr(weights) if weights is None or isinstance(weights, (bool, int, float, str)) else \
            f"a {type(weights).__name__}"
        raise ValueError(f'weights must be "auto", "shapes", "coco" ("voc" for segmentation) or the path of a '
                         f'checkpoint file, or a torch.nn.Module; got {got}')
    device = resolve_device(device)
    notice = ""
    if isinstance(weights, (str, os.PathLike)) and str(weights) == "auto":
        local = local_weights_path(task)
        if task not in SHAPES_ONLY and local is not None:
            weights = local
        elif task not in SHAPES_ONLY and coco_cache_file(task).exists():
            weights = "coco"
        else:
            weights = "shapes"
            if task not in SHAPES_ONLY:
                notice = (f"using the bundled shapes model for {task}: COCO weights are not cached; "
                          f"run `explainers download {task}` once online to get them")
                if task not in _notified:
                    _notified.add(task)
                    print(notice, file=sys.stderr)
    if str(weights) == "shapes":
        model, classes, weights_name = _load_shapes(task), list(CLASSES), "shapes"
    elif str(weights) in ("coco", "voc"):
        if task in SHAPES_ONLY:
            what = "the patch classifier" if task == "patch" else "the one-stage detector (FCOS)"
            raise ValueError(f"{what} only exists as bundled shapes weights")
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
