"""R-CNN, Fast R-CNN and Faster R-CNN on the same image, measured stage by stage.

All three run the *same* network, a live two-stage torchvision detector (by default the bundled
shapes Mask R-CNN: :class:`~explainers.models.nets.SmallBackbone`, stride 8, its 7 x 7 RoI Align
box pooler and its two-layer box head), so the differences are where the computation goes:

* **R-CNN**: selective search (:func:`explainers.ops.selective_search.selective_search`) proposes
  regions; each is cut from the image and warped to ``crop x crop`` pixels (``crop = 8 x 7 = 56``
  for the shapes model: its backbone then gives exactly the 7 x 7 map its box head takes), and the
  backbone and box head run once *per crop*. Only the first ``max_timed_crops`` crops are warped
  and run (in batches) and timed; their time and multiply-accumulates are multiplied by
  ``N / max_timed_crops`` (every crop has the same shape, so the MACs are exact; the time is an
  extrapolation and is marked as one on the page).
* **Fast R-CNN**: the backbone once on the model's input, the selective-search proposals (scaled
  to the input) through the model's own RoI pooler (``roi_heads.box_roi_pool``), box head and
  predictor, then the model's per-class NMS (``roi_heads.postprocess_detections``).
* **Faster R-CNN**: the model itself, its forward pass cut into stages called one by one as
  ``GeneralizedRCNN.forward`` and ``RoIHeads.forward`` call them (resize + normalise, backbone,
  RPN, RoI pooling, box head, per-class NMS; a Mask R-CNN's mask branch is measured apart); its detections
  are compared with the model's own unmodified forward pass.

Every stage runs under ``torch.no_grad`` and is timed with ``time.perf_counter`` (CUDA
synchronised); MACs are counted with forward hooks on every ``Conv2d`` / ``Linear`` the stage
runs (``out.numel() x in_channels / groups x kernel area``, ``out.numel() x in_features``).
"""
from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..ops._checks import MAX_ELEMENTS
from ..ops.selective_search import MAX_SS_PIXELS, SelectiveSearchTrace, selective_search
from ..ops.sliding_window import _MacCounter

PIPELINES = ("R-CNN", "Fast R-CNN", "Faster R-CNN")
#: crops R-CNN runs through the network (and times); the rest are extrapolated linearly
MAX_TIMED_CROPS = 200
#: R-CNN's proposals per image: selective search's best ~2k (the slide's "~2k per image"); an ordinary
#: photo gives 6,000-9,000, too many to pool at once
MAX_PROPOSALS = 2000
CROP_BATCH = 50


@dataclass
class Stage:
    """One stage of a pipeline: ``name``; ``kind`` (the bar colour: "proposals", "warp",
    "backbone", "rpn", "roi", "head", "nms", "mask", "resize"); measured ``seconds`` and
    multiply-accumulates ``macs`` (for all items, extrapolated when ``extrapolated``); ``count``:
    how many boxes or crops it handles; ``measured_on``: how many it actually ran on."""

    name: str
    kind: str
    seconds: float
    macs: int
    count: int
    measured_on: int
    extrapolated: bool = False


@dataclass
class PipelineRun:
    """One pipeline on the image.

    Attributes:
        name: "R-CNN", "Fast R-CNN" or "Faster R-CNN".
        stages: the :class:`Stage` list, in order.
        proposals: ``(P, 4)`` its region proposals in image coordinates, best first.
        boxes, scores, labels: ``(D, 4)``, ``(D,)``, ``(D,)`` what it detects, in image coordinates
            (R-CNN: the best class of each timed crop above the score threshold, no box regression).
    """

    name: str
    stages: list[Stage]
    proposals: torch.Tensor
    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.stages)

    @property
    def macs(self) -> int:
        return sum(s.macs for s in self.stages)


