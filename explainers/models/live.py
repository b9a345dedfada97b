"""The live model objects: run on any image, capture every internal.

Four wrappers share one small interface (``task``, ``classes``, ``weights``,
``device``, ``__call__(image)``, ``trace(image)``):

* :class:`Detector` - any torchvision ``GeneralizedRCNN`` (our shapes Mask R-CNN,
  Faster R-CNN with or without FPN, Mask R-CNN, Keypoint R-CNN); ``trace`` records anchors,
  objectness, deltas, proposals before/after the RPN's NMS, pooled RoI features and the
  RoI pooler's own parameters, per-class boxes before the final NMS, detections, masks and
  keypoints, with forward hooks only.
* :class:`OneStageDetector` - RetinaNet, FCOS, SSD, SSDlite (no RPN, no RoI pooling);
  ``trace`` records anchors, the head's per-anchor logits and box regression, the candidates
  before the final NMS and the postprocessing constants.
* :class:`Segmenter` - our :class:`SegNet` (pooling switches, learned transposed
  convolution) or a torchvision segmentation model (``out`` logits).
* :class:`PatchModel` - the sliding-window classifier.

Results (:mod:`.results`) and traces (:mod:`.traces`) come back on the CPU.  On CUDA, an out-of-memory error retries the call
once on the CPU and says so in the result's ``note``.
"""
from __future__ import annotations

import copy
import time
import warnings

import torch

from .device import exact_float32
from .images import LoadedImage, load_image
from .nets import PatchClassifier, SegNet
from .results import DetectionResult, Result, SegmentationResult
from .traces import DetectorTrace, OneStageTrace, SegmentationTrace

__all__ = ["LiveModel", "Detector", "OneStageDetector", "Segmenter", "PatchModel", "make_live_model",
           "Result", "DetectionResult", "SegmentationResult", "DetectorTrace", "OneStageTrace", "SegmentationTrace"]


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
    def __init__(self, task: str, module: torch.nn.Module, classes: list[str], weights: str,
                 device: torch.device, notice: str = ""):
        self.task, self.classes, self.weights, self.notice = task, list(classes), weights, notice
        self.device = torch.device(device)
        exact_float32(self.device)           # checks compare float32 with float32 on a GPU too
        other = sorted({str(t.dtype).replace("torch.", "") for t in (*module.parameters(), *module.buffers())
                        if t.is_floating_point() and t.dtype != torch.float32})
        if other:
            # the pages compute, draw and check in float32: a float64 / float16 / bfloat16 model is
            # converted (in place, like the move to the device), and the notice says so
            module.float()
            converted = (f"the model's {' and '.join(other)} weights were converted to float32 "
                         "(the pages compute and check in float32)")
            self.notice = "; ".join(n for n in (notice, converted) if n)
            warnings.warn(converted, stacklevel=3)
        self.module = module.eval().to(self.device)
        self._cpu_module = None

    @property
    def is_shapes(self) -> bool:
        return self.weights == "shapes" or "shapes architecture" in self.weights

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

    def _common(self, seconds: float, note: str) -> dict:
        """The :class:`Result` fields this model fills in."""
        return dict(classes=self.classes, task=self.task, weights=self.weights, device=str(self.device),
                    seconds=seconds, note=note)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} task={self.task} weights={self.weights} device={self.device}>"


def _timed_forward(module, device, t, cap: "_Capture", handles: list):
    """Run a detector once on ``t`` with forward hooks in place (removed afterwards, whatever
    happens): ``(captured values, output, seconds)``."""
    try:
        _sync(device)
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = module([t.to(device)])[0]
        _sync(device)
        seconds = time.perf_counter() - t0
    finally:
        for h in handles:
            h.remove()
    return cap.values, out, seconds


def _sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------- detectors
def _architecture(module: torch.nn.Module) -> str:
    """``"RetinaNet"``, ``"FCOS"``, ``"SSD"`` (SSD and SSDlite) or ``""`` for a one-stage torchvision detector."""
    from torchvision.models.detection.fcos import FCOS
    from torchvision.models.detection.retinanet import RetinaNet
    from torchvision.models.detection.ssd import SSD

    for cls in (RetinaNet, FCOS, SSD):
        if isinstance(module, cls):
            return cls.__name__
    return ""


