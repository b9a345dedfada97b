"""Training targets and losses equal torchvision's Matcher, sampler, BoxCoder and loss functions."""
import pytest
import torch
import torch.nn.functional as F
import torchvision
from hypothesis import given, settings, strategies as st
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler, BoxCoder, Matcher
from torchvision.models.detection.roi_heads import fastrcnn_loss

from explainers.ops.boxes import encode_boxes
from explainers.ops.targets import (bce_with_logits, box_head_loss, box_head_targets, cross_entropy_terms, match,
                                    multitask_loss, rpn_loss, rpn_targets, sample, smooth_l1)
from explainers.ops.targets_reference import (reference_encode, reference_fastrcnn_loss, reference_match,
                                              reference_multitask_loss, reference_rpn_compute_loss, reference_sample,
                                              reference_select_training_samples)


def boxes(n, g, spread=100.0, integer=False):
    xy = torch.rand(n, 2, generator=g) * spread
    wh = 1 + torch.rand(n, 2, generator=g) * spread / 2
    b = torch.cat([xy, xy + wh], 1)
    return b.round() if integer else b


def test_worked_example_of_the_three_labels():
    gt = torch.tensor([[0.0, 0, 10, 10]])
    anchors = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 12], [0, 0, 10, 20], [50, 50, 60, 60], [0, 0, 10, 25]])
    t = rpn_targets(anchors, gt)
    # IoU 1, 0.83 (positive), 0.5 (ignored), 0 (negative), 0.4 (ignored)
    assert t.labels.tolist() == [1.0, 1.0, -1.0, 0.0, -1.0]
    assert torch.allclose(t.match.best_iou, torch.tensor([1.0, 10 / 12, 0.5, 0.0, 0.4]))
    # the only positive below 0.7 is a ground truth box's best anchor
    t = rpn_targets(anchors[2:], gt)
    assert t.labels.tolist() == [1.0, 0.0, -1.0] and t.match.promoted.tolist() == [True, False, False]


@settings(max_examples=150, deadline=None)
@given(g_n=st.integers(1, 6), n=st.integers(1, 120), seed=st.integers(0, 2**16), allow=st.booleans(),
       low=st.floats(0, 1), gap=st.floats(0, 1), integer=st.booleans())
def test_match_equals_torchvision_matcher(g_n, n, seed, allow, low, gap, integer):
    g = torch.Generator().manual_seed(seed)
    iou = torchvision.ops.box_iou(boxes(g_n, g, integer=integer), boxes(n, g, integer=integer))
    high = min(1.0, low + gap)
    ours, tr = match(iou, high, low, allow)
    assert torch.equal(ours, Matcher(high, low, allow)(iou.clone()))
    assert torch.equal(ours, reference_match(iou, high, low, allow))
    if not allow:
        assert not tr.promoted.any()


@pytest.mark.parametrize("high,low,allow", [(0.7, 0.3, True), (0.5, 0.5, False)])
def test_the_two_matchers_of_faster_rcnn_with_ties(high, low, allow):
    # integer boxes on a small grid: many equal IoUs, the tie rule of low-quality matches matters
    g = torch.Generator().manual_seed(3)
    gt, anchors = boxes(4, g, 20, True), boxes(300, g, 20, True)
    iou = torchvision.ops.box_iou(gt, anchors)
    assert torch.equal(match(iou, high, low, allow)[0], Matcher(high, low, allow)(iou.clone()))


@settings(max_examples=100, deadline=None)
@given(n=st.integers(0, 2000), seed=st.integers(0, 2**16), batch=st.integers(1, 300), frac=st.floats(0, 1),
       p_pos=st.floats(0, 0.5))