@dataclass
class FamilyMeasurement:
    """The three pipelines on one image, and what their checks compare.

    Attributes:
        image: ``(3, H, W)`` float in [0, 1].
        input_size: ``(h, w)`` of the model's input (after its resize).
        ss_boxes: ``(N, 4)`` selective-search proposals in image coordinates, ranked: the best
            :data:`MAX_PROPOSALS` (R-CNN's ~2k) of the ``ss_found`` that selective search made.
        ss_trace: the :class:`SelectiveSearchTrace`; ``ss_seconds``: its measured wall time
            (the first run on this image; later runs reuse it).
        crop: R-CNN's warp size (pixels); ``timed_crops``: crops run through the network.
        rcnn, fast, faster: the :class:`PipelineRun` of each.
        features: ``(1, C, h / 8, w / 8)`` the backbone's map Fast R-CNN pools from;
            ``feature_name``: its key; ``scale``: its spatial scale.
        fast_boxes_in: ``(N, 4)`` the proposals scaled to the model's input.
        fast_pooled: ``(N, C, 7, 7)`` the model's own RoI pooler's output for them.
        pool_output_size, pool_sampling_ratio, pool_featmap_names: the pooler's parameters.
        mask_branch: the :class:`Stage` of a Mask R-CNN's mask branch, run after Faster R-CNN's
            detections (so that their masks are checked too) but not one of Faster R-CNN's stages nor in
            its totals: it is Mask R-CNN's addition; None for a model without a mask head.
        fast_model_output: ``{"boxes", "scores", "labels"}`` of the model's own ``roi_heads`` called
            once on Fast R-CNN's proposals (what its stage-by-stage detections must equal).
        rcnn_reference: ``{"boxes", "scores", "labels"}`` R-CNN's detections with the crops warped by
            torchvision's ``resized_crop`` instead (what the drawn ones must equal);
            ``rcnn_crops_diff``: largest |diff| between those crops and the ones R-CNN ran on.
        faster_stagewise: ``{"boxes", "scores", "labels", "masks"}`` of the stage-by-stage run;
        model_output: the same from the model's own forward pass on the same image.
        classes: class names.
    """

    image: torch.Tensor
    input_size: tuple[int, int]
    ss_boxes: torch.Tensor
    ss_trace: SelectiveSearchTrace
    ss_seconds: float
    crop: int
    timed_crops: int
    rcnn: PipelineRun
    fast: PipelineRun
    faster: PipelineRun
    features: torch.Tensor
    feature_name: str
    scale: float
    fast_boxes_in: torch.Tensor
    fast_pooled: torch.Tensor
    pool_output_size: tuple[int, int]
    pool_sampling_ratio: int
    pool_featmap_names: tuple[str, ...]
    mask_branch: Stage | None
    fast_model_output: dict
    rcnn_reference: dict
    rcnn_crops_diff: float
    faster_stagewise: dict
    model_output: dict
    classes: list[str]
    device: str = "cpu"
    notes: list[str] = field(default_factory=list)
    ss_found: int = 0

    def pipeline(self, name: str) -> PipelineRun:
        return {"R-CNN": self.rcnn, "Fast R-CNN": self.fast, "Faster R-CNN": self.faster}[name]


# ----------------------------------------------------------------------------- selective search, cached
_SS_CACHE: "OrderedDict[str, tuple]" = OrderedDict()
_SS_CACHE_SIZE = 4


def image_key(image: torch.Tensor) -> str:
    """A digest of the image's pixels (the cache key of its selective search)."""
    a = image.detach().cpu().contiguous().numpy()
    return hashlib.sha1(a.tobytes() + str(a.shape).encode()).hexdigest()