class _DetectorBase(LiveModel):
    """What every detector shares: ``__call__`` returns a :class:`DetectionResult`."""

    #: a two-stage detector (:class:`Detector`) has both; a one-stage one (:class:`OneStageDetector`) neither
    has_rpn = True
    has_roi_pooling = True

    @property
    def has_masks(self) -> bool:
        return False

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
        return DetectionResult(image=img.tensor, boxes=out["boxes"], scores=out["scores"], labels=labels,
                               names=names, masks=masks, **self._common(seconds, notes))

    def trace(self, image):
        """Run once with forward hooks: a :class:`DetectorTrace` (two-stage) or :class:`OneStageTrace`."""
        img = load_image(image)
        (cap, out, seconds), note = self._run(self._traced_forward, img.tensor)
        return self._build_trace(img, cap, out, seconds, note)

    def __call__(self, image) -> DetectionResult:
        img = load_image(image)

        def fn(module, device, t):
            _sync(device)
            t0 = time.perf_counter()
            with torch.inference_mode():
                out = module([t.to(device)])[0]
            _sync(device)
            return out, time.perf_counter() - t0

        (out, seconds), note = self._run(fn, img.tensor)
        return self._result(img, out, seconds, note)


class Detector(_DetectorBase):
    """A two-stage torchvision detector (``GeneralizedRCNN``: Faster / Mask / Keypoint R-CNN, with or
    without FPN): anchors, RPN, RoI pooling, box head."""

    has_rpn = True
    has_roi_pooling = True

    @property
    def has_masks(self) -> bool:
        return getattr(self.module.roi_heads, "mask_predictor", None) is not None

    @staticmethod
    def _traced_forward(module, device, t):
        cap = _Capture()
        rh = module.roi_heads
        handles = [cap.output(module.transform, "transform"), cap.output(module.backbone, "features"),
                   cap.output(module.rpn.head, "rpn_head"), cap.output(module.rpn.anchor_generator, "anchors"),
                   cap.output(module.rpn, "rpn"), cap.output(rh.box_roi_pool, "box_features"),
                   cap.output(rh.box_predictor, "box_predictor")]
        if getattr(rh, "mask_predictor", None) is not None:
            handles.append(cap.output(rh.mask_predictor, "mask_logits"))
        return _timed_forward(module, device, t, cap, handles)

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
        pool = rh.box_roi_pool              # MultiScaleRoIAlign: scales and map_levels exist after a forward
        mapper = pool.map_levels
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
            keypoints=_cpu(out.get("keypoints")), keypoint_scores=_cpu(out.get("keypoints_scores")),
            roi_output_size=tuple(int(v) for v in pool.output_size), roi_sampling_ratio=int(pool.sampling_ratio),
            roi_featmap_names=tuple(k for k in feats if k in pool.featmap_names),
            roi_scales=tuple(float(v) for v in pool.scales),
            roi_k_min=int(mapper.k_min), roi_k_max=int(mapper.k_max), roi_canonical_scale=int(mapper.s0),
            roi_canonical_level=int(mapper.lvl0),
            _input_size=(h, w), _norm=(tuple(m.transform.image_mean), tuple(m.transform.image_std)),
            _rpn=rpn, _roi_heads=rh, _level_mapper=mapper)


