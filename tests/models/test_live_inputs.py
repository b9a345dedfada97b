"""The live inputs each explainer draws are real pieces of the model's own tensors."""
import pytest
import torch
import torch.nn.functional as F

from explainers.models import get, make_scene
from explainers.models.live_inputs import (anchor_level, strongest_channel, strongest_kernel, top_candidates,
                                           unpooling_crop)


@pytest.fixture(scope="module")
def image():
    return make_scene(10_000_005).image


def test_unpooling_crop_is_the_decoders_own_unpooling(image):
    cap = get("segmentation", "shapes").trace(image).captured
    c = strongest_channel(cap["bottleneck"][0])
    assert cap["bottleneck"][0, c].abs().max() == cap["bottleneck"][0].abs().max()
    crop = unpooling_crop(cap, c)
    assert crop.input.shape == (4, 4) and crop.pool_input.shape == crop.output.shape == (8, 8)
    # the re-indexed switches point at each 2x2 block's maximum inside the crop ...
    pooled, switches = F.max_pool2d(crop.pool_input[None, None], 2, return_indices=True)
    assert torch.equal(switches[0, 0], crop.switches)
    # ... and unpooling the crop with them is exactly what the decoder computed there
    mine = F.max_unpool2d(crop.input[None, None], crop.switches[None, None], 2, output_size=(8, 8))[0, 0]
    assert torch.equal(mine, crop.output)


def test_strongest_kernel_is_the_learned_one(image):
    m = get("segmentation", "shapes")
    pick = strongest_kernel(m.trace(image).captured)
    w = m.module.up1.weight.detach()
    assert torch.equal(pick.kernel, w[pick.c_in, pick.c_out])
    assert pick.kernel.norm() == w.flatten(2).norm(dim=-1).max()
    r, c = pick.peak
    assert pick.features[r, c].abs() == pick.features.abs().max()


def test_anchor_level_and_top_candidates_slice_the_trace(image):
    tr = get("detection", "shapes").trace(image)
    lv = anchor_level(tr, 0)
    n = tr.anchors_per_level[0]
    assert torch.equal(lv.anchors, tr.anchors[:n]) and torch.equal(lv.objectness, tr.objectness[:n])
    assert len(lv.anchors) == lv.feature_size[0] * lv.feature_size[1] * len(lv.sizes) * len(lv.ratios)
    boxes, scores, labels = top_candidates(tr, 5)
    assert len(scores) == min(5, len(tr.scores_pre_nms))
    assert torch.equal(scores, tr.scores_pre_nms.sort(descending=True).values[:len(scores)])