def test_sampler_equals_torchvision_under_the_same_seed(n, seed, batch, frac, p_pos):
    g = torch.Generator().manual_seed(seed + 1)
    u = torch.rand(n, generator=g)
    labels = torch.where(u < p_pos, 1.0, torch.where(u < p_pos + 0.3, -1.0, 0.0))
    torch.manual_seed(seed)
    ref_pos, ref_neg = BalancedPositiveNegativeSampler(batch, frac)([labels])
    pos, neg, tr = sample(labels, batch, frac, torch.Generator().manual_seed(seed))
    assert torch.equal(pos, ref_pos[0]) and torch.equal(neg, ref_neg[0])
    torch.manual_seed(seed)                       # the global generator, as torchvision, gives the same
    pos2, neg2, _ = sample(labels, batch, frac)
    assert torch.equal(pos2, pos) and torch.equal(neg2, neg)
    assert tr.num_pos == min(int((labels >= 1).sum()), int(batch * frac)) == int(pos.sum())
    assert tr.num_neg == int(neg.sum()) <= batch - tr.num_pos
    assert not (pos.bool() & (labels < 1)).any() and not (neg.bool() & (labels != 0)).any()


def test_sampler_reference_restores_the_global_state():
    labels = torch.tensor([1.0, 0, 0, 1, -1, 0, 0, 1, 0, 0] * 30)
    state = torch.Generator().manual_seed(7).get_state()
    before = torch.get_rng_state()
    ref = reference_sample(labels, 16, 0.5, state)
    assert torch.equal(torch.get_rng_state(), before)
    g = torch.Generator()
    g.set_state(state)
    pos, neg, _ = sample(labels, 16, 0.5, g)
    assert torch.equal(pos, ref[0]) and torch.equal(neg, ref[1])
    # another state draws other anchors: the comparison can fail
    pos3, _, _ = sample(labels, 16, 0.5, torch.Generator().manual_seed(8))
    assert not torch.equal(pos3, pos)


@settings(max_examples=80, deadline=None)
@given(n=st.integers(1, 60), seed=st.integers(0, 2**16), rpn=st.booleans())
def test_encode_equals_boxcoder_encode(n, seed, rpn):
    g = torch.Generator().manual_seed(seed)
    a, b = boxes(n, g), boxes(n, g)
    w = (1.0, 1.0, 1.0, 1.0) if rpn else (10.0, 10.0, 5.0, 5.0)
    ours = encode_boxes(b, a, w)
    assert torch.allclose(ours, BoxCoder(w).encode([b], [a])[0], atol=1e-6)
    assert torch.allclose(ours, reference_encode(b, a, w), atol=1e-6)


@settings(max_examples=80, deadline=None)
@given(n=st.integers(1, 50), seed=st.integers(0, 2**16), beta=st.sampled_from([0.0, 1 / 9, 1.0]))
def test_element_losses_equal_torch(n, seed, beta):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 4, generator=g) * 3, torch.randn(n, 4, generator=g)
    assert torch.allclose(smooth_l1(x, y, beta).sum(), F.smooth_l1_loss(x, y, beta=beta, reduction="sum"), atol=1e-4)
    z, t = torch.randn(n, generator=g) * 10, (torch.rand(n, generator=g) > 0.5).float()
    assert torch.allclose(bce_with_logits(z, t).mean(), F.binary_cross_entropy_with_logits(z, t), atol=1e-6)
    logits, lab = torch.randn(n, 5, generator=g) * 4, torch.randint(0, 5, (n,), generator=g)
    assert torch.allclose(cross_entropy_terms(logits, lab).mean(), F.cross_entropy(logits, lab), atol=1e-5)


