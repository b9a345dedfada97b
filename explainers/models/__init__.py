"""The live model zoo.

* :func:`default_device` - where models run (CUDA, MPS, CPU; ``$EXPLAINERS_DEVICE`` overrides).
* :func:`load` - a model for ``"segmentation"``, ``"detection"``, ``"instance"``, ``"patch"`` or
  ``"onestage"`` (a one-stage FCOS, bundled shapes weights only), with bundled shapes weights,
  torchvision's COCO/VOC weights, or a checkpoint file.
* :func:`get` - the same, loaded once per process and cached (what widgets use).
* :func:`wrap` - your own torchvision detection or segmentation model (e.g. fine-tuned on
  other classes) as a live model; ``load(task, weights=module)`` does the same.
* :func:`segment`, :func:`detect`, :func:`instance_segment` - full runs on any image.
* :func:`render` - an overlay picture of a result.
"""
from __future__ import annotations

import functools

import os

from .device import default_device
from .images import MAX_SIDE, MIN_SIDE, ImageError, load_image
from .live import Detector, LiveModel, OneStageDetector, PatchModel, Segmenter
from .results import DetectionResult, Result, SegmentationResult
from .traces import DetectorTrace, OneStageTrace, SegmentationTrace
from .render import render
from .shapes import CLASSES, ShapesDataset, held_out, make_scene
from .zoo import TASKS, ModelUnavailable, download, load, wrap


@functools.lru_cache(maxsize=None)
def _cached(task: str, weights: str, device: str):
    return load(task, weights, device)


def get(task: str, weights: str = "auto", device: str | None = None) -> LiveModel:
    """:func:`load`, cached per ``(task, weights, device)`` for the life of the process."""
    if not isinstance(weights, (str, os.PathLike)):
        return load(task, weights, device)          # not cacheable: load() says what is wrong
    return _cached(task, os.fspath(weights), str(device or default_device()))


def segment(image, weights: str = "auto") -> SegmentationResult:
    """Semantic segmentation of ``image`` (path, PIL, numpy or tensor)."""
    return get("segmentation", weights)(image)


def detect(image, weights: str = "auto") -> DetectionResult:
    """Object detection: boxes, classes and scores."""
    return get("detection", weights)(image)


def instance_segment(image, weights: str = "auto") -> DetectionResult:
    """Instance segmentation: boxes, classes, scores and a mask per object."""
    return get("instance", weights)(image)


__all__ = [
    "default_device", "load", "wrap", "get", "segment", "detect", "instance_segment", "render", "download",
    "TASKS", "CLASSES", "ModelUnavailable", "ImageError", "MIN_SIDE", "MAX_SIDE", "load_image",
    "LiveModel", "Detector", "OneStageDetector", "Segmenter", "PatchModel", "Result", "DetectionResult",
    "SegmentationResult",
    "DetectorTrace", "OneStageTrace", "SegmentationTrace", "ShapesDataset", "held_out", "make_scene",
]
