"""Bring your own model: ``wrap`` / ``load(task, weights=module)`` on every torchvision architecture.

Random weights (no download), small images and small ``min_size``/``max_size``; the models are
built once per module.  What is checked: the right wrapper and task, ``__call__`` equals the
trace's detections bit for bit, the trace fields have their documented shapes, anchors equal
:func:`explainers.ops.anchor_grid`, re-running the final NMS with :mod:`explainers.ops` gives the
model's own detections exactly, the RoI pooler's parameters reproduce the pooled features, and
unsupported modules are a clear one-line error.
"""
import inspect
import math

import pytest
import torch
import torchvision
from torchvision.models import detection as D
from torchvision.models import segmentation as S
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.ssd import SSD, SSDFeatureExtractorVGG
from torchvision.models.detection.transform import resize_boxes
from torchvision.ops import MultiScaleRoIAlign

from explainers.models import Detector, OneStageDetector, Segmenter, get, load, wrap
from explainers.models.traces import DetectorTrace, OneStageTrace
from explainers.ops import anchor_grid, batched_nms_trace, roi_align_trace

KW = dict(weights=None, weights_backbone=None, num_classes=4)
SMALL = dict(min_size=128, max_size=160)
CPU = "cpu"           # module-scoped fixtures run before the autouse fixture that sets EXPLAINERS_DEVICE


def _faster_rcnn_without_fpn():
    backbone = torchvision.models.mobilenet_v3_small(weights=None).features
    backbone.out_channels = 576
    return D.FasterRCNN(backbone, num_classes=4, rpn_anchor_generator=AnchorGenerator(((32, 64, 128),),
                                                                                      ((0.5, 1.0, 2.0),)),
                        box_roi_pool=MultiScaleRoIAlign(["0"], 7, 2), **SMALL)


TWO_STAGE = {
    "fasterrcnn_mobilenet_v3_large_fpn": lambda: D.fasterrcnn_mobilenet_v3_large_fpn(**KW, **SMALL),
    "fasterrcnn_without_fpn": _faster_rcnn_without_fpn,
    "maskrcnn_resnet50_fpn": lambda: D.maskrcnn_resnet50_fpn(**KW, **SMALL, box_detections_per_img=20),
    "keypointrcnn_resnet50_fpn": lambda: D.keypointrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=2, num_keypoints=5, box_detections_per_img=10, **SMALL),
}


def _ssdlite():
    m = D.ssdlite320_mobilenet_v3_large(**KW)
    m.topk_candidates = 100                     # a module attribute: the trace must read it from there
    return m


def _ssd300():
    m = D.ssd300_vgg16(**KW)
    m.topk_candidates = 100
    return m


# the heads start with a 0.01 prior, under the default score thresholds: lower them so there are detections
ONE_STAGE = {
    "retinanet_resnet50_fpn": lambda: D.retinanet_resnet50_fpn(**KW, **SMALL, score_thresh=0.005,
                                                                topk_candidates=150),
    "fcos_resnet50_fpn": lambda: D.fcos_resnet50_fpn(**KW, **SMALL, score_thresh=0.05, topk_candidates=150),
    "ssdlite320_mobilenet_v3_large": _ssdlite,
    "ssd300_vgg16": _ssd300,
}
SLOW = {"ssd300_vgg16", "fcn_resnet50"}


@pytest.fixture(scope="module")
def image():
    g = torch.Generator().manual_seed(13)
    img = torch.rand(3, 128, 160, generator=g)
    img[:, 30:90, 40:110] *= 0.3                # some structure besides noise
    return img


def _build(builder):
    torch.manual_seed(0)
    return builder()


@pytest.fixture(scope="module", params=list(TWO_STAGE), ids=list(TWO_STAGE))
def two_stage(request, image):
    module = _build(TWO_STAGE[request.param])
    m = wrap(module, device=CPU)
    return request.param, module, m, m(image), m.trace(image)


def _params(names):
    return [pytest.param(k, marks=pytest.mark.slow) if k in SLOW else k for k in names]