def cached_selective_search(image: torch.Tensor, seed: int = 0):
    """``(boxes, trace, seconds)`` of :func:`selective_search` on ``(3, H, W)`` ``image``, run once per
    image (the last few images are kept); ``seconds`` is the wall time of that first run."""
    H, W = image.shape[-2:]
    if H * W > MAX_SS_PIXELS:
        raise ValueError(f"selective search on a {W}x{H} image would work on {H * W:,} pixels, more than the "
                         f"{MAX_SS_PIXELS:,} allowed; use a smaller image (e.g. 640x480)")
    key = f"{image_key(image)}:{seed}"
    if key in _SS_CACHE:
        _SS_CACHE.move_to_end(key)
        return _SS_CACHE[key]
    t0 = time.perf_counter()
    boxes, trace = selective_search(image, seed=seed)
    out = (boxes, trace, time.perf_counter() - t0)
    _SS_CACHE[key] = out
    while len(_SS_CACHE) > _SS_CACHE_SIZE:
        _SS_CACHE.popitem(last=False)
    return out


# ----------------------------------------------------------------------------- timing
class _Meter:
    """Times stages and counts their MACs (one hook set on the whole module)."""

    def __init__(self, module, device):
        self.module, self.device = module, torch.device(device)

    def __enter__(self):
        self.counter = _MacCounter(self.module)
        return self

    def __exit__(self, *exc):
        self.counter.__exit__(*exc)

    def run(self, fn, *args):
        """``(result, seconds, macs)`` of ``fn(*args)``."""
        before = self.counter.macs
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t0 = time.perf_counter()
        out = fn(*args)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return out, time.perf_counter() - t0, self.counter.macs - before


