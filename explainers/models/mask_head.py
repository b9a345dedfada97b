"""What Mask R-CNN adds to Faster R-CNN, for one detection: the mask branch's tensors.

For the model's own final detections (boxes in the model's input frame), ``roi_heads`` runs
``mask_roi_pool`` (RoI Align, ``(D, C, 14, 14)``), ``mask_head`` (four 3x3 convolutions,
``(D, C, 14, 14)``) and ``mask_predictor`` (a 2x transposed convolution and a 1x1 convolution:
``(D, K, 28, 28)`` logits, one map per class). Its postprocessing then takes the sigmoid of the
predicted class' map and pastes it into the box on the original image (``paste_masks_in_image``).

:func:`mask_head_trace` captures those tensors with forward hooks (cached per model and image);
:func:`detection_view` gives everything the mask-head page draws for detection ``i``, with the
pasting re-done by :mod:`explainers.ops.masks` and compared with torchvision and with the
model's own output mask. :func:`lecture_view` is the same computation on a synthetic example.
"""
from __future__ import annotations

import hashlib
import math
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass

import torch

from ..ops import roi_align_trace
from ..ops.masks import MaskPasteTrace, mask_probability, paste_mask_trace
from ..ops.masks_reference import reference_mask_probability, reference_paste_mask
from ..ops.reference import reference_roi_align
from .images import load_image

#: traces kept per process (the page recomputes nothing when only the detection or threshold moves)
_CACHE_SIZE = 4
_cache: OrderedDict = OrderedDict()


@dataclass
class MaskHeadTrace:
    """The mask branch of one Mask R-CNN run on one image (``D`` detections, ``K`` classes).

    Attributes:
        image: ``(3, H, W)`` the original image in [0, 1].
        classes: the class names (index 0 is the background).
        boxes: ``(D, 4)`` the model's output boxes on the original image (what it pastes into).
        input_boxes: ``(D, 4)`` the same detections in the model's input frame (what
            ``mask_roi_pool`` pooled: captured from its input).
        labels: ``(D,)`` int64 predicted classes; ``scores``: ``(D,)``.
        roi_features: ``(D, C, 14, 14)`` ``mask_roi_pool``'s output (RoI Align).
        head_features: ``(D, C, 14, 14)`` ``mask_head``'s output (after its convolutions).
        mask_logits: ``(D, K, 28, 28)`` ``mask_predictor``'s output.
        masks: ``(D, H, W)`` the model's own output masks (probabilities, already pasted).
        input_size: ``(h, w)`` of the model's input (after its resize).
        roi_output_size: ``(14, 14)``; roi_sampling_ratio; roi_scales: the mask pooler's
            spatial scales; roi_featmap_names: the maps it pools from.
        seconds: the forward pass's time.
    """

    image: torch.Tensor
    classes: list
    boxes: torch.Tensor
    input_boxes: torch.Tensor
    labels: torch.Tensor
    scores: torch.Tensor
    roi_features: torch.Tensor
    head_features: torch.Tensor
    mask_logits: torch.Tensor
    masks: torch.Tensor
    input_size: tuple
    roi_output_size: tuple
    roi_sampling_ratio: int
    roi_scales: tuple
    roi_featmap_names: tuple
    seconds: float

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def name(self, i: int) -> str:
        k = int(self.labels[i])
        return self.classes[k] if k < len(self.classes) else str(k)


def _mask_model(model):
    from . import get
    from .live import Detector

    model = model or get("instance", "shapes")
    if not isinstance(model, Detector) or not model.has_masks:
        what = getattr(model, "task", type(model).__name__)
        raise ValueError(f"the mask head page needs a Mask R-CNN (a detector with a mask branch); this is a {what} "
                         "model without one")
    return model


def _key(model, img) -> tuple:
    """The model (by identity), the state of its weights (each tensor's storage and its version
    counter, which every in-place change such as an optimizer step or ``load_state_dict`` bumps),
    the device, and the image's pixels: a cached trace is reused only for the same weights."""
    digest = hashlib.sha1(img.tensor.numpy().tobytes()).hexdigest()
    m = model.module
    weights = tuple((t.data_ptr(), t._version) for t in (*m.parameters(), *m.buffers()))
    return id(m), weights, str(model.device), tuple(img.tensor.shape), digest