@pytest.fixture(scope="module", params=_params(ONE_STAGE))
def one_stage(request, image):
    module = _build(ONE_STAGE[request.param])
    m = wrap(module, device=CPU)
    return module, m, m(image), m.trace(image)


def _same_detections(a, b):
    for x, y in ((a.boxes, b.boxes), (a.scores, b.scores), (a.labels, b.labels)):
        assert torch.equal(x, y)
    assert a.names == b.names
    assert (a.masks is None) == (b.masks is None)
    if a.masks is not None:
        assert torch.equal(a.masks, b.masks)


# ----------------------------------------------------------------------------- two-stage
def test_two_stage_wrap_call_equals_trace(two_stage, image):
    name, module, m, plain, tr = two_stage
    assert isinstance(m, Detector) and isinstance(tr, DetectorTrace)
    assert m.has_rpn and m.has_roi_pooling and tr.has_rpn and tr.has_roi_pooling
    assert m.task == ("instance" if name.startswith("mask") else "detection")
    n = 2 if name.startswith("keypoint") else 4
    assert m.classes == ["background"] + [f"class {i}" for i in range(1, n)]
    assert m.weights == f"module:{type(module).__name__}" and not module.training
    _same_detections(plain, tr.detections)
    assert len(plain.boxes) > 0
    assert all(not mod._forward_hooks for mod in module.modules())
    # documented shapes
    A, R, D_ = tr.anchors.shape[0], tr.proposals.shape[0], len(plain.boxes)
    assert tr.anchors.shape == (A, 4) and tr.objectness.shape == (A,) and tr.deltas.shape == (A, 4)
    assert sum(tr.anchors_per_level) == A and len(tr.feature_sizes) == len(tr.anchors_per_level)
    assert tr.box_features.shape == (R, tr.box_features.shape[1]) + tr.roi_output_size
    assert tr.proposal_features is tr.box_features
    assert tr.class_logits.shape == (R, n) and tr.box_regression.shape == (R, 4 * n)
    h, w = (round(s * d) for s, d in zip(tr.scale, image.shape[-2:]))
    assert tr.input_image.shape == (3, h, w)
    if name.startswith("mask"):
        assert plain.masks.shape == (D_,) + tuple(image.shape[-2:]) and tr.mask_logits.shape == (D_, n, 28, 28)
    else:
        assert plain.masks is None and tr.mask_logits is None
    if name.startswith("keypoint"):
        assert tr.keypoints.shape == (D_, 5, 3) and tr.keypoint_scores.shape == (D_, 5)
    else:
        assert tr.keypoints is None


def test_two_stage_anchors_equal_ops(two_stage):
    *_, tr = two_stage
    parts = tr.anchors.split(tr.anchors_per_level)
    assert len(parts) == len(tr.anchor_sizes) == len(tr.feature_sizes)
    for part, fs, sizes, ratios in zip(parts, tr.feature_sizes, tr.anchor_sizes, tr.anchor_ratios):
        ours, _ = anchor_grid(tr.input_tensor.shape[-2:], fs, sizes, ratios)
        assert torch.equal(ours, part)


def test_two_stage_nms_is_reproduced_by_ops(two_stage, image):
    _, module, _, _, tr = two_stage
    keep, _ = batched_nms_trace(tr.proposals_pre_nms, tr.proposal_scores_pre_nms, tr.proposal_levels_pre_nms,
                                tr.rpn_nms_threshold)
    assert torch.equal(tr.proposals_pre_nms[keep[:module.rpn.post_nms_top_n()]], tr.proposals)
    keep, _ = tr.final_nms()
    back = resize_boxes(tr.boxes_pre_nms[keep], tr._input_size, tuple(image.shape[-2:]))
    assert torch.equal(back, tr.detections.boxes)
    assert torch.equal(tr.scores_pre_nms[keep], tr.detections.scores)
    assert torch.equal(tr.labels_pre_nms[keep], tr.detections.labels)


