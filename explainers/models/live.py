"""The live model objects: run on any image, capture every internal.

Three wrappers share one small interface (``task``, ``classes``, ``source``,
``device``, ``__call__(image)``, ``trace(image)``):

* :class:`Detector` - any torchvision ``GeneralizedRCNN`` (our shapes Mask R-CNN,
  Faster R-CNN, Mask R-CNN); ``trace`` records anchors, objectness, deltas,
  proposals before/after the RPN's NMS, pooled RoI features, per-class boxes before
  the final NMS, detections and masks, with forward hooks only.
* :class:`Segmenter` - our :class:`SegNet` (pooling switches, learned transposed
  convolution) or a torchvision segmentation model (``out`` logits).
* :class:`PatchModel` - the sliding-window classifier.

All results come back on the CPU.  On CUDA, an out-of-memory error retries the call
once on the CPU and says so in the result's ``note``.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from functools import cached_property

import torch
import torch.nn.functional as F
from torchvision.models.detection.rpn import concat_box_prediction_layers
from torchvision.ops import boxes as box_ops

from ..ops import batched_nms_trace
from .images import LoadedImage, load_image
from .nets import PatchClassifier, SegNet


#: ``RoIHeads.postprocess_detections`` removes boxes smaller than this; a literal in torchvision's
#: source (``remove_small_boxes(boxes, min_size=1e-2)``), not a module attribute
ROI_HEADS_MIN_SIZE = 1e-2


def _private(obj, name: str, owner: str):
    """A private torchvision method the trace relies on, or a clear error if this version lacks it."""
    import torchvision

    fn = getattr(obj, name, None)
    if fn is None:
        raise RuntimeError(f"torchvision {torchvision.__version__}'s {owner} has no {name}(): the detector trace "
                           "follows torchvision 0.16 to 0.29; please report this version")
    return fn


# ----------------------------------------------------------------------------- results
@dataclass
class DetectionResult:
    """Boxes (and masks) on the original image.

    ``boxes (N, 4)``, ``scores (N,)``, ``labels (N,)``, ``names`` (class name per box),
    ``masks (N, H, W)`` float in [0, 1] or None, ``image (3, H, W)``.
    """

    image: torch.Tensor
    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    names: list[str]
    masks: torch.Tensor | None
    classes: list[str]
    task: str
    source: str
    device: str
    seconds: float
    note: str = ""

    def filter(self, score_threshold: float) -> "DetectionResult":
        keep = self.scores >= score_threshold
        return DetectionResult(self.image, self.boxes[keep], self.scores[keep], self.labels[keep],
                               [n for n, k in zip(self.names, keep.tolist()) if k],
                               None if self.masks is None else self.masks[keep], self.classes, self.task,
                               self.source, self.device, self.seconds, self.note)


@dataclass
class SegmentationResult:
    """Per-pixel classes on the original image: ``labels (H, W)``, ``probabilities (K, H, W)``."""

    image: torch.Tensor
    labels: torch.Tensor
    probabilities: torch.Tensor
    classes: list[str]
    task: str
    source: str
    device: str
    seconds: float
    note: str = ""

    @property
    def present(self) -> list[str]:
        return [self.classes[i] for i in torch.unique(self.labels).tolist() if i < len(self.classes)]


@dataclass
class DetectorTrace:
    """The internals of one detector run, on the image *as the model saw it*.

    Coordinates are in the model's input frame (after its resize); shape notes:
    ``A`` anchors, ``R`` proposals, ``C`` classes, ``D`` detections.  What the forward
    pass produced is captured as it ran (forward hooks); what is *derived* from it
    (flattened objectness, decoded proposals before the RPN's NMS, per-class boxes
    before the final NMS) is computed on first access, so tracing costs what running
    costs.

    Attributes:
        image: original ``(3, H, W)``; ``input_tensor``: the padded, normalised batch
            ``(1, 3, hp, wp)``; ``input_image``: ``(3, h, w)`` resized, before normalisation.
        scale: ``(h / H, w / W)``.
        features: ``{name: (1, C_f, Hf, Wf)}`` backbone feature maps.
        anchors: ``(A, 4)``; ``anchors_per_level``: counts; ``objectness``: ``(A,)`` logits;
            ``deltas``: ``(A, 4)`` RPN box corrections (``(dx, dy, dw, dh)``, weights 1).
        proposals_pre_nms / proposal_scores_pre_nms / proposal_levels_pre_nms: the top
            ``pre_nms_top_n`` decoded, clipped proposals with their objectness probability.
        proposals: ``(R, 4)`` after the RPN's NMS (what the RoI heads received).
        box_features: ``(R, C_f, 7, 7)`` pooled RoI features (RoI Align).
        class_logits: ``(R, C)``; ``box_regression``: ``(R, 4 C)``.
        boxes_pre_nms / scores_pre_nms / labels_pre_nms: per-class candidate detections
            before the final NMS (after the score threshold and small-box removal).
        nms_threshold: the final NMS IoU threshold; ``detections_per_img``: the cap.
        detections: the plain model output, on the original image.
        mask_logits: ``(D, C, 28, 28)`` or None.
    """

    image: torch.Tensor
    input_tensor: torch.Tensor
    scale: tuple[float, float]
    features: dict
    anchors: torch.Tensor
    anchors_per_level: list[int]
    feature_sizes: list[tuple[int, int]]
    rpn_nms_threshold: float
    proposals: torch.Tensor
    box_features: torch.Tensor
    class_logits: torch.Tensor
    box_regression: torch.Tensor
    nms_threshold: float
    detections_per_img: int
    detections: DetectionResult
    mask_logits: torch.Tensor | None = None
    anchor_sizes: tuple = ()
    anchor_ratios: tuple = ()
    _head: tuple = field(default=(), repr=False)
    _input_size: tuple = field(default=(0, 0), repr=False)
    _norm: tuple = field(default=((0.0,), (1.0,)), repr=False)
    _rpn: object = field(default=None, repr=False)
    _roi_heads: object = field(default=None, repr=False)

    @cached_property
    def input_image(self) -> torch.Tensor:
        h, w = self._input_size
        mean = torch.tensor(self._norm[0])[:, None, None]
        std = torch.tensor(self._norm[1])[:, None, None]
        return (self.input_tensor[0] * std + mean)[:, :h, :w].clamp(0, 1)

    @cached_property
    def _flat(self):
        obj, deltas = concat_box_prediction_layers(list(self._head[0]), list(self._head[1]))
        return obj.reshape(-1), deltas

    @property
    def objectness(self) -> torch.Tensor:
        return self._flat[0]

    @property
    def deltas(self) -> torch.Tensor:
        return self._flat[1]

    @cached_property
    def _rpn_pre_nms(self):
        """The RPN's own selection before its NMS: top-n per level, clipped, small removed, threshold.

        A transcription (no hook can see inside a method) of the lines before ``batched_nms`` in
        ``torchvision.models.detection.rpn.RegionProposalNetwork.filter_proposals`` (torchvision
        0.16 to 0.29.1). Every constant is read from the model (``min_size``, ``score_thresh``,
        ``pre_nms_top_n`` through ``_get_top_n_idx``); ``tests/models/test_live.py`` re-runs the
        RPN's NMS on this and requires the model's own proposals, so a drift fails a test.
        """
        rpn, (h, w) = self._rpn, self._input_size
        top_n = _private(rpn, "_get_top_n_idx", "RegionProposalNetwork")
        with torch.inference_mode():
            decoded = rpn.box_coder.decode(self.deltas, [self.anchors]).view(-1, 4)
            obj = self.objectness.reshape(1, -1)
            levels = torch.cat([torch.full((n,), i, dtype=torch.int64)
                                for i, n in enumerate(self.anchors_per_level)])[None]
            top = top_n(obj, self.anchors_per_level)
            idx = torch.arange(1)[:, None]
            prob = torch.sigmoid(obj[idx, top][0])
            lvl, box = levels[idx, top][0], decoded[None][idx, top][0]
            box = box_ops.clip_boxes_to_image(box, (h, w))
            ok = box_ops.remove_small_boxes(box, rpn.min_size)
            box, prob, lvl = box[ok], prob[ok], lvl[ok]
            ok = torch.where(prob >= rpn.score_thresh)[0]
            return box[ok], prob[ok], lvl[ok]

    proposals_pre_nms = property(lambda self: self._rpn_pre_nms[0])
    proposal_scores_pre_nms = property(lambda self: self._rpn_pre_nms[1])
    proposal_levels_pre_nms = property(lambda self: self._rpn_pre_nms[2])

    @cached_property
    def _final_pre_nms(self):
        """What ``RoIHeads.postprocess_detections`` has just before its NMS.

        A transcription of ``torchvision.models.detection.roi_heads.RoIHeads.postprocess_detections``
        up to its ``batched_nms`` (torchvision 0.16 to 0.29.1): ``score_thresh`` is read from the
        model; the small-box size is a literal there (:data:`ROI_HEADS_MIN_SIZE`, checked against
        torchvision's source by a test). The test that re-runs the final NMS on this and requires
        the model's own detections fails on any drift.
        """
        rh, (h, w) = self._roi_heads, self._input_size
        with torch.inference_mode():
            boxes = rh.box_coder.decode(self.box_regression, [self.proposals])
            scores = F.softmax(self.class_logits, -1)
            boxes = box_ops.clip_boxes_to_image(boxes, (h, w))
            labels = torch.arange(scores.shape[-1]).view(1, -1).expand_as(scores)
            boxes, scores, labels = boxes[:, 1:].reshape(-1, 4), scores[:, 1:].reshape(-1), labels[:, 1:].reshape(-1)
            ok = torch.where(scores > rh.score_thresh)[0]
            boxes, scores, labels = boxes[ok], scores[ok], labels[ok]
            ok = box_ops.remove_small_boxes(boxes, min_size=ROI_HEADS_MIN_SIZE)
            return boxes[ok], scores[ok], labels[ok]

    boxes_pre_nms = property(lambda self: self._final_pre_nms[0])
    scores_pre_nms = property(lambda self: self._final_pre_nms[1])
    labels_pre_nms = property(lambda self: self._final_pre_nms[2])

    def final_nms(self):
        """Re-run the final class-aware NMS with :mod:`explainers.ops` on the pre-NMS boxes."""
        keep, trace = batched_nms_trace(self.boxes_pre_nms, self.scores_pre_nms, self.labels_pre_nms,
                                        self.nms_threshold)
        return keep[: self.detections_per_img], trace


@dataclass
class SegmentationTrace:
    """Internals of a segmentation run (for :class:`SegNet`: the switches and the learned kernel)."""

    result: SegmentationResult
    logits: torch.Tensor
    captured: dict = field(default_factory=dict)


class _Capture:
    """Forward hooks that keep a module's output (or first input) under a name."""

    def __init__(self):
        self.values: dict = {}

    def output(self, module: torch.nn.Module, name: str):
        return module.register_forward_hook(lambda mod, inp, out: self.values.__setitem__(name, out))

    def first_input(self, module: torch.nn.Module, name: str):
        return module.register_forward_hook(lambda mod, inp, out: self.values.__setitem__(name, inp[0]))


def _cpu(x):
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    if isinstance(x, dict):
        return {k: _cpu(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_cpu(v) for v in x)
    return x


# ----------------------------------------------------------------------------- base
class LiveModel:
    def __init__(self, task: str, module: torch.nn.Module, classes: list[str], source: str,
                 device: torch.device, notice: str = ""):
        self.task, self.classes, self.source, self.notice = task, list(classes), source, notice
        self.device = torch.device(device)
        self.module = module.eval().to(self.device)
        self._cpu_module = None

    @property
    def is_shapes(self) -> bool:
        return self.source == "shapes" or "shapes architecture" in self.source

    def _run(self, fn, *args):
        """Run ``fn(module, device, *args)``; on CUDA OOM, retry once on the CPU."""
        try:
            return fn(self.module, self.device, *args), ""
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            if self._cpu_module is None:
                self._cpu_module = copy.deepcopy(self.module).to("cpu")
            return fn(self._cpu_module, torch.device("cpu"), *args), \
                f"CUDA ran out of memory on {self.device}; this call ran on the CPU"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} task={self.task} weights={self.source} device={self.device}>"


def _sync(dev: torch.device):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


# ----------------------------------------------------------------------------- detector
class Detector(LiveModel):
    """A torchvision detection model (Faster / Mask R-CNN)."""

    @property
    def has_masks(self) -> bool:
        return getattr(self.module.roi_heads, "mask_predictor", None) is not None

    def _result(self, img: LoadedImage, out: dict, seconds: float, note: str) -> DetectionResult:
        out = _cpu(out)
        masks = out.get("masks")
        if masks is not None:
            masks = masks[:, 0]
        if self.task == "detection":
            masks = None
        labels = out["labels"]
        names = [self.classes[i] if i < len(self.classes) else str(i) for i in labels.tolist()]
        notes = "; ".join(n for n in (img.note, note) if n)
        return DetectionResult(img.tensor, out["boxes"], out["scores"], labels, names, masks, self.classes,
                               self.task, self.source, str(self.device), seconds, notes)

    def __call__(self, image) -> DetectionResult:
        img = load_image(image)

        def fn(module, dev, t):
            _sync(dev)
            t0 = time.perf_counter()
            with torch.inference_mode():
                out = module([t.to(dev)])[0]
            _sync(dev)
            return out, time.perf_counter() - t0

        (out, seconds), note = self._run(fn, img.tensor)
        return self._result(img, out, seconds, note)

    def trace(self, image) -> DetectorTrace:
        img = load_image(image)
        (cap, out, seconds), note = self._run(self._traced_forward, img.tensor)
        return self._build_trace(img, cap, out, seconds, note)

    @staticmethod
    def _traced_forward(module, dev, t):
        cap = _Capture()
        rh = module.roi_heads
        handles = [cap.output(module.transform, "transform"), cap.output(module.backbone, "features"),
                   cap.output(module.rpn.head, "rpn_head"), cap.output(module.rpn.anchor_generator, "anchors"),
                   cap.output(module.rpn, "rpn"), cap.output(rh.box_roi_pool, "box_features"),
                   cap.output(rh.box_predictor, "box_predictor")]
        if getattr(rh, "mask_predictor", None) is not None:
            handles.append(cap.output(rh.mask_predictor, "mask_logits"))
        try:
            _sync(dev)
            t0 = time.perf_counter()
            with torch.inference_mode():
                out = module([t.to(dev)])[0]
            _sync(dev)
            seconds = time.perf_counter() - t0
        finally:
            for h in handles:
                h.remove()
        return cap.values, out, seconds

    def _build_trace(self, img: LoadedImage, cap: dict, out: dict, seconds: float, note: str) -> DetectorTrace:
        m = self.module
        image_list = cap["transform"][0]
        h, w = image_list.image_sizes[0]
        H, W = img.tensor.shape[-2:]
        feats = cap["features"]
        feats = feats if isinstance(feats, dict) else {"0": feats}
        objectness_l, deltas_l = cap["rpn_head"]
        class_logits, box_regression = cap["box_predictor"]
        rpn, rh, gen = m.rpn, m.roi_heads, m.rpn.anchor_generator
        return DetectorTrace(
            image=img.tensor, input_tensor=_cpu(image_list.tensors), scale=(h / H, w / W),
            features=_cpu(dict(feats)), anchors=_cpu(cap["anchors"][0]),
            anchors_per_level=[o[0].numel() for o in objectness_l],
            feature_sizes=[tuple(o.shape[-2:]) for o in objectness_l],
            rpn_nms_threshold=float(rpn.nms_thresh), proposals=_cpu(cap["rpn"][0][0]),
            box_features=_cpu(cap["box_features"]), class_logits=_cpu(class_logits),
            box_regression=_cpu(box_regression), nms_threshold=float(rh.nms_thresh),
            detections_per_img=int(rh.detections_per_img), detections=self._result(img, out, seconds, note),
            mask_logits=_cpu(cap.get("mask_logits")), anchor_sizes=tuple(gen.sizes),
            anchor_ratios=tuple(gen.aspect_ratios), _head=(_cpu(objectness_l), _cpu(deltas_l)),
            _input_size=(h, w), _norm=(tuple(m.transform.image_mean), tuple(m.transform.image_std)),
            _rpn=rpn, _roi_heads=rh)


# ----------------------------------------------------------------------------- segmentation
class Segmenter(LiveModel):
    """Semantic segmentation: our SegNet or a torchvision segmentation model."""

    #: torchvision's segmentation models expect ImageNet normalisation
    MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

    def _forward(self, module, dev, t):
        x = t.to(dev)[None]
        _sync(dev)
        t0 = time.perf_counter()
        with torch.inference_mode():
            if isinstance(module, SegNet):
                logits = module(x)
            else:
                mean = torch.tensor(self.MEAN, device=dev)[:, None, None]
                std = torch.tensor(self.STD, device=dev)[:, None, None]
                logits = module((x - mean) / std)["out"]
        _sync(dev)
        return logits, time.perf_counter() - t0

    def _traced_forward(self, module, dev, t):
        """The plain forward pass with forward hooks on SegNet's modules (nothing else changes)."""
        if not isinstance(module, SegNet):
            return self._forward(module, dev, t), {}
        cap = _Capture()
        handles = [cap.output(module.enc1, "e1"), cap.output(module.enc2, "e2"), cap.output(module.enc3, "e3"),
                   cap.output(module.pool1, "pool1"), cap.output(module.pool2, "pool2"),
                   cap.output(module.pool3, "pool3"), cap.output(module.bottleneck, "bottleneck"),
                   cap.output(module.unpool3, "u3"), cap.output(module.unpool2, "u2"),
                   cap.output(module.dec3, "d3"), cap.output(module.dec2, "d2"), cap.output(module.dec1, "d1"),
                   cap.output(module.up1, "transposed_output"), cap.first_input(module.normalize, "padded_input")]
        try:
            res = self._forward(module, dev, t)
        finally:
            for h in handles:
                h.remove()
        c = cap.values
        return res, {
            "encoder_features": [c["e1"], c["e2"], c["e3"]],
            "pooled": [c[f"pool{i}"][0] for i in (1, 2, 3)],
            "pool_indices": [c[f"pool{i}"][1] for i in (1, 2, 3)],
            "bottleneck": c["bottleneck"], "unpooled": [c["u3"], c["u2"]],
            "decoder_features": [c["d3"], c["d2"], c["d1"]],
            "transposed_input": c["d2"], "transposed_output": c["transposed_output"],
            "transposed_kernel": module.up1.weight.detach(), "padded_input": c["padded_input"],
        }

    def _result(self, img, logits, seconds, note):
        logits = _cpu(logits)[0]
        probs = logits.float().softmax(0)
        notes = "; ".join(n for n in (img.note, note) if n)
        return SegmentationResult(img.tensor, probs.argmax(0), probs, self.classes, self.task, self.source,
                                  str(self.device), seconds, notes)

    def __call__(self, image) -> SegmentationResult:
        img = load_image(image)
        (logits, seconds), note = self._run(self._forward, img.tensor)
        return self._result(img, logits, seconds, note)

    def trace(self, image) -> SegmentationTrace:
        img = load_image(image)
        ((logits, seconds), cap), note = self._run(self._traced_forward, img.tensor)
        return SegmentationTrace(self._result(img, logits, seconds, note), _cpu(logits)[0], _cpu(cap))


# ----------------------------------------------------------------------------- patch classifier
class PatchModel(LiveModel):
    """The sliding-window classifier; ``__call__`` runs it fully convolutionally."""

    @property
    def window(self) -> int:
        return self.module.window

    @property
    def stride(self) -> int:
        return self.module.stride

    def __call__(self, image) -> SegmentationResult:
        from ..ops import dense_predict

        img = load_image(image)
        (res, note) = self._run(lambda mod, dev, t: dense_predict(mod, t), img.tensor)
        labels, scores, cost = res
        return SegmentationResult(img.tensor, labels, scores.softmax(0), self.classes, self.task, self.source,
                                  str(self.device), cost.seconds, "; ".join(n for n in (img.note, note) if n))

    trace = __call__


def make_live_model(task, module, classes, source, device, notice=""):
    if task == "patch" or isinstance(module, PatchClassifier):
        return PatchModel(task, module, classes, source, device, notice)
    if task == "segmentation":
        return Segmenter(task, module, classes, source, device, notice)
    return Detector(task, module, classes, source, device, notice)