def mask_head_trace(model, image) -> MaskHeadTrace:
    """Run ``model`` (None: the bundled shapes Mask R-CNN) once on ``image`` with forward hooks on
    ``roi_heads.mask_roi_pool``, ``mask_head`` and ``mask_predictor``; cached per model and image."""
    model = _mask_model(model)
    img = load_image(image)
    key = _key(model, img)
    if key in _cache and _cache[key][0]() is model.module:      # not another model at a reused address
        _cache.move_to_end(key)
        return _cache[key][1]

    def run(module, device, t):
        rh, cap = module.roi_heads, {}

        def pool_hook(mod, inp, out):
            cap["input_boxes"], cap["roi"] = inp[1][0], out
        handles = [rh.mask_roi_pool.register_forward_hook(pool_hook),
                   rh.mask_head.register_forward_hook(lambda mod, inp, out: cap.__setitem__("head", out)),
                   rh.mask_predictor.register_forward_hook(lambda mod, inp, out: cap.__setitem__("logits", out)),
                   module.transform.register_forward_hook(lambda mod, inp, out: cap.__setitem__("size",
                                                                                             out[0].image_sizes[0]))]
        try:
            t0 = time.perf_counter()
            with torch.inference_mode():
                out = module([t.to(device)])[0]
            seconds = time.perf_counter() - t0
        finally:
            for h in handles:
                h.remove()
        return cap, out, seconds

    (cap, out, seconds), _ = model._run(run, img.tensor)
    cpu = lambda x: x.detach().cpu()                                    # noqa: E731
    pool = model.module.roi_heads.mask_roi_pool
    tr = MaskHeadTrace(
        image=img.tensor, classes=list(model.classes), boxes=cpu(out["boxes"]), input_boxes=cpu(cap["input_boxes"]),
        labels=cpu(out["labels"]), scores=cpu(out["scores"]), roi_features=cpu(cap["roi"]),
        head_features=cpu(cap["head"]), mask_logits=cpu(cap["logits"]), masks=cpu(out["masks"])[:, 0].clone(),
        input_size=tuple(int(v) for v in cap["size"]), roi_output_size=tuple(int(v) for v in pool.output_size),
        roi_sampling_ratio=int(pool.sampling_ratio), roi_scales=tuple(float(s) for s in (pool.scales or ())),
        roi_featmap_names=tuple(pool.featmap_names), seconds=seconds)
    _cache[key] = (weakref.ref(model.module), tr)
    while len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)
    return tr


@dataclass
class MaskHeadView:
    """Everything the mask-head page draws for one detection.

    Attributes:
        index: the detection; label, name, score: its class and score (score None in lecture).
        box: ``(4,)`` on the image (what the mask is pasted into); input_box: ``(4,)`` in the
            frame the RoI Align features were pooled from (the model's input; the image in lecture).
        features: ``(C, 14, 14)`` RoI Align features of the box; channel: the one drawn (the
            channel with the largest sum of |values|: the most signal); feature: ``(14, 14)`` it.
        logits: ``(K, 28, 28)`` the mask logits of every class; shown: the class indices drawn as
            small multiples (all of them up to 4, else the predicted one and the 3 strongest others).
        probability: ``(28, 28)`` sigmoid of the predicted class' logits.
        paste: :class:`MaskPasteTrace` of ``probability`` into ``box`` (padded mask, expanded box,
            resized mask, pasted probabilities, binary mask at ``threshold``).
        reference: ``(H, W)`` torchvision's ``paste_masks_in_image`` of the same mask and box.
        model_mask: ``(H, W)`` the model's own output mask (probabilities), None in lecture.
        reference_diff: max |pasted - reference|; model_diff: max |pasted - model_mask| (None in
            lecture); model_binary_diff: pixels where ``pasted > t`` and ``model_mask > t`` differ.
        probability_diff: max |probability - torchvision's maskrcnn_inference| of the same logits.
        features_diff: lecture (features computed by :func:`explainers.ops.roi_align_trace`): max
            |features - torchvision.ops.roi_align| of the same box; None live (the features drawn
            are the model's own RoI Align output, captured by a hook).
    """

    index: int
    label: int
    name: str
    score: float | None
    box: torch.Tensor
    input_box: torch.Tensor
    features: torch.Tensor
    channel: int
    feature: torch.Tensor
    logits: torch.Tensor
    shown: list
    probability: torch.Tensor
    paste: MaskPasteTrace
    reference: torch.Tensor
    model_mask: torch.Tensor | None
    reference_diff: float
    model_diff: float | None
    model_binary_diff: int | None
    probability_diff: float = 0.0
    features_diff: float | None = None


def strongest_channel(features: torch.Tensor) -> int:
    """The channel of ``(C, h, w)`` with the largest sum of absolute values."""
    return int(features.abs().flatten(1).sum(1).argmax())


def shown_classes(logits: torch.Tensor, label: int, most: int = 4) -> list[int]:
    """Which class maps to draw: all up to ``most``, else the predicted one and the strongest others."""
    K = logits.shape[0]
    if K <= most:
        return list(range(K))
    order = [int(k) for k in logits.flatten(1).max(1).values.argsort(descending=True) if int(k) != label]
    return sorted([label] + order[: most - 1])