def test_two_stage_roi_pooler_parameters(two_stage):
    _, module, _, _, tr = two_stage
    pool = module.roi_heads.box_roi_pool
    assert tr.roi_output_size == (7, 7) and tr.roi_sampling_ratio == pool.sampling_ratio == 2
    assert tr.roi_scales == tuple(pool.scales) and len(tr.roi_scales) == len(tr.roi_featmap_names)
    assert set(tr.roi_featmap_names) <= set(pool.featmap_names) and set(tr.roi_featmap_names) <= set(tr.features)
    assert tr.roi_k_min == int(-math.log2(tr.roi_scales[0])) and tr.roi_k_max == int(-math.log2(tr.roi_scales[-1]))
    assert (tr.roi_canonical_scale, tr.roi_canonical_level) == (224, 4)
    # roi_level is the model's own mapper, and follows the documented heuristic
    mapper = pool.map_levels
    area = (tr.proposals[:, 2] - tr.proposals[:, 0]) * (tr.proposals[:, 3] - tr.proposals[:, 1])
    heuristic = torch.floor(tr.roi_canonical_level + torch.log2(area.sqrt() / tr.roi_canonical_scale)
                            + torch.tensor(1e-6)).clamp(tr.roi_k_min, tr.roi_k_max).long() - tr.roi_k_min
    assert torch.equal(tr.proposal_levels, mapper([tr.proposals])) and torch.equal(tr.proposal_levels, heuristic)
    for p in tr.proposals[:5]:
        assert tr.roi_level(p) == int(mapper([p[None]])[0])
    assert tr.roi_level([0, 0, 2000, 2000]) == tr.roi_k_max - tr.roi_k_min
    # the exposed parameters reproduce the model's own pooled features
    for i in range(0, len(tr.proposals), max(1, len(tr.proposals) // 6)):
        lvl = tr.roi_level(tr.proposals[i])
        out, _ = roi_align_trace(tr.features[tr.roi_featmap_names[lvl]][0], tr.proposals[i], tr.roi_output_size,
                                 tr.roi_scales[lvl], tr.roi_sampling_ratio)
        torch.testing.assert_close(out, tr.box_features[i], rtol=1e-4, atol=1e-5)


def test_fpn_two_stage_pools_several_levels(image):
    """On a ResNet-50 FPN the mapper really spreads the proposals over levels 2..5."""
    m = wrap(_build(TWO_STAGE["maskrcnn_resnet50_fpn"]), device=CPU)
    tr = m.trace(image)
    assert tr.roi_featmap_names == ("0", "1", "2", "3") and (tr.roi_k_min, tr.roi_k_max) == (2, 5)
    assert tr.roi_scales == (0.25, 0.125, 0.0625, 0.03125)
    assert len(torch.unique(tr.proposal_levels)) >= 2


# ----------------------------------------------------------------------------- one-stage
def test_one_stage_wrap_call_equals_trace(one_stage, image):
    module, m, plain, tr = one_stage
    arch = m.architecture
    assert isinstance(m, OneStageDetector) and isinstance(tr, OneStageTrace) and tr.architecture == arch
    assert arch == ("SSD" if isinstance(module, SSD) else type(module).__name__)
    assert not (m.has_rpn or m.has_roi_pooling or tr.has_rpn or tr.has_roi_pooling) and not m.has_masks
    assert m.task == "detection" and m.classes == ["background", "class 1", "class 2", "class 3"]
    _same_detections(plain, tr.detections)
    assert len(plain.boxes) > 0 and plain.masks is None
    assert all(not mod._forward_hooks for mod in module.modules())
    # documented shapes
    A, C = tr.anchors.shape[0], len(m.classes)
    assert tr.anchors.shape == (A, 4) and sum(tr.anchors_per_level) == A
    assert len(tr.anchors_per_level) == len(tr.features) == len(tr.feature_sizes)
    assert [tuple(f.shape[-2:]) for f in tr.features.values()] == tr.feature_sizes
    assert tr.class_logits.shape == (A, C) and tr.box_regression.shape == (A, 4) and tr.class_scores.shape == (A, C)
    assert tr.points.shape == (A, 2) and tr.anchor_levels.shape == (A,)
    assert (tr.centerness is not None) == (arch == "FCOS")
    if arch == "FCOS":
        assert tr.centerness.shape == (A,) and tr.box_coder_weights is None
    h, w = tr._input_size
    assert tr.input_image.shape == (3, h, w) and tr.input_tensor.shape[:2] == (1, 3)
    if arch == "SSD":
        assert (h, w) == ((300, 300) if isinstance(module.backbone, SSDFeatureExtractorVGG) else (320, 320))
    # the module's own constants
    assert (tr.nms_threshold, tr.score_threshold, tr.detections_per_img, tr.topk_candidates) == \
        (module.nms_thresh, module.score_thresh, module.detections_per_img, module.topk_candidates)
    N = tr.boxes_pre_nms.shape[0]
    assert tr.boxes_pre_nms.shape == (N, 4) and N >= len(plain.boxes)
    for v in (tr.scores_pre_nms, tr.labels_pre_nms, tr.anchor_index_pre_nms, tr.levels_pre_nms):
        assert v.shape == (N,)
    assert torch.equal(tr.levels_pre_nms, tr.anchor_levels[tr.anchor_index_pre_nms])
    assert bool((tr.labels_pre_nms >= 0).all()) and bool((tr.labels_pre_nms < C).all())
    assert torch.equal(tr.scores_pre_nms, tr.class_scores[tr.anchor_index_pre_nms, tr.labels_pre_nms])


def test_one_stage_candidates_by_the_model_are_the_transcribed_ones_and_leave_the_model_as_it_was(one_stage):
    """The model's own postprocess_detections with its NMS off gives the candidates its NMS receives:
    the same (box, score, label) triples as the transcription of the lines before batched_nms, and
    the module's nms_thresh and detections_per_img are put back."""
    module, _, _, tr = one_stage
    before = (module.nms_thresh, module.detections_per_img)
    boxes, scores, labels = tr.candidates_by_the_model
    assert (module.nms_thresh, module.detections_per_img) == before
    N = len(tr.scores_pre_nms)
    assert boxes.shape == (N, 4) and scores.shape == labels.shape == (N,)

    def rows(b, s, lab):                 # one row per candidate, in one order (score, label, box)
        t = torch.cat([s[:, None], lab[:, None].to(s.dtype), b], dim=1)
        for col in reversed(range(t.shape[1])):
            t = t[torch.argsort(t[:, col], stable=True)]
        return t

    torch.testing.assert_close(rows(boxes, scores, labels),
                               rows(tr.boxes_pre_nms, tr.scores_pre_nms, tr.labels_pre_nms), rtol=0, atol=1e-5)


def test_one_stage_anchors(one_stage):
    module, _, _, tr = one_stage
    gen = module.anchor_generator
    if isinstance(gen, AnchorGenerator):             # RetinaNet, FCOS: the grid of explainers.ops
        parts = tr.anchors.split(tr.anchors_per_level)
        for part, fs, sizes, ratios in zip(parts, tr.feature_sizes, tr.anchor_sizes, tr.anchor_ratios):
            ours, _ = anchor_grid(tr.input_tensor.shape[-2:], fs, sizes, ratios)
            assert torch.equal(ours, part)
    else:                                            # SSD's DefaultBoxGenerator: k boxes per cell, centred
        assert tr.anchor_sizes == ()
        counts = [fh * fw * k for (fh, fw), k in zip(tr.feature_sizes, gen.num_anchors_per_location())]
        assert counts == tr.anchors_per_level
        first = tr.points[: gen.num_anchors_per_location()[0]]
        assert torch.allclose(first, first[:1].expand_as(first))


def test_one_stage_nms_is_reproduced_by_ops(one_stage, image):
    _, _, _, tr = one_stage
    keep, nms = tr.final_nms()
    back = resize_boxes(tr.boxes_pre_nms[keep], tr._input_size, tuple(image.shape[-2:]))
    assert torch.equal(back, tr.detections.boxes)
    assert torch.equal(tr.scores_pre_nms[keep], tr.detections.scores)
    assert torch.equal(tr.labels_pre_nms[keep], tr.detections.labels)
    assert len(nms.keep) >= len(keep)


def test_transcribed_one_stage_postprocess_still_matches_torchvision():
    """The transcription in ``OneStageTrace._pre_nms`` follows these lines of torchvision's source."""
    from torchvision.models.detection.fcos import FCOS
    from torchvision.models.detection.retinanet import RetinaNet

    checks = {
        RetinaNet.postprocess_detections: ["torch.sigmoid(logits_per_level).flatten()",
                                           "scores_per_level > self.score_thresh",
                                           "det_utils._topk_min(topk_idxs, self.topk_candidates, 0)",
                                           "self.box_coder.decode_single(",
                                           ("box_ops.batched_nms(image_boxes, image_scores, image_labels, "
                                            "self.nms_thresh)"),
                                           "keep[: self.detections_per_img]"],
        RetinaNet.forward: ["A = HWA // HW", "num_anchors_per_level = [hw * A for hw in num_anchors_per_level]"],
        FCOS.postprocess_detections: ["torch.sigmoid(logits_per_level) * torch.sigmoid(box_ctrness_per_level)",
                                      "self.box_coder.decode(", "keep[: self.detections_per_img]"],
        FCOS.forward: ["num_anchors_per_level = [x.size(2) * x.size(3) for x in features]"],
        SSD.postprocess_detections: ['F.softmax(head_outputs["cls_logits"], dim=-1)',
                                     "for label in range(1, num_classes):", "keep_idxs = score > self.score_thresh",
                                     "det_utils._topk_min(score, self.topk_candidates, 0)",
                                     "keep[: self.detections_per_img]"],
    }
    for fn, lines in checks.items():
        src = inspect.getsource(fn)
        for line in lines:
            assert line in src, f"torchvision's {fn.__qualname__} changed: {line!r} is gone"


# ----------------------------------------------------------------------------- segmentation
SEGMENTATION = {
    "fcn_resnet50": lambda: S.fcn_resnet50(weights=None, weights_backbone=None, num_classes=4, aux_loss=True),
    "deeplabv3_mobilenet_v3_large": lambda: S.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None,
                                                                          num_classes=4),
    "lraspp_mobilenet_v3_large": lambda: S.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None,
                                                                    num_classes=4),
}


