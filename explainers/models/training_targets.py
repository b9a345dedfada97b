"""A two-stage detector in training mode on one image with its ground truth: what it is taught.

:func:`training_run` runs a *copy* of the model (``copy.deepcopy`` on the CPU, ``.train()``; the
model itself, its weights and its BatchNorm statistics are never touched, no optimizer step)
on one image and its targets, under a fixed seed, with forward hooks capturing the input as the
model resized it, the anchors, the RPN head's objectness and deltas, the proposals, the box
head's sampled proposals and predictions, the random state just before each of the two samplers
(pre-hooks on ``rpn`` and ``roi_heads``), and the model's own loss dict.

:func:`recompute` then rebuilds everything from the captured tensors with :mod:`explainers.ops`
only (matching, sampling from the same random state, encoding, the four losses), so a page can
draw it and check it against the loss dict.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from ..ops.targets import (BoxHeadLoss, BoxHeadTargets, RPNLoss, RPNTargets, SampleTrace, box_head_loss,
                           box_head_targets, rpn_loss, rpn_targets, sample)

#: the seed set before the training-mode forward pass
SEED = 0
#: the loss dict keys the page recomputes, in the order of the slide (RPN object/not, RPN box,
#: final class, final box)
FOUR_LOSSES = ("loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg")


@dataclass
class TrainingRun:
    """What the model computed in training mode, in its input frame (after its resize).

    Attributes:
        image: ``(3, h, w)`` the input as the model saw it, in [0, 1] (resized, unpadded).
        gt_boxes: ``(G, 4)`` ground truth, resized by the model; gt_labels: ``(G,)``.
        anchors: ``(A, 4)``; objectness: ``(A,)`` logits; deltas: ``(A, 4)`` predicted
            ``(dx, dy, dw, dh)`` (one feature level or all FPN levels, in anchor order).
        proposals: ``(R, 4)`` the RPN's proposals after its NMS (training top-n).
        sampled_proposals: ``(S, 4)`` what the box head pooled (the model's own sample).
        class_logits: ``(S, C)``; box_regression: ``(S, 4 C)`` for those.
        rng_rpn, rng_roi: torch's random state just before the RPN and the box head ran.
        rpn_settings, roi_settings: ``dict(high, low, batch, fraction, weights)`` read from the model.
        losses: the model's own loss dict (floats detached, CPU).
        seed: the seed set before the run.
        batch_norms: how many BatchNorm layers normalised with this one image's own statistics (in
            training mode they do; a torchvision model's frozen ones do not): its scores then differ
            from the same model's in evaluation mode.
    """

    image: torch.Tensor
    gt_boxes: torch.Tensor
    gt_labels: torch.Tensor
    anchors: torch.Tensor
    objectness: torch.Tensor
    deltas: torch.Tensor
    proposals: torch.Tensor
    sampled_proposals: torch.Tensor
    class_logits: torch.Tensor
    box_regression: torch.Tensor
    rng_rpn: torch.Tensor
    rng_roi: torch.Tensor
    rpn_settings: dict
    roi_settings: dict
    losses: dict
    seed: int
    batch_norms: int = 0


def _settings(matcher, sampler, coder) -> dict:
    return dict(high=float(matcher.high_threshold), low=float(matcher.low_threshold),
                batch=int(sampler.batch_size_per_image), fraction=float(sampler.positive_fraction),
                weights=tuple(float(w) for w in coder.weights))


def two_stage_module(model):
    """The torchvision ``GeneralizedRCNN`` behind ``model`` (a live model or the module itself), or
    a one-line ``ValueError`` saying what this page needs."""
    from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN

    module = getattr(model, "module", model)
    if not isinstance(module, GeneralizedRCNN):
        raise ValueError("how a detector is taught is shown for a two-stage detector (Faster or Mask R-CNN): "
                         "it needs a region proposal network and a box head")
    return module


#: the ground truth a training run takes at most (each object is matched against every anchor)
MAX_OBJECTS = 200


def check_target(module, target: dict, size: tuple[int, int] | None = None) -> None:
    """A one-line ValueError for ground truth this model cannot be trained on (before any run), in the
    image's own pixels (``size``: its (H, W)): torchvision's own errors spoke of the model's resized
    frame, and boxes outside the image, 0-1 boxes and masks of another size passed without a word."""
    if not isinstance(target, dict):
        raise ValueError(f"the ground truth is a dict {{'boxes': (G, 4), 'labels': (G,)}}; got a "
                         f"{type(target).__name__}")
    if len(target.get("boxes", [])) == 0:
        raise ValueError("training needs ground truth: give at least one object box (with its class)")
    boxes, labels = torch.as_tensor(target["boxes"]), torch.as_tensor(target.get("labels", []))
    if boxes.dim() != 2 or boxes.shape[1] != 4 or labels.shape != (len(boxes),):
        raise ValueError(f"the ground truth needs boxes (G, 4) and labels (G,): got boxes {tuple(boxes.shape)} and "
                         f"labels {tuple(labels.shape)}")
    if len(boxes) > MAX_OBJECTS:
        raise ValueError(f"the ground truth has {len(boxes):,} boxes; this page trains on at most {MAX_OBJECTS} "
                         "objects of one image")
    if labels.is_floating_point() and not torch.equal(labels, labels.round()):
        raise ValueError(f"labels are class numbers (whole numbers); got {labels.tolist()[:5]}")
    boxes = boxes.double()
    if not torch.isfinite(boxes).all():
        raise ValueError("the ground-truth boxes contain NaN or infinite coordinates")
    thin = ((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])).nonzero().flatten()
    if len(thin):
        i = int(thin[0])
        raise ValueError(f"box {i} = {[round(float(v), 1) for v in boxes[i]]} has no area: boxes are (x1, y1, x2, y2), "
                         "the top-left corner first and x2 > x1, y2 > y1 (not x, y, width, height)")
    if size is not None:
        H, W = size
        if float(boxes.max()) <= 1.0 and max(H, W) > 16:
            raise ValueError(f"the boxes look normalised (all coordinates 0-1); give them in pixels of the "
                             f"{W}x{H} image")
        out = ((boxes[:, 0] >= W) | (boxes[:, 1] >= H) | (boxes[:, 2] <= 0) | (boxes[:, 3] <= 0)).nonzero().flatten()
        if len(out):
            i = int(out[0])
            raise ValueError(f"box {i} = {[round(float(v), 1) for v in boxes[i]]} lies outside the {W}x{H} image")
        if "masks" in target:
            masks = torch.as_tensor(target["masks"])
            if tuple(masks.shape) != (len(boxes), H, W):
                raise ValueError(f"the masks must be (G, H, W) = {(len(boxes), H, W)}, one per box at the image's "
                                 f"size; got {tuple(masks.shape)}")
    if module is None:                     # the target alone (the model's checks come with the run)
        return
    n = module.roi_heads.box_predictor.cls_score.out_features
    bad = [int(v) for v in labels.tolist() if not 1 <= int(v) < n]
    if bad:
        raise ValueError(f"label {bad[0]} is not an object class of this model: its classes are 1 to {n - 1} "
                         "(0 is the background)")
    rh = module.roi_heads
    if rh.has_mask() and "masks" not in target:
        raise ValueError("this Mask R-CNN also learns masks: give target['masks'] too, (G, H, W) with 1 inside each "
                         "object")
    if rh.has_keypoint() and "keypoints" not in target:
        raise ValueError("this Keypoint R-CNN also learns keypoints: give target['keypoints'] too, (G, K, 3) as "
                         "(x, y, visible)")


def target_for_image(target, loaded):
    """The user's ground truth on the image as loaded (a :class:`explainers.models.images.LoadedImage`):
    checked in the photo's own pixels (:func:`check_target`), then its boxes and masks shrunk with the
    image (a photo above the size limit is downscaled; its boxes, in the photo's pixels, were not). A
    phone photo turned upright by its EXIF tag is checked at its upright size, and a box outside it
    (or masks of another size) says the photo was turned (boxes given in the stored pixels of a photo
    turned 180° or mirrored fit the picture and cannot be told apart)."""
    from .images import _ORIENT_WORDS

    if not isinstance(target, dict):
        return target
    try:
        check_target(None, target, loaded.original_size)
    except ValueError as exc:
        # where the turn can be the cause: a box outside the upright picture, masks not of its size
        if loaded.orientation == 1 or not ("lies outside" in str(exc) or "masks must be" in str(exc)):
            raise
        h, w = loaded.original_size
        raise ValueError(f"{exc} (the photo is shown as its EXIF orientation tag says, {_ORIENT_WORDS[loaded.orientation]}, "
                         f"at {w}x{h}: give the ground truth in the pixels of the picture as a photo viewer "
                         "shows it)") from None
    if loaded.scale == 1.0:
        return target
    out = dict(target)
    out["boxes"] = torch.as_tensor(target["boxes"], dtype=torch.float32) * loaded.scale
    if "masks" in target:
        h, w = loaded.tensor.shape[-2:]
        masks = torch.as_tensor(target["masks"], dtype=torch.float32)[:, None]
        out["masks"] = (torch.nn.functional.interpolate(masks, size=(h, w), mode="nearest")[:, 0] > 0.5).to(torch.uint8)
    if "keypoints" in target:                     # (G, K, 3) as (x, y, visible): the positions shrink too
        kp = torch.as_tensor(target["keypoints"], dtype=torch.float32).clone()
        kp[..., :2] *= loaded.scale
        out["keypoints"] = kp
    return out


def training_run(model, image: torch.Tensor, target: dict, seed: int = SEED) -> TrainingRun:
    """Run a training-mode copy of ``model`` (a :class:`explainers.models.live.Detector`, or a
    torchvision ``GeneralizedRCNN``) once on ``image (3, H, W)`` in [0, 1] with ``target``
    (``boxes``, ``labels`` and, for Mask R-CNN, ``masks``), after ``torch.manual_seed(seed)``.
    The global random state is restored afterwards."""
    from torchvision.models.detection.rpn import concat_box_prediction_layers

    module = two_stage_module(model)
    check_target(module, target, tuple(image.shape[-2:]))
    net = copy.deepcopy(module).to("cpu").train()    # the model itself stays as it is
    cap: dict = {}

    def keep(name):
        return lambda mod, inp, out: cap.__setitem__(name, out)

    rh = net.roi_heads
    handles = [net.transform.register_forward_hook(keep("transform")),
               net.rpn.head.register_forward_hook(keep("head")),
               net.rpn.anchor_generator.register_forward_hook(keep("anchors")),
               net.rpn.register_forward_hook(keep("rpn")),
               net.rpn.register_forward_pre_hook(lambda mod, inp: cap.__setitem__("rng_rpn", torch.get_rng_state())),
               rh.register_forward_pre_hook(lambda mod, inp: cap.__setitem__("rng_roi", torch.get_rng_state())),
               rh.box_roi_pool.register_forward_pre_hook(lambda mod, inp: cap.__setitem__("pool_in", inp)),
               rh.box_predictor.register_forward_hook(keep("predictor"))]
    tgt = {k: torch.as_tensor(v) for k, v in target.items() if k in ("boxes", "labels", "masks", "keypoints")}
    tgt["boxes"], tgt["labels"] = tgt["boxes"].float(), tgt["labels"].long()      # what torchvision requires
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            losses = net([image.float().cpu()], [tgt])
    finally:
        for h in handles:
            h.remove()
    image_list, targets = cap["transform"]
    h, w = image_list.image_sizes[0]
    mean = torch.tensor(net.transform.image_mean)[:, None, None]
    std = torch.tensor(net.transform.image_std)[:, None, None]
    shown = (image_list.tensors[0].detach() * std + mean)[:, :h, :w].clamp(0, 1)
    obj_l, del_l = cap["head"]
    obj, deltas = concat_box_prediction_layers(list(obj_l), list(del_l))
    cls, reg = cap["predictor"]
    return TrainingRun(
        image=shown, gt_boxes=targets[0]["boxes"].detach(), gt_labels=targets[0]["labels"].detach(),
        anchors=cap["anchors"][0].detach(), objectness=obj.detach().reshape(-1), deltas=deltas.detach(),
        proposals=cap["rpn"][0][0].detach(), sampled_proposals=cap["pool_in"][1][0].detach(),
        class_logits=cls.detach(), box_regression=reg.detach(), rng_rpn=cap["rng_rpn"], rng_roi=cap["rng_roi"],
        rpn_settings=_settings(net.rpn.proposal_matcher, net.rpn.fg_bg_sampler, net.rpn.box_coder),
        roi_settings=_settings(rh.proposal_matcher, rh.fg_bg_sampler, rh.box_coder),
        losses={k: float(v.detach()) for k, v in losses.items()}, seed=int(seed),
        batch_norms=sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules()))


def _generator(state: torch.Tensor) -> torch.Generator:
    g = torch.Generator()
    g.set_state(state)
    return g


@dataclass
class Recomputed:
    """The training targets and losses rebuilt from a :class:`TrainingRun` with :mod:`explainers.ops`.

    Attributes:
        rpn: :class:`RPNTargets` for every anchor (labels 1 / 0 / -1, targets ``(A, 4)``).
        rpn_sample: :class:`SampleTrace` of the RPN's draw (from ``run.rng_rpn``).
        rpn_loss: :class:`RPNLoss`.
        box: :class:`BoxHeadTargets` (proposals + ground truth, matched, drawn from ``run.rng_roi``).
        box_loss: :class:`BoxHeadLoss` on the model's own class scores and box regression.
        losses: the four losses as floats, keys :data:`FOUR_LOSSES`.
    """

    rpn: RPNTargets
    rpn_sample: SampleTrace
    rpn_loss: RPNLoss
    box: BoxHeadTargets
    box_loss: BoxHeadLoss
    losses: dict


def recompute(run: TrainingRun) -> Recomputed:
    """Everything the model was taught on this image, with the ops only."""
    rs, bs = run.rpn_settings, run.roi_settings
    rpn = rpn_targets(run.anchors, run.gt_boxes, rs["high"], rs["low"], rs["weights"])
    pos, neg, st = sample(rpn.labels, rs["batch"], rs["fraction"], _generator(run.rng_rpn))
    rl = rpn_loss(run.objectness, run.deltas, rpn.labels, rpn.regression_targets, pos, neg)
    box = box_head_targets(run.proposals, run.gt_boxes, run.gt_labels, bs["high"], bs["low"], bs["batch"],
                           bs["fraction"], bs["weights"], _generator(run.rng_roi))
    bl = box_head_loss(run.class_logits, run.box_regression, box.sampled_labels, box.regression_targets)
    losses = dict(loss_objectness=float(rl.loss_objectness), loss_rpn_box_reg=float(rl.loss_rpn_box_reg),
                  loss_classifier=float(bl.loss_classifier), loss_box_reg=float(bl.loss_box_reg))
    return Recomputed(rpn, st, rl, box, bl, losses)


def loss_diff(recomputed: Recomputed, run: TrainingRun) -> float:
    """Largest ``|ops - model|`` over the four losses (``inf`` if the model's dict lacks one)."""
    return max(abs(recomputed.losses[k] - run.losses[k]) if k in run.losses else float("inf") for k in FOUR_LOSSES)


def sampled_proposals_diff(recomputed: Recomputed, run: TrainingRun) -> float:
    """Largest coordinate difference between the proposals the ops drew for the box head and the
    ones the model pooled (``inf`` when they are not even as many)."""
    a, b = recomputed.box.sampled_proposals, run.sampled_proposals
    return float((a - b).abs().max()) if a.shape == b.shape and a.numel() else (0.0 if a.shape == b.shape else float("inf"))


def best_roi(recomputed: Recomputed, run: TrainingRun, gt_index: int = 0) -> int:
    """Index (into the box head's sample) of the positive proposal that overlaps ground-truth box
    ``gt_index`` most: the "single object" the page shows inside Faster R-CNN."""
    from ..ops.boxes import box_iou

    box = recomputed.box
    lab = box.sampled_labels
    iou = box_iou(run.gt_boxes[gt_index:gt_index + 1], box.sampled_proposals)[0]
    iou[lab <= 0] = -1
    # a proposal of the RPN rather than a ground-truth box appended to them, when there is one
    real = iou.clone()
    real[box.sampled >= len(run.proposals)] = -1
    return int(real.argmax()) if real.max() > 0 else int(iou.argmax())


def xywh(boxes: torch.Tensor) -> torch.Tensor:
    """``(N, 4)`` corners to ``(x, y, w, h)`` (top-left corner, width, height)."""
    return torch.cat((boxes[:, :2], boxes[:, 2:] - boxes[:, :2]), 1)


def roi_prediction(recomputed: Recomputed, run: TrainingRun, k: int) -> dict:
    """Sampled proposal ``k`` of the box head: its class scores ``(C,)``, its label, its predicted
    box for that label (decoded with the ops) and its ground-truth box (``(4,)`` corners each),
    its proposal, the predicted ``regression`` and the ``target`` ``(dx, dy, dw, dh)``."""
    from ..ops.boxes import decode_boxes

    lab = int(recomputed.box.sampled_labels[k])
    prop = recomputed.box.sampled_proposals[k:k + 1]
    reg = run.box_regression[k].reshape(-1, 4)[lab][None]
    pred = decode_boxes(reg, prop, run.roi_settings["weights"])[0]
    target = run.gt_boxes[int(recomputed.box.match.best_gt[recomputed.box.sampled[k]])]
    return dict(scores=run.class_logits[k], label=lab, proposal=prop[0], box_pred=pred, box_true=target,
                regression=reg[0], target=recomputed.box.regression_targets[k])