def _crop_pixels(boxes: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """``(N, 4)`` int64 whole-pixel crops ``(c1, r1, c2, r2)`` (ends exclusive, at least one pixel)
    around ``boxes``, inside an ``H x W`` image."""
    b = boxes.to(torch.float64)
    c1 = b[:, 0].floor().clamp(0, W - 1).long()
    r1 = b[:, 1].floor().clamp(0, H - 1).long()
    c2 = torch.maximum(b[:, 2].ceil().clamp(max=W).long(), c1 + 1)
    r2 = torch.maximum(b[:, 3].ceil().clamp(max=H).long(), r1 + 1)
    return torch.stack([c1, r1, c2, r2], 1)


def warp_crops(image: torch.Tensor, boxes, size: int) -> torch.Tensor:
    """R-CNN's warp: each box (image coordinates, widened to whole pixels) cut from ``(3, H, W)``
    ``image`` and resized to ``size x size`` bilinearly (``F.interpolate``, ``align_corners=False``)
    whatever its aspect ratio: ``(N, 3, size, size)``. One call per crop (faster on a CPU than one
    batched gather)."""
    H, W = image.shape[-2:]
    px = _crop_pixels(torch.as_tensor(boxes).reshape(-1, 4).cpu(), H, W).tolist()
    out = image.new_empty((len(px), image.shape[0], size, size))
    for i, (c1, r1, c2, r2) in enumerate(px):
        out[i] = F.interpolate(image[None, :, r1:r2, c1:c2], size=(size, size), mode="bilinear",
                               align_corners=False)[0]
    return out


def _rcnn_reference(m, name, x, boxes, crop, normalise, crops, score_threshold):
    """R-CNN again, another way: the crops warped by torchvision's ``resized_crop``
    (:func:`explainers.ops.rcnn_reference.reference_warp`) and normalised (``(mean, std)``, as the
    crops R-CNN ran), the model's backbone, box
    head and predictor on them, the best class of each kept at ``score_threshold``, best first:
    ``({"boxes", "scores", "labels"}, largest |diff| between those crops and the ones run)``."""
    from ..ops.rcnn_reference import reference_warp

    mean, std = normalise
    with torch.no_grad():
        ref = (reference_warp(x, boxes.to(x.device), crop) - mean) / std
        diff = float((ref - crops).abs().max()) if len(ref) else 0.0
        logits = []
        for s in range(0, len(ref), CROP_BATCH):
            fmap = m.backbone(ref[s:s + CROP_BATCH])
            fmap = fmap[name] if isinstance(fmap, dict) else fmap
            logits.append(m.roi_heads.box_predictor(m.roi_heads.box_head(fmap))[0])
        probs = (torch.cat(logits).softmax(-1).cpu() if logits
                 else torch.zeros((0, len(m.roi_heads.box_predictor.cls_score.bias))))
    score, label = probs[:, 1:].max(1)
    order = torch.argsort(score, descending=True, stable=True)
    order = order[score[order] >= score_threshold]
    return {"boxes": boxes[order].clone(), "scores": score[order], "labels": label[order] + 1}, diff


def detector(model):
    """``(live model, backbone channels, pooled map names)`` of ``model`` (None: the bundled shapes
    detector), or a ValueError saying why this page cannot use it."""
    from . import get
    from .live import Detector

    model = model or get("detection", "shapes")
    if not isinstance(model, Detector):
        raise ValueError("the R-CNN family page needs a two-stage detector (Faster or Mask R-CNN): R-CNN and Fast "
                         "R-CNN reuse its backbone, RoI pooler and box head")
    m = model.module
    feats = m.backbone.out_channels
    names = tuple(m.roi_heads.box_roi_pool.featmap_names)
    if len(names) != 1:
        raise ValueError("the R-CNN family page needs a detector with one feature map (no FPN), like the bundled "
                         "shapes model: R-CNN runs its backbone on each warped crop and feeds one map to the box head")
    return model, feats, names


def measure(image, model=None, max_timed_crops: int = MAX_TIMED_CROPS, score_threshold: float = 0.5,
            seed: int = 0) -> FamilyMeasurement:
    """Run the three pipelines on ``image`` (anything :func:`~explainers.models.load_image` reads)
    with ``model`` (default: the bundled shapes detector) and measure each stage."""
    from torchvision.models.detection.roi_heads import maskrcnn_inference, paste_masks_in_image
    from torchvision.models.detection.transform import resize_boxes

    from .images import load_image

    model, _, names = detector(model)
    img = load_image(image).tensor
    H, W = img.shape[-2:]
    m = model.module
    dev = model.device
    rh = m.roi_heads
    pool = rh.box_roi_pool
    ph, pw = (tuple(pool.output_size) * 2)[:2] if isinstance(pool.output_size, int) else tuple(pool.output_size)
    # the proposals R-CNN keeps, decided before anything is pooled: its ~2k, fewer where the pooled
    # features of 2,000 boxes would pass the size limit (a backbone of many channels)
    channels = int(getattr(m.backbone, "out_channels", 1) or 1)
    keep_n = max(1, min(MAX_PROPOSALS, MAX_ELEMENTS // (channels * ph * pw)))
    ss_all, ss_trace, ss_seconds = cached_selective_search(img, seed)
    ss_boxes = ss_all[:keep_n]
    N = len(ss_boxes)
    x = img.to(dev)
    with torch.no_grad():
        own = m([x])[0]                    # the model's own forward pass (and a warm-up for the timings)
    with torch.no_grad(), _Meter(m, dev) as meter:
        # ------------------------------------------------------------- Faster R-CNN: the model, stage by stage
        (images, _), t_tr, c_tr = meter.run(m.transform, [x])
        sizes = images.image_sizes
        feats, t_bb, c_bb = meter.run(m.backbone, images.tensors)
        if isinstance(feats, torch.Tensor):
            feats = OrderedDict([("0", feats)])
        (props, _), t_rpn, c_rpn = meter.run(m.rpn, images, feats)
        pooled, t_pool, c_pool = meter.run(rh.box_roi_pool, feats, props, sizes)
        hidden, t_head, c_head = meter.run(rh.box_head, pooled)
        (logits, regr), t_pred, c_pred = meter.run(rh.box_predictor, hidden)
        (bxs, scs, lbs), t_nms, c_nms = meter.run(rh.postprocess_detections, logits, regr, props, sizes)
        result = [{"boxes": bxs[0], "labels": lbs[0], "scores": scs[0]}]
        stages_faster = [Stage("resize + normalise", "resize", t_tr, c_tr, 1, 1),
                         Stage("backbone (once)", "backbone", t_bb, c_bb, 1, 1),
                         Stage("RPN proposals", "rpn", t_rpn, c_rpn, len(props[0]), len(props[0])),
                         Stage("RoI pooling (RoI Align)", "roi", t_pool, c_pool, len(props[0]), len(props[0])),
                         Stage("box head + classifier", "head", t_head + t_pred, c_head + c_pred,
                               len(props[0]), len(props[0])),
                         Stage("per-class NMS", "nms", t_nms, c_nms, len(props[0]), len(props[0]))]
        # boxes back to the image's own size: part of the detection stage (the masks are not: they are
        # pasted by the mask branch below, whose time the page does not count)
        # (on a copy: postprocess writes the resized boxes into the dict it gets, and the mask branch
        # needs the boxes in the resized frame)
        boxes_only = [dict(result[0])]
        final, t_post, _ = meter.run(m.transform.postprocess, boxes_only, sizes, [(H, W)])
        stages_faster[-1].seconds += t_post
        if rh.has_mask():
            def mask_branch():
                # what Mask R-CNN's forward adds: RoI Align on the detections, the mask head, the masks
                # of the predicted classes, pasted into the image (as its transform's postprocess does)
                mf = rh.mask_roi_pool(feats, [result[0]["boxes"]], sizes)
                ml = rh.mask_predictor(rh.mask_head(mf))
                masks = maskrcnn_inference(ml, [result[0]["labels"]])[0]
                final[0]["masks"] = paste_masks_in_image(masks, final[0]["boxes"], (H, W))
            _, t_mask, c_mask = meter.run(mask_branch)
            mask_stage = Stage("mask branch (Mask R-CNN)", "mask", t_mask, c_mask, len(bxs[0]), len(bxs[0]))
        else:
            mask_stage = None
        stagewise = {k: v.detach().cpu() for k, v in final[0].items()}
        h, w = sizes[0]

        # ------------------------------------------------------------- Fast R-CNN: selective search + RoI pooling
        boxes_in = resize_boxes(ss_boxes.to(dev), (H, W), (h, w))
        f_pooled, tf_pool, cf_pool = meter.run(pool, feats, [boxes_in], sizes)
        f_hidden, tf_head, cf_head = meter.run(rh.box_head, f_pooled)
        (f_logits, f_regr), tf_pred, cf_pred = meter.run(rh.box_predictor, f_hidden)
        (fb, fs, fl), tf_nms, cf_nms = meter.run(rh.postprocess_detections, f_logits, f_regr, [boxes_in], sizes)
        fb = resize_boxes(fb[0], (h, w), (H, W))
        _, tf_bb, cf_bb = meter.run(m.backbone, images.tensors)   # timed on its own, as Fast R-CNN runs it
        stages_fast = [Stage("selective search", "proposals", ss_seconds, 0, N, N),
                       Stage("resize + normalise", "resize", t_tr, c_tr, 1, 1),
                       Stage("backbone (once)", "backbone", tf_bb, cf_bb, 1, 1),
                       Stage("RoI pooling (RoI Align)", "roi", tf_pool, cf_pool, N, N),
                       Stage("box head + classifier", "head", tf_head + tf_pred, cf_head + cf_pred, N, N),
                       Stage("per-class NMS", "nms", tf_nms, cf_nms, N, N)]

        # ------------------------------------------------------------- R-CNN: warp every proposal, CNN per crop
        crop = 8 * ph if (ph == pw) else None
        probe = m.backbone(torch.zeros(1, 3, crop, crop, device=dev))
        probe = probe[names[0]] if isinstance(probe, dict) else probe
        if tuple(probe.shape[-2:]) != (ph, pw):
            raise ValueError(f"the backbone turns a {crop}x{crop} crop into a {tuple(probe.shape[-2:])} map, not the "
                             f"{ph}x{pw} its box head takes; this page needs a stride-8 backbone like the shapes model's")
        n_run = min(N, max(1, int(max_timed_crops)))
        mean = torch.tensor(m.transform.image_mean, device=dev)[:, None, None]
        std = torch.tensor(m.transform.image_std, device=dev)[:, None, None]

        crops, tw, _ = meter.run(lambda: (warp_crops(x, ss_boxes[:n_run], crop) - mean) / std)
        r_logits, t_cnn, c_cnn, t_rh, c_rh = [], 0.0, 0, 0.0, 0
        for s in range(0, n_run, CROP_BATCH):
            fmap, t1, c1 = meter.run(m.backbone, crops[s:s + CROP_BATCH])
            fmap = fmap[names[0]] if isinstance(fmap, dict) else fmap
            (lg, _), t2, c2 = meter.run(lambda f: rh.box_predictor(rh.box_head(f)), fmap)
            r_logits.append(lg)
            t_cnn, c_cnn, t_rh, c_rh = t_cnn + t1, c_cnn + c1, t_rh + t2, c_rh + c2
        factor = N / n_run
        ext = n_run < N
        stages_rcnn = [Stage("selective search", "proposals", ss_seconds, 0, N, N),
                       Stage(f"warp {N:,} crops to {crop}x{crop}", "warp", tw * factor, 0, N, n_run, ext),
                       Stage(f"backbone x {N:,} crops", "backbone", t_cnn * factor, round(c_cnn * factor), N, n_run, ext),
                       Stage(f"box head + classifier x {N:,}", "head", t_rh * factor, round(c_rh * factor), N, n_run, ext)]
        probs = torch.cat(r_logits).softmax(-1).cpu()
        sc, lb = probs[:, 1:].max(1)
        keep = (sc >= score_threshold).nonzero()[:, 0]
        keep = keep[sc[keep].argsort(descending=True, stable=True)]
    fast_dets = (fb.cpu(), fs[0].cpu(), fl[0].cpu())
    with torch.no_grad():     # the model's own RoIHeads, in one call, on the same proposals: what Fast R-CNN's
        own_fast = rh(feats, [boxes_in], sizes)[0][0]          # stage-by-stage detections must equal
    fast_model = {"boxes": resize_boxes(own_fast["boxes"], (h, w), (H, W)).cpu(),
                  "scores": own_fast["scores"].cpu(), "labels": own_fast["labels"].cpu()}
    rcnn_reference, rcnn_crops_diff = _rcnn_reference(m, names[0], x, ss_boxes[:n_run], crop, (mean, std), crops,
                                                      score_threshold)
    rc = PipelineRun("R-CNN", stages_rcnn, ss_boxes, ss_boxes[keep].clone(), sc[keep], lb[keep] + 1)
    fr = PipelineRun("Fast R-CNN", stages_fast, ss_boxes, *fast_dets)
    fa = PipelineRun("Faster R-CNN", stages_faster, resize_boxes(props[0], (h, w), (H, W)).cpu(),
                     stagewise["boxes"], stagewise["scores"], stagewise["labels"])
    notes = []
    if ext:
        notes.append(f"R-CNN: the first {n_run} of {N:,} crops were warped and run through the network; their "
                     f"time and MACs are x {N:,}/{n_run}")
    return FamilyMeasurement(
        image=img, input_size=(int(h), int(w)), ss_boxes=ss_boxes, ss_trace=ss_trace, ss_seconds=ss_seconds,
        crop=crop, timed_crops=n_run, rcnn=rc, fast=fr, faster=fa, features=feats[names[0]].cpu(),
        feature_name=names[0], scale=float(pool.scales[0]), fast_boxes_in=boxes_in.cpu(),
        fast_pooled=f_pooled.cpu(), pool_output_size=(int(ph), int(pw)), pool_sampling_ratio=int(pool.sampling_ratio),
        pool_featmap_names=tuple(pool.featmap_names), mask_branch=mask_stage, fast_model_output=fast_model,
        rcnn_reference=rcnn_reference, rcnn_crops_diff=rcnn_crops_diff,
        faster_stagewise=stagewise,
        model_output={k: v.detach().cpu() for k, v in own.items()}, classes=list(model.classes), device=str(dev),
        notes=notes, ss_found=len(ss_all))


# ----------------------------------------------------------------------------- checks
@dataclass
class FamilyChecks:
    """The numbers of the check lines: ``reference_diff``: largest |diff| between Fast R-CNN's pooled
    features and a fresh ``torchvision.ops.MultiScaleRoIAlign`` with the pooler's parameters on the
    same features; ``ops_diff``: the same against :func:`explainers.ops.roi_align_trace` on the first
    ``ops_boxes`` proposals; ``detections_diff``: largest |diff| of boxes and scores between the
    stage-by-stage Faster R-CNN and the model's own forward pass, ``detections_equal``: same number
    of detections, same labels (and masks) and ``detections_diff`` within tolerance; ``fast_diff`` /
    ``fast_equal``: the same for Fast R-CNN's detections (drawn) against the model's own
    ``roi_heads`` on the same selective-search proposals; ``rcnn_diff`` / ``rcnn_equal``: the same
    for R-CNN's detections (drawn) against crops warped by torchvision's ``resized_crop`` and run
    through the model again (``rcnn_diff`` includes the largest |diff| of the crops)."""

    reference_diff: float
    ops_diff: float
    ops_boxes: int
    detections_diff: float
    detections_equal: bool
    fast_diff: float = 0.0
    fast_equal: bool = True
    rcnn_diff: float = 0.0
    rcnn_equal: bool = True


def checks(mm: FamilyMeasurement, ops_boxes: int = 3, tolerance: float = 1e-4) -> FamilyChecks:
    from ..ops.rcnn_reference import reference_multiscale_roi_align
    from ..ops.roi_align import roi_align_trace

    ref = reference_multiscale_roi_align({mm.feature_name: mm.features}, mm.fast_boxes_in, mm.input_size,
                                         mm.pool_featmap_names, mm.pool_output_size, mm.pool_sampling_ratio)
    rdiff = float((ref - mm.fast_pooled).abs().max()) if ref.numel() else 0.0
    n = min(ops_boxes, len(mm.fast_boxes_in))
    odiff = 0.0
    for i in range(n):
        out, _ = roi_align_trace(mm.features[0], mm.fast_boxes_in[i], mm.pool_output_size, mm.scale,
                                 mm.pool_sampling_ratio, False)
        odiff = max(odiff, float((out - mm.fast_pooled[i]).abs().max()))
    def compare(a: dict, b: dict) -> tuple[float, bool]:
        same_n = a["boxes"].shape == b["boxes"].shape
        if same_n and len(a["boxes"]):
            d = max(float((a["boxes"] - b["boxes"]).abs().max()), float((a["scores"] - b["scores"]).abs().max()))
            if "masks" in a and "masks" in b:
                d = max(d, float((a["masks"] - b["masks"]).abs().max()))
        else:
            d = 0.0 if same_n else float("inf")
        return d, bool(same_n and torch.equal(a["labels"], b["labels"]) and d <= tolerance)

    ddiff, equal = compare(mm.faster_stagewise, mm.model_output)
    f = mm.fast
    fdiff, fequal = compare({"boxes": f.boxes, "scores": f.scores, "labels": f.labels}, mm.fast_model_output)
    r = mm.rcnn
    rdet, requal = compare({"boxes": r.boxes, "scores": r.scores, "labels": r.labels}, mm.rcnn_reference)
    rdet = max(rdet, mm.rcnn_crops_diff)
    return FamilyChecks(rdiff, odiff, n, ddiff, equal, fdiff, fequal, rdet, requal and rdet <= tolerance)