class OneStageDetector(_DetectorBase):
    """A one-stage torchvision detector: RetinaNet, FCOS, SSD or SSDlite.

    No region proposals and no RoI pooling (``has_rpn`` and ``has_roi_pooling`` are False);
    ``trace`` records the input, feature maps, anchors, the head's per-anchor class logits and
    box regression, and the postprocessing constants (:class:`OneStageTrace`), with forward hooks only.
    """

    has_rpn = False
    has_roi_pooling = False

    @property
    def architecture(self) -> str:
        return _architecture(self.module)

    @staticmethod
    def _traced_forward(module, device, t):
        cap = _Capture()
        handles = [cap.output(module.transform, "transform"), cap.output(module.backbone, "features"),
                   cap.output(module.head, "head"), cap.output(module.anchor_generator, "anchors")]
        return _timed_forward(module, device, t, cap, handles)

    def _build_trace(self, img: LoadedImage, cap: dict, out: dict, seconds: float, note: str) -> OneStageTrace:
        from torchvision.models.detection.anchor_utils import AnchorGenerator

        m, arch = self.module, self.architecture
        image_list = cap["transform"][0]
        h, w = image_list.image_sizes[0]
        H, W = img.tensor.shape[-2:]
        feats = cap["features"]
        feats = feats if isinstance(feats, dict) else {"0": feats}
        sizes = [tuple(f.shape[-2:]) for f in feats.values()]
        hw = [a * b for a, b in sizes]
        head = _cpu(dict(cap["head"]))
        gen = m.anchor_generator
        if arch == "RetinaNet":      # as RetinaNet.forward splits its head outputs
            per_loc = head["cls_logits"].size(1) // sum(hw)
            per_level = [n * per_loc for n in hw]
        elif arch == "FCOS":         # as FCOS.forward: one point per location
            per_level = hw
        else:                        # SSD: the head concatenates k_l boxes per location of each level
            per_level = [n * k for n, k in zip(hw, gen.num_anchors_per_location())]
        ctr = head.get("bbox_ctrness")
        is_grid = isinstance(gen, AnchorGenerator)
        coder_w = getattr(m.box_coder, "weights", None)
        rule = {"RetinaNet": "sigmoid", "FCOS": "sqrt(sigmoid * sigmoid(centerness))", "SSD": "softmax"}[arch]
        return OneStageTrace(
            image=img.tensor, input_tensor=_cpu(image_list.tensors), scale=(h / H, w / W),
            features=_cpu(dict(feats)), feature_sizes=sizes, anchors=_cpu(cap["anchors"][0]),
            anchors_per_level=per_level, class_logits=head["cls_logits"][0],
            box_regression=head["bbox_regression"][0], nms_threshold=float(m.nms_thresh),
            score_threshold=float(m.score_thresh), detections_per_img=int(m.detections_per_img),
            topk_candidates=int(m.topk_candidates), detections=self._result(img, out, seconds, note),
            architecture=arch, score_rule=rule, centerness=None if ctr is None else ctr[0, :, 0],
            box_coder_weights=None if coder_w is None else tuple(float(v) for v in coder_w),
            anchor_sizes=tuple(gen.sizes) if is_grid else (), anchor_ratios=tuple(gen.aspect_ratios) if is_grid else (),
            _head=head, _input_size=(h, w), _norm=(tuple(m.transform.image_mean), tuple(m.transform.image_std)),
            _model=m)


# ----------------------------------------------------------------------------- segmentation
class Segmenter(LiveModel):
    """Semantic segmentation: our SegNet or a torchvision segmentation model."""

    #: torchvision's segmentation models expect ImageNet normalisation
    MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

    def _forward(self, module, device, t):
        x = t.to(device)[None]
        _sync(device)
        t0 = time.perf_counter()
        with torch.inference_mode():
            if isinstance(module, SegNet):
                logits = module(x)
            else:
                mean = torch.tensor(self.MEAN, device=device)[:, None, None]
                std = torch.tensor(self.STD, device=device)[:, None, None]
                logits = module((x - mean) / std)["out"]
        _sync(device)
        return logits, time.perf_counter() - t0

    def _traced_forward(self, module, device, t):
        """The plain forward pass with forward hooks on SegNet's modules (nothing else changes)."""
        if not isinstance(module, SegNet):
            return self._forward(module, device, t), {}
        cap = _Capture()
        handles = [cap.output(module.enc1, "e1"), cap.output(module.enc2, "e2"), cap.output(module.enc3, "e3"),
                   cap.output(module.pool1, "pool1"), cap.output(module.pool2, "pool2"),
                   cap.output(module.pool3, "pool3"), cap.output(module.bottleneck, "bottleneck"),
                   cap.output(module.unpool3, "u3"), cap.output(module.unpool2, "u2"),
                   cap.output(module.dec3, "d3"), cap.output(module.dec2, "d2"), cap.output(module.dec1, "d1"),
                   cap.output(module.up1, "transposed_output"), cap.first_input(module.normalize, "padded_input")]
        try:
            res = self._forward(module, device, t)
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
        return SegmentationResult(image=img.tensor, labels=probs.argmax(0), probabilities=probs,
                                  **self._common(seconds, notes))

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
        (res, note) = self._run(lambda mod, device, t: dense_predict(mod, t), img.tensor)
        labels, scores, cost = res
        return SegmentationResult(image=img.tensor, labels=labels, probabilities=scores.softmax(0),
                                  **self._common(cost.seconds, "; ".join(n for n in (img.note, note) if n)))

    trace = __call__


def make_live_model(task, module, classes, weights, device, notice=""):
    if task == "patch" or isinstance(module, PatchClassifier):
        return PatchModel(task, module, classes, weights, device, notice)
    if task == "segmentation":
        return Segmenter(task, module, classes, weights, device, notice)
    if _architecture(module):
        return OneStageDetector(task, module, classes, weights, device, notice)
    return Detector(task, module, classes, weights, device, notice)
