"""Held-out evaluation of the bundled models (what the model cards report)."""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from .metrics import average_precision, confusion, matched_mask_iou, mean_iou, pixel_accuracy
from .nets import NUM_CLASSES, PatchClassifier, SegNet
from .shapes import held_out


def _dev(model):
    return next(model.parameters()).device


@torch.inference_mode()
def _held_out_confusion(model, n: int, target, desc: str, progress: bool):
    """Confusion matrix of the per-pixel arg-max against ``target(semantic)`` over ``n`` held-out scenes."""
    model.eval()
    data = held_out(n)
    conf = 0
    for i in tqdm(range(n), desc=desc, disable=not progress):
        img, tgt = data[i]
        out = model(img[None].to(_dev(model)))[0].argmax(0).cpu()
        conf = conf + confusion(out, target(tgt["semantic"]), NUM_CLASSES)
    return conf


def evaluate_patch(model: PatchClassifier, n: int = 200, progress: bool = False) -> dict:
    """Pixel accuracy of the patch classifier on the pixels it labels (window centres)."""
    conf = _held_out_confusion(model, n, model.centre_targets, "eval patch", progress)
    return {"pixel_accuracy": pixel_accuracy(conf), "mIoU": mean_iou(conf)[0], "scenes": n}


def evaluate_segnet(model: SegNet, n: int = 200, progress: bool = False) -> dict:
    """Mean IoU over the four classes (background included) and pixel accuracy."""
    conf = _held_out_confusion(model, n, lambda sem: sem, "eval segmentation", progress)
    miou, per = mean_iou(conf)
    return {"mIoU": miou, "per_class_IoU": per, "pixel_accuracy": pixel_accuracy(conf), "scenes": n}


def _held_out_detections(model, n: int, desc: str, progress: bool) -> tuple[list, list]:
    """The model's detections on the ``n`` held-out scenes, and their ground truth."""
    model.eval()
    data = held_out(n)
    dets, tgts = [], []
    for i in tqdm(range(n), desc=desc, disable=not progress):
        img, tgt = data[i]
        out = model([img.to(_dev(model))])[0]
        dets.append({k: v.cpu() for k, v in out.items()})
        tgts.append(tgt)
    return dets, tgts


@torch.inference_mode()
def evaluate_detector(model, n: int = 200, progress: bool = False) -> dict:
    """Box AP@0.5 (mean over the three classes) and the mask IoU of matched objects."""
    dets, tgts = _held_out_detections(model, n, "eval detector", progress)
    ap, per = average_precision(dets, tgts, [1, 2, 3], 0.5)
    return {"box_AP50": ap, "per_class_AP50": per, "mask_IoU_matched": matched_mask_iou(dets, tgts), "scenes": n}


@torch.inference_mode()
def evaluate_one_stage(model, n: int = 200, progress: bool = False) -> dict:
    """Box AP@0.5 (mean over the three classes) of a one-stage detector (no masks)."""
    dets, tgts = _held_out_detections(model, n, "eval one-stage detector", progress)
    ap, per = average_precision(dets, tgts, [1, 2, 3], 0.5)
    return {"box_AP50": ap, "per_class_AP50": per, "scenes": n}
