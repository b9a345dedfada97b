"""The same numbers through the real operators: torch and torchvision, on the inputs an
explainer draws. Check lines and tests compare :mod:`explainers.ops` with these; widgets never
call torch's or torchvision's operators themselves.

Sizes are checked like the ops' own (``MAX_ELEMENTS``, ``explainers/ops/_checks.py``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ._checks import MAX_ELEMENTS, as_tensor, check_boxes, check_size, prod
from .conv_matrix import _geometry
from .unpool import MODES, _from_4d, _to_4d


def reference_conv_transpose(y, kernel, input_shape, stride=1, padding=0) -> torch.Tensor:
    """``F.conv_transpose1d/2d`` with the ``output_padding`` that gives ``input_shape``
    (at most ``MAX_ELEMENTS`` elements)."""
    k = as_tensor(kernel, "kernel")
    if not k.is_floating_point():
        k = k.to(torch.float32)
    shape, ks, s, p, _ = _geometry(k, input_shape, stride, padding)
    check_size(prod(shape), MAX_ELEMENTS, f"the output ({'x'.join(map(str, shape))})", "use a smaller input_shape")
    op = tuple((n + 2 * pd - kk) % st for n, kk, st, pd in zip(shape, ks, s, p))
    yt = as_tensor(y, "y").to(k.dtype)[None, None]
    fn = F.conv_transpose1d if k.dim() == 1 else F.conv_transpose2d
    return fn(yt, k[None, None], stride=s, padding=p, output_padding=op)[0, 0]


def reference_conv(x, kernel, stride=1, padding=0) -> torch.Tensor:
    """``F.conv1d/2d`` on one channel: ``x`` is ``(L,)`` or ``(H, W)`` like the kernel
    (output at most ``MAX_ELEMENTS`` elements)."""
    k = as_tensor(kernel, "kernel")
    if not k.is_floating_point():
        k = k.to(torch.float32)
    xt = as_tensor(x, "x").to(k.dtype)
    if not isinstance(padding, str):   # torch also accepts "same" / "valid", which never grow the output
        out = _geometry(k, tuple(xt.shape), stride, padding)[4]
        check_size(prod(out), MAX_ELEMENTS, f"the output ({'x'.join(map(str, out))})", "use less padding")
    xt = xt[None, None]
    fn = F.conv1d if k.dim() == 1 else F.conv2d
    return fn(xt, k[None, None], stride=stride, padding=padding)[0, 0]


def reference_unpool(x: torch.Tensor, mode: str, scale: int = 2, indices=None, output_size=None) -> torch.Tensor:
    """The torch operator each mode must equal (used by tests and check lines).

    ``"bed_of_nails"`` has no torch operator of its own; it is a transposed
    convolution with a one-hot ``scale x scale`` kernel (1 at the top-left),
    which is what the reference computes.  Its output is limited to
    ``MAX_ELEMENTS`` elements, like :func:`unpool`'s trace.
    """
    t, dim = _to_4d(x)
    N, C, H, W = t.shape
    Ho, Wo = (H * scale, W * scale) if output_size is None else tuple(output_size)[-2:]
    check_size(prod((N, C, Ho, Wo)), MAX_ELEMENTS, f"the reference {mode} unpooling output ({N}x{C}x{Ho}x{Wo})",
               "use a smaller scale or output_size, or fewer channels")
    if mode == "nearest":
        out = F.interpolate(t, scale_factor=scale, mode="nearest") if output_size is None \
            else F.interpolate(t, size=tuple(output_size)[-2:], mode="nearest")
    elif mode == "bilinear":
        out = F.interpolate(t, scale_factor=scale, mode="bilinear", align_corners=False) if output_size is None \
            else F.interpolate(t, size=tuple(output_size)[-2:], mode="bilinear", align_corners=False)
    elif mode == "max":
        ind, _ = _to_4d(indices)
        out = F.max_unpool2d(t, ind.long(), scale, output_size=None if output_size is None else tuple(output_size)[-2:])
    elif mode == "bed_of_nails":
        k = torch.zeros(C, 1, scale, scale, dtype=t.dtype)
        k[:, :, 0, 0] = 1
        out = F.conv_transpose2d(t, k, stride=scale, groups=C)
        if output_size is not None:
            Ho, Wo = tuple(output_size)[-2:]
            out = F.pad(out, (0, max(0, Wo - out.shape[-1]), 0, max(0, Ho - out.shape[-2])))[..., :Ho, :Wo]
    else:
        raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    return _from_4d(out, dim)


def reference_max_pool(x: torch.Tensor, kernel: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """``F.max_pool2d(x, kernel, return_indices=True)`` on an ``(H, W)`` or ``(C, H, W)`` map: the
    maxima and the switches (flat indices into each ``H x W`` plane) that
    :func:`~explainers.ops.max_pool_with_switches` must equal."""
    t, dim = _to_4d(x)
    values, indices = F.max_pool2d(t.float(), kernel, return_indices=True)
    return _from_4d(values, dim), _from_4d(indices, dim)


def reference_anchors(image_size, feature_size, sizes, aspect_ratios) -> torch.Tensor:
    """``(Hf * Wf * K, 4)`` anchors from torchvision's ``AnchorGenerator`` for one feature map."""
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.image_list import ImageList

    (H, W), (Hf, Wf) = image_size, feature_size
    check_size(Hf * Wf * len(sizes) * len(aspect_ratios) * 4, MAX_ELEMENTS, "the reference anchors",
               "use a smaller feature map")
    gen = AnchorGenerator((tuple(sizes),), (tuple(aspect_ratios),))
    # the generator reads only the shapes of the image batch and the feature map
    return gen(ImageList(torch.zeros(1, 1, H, W), [(H, W)]), [torch.zeros(1, 1, Hf, Wf)])[0]