def _scene(seed, n_gt=3, n_anchors=500):
    g = torch.Generator().manual_seed(seed)
    gt = boxes(n_gt, g, 60)
    jitter = torch.randn(n_anchors, 4, generator=g) * 6
    anchors = gt[torch.randint(0, n_gt, (n_anchors,), generator=g)] + jitter
    anchors = torch.cat([torch.minimum(anchors[:, :2], anchors[:, 2:] - 1), torch.maximum(anchors[:, 2:],
                                                                                         anchors[:, :2] + 1)], 1)
    return g, gt, anchors


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), batch=st.sampled_from([16, 64, 256]))
def test_rpn_loss_equals_torchvision_compute_loss(seed, batch):
    g, gt, anchors = _scene(seed)
    t = rpn_targets(anchors, gt)
    objectness, deltas = torch.randn(len(anchors), generator=g) * 3, torch.randn(len(anchors), 4, generator=g) * 0.2
    state = torch.Generator().manual_seed(seed).get_state()
    gen = torch.Generator()
    gen.set_state(state)
    pos, neg, _ = sample(t.labels, batch, 0.5, gen)
    ours = rpn_loss(objectness, deltas, t.labels, t.regression_targets, pos, neg)
    ref_obj, ref_box = reference_rpn_compute_loss(objectness, deltas, t.labels, t.regression_targets, state, batch)
    assert abs(float(ours.loss_objectness - ref_obj)) < 1e-6
    assert abs(float(ours.loss_rpn_box_reg - ref_box)) < 1e-6
    assert len(ours.sampled) == int(pos.sum() + neg.sum())


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), batch=st.sampled_from([8, 64, 512]), frac=st.sampled_from([0.25, 0.5]))
def test_box_head_targets_equal_select_training_samples(seed, batch, frac):
    g, gt, proposals = _scene(seed, n_anchors=200)
    gl = torch.randint(1, 4, (len(gt),), generator=g)
    state = torch.Generator().manual_seed(seed).get_state()
    gen = torch.Generator()
    gen.set_state(state)
    ours = box_head_targets(proposals, gt, gl, batch_size_per_image=batch, positive_fraction=frac, generator=gen)
    p, lab, tg = reference_select_training_samples(proposals, gt, gl, state, batch_size_per_image=batch,
                                                   positive_fraction=frac)
    assert torch.equal(ours.sampled_proposals, p) and torch.equal(ours.sampled_labels, lab)
    assert torch.allclose(ours.regression_targets, tg, atol=1e-5)
    # then the box head's two losses
    n, c = len(lab), 4
    logits, reg = torch.randn(n, c, generator=g), torch.randn(n, 4 * c, generator=g)
    loss = box_head_loss(logits, reg, lab, tg)
    ref = fastrcnn_loss(logits, reg, [lab], [tg])
    assert abs(float(loss.loss_classifier - ref[0])) < 1e-5 and abs(float(loss.loss_box_reg - ref[1])) < 1e-5
    ref2 = reference_fastrcnn_loss(logits, reg, lab, tg)
    assert torch.equal(ref2[0], ref[0])


@pytest.mark.parametrize("kind", ["L2", "smooth L1"])
@pytest.mark.parametrize("weight", [0.0, 1.0, 10.0])
def test_multitask_loss_is_cross_entropy_plus_weighted_box_loss(kind, weight):
    scores, box_p, box_t = torch.tensor([3.0, 0.1, -1.5]), [0.30, 0.25, 0.40, 0.5], [0.28, 0.22, 0.45, 0.55]
    tr = multitask_loss(scores, 0, box_p, box_t, weight, kind)
    ce, box, total = reference_multitask_loss(scores, 0, box_p, box_t, weight, kind)
    assert abs(float(tr.class_loss - ce)) < 1e-6 and abs(float(tr.box_loss - box)) < 1e-6
    assert abs(float(tr.total - total)) < 1e-6
    assert abs(float(tr.class_loss) + torch.log(tr.probabilities[0]).item()) < 1e-6


def test_errors_are_sentences():
    with pytest.raises(ValueError, match="no ground-truth boxes"):
        match(torch.zeros(0, 5), 0.7, 0.3)
    with pytest.raises(ValueError, match="low threshold"):
        match(torch.zeros(2, 5), 0.3, 0.7)
    with pytest.raises(ValueError, match="weight"):
        multitask_loss([1.0, 2.0], 0, [0, 0, 1, 1], [0, 0, 1, 1], -1.0)
    with pytest.raises(ValueError, match="true class"):
        multitask_loss([1.0, 2.0], 5, [0, 0, 1, 1], [0, 0, 1, 1])