def _view(i, label, name, score, box, input_box, features, logits, image_size, threshold, model_mask,
          features_diff=None):
    prob = mask_probability(logits, label)
    prob_diff = float((prob - reference_mask_probability(logits[None], torch.tensor([int(label)]))[0]).abs().max())
    paste = paste_mask_trace(prob, box, image_size, padding=1, threshold=threshold)
    ref = reference_paste_mask(prob, box, image_size, padding=1)
    ch = strongest_channel(features)
    model_diff = binary = None
    if model_mask is not None:
        model_diff = float((paste.pasted - model_mask).abs().max()) if model_mask.numel() else 0.0
        binary = int((paste.binary != (model_mask > threshold)).sum())
    return MaskHeadView(i, int(label), name, score, box, input_box, features, ch, features[ch], logits,
                        shown_classes(logits, int(label)), prob, paste, ref, model_mask,
                        float((paste.pasted - ref).abs().max()) if ref.numel() else 0.0, model_diff, binary,
                        prob_diff, features_diff)


def detection_view(trace: MaskHeadTrace, i: int, threshold: float = 0.5) -> MaskHeadView:
    """What the page draws for detection ``i`` of ``trace``."""
    if len(trace) == 0:
        raise ValueError("the model found no object in this image, so there is no mask to show; try another image")
    if not 0 <= int(i) < len(trace):
        raise ValueError(f"there are {len(trace)} detections (0 .. {len(trace) - 1}); detection {i} does not exist")
    i = int(i)
    H, W = trace.image.shape[-2:]
    return _view(i, int(trace.labels[i]), trace.name(i), float(trace.scores[i]), trace.boxes[i],
                 trace.input_boxes[i], trace.roi_features[i], trace.mask_logits[i], (H, W), threshold,
                 trace.masks[i])


# ----------------------------------------------------------------------------- lecture
#: the lecture's scene (a shapes image) and its classes
LECTURE_SEED = 11
LECTURE_CLASSES = ["background", "circle", "square", "triangle"]


def shape_logits(kind: str, size: int = 28, gain: float = 12.0) -> torch.Tensor:
    """``(size, size)``: a synthetic logit map of a shape centred in the box: positive inside,
    negative outside, ``gain`` per box width from the edge. ``kind``: circle, square, triangle."""
    c = (torch.arange(size, dtype=torch.float32) + 0.5) / size - 0.5         # cell centres in [-0.5, 0.5]
    y, x = c[:, None].expand(size, size), c[None, :].expand(size, size)
    if kind == "circle":
        inside = 0.45 - torch.sqrt(x * x + y * y)
    elif kind == "square":
        inside = 0.40 - torch.maximum(x.abs(), y.abs())
    elif kind == "triangle":                     # apex at the top, base at the bottom
        s = math.sqrt(5.0)
        inside = torch.minimum(0.45 - y, torch.minimum((2 * x + y + 0.45) / s, (-2 * x + y + 0.45) / s))
    else:
        raise ValueError(f"kind must be circle, square or triangle, got {kind!r}")
    return gain * inside


def lecture_trace() -> dict:
    """The lecture's example: a shapes scene, its objects' true boxes and classes as "detections",
    the image's own RGB channels as the feature map (RoI Align at 14 x 14 by :mod:`explainers.ops`),
    and hand-made 28 x 28 logits: every class' map shows its shape, strongest (gain 12) for the
    object's class, weak (gain 3, shifted down by 4) for the others, the background the opposite
    of the object's class."""
    from .shapes import make_scene

    sc = make_scene(LECTURE_SEED, size=(160, 224), max_objects=4)
    image = torch.from_numpy(sc.image).permute(2, 0, 1).float() / 255
    order = torch.from_numpy(sc.labels).long().argsort(stable=True)       # circle, square, triangle
    boxes = torch.from_numpy(sc.boxes).float()[order]
    labels = torch.from_numpy(sc.labels).long()[order]
    kinds = LECTURE_CLASSES[1:]
    logits = []
    for lab in labels.tolist():
        maps = [shape_logits(k, gain=12.0 if j + 1 == lab else 3.0) - (0.0 if j + 1 == lab else 4.0)
                for j, k in enumerate(kinds)]
        logits.append(torch.stack([-maps[lab - 1]] + maps))
    return dict(image=image, boxes=boxes, labels=labels, logits=torch.stack(logits) if logits else
                torch.zeros(0, 4, 28, 28), classes=LECTURE_CLASSES)


def lecture_view(example: dict, i: int, threshold: float = 0.5) -> MaskHeadView:
    """What the page draws for object ``i`` of :func:`lecture_trace`."""
    n = len(example["boxes"])
    if not 0 <= int(i) < n:
        raise ValueError(f"the lecture scene has {n} objects (0 .. {n - 1}); object {i} does not exist")
    i = int(i)
    img, box, lab = example["image"], example["boxes"][i], int(example["labels"][i])
    features, _ = roi_align_trace(img, box, 14, 1.0, 2, False)
    f_diff = float((features - reference_roi_align(img, box, 14, 1.0, 2, False)).abs().max())
    return _view(i, lab, example["classes"][lab], None, box, box, features, example["logits"][i],
                 tuple(img.shape[-2:]), threshold, None, f_diff)