def reference_decode_boxes(deltas, anchors, weights) -> torch.Tensor:
    """torchvision's ``BoxCoder(weights).decode_single(deltas, anchors)``."""
    from torchvision.models.detection._utils import BoxCoder

    return BoxCoder(tuple(float(w) for w in weights)).decode_single(as_tensor(deltas, "deltas").float(),
                                                                    check_boxes(anchors, "anchors"))


def reference_nms(boxes, scores, iou_threshold: float, labels=None) -> tuple[torch.Tensor, str]:
    """``(keep, name)``: ``torchvision.ops.batched_nms`` when ``labels`` are given, else ``nms``."""
    import torchvision

    b, s = check_boxes(boxes), as_tensor(scores, "scores").float()
    if labels is None:
        return torchvision.ops.nms(b, s, iou_threshold), "torchvision.ops.nms"
    return torchvision.ops.batched_nms(b, s, as_tensor(labels, "labels"), iou_threshold), \
        "torchvision.ops.batched_nms"


def reference_nms_per_class(boxes, scores, iou_threshold: float, labels) -> tuple[torch.Tensor, str]:
    """``(keep, name)``: ``torchvision.ops.nms`` run on each class by itself, the kept boxes by
    decreasing score (equal scores: lower index first). This is what class-aware NMS means;
    ``torchvision.ops.batched_nms`` computes it on shifted float32 coordinates for at most 1,000
    boxes, which can move an IoU across the threshold (see :func:`explainers.ops.batched_nms_trace`)."""
    import torchvision

    b, s = check_boxes(boxes), as_tensor(scores, "scores").float()
    lab = as_tensor(labels, "labels").reshape(-1)
    kept = [torch.nonzero(lab == c)[:, 0][torchvision.ops.nms(b[lab == c], s[lab == c], iou_threshold)]
            for c in torch.unique(lab)]
    keep = torch.cat(kept).sort().values if kept else torch.zeros(0, dtype=torch.int64)
    return keep[torch.sort(s[keep], descending=True, stable=True)[1]], "torchvision.ops.nms class by class"


def reference_roi_pool(features, box, output_size, spatial_scale: float = 1.0) -> torch.Tensor:
    """``torchvision.ops.roi_pool`` of one box on ``(C, H, W)`` features: ``(C, out_h, out_w)``."""
    import torchvision

    return torchvision.ops.roi_pool(features[None], [check_boxes(box)], output_size, spatial_scale)[0]