@pytest.mark.parametrize("name", _params(SEGMENTATION))
def test_segmentation_models(name, image):
    module = _build(SEGMENTATION[name])
    m = wrap(module, device=CPU)
    assert isinstance(m, Segmenter) and m.task == "segmentation"
    assert m.classes == ["background", "class 1", "class 2", "class 3"]
    plain, tr = m(image), m.trace(image)
    assert torch.equal(plain.labels, tr.result.labels) and torch.equal(plain.probabilities, tr.result.probabilities)
    H, W = image.shape[-2:]
    assert plain.labels.shape == (H, W) and plain.probabilities.shape == (4, H, W) and tr.logits.shape == (4, H, W)
    torch.testing.assert_close(plain.probabilities.sum(0), torch.ones(H, W))
    if name.startswith("lraspp"):                   # the logits are the module's own "out"
        mean, std = torch.tensor(Segmenter.MEAN)[:, None, None], torch.tensor(Segmenter.STD)[:, None, None]
        with torch.inference_mode():
            ref = module(((image - mean) / std)[None])["out"][0]
        assert torch.equal(tr.logits, ref)


# ----------------------------------------------------------------------------- classes, load, errors
def test_class_names_sized_from_the_model(image):
    torch.manual_seed(0)
    assert wrap(D.fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, num_classes=91),
                device=CPU).classes[:3] == ["__background__", "person", "bicycle"]
    seg = wrap(S.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21), device=CPU)
    assert len(seg.classes) == 21 and seg.classes[1] == "aeroplane"
    mine = ["background", "cat", "dog", "cow"]
    m = wrap(D.fasterrcnn_mobilenet_v3_large_320_fpn(**KW, **SMALL), classes=mine, device=CPU)
    assert m.classes == mine
    r = m(image)
    assert r.classes == mine and set(r.names) <= set(mine[1:]) and len(r.names) == len(r.boxes) > 0
    with pytest.raises(ValueError, match="classes has 3 names but the model predicts 4 classes"):
        wrap(m.module, classes=mine[:3], device=CPU)
    for bad in (5, "cat", ["background", 1, 2, 3]):               # not a list of names: one line, no TypeError
        with pytest.raises(ValueError, match="classes must be a list of class names"):
            wrap(m.module, classes=bad, device=CPU)