def reference_roi_pool_argmax(features, box, output_size, spatial_scale: float = 1.0) -> torch.Tensor:
    """The cell each bin of ``torchvision.ops.roi_pool`` took: ``(C, out_h, out_w)`` flat indices
    ``y * W + x`` into the ``(H, W)`` map, -1 for an empty bin (torchvision's own operator returns
    them beside the output; ``torchvision.ops.roi_pool`` drops them)."""
    import torchvision  # noqa: F401  (registers torch.ops.torchvision)

    oh, ow = (output_size, output_size) if isinstance(output_size, int) else output_size
    rois = torch.cat([torch.zeros(1, 1, dtype=features.dtype), check_boxes(box).to(features.dtype)], dim=1)
    return torch.ops.torchvision.roi_pool(features[None], rois, float(spatial_scale), int(oh), int(ow))[1][0]


def reference_roi_align(features, box, output_size, spatial_scale: float = 1.0, sampling_ratio: int = -1,
                        aligned: bool = False) -> torch.Tensor:
    """``torchvision.ops.roi_align`` of one box on ``(C, H, W)`` features: ``(C, out_h, out_w)``."""
    import torchvision

    return torchvision.ops.roi_align(features[None], [check_boxes(box)], output_size, spatial_scale,
                                     sampling_ratio, aligned)[0]


def reference_conv_transpose_explicit(y, kernel, stride=1, padding=0, output_padding=0) -> torch.Tensor:
    """``F.conv_transpose1d/2d`` on one channel with the ``output_padding`` given (not derived);
    output at most ``MAX_ELEMENTS`` elements."""
    from .conv_matrix import conv_transpose_output_shape

    k = as_tensor(kernel, "kernel")
    if not k.is_floating_point():
        k = k.to(torch.float32)
    yt = as_tensor(y, "y").to(k.dtype)
    out = conv_transpose_output_shape(tuple(k.shape), tuple(yt.shape), stride, padding, output_padding)
    check_size(prod(out), MAX_ELEMENTS, f"the output ({'x'.join(map(str, out))})", "use a smaller input")
    fn = F.conv_transpose1d if k.dim() == 1 else F.conv_transpose2d
    return fn(yt[None, None], k[None, None], stride=stride, padding=padding, output_padding=output_padding)[0, 0]


def reference_copies(y, kernel, stride=1, output_padding=0) -> tuple[torch.Tensor, torch.Tensor]:
    """What the slide's picture of a transposed convolution draws, each by ``F.conv_transpose``
    (padding 0: the whole canvas): ``rows`` ``(prod(n), prod(L))``, row ``j`` the transposed
    convolution of the one-hot input ``e_j`` (the canvas matrix X's row ``j``), and ``partial``
    ``(prod(n),) + L``, entry ``k`` the transposed convolution of ``y`` with every entry after the
    ``k``-th set to 0 (the running sum of the weighted copies). At most ``MAX_ELEMENTS`` each."""
    k = as_tensor(kernel, "kernel")
    if not k.is_floating_point():
        k = k.to(torch.float32)
    yt = as_tensor(y, "y").to(k.dtype)
    n = yt.numel()
    one = reference_conv_transpose_explicit(torch.zeros_like(yt), k, stride, 0, output_padding)
    check_size(n * one.numel(), MAX_ELEMENTS, f"{n} copies of a {'x'.join(map(str, one.shape))} canvas",
               "use a smaller input")
    rows, partial = [], []
    flat = yt.reshape(-1)
    for j in range(n):
        e = torch.zeros(n, dtype=k.dtype)
        e[j] = 1
        rows.append(reference_conv_transpose_explicit(e.reshape(yt.shape), k, stride, 0, output_padding).reshape(-1))
        head = torch.where(torch.arange(n) <= j, flat, torch.zeros_like(flat))
        partial.append(reference_conv_transpose_explicit(head.reshape(yt.shape), k, stride, 0, output_padding))
    return torch.stack(rows), torch.stack(partial)


def reference_rpn_proposals(anchors, scores, deltas, weights, image_size, top_k: int, nms_threshold: float,
                            post_nms_top_n: int, min_size: float = 1e-3,
                            score_threshold: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision's own proposal selection on one feature level: ``BoxCoder(weights).decode_single``
    of ``deltas (A, 4)`` on ``anchors (A, 4)``, then ``RegionProposalNetwork.filter_proposals`` (top
    ``top_k`` by objectness, clip to ``image_size (h, w)``, ``remove_small_boxes``, the score
    threshold, NMS, the first ``post_nms_top_n``). ``scores (A,)`` are probabilities (the logits the
    RPN would see are their inverse sigmoid). Returns ``(boxes (P, 4), scores (P,))``."""
    from torchvision.models.detection._utils import BoxCoder
    from torchvision.models.detection.rpn import RegionProposalNetwork

    sc = as_tensor(scores, "scores").reshape(-1)
    a = check_boxes(anchors, "anchors").float()
    d = as_tensor(deltas, "deltas").reshape(-1, 4).float()
    n = {"training": int(top_k), "testing": int(top_k)}
    post = {"training": int(post_nms_top_n), "testing": int(post_nms_top_n)}
    rpn = RegionProposalNetwork(None, None, 0.7, 0.3, 256, 0.5, n, post, float(nms_threshold),
                                float(score_threshold)).eval()
    rpn.min_size = float(min_size)
    p = sc.double().clamp(1e-12, 1 - 1e-12)
    logits = torch.log(p / (1 - p)).float()
    boxes = BoxCoder(tuple(float(w) for w in weights)).decode_single(d, a)
    out, out_scores = rpn.filter_proposals(boxes[None], logits[None], [tuple(int(v) for v in image_size)], [len(sc)])
    return out[0], out_scores[0]


def reference_top_k(scores, k: int) -> torch.Tensor:
    """``torch.topk(scores, k).values``: the ``k`` best scores, best first (which of several equal
    scores is taken is not defined; the values are)."""
    sc = as_tensor(scores, "scores").reshape(-1)
    return torch.topk(sc, min(int(k), len(sc))).values


def reference_rpn_choice_is_valid(anchors, scores, deltas, weights, image_size, nms_threshold: float,
                                  post_nms_top_n: int, min_size: float, score_threshold: float,
                                  proposals) -> bool:
    """Whether ``proposals (P, 4)`` are *a* correct result of the RPN's selection from these ``k``
    anchors, whichever way equal scores are ordered: torchvision decodes, clips and filters the
    candidates (``BoxCoder``, ``clip_boxes_to_image``, ``remove_small_boxes``, the score threshold);
    then every proposal must be one of them, best first, no two overlapping by more than
    ``nms_threshold`` (``box_iou``), and every other candidate must either overlap a proposal that
    scores at least as high by more than that, or come after the ``post_nms_top_n``-th."""
    from torchvision.models.detection._utils import BoxCoder
    from torchvision.ops import box_iou, clip_boxes_to_image, remove_small_boxes

    sc = as_tensor(scores, "scores").reshape(-1).float()
    boxes = BoxCoder(tuple(float(w) for w in weights)).decode_single(as_tensor(deltas, "deltas").reshape(-1, 4).float(),
                                                                     check_boxes(anchors, "anchors").float())
    boxes = clip_boxes_to_image(boxes, tuple(int(v) for v in image_size))
    keep = remove_small_boxes(boxes, float(min_size))
    keep = keep[sc[keep] >= float(score_threshold)]
    cand, cand_sc = boxes[keep], sc[keep]
    props = check_boxes(proposals, "proposals").float()
    if len(props) == 0:
        return len(cand) == 0
    match = (props[:, None, :] - cand[None, :, :]).abs().amax(-1) <= 1e-4          # (P, N)
    if not match.any(1).all():
        return False                                                              # a box that is no candidate
    idx = match.float().argmax(1)
    ps = cand_sc[idx]
    if (ps[1:] > ps[:-1]).any() or len(set(idx.tolist())) != len(idx):
        return False                                                              # not best first, or twice
    if (box_iou(props, props).triu(1) > nms_threshold).any():
        return False                                                              # two kept that overlap
    full = len(props) >= int(post_nms_top_n)
    others = torch.ones(len(cand), dtype=torch.bool)
    others[idx] = False
    iou = box_iou(cand[others], props)                                            # (N - P, P)
    covered = ((iou > nms_threshold) & (ps[None, :] >= cand_sc[others][:, None])).any(1)
    after = (cand_sc[others] <= ps[-1]) if full else torch.zeros_like(covered)
    return bool((covered | after).all())