def test_load_and_get_accept_a_module(image):
    module = _build(TWO_STAGE["maskrcnn_resnet50_fpn"])
    inst = load("instance", module, device=CPU)
    det = load("detection", module, device=CPU)
    assert isinstance(inst, Detector) and inst.task == "instance" and det.task == "detection"
    assert det(image).masks is None and inst(image).masks is not None
    assert get("detection", module).task == "detection"
    one = load("detection", _build(ONE_STAGE["fcos_resnet50_fpn"]), device=CPU)
    assert isinstance(one, OneStageDetector)
    seg = load("segmentation", _build(SEGMENTATION["lraspp_mobilenet_v3_large"]), device=CPU)
    assert isinstance(seg, Segmenter)


def _one_line_value_error(fn, *needles):
    with pytest.raises(ValueError) as err:
        fn()
    msg = str(err.value)
    assert "\n" not in msg and not isinstance(err.value, TypeError), msg
    for n in needles:
        assert n in msg, msg
    return msg


def test_unsupported_modules_are_a_clear_error():
    resnet = torchvision.models.resnet18(weights=None)
    supported = ("Faster R-CNN", "Mask R-CNN", "Keypoint R-CNN", "RetinaNet", "FCOS", "SSD", "FCN", "DeepLabV3",
                 "LR-ASPP", "a ResNet is an image classifier, one label for the whole image")
    _one_line_value_error(lambda: wrap(resnet), *supported)
    _one_line_value_error(lambda: load("detection", resnet), *supported)
    _one_line_value_error(lambda: get("segmentation", resnet), *supported)
    _one_line_value_error(lambda: wrap(torch.nn.Linear(2, 2)), "got a Linear")
    _one_line_value_error(lambda: wrap("fasterrcnn"), "got a str (the name 'fasterrcnn': pass the model itself")
    frcnn = _faster_rcnn_without_fpn()
    _one_line_value_error(lambda: load("instance", frcnn), "cannot do 'instance'", "no mask head")
    _one_line_value_error(lambda: load("segmentation", frcnn), "cannot do 'segmentation'", "'detection'")
    _one_line_value_error(lambda: wrap(frcnn, task="boxes"), "task must be one of")
    seg = S.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=4)
    _one_line_value_error(lambda: load("detection", seg), "cannot do 'detection'", "'segmentation'")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_a_model_in_another_precision_is_converted_to_float32_and_says_so(dtype, image):
    """The pages compute, draw and check in float32: a float64 / float16 / bfloat16 model is
    converted (in place, like the move to the device), with a warning and a notice; it then gives
    what the same model in float32 gives."""
    import copy

    reference = get("detection", "shapes")
    module = copy.deepcopy(reference.module).to(dtype)
    expected = {p.dtype for p in module.parameters()}
    assert expected == {dtype}
    with pytest.warns(UserWarning, match=f"{str(dtype)[6:]} weights were converted to float32"):
        m = wrap(module, classes=reference.classes, device=CPU)
    assert {p.dtype for p in m.module.parameters()} == {torch.float32}
    assert "converted to float32" in m.notice and "\n" not in m.notice
    # float64 -> float32 is exact for weights that were float32; half precision rounded them
    want = wrap(copy.deepcopy(module).float(), classes=reference.classes, device=CPU)(image)
    got = m(image)
    assert torch.equal(got.boxes, want.boxes) and torch.equal(got.labels, want.labels)
    if dtype == torch.float64:
        base = reference(image)
        assert torch.allclose(got.boxes, base.boxes, atol=1e-3) and torch.equal(got.labels, base.labels)


def test_a_float32_model_has_no_notice(image):
    import copy
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = wrap(copy.deepcopy(get("segmentation", "shapes").module), device=CPU)
    assert m.notice == ""
