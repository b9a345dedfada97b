"""Selective search on images with known regions, its similarities against hand computations."""
import time

import numpy as np
import pytest
import torch

from explainers.ops import box_iou
from explainers.ops.selective_search import (FAST_STRATEGIES, MAX_SS_PIXELS, SIMILARITIES, Strategy,
                                             colour_bin_index, hierarchical_grouping, histogram_intersection,
                                             neighbour_pairs, region_boxes_and_sizes, region_histograms,
                                             selective_search, similarity_parts)

RECTS = [(10, 8, 60, 50), (80, 20, 150, 70), (30, 75, 110, 112)]   # x1, y1, x2, y2 (pixel edges)
COLOURS = [(230, 40, 40), (40, 200, 60), (40, 60, 220)]


def rect_image(h=120, w=160):
    img = np.full((h, w, 3), 128, np.uint8)
    for (x1, y1, x2, y2), c in zip(RECTS, COLOURS):
        img[y1:y2, x1:x2] = c
    return img


def test_known_regions_are_proposed_with_the_full_image():
    img = rect_image()
    boxes, tr = selective_search(img, seed=0)
    assert boxes.dtype == torch.float32 and boxes.shape[1] == 4
    iou = box_iou(torch.tensor(RECTS, dtype=torch.float32), boxes)
    assert (iou.max(1).values >= 0.9).all(), iou.max(1).values
    assert (boxes == torch.tensor([0.0, 0.0, 160.0, 120.0])).all(1).any()      # the whole image
    assert len(torch.unique(boxes, dim=0)) == len(boxes)                        # no duplicates
    # every strategy ends with one region covering the image (its regions are all neighbours)
    for g in tr.groupings:
        assert len(g.merges) == g.n_initial - 1
        assert g.region_boxes[-1].tolist() == [0, 0, 160, 120] and g.region_sizes[-1] == 160 * 120
        assert np.all(np.diff(g.merges[:, 2]) == 1) and g.merges[0, 2] == g.n_initial


def test_region_features_by_hand():
    labels = np.array([[0, 0, 1],
                       [0, 2, 1]], np.int32)
    boxes, sizes = region_boxes_and_sizes(labels)
    assert boxes.tolist() == [[0, 0, 2, 2], [2, 0, 3, 2], [1, 1, 2, 2]] and sizes.tolist() == [3, 2, 1]
    assert neighbour_pairs(labels).tolist() == [[0, 1], [0, 2], [1, 2]]
    img = np.zeros((2, 3, 3))
    img[..., 0] = [[0.0, 0.99, 0.5], [0.0, 0.2, 0.5]]           # red channel values
    h = region_histograms(labels, colour_bin_index(img), 75)
    # region 0: red values 0, 0.99, 0 -> bins 0, 24, 0; green and blue 0 -> bin 0 of their channel
    want0 = np.zeros(75)
    want0[0], want0[24], want0[25], want0[50] = 2, 1, 3, 3
    assert np.allclose(h[0], want0 / 9)
    want2 = np.zeros(75)
    want2[5], want2[25], want2[50] = 1, 1, 1                     # 0.2 * 25 = 5
    assert np.allclose(h[2], want2 / 3)
    # intersection: min of the two histograms, bin by bin
    assert histogram_intersection(h[0], h[2]) == pytest.approx(1 / 3 + 1 / 3)   # bins 25 and 50


def test_histogram_intersection_and_similarities_by_hand():
    a, b = np.array([0.5, 0.5, 0.0]), np.array([0.2, 0.3, 0.5])
    assert histogram_intersection(a, b) == pytest.approx(0.5)
    col = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    tex = np.array([[1.0, 0.0], [0.25, 0.75]])
    sizes = np.array([30.0, 20.0])
    boxes = np.array([[0, 0, 10, 3], [0, 3, 5, 7]], float)
    parts = similarity_parts(0, 1, col, tex, sizes, boxes, 100.0)
    bb = 10 * 7                                                   # the box around both
    assert parts.tolist() == pytest.approx([0.5, 0.25, 1 - 50 / 100, 1 - (bb - 50) / 100])


def test_grouping_merges_the_most_similar_pair_first_and_averages_histograms():
    rng = np.random.default_rng(1)
    n = 5
    col = rng.random((n, 75))
    col /= col.sum(1, keepdims=True)
    tex = rng.random((n, 240))
    tex /= tex.sum(1, keepdims=True)
    sizes = np.array([10.0, 20.0, 5.0, 40.0, 25.0])
    boxes = np.array([[0, 0, 5, 2], [5, 0, 10, 4], [0, 2, 5, 3], [0, 4, 10, 8], [0, 8, 10, 10.5]])
    pairs = np.array([[0, 1], [0, 2], [1, 2], [1, 3], [2, 3], [3, 4]])
    merges, sims, parts, rboxes, rsizes = hierarchical_grouping(col, tex, sizes, boxes, pairs, 105.0)
    by_hand = [sum(similarity_parts(i, j, col, tex, sizes, boxes, 105.0)) for i, j in pairs]
    first = int(np.argmax(by_hand))
    assert merges[0, :2].tolist() == pairs[first].tolist() and sims[0] == pytest.approx(max(by_hand))
    assert parts.sum(1) == pytest.approx(sims)
    assert len(merges) == n - 1 and rsizes[-1] == sizes.sum()
    assert rboxes[-1].tolist() == [0, 0, 10, 10.5]
    # the second merge: recompute every live pair with the merged region's size-weighted histograms
    i, j, t = merges[0]
    col2, tex2 = np.vstack([col, (sizes[i] * col[i] + sizes[j] * col[j]) / (sizes[i] + sizes[j])]), \
        np.vstack([tex, (sizes[i] * tex[i] + sizes[j] * tex[j]) / (sizes[i] + sizes[j])])
    sizes2, boxes2 = np.append(sizes, sizes[i] + sizes[j]), np.vstack([boxes, rboxes[t]])
    live = set()
    for a, b in pairs.tolist():
        a, b = (t if a in (i, j) else a), (t if b in (i, j) else b)
        if a != b:
            live.add((min(a, b), max(a, b)))
    best = max(sum(similarity_parts(a, b, col2, tex2, sizes2, boxes2, 105.0)) for a, b in live)
    assert sims[1] == pytest.approx(best)


def test_similarity_subsets_change_the_weights():
    img = rect_image()
    only = Strategy("rgb", 50, ("size",))
    _, tr = selective_search(img, strategies=[only])
    g = tr.groupings[0]
    assert np.all(g.parts[:, [0, 1, 3]] == 0) and np.all(g.parts[:-1, 2] > 0)
    assert g.parts[-1, 2] == 0                             # the last two regions together are the image
    assert np.all(np.diff(g.parts[:, 2]) <= 1e-12)        # size only: the smallest pair merges first
    with pytest.raises(ValueError, match="similarities"):
        selective_search(img, strategies=[Strategy("rgb", 50, ("shape",))])
    with pytest.raises(ValueError, match="colour space"):
        selective_search(img, strategies=[Strategy("xyz", 50, SIMILARITIES)])


def test_deterministic_with_a_seed():
    img = rect_image()
    b1, t1 = selective_search(img, seed=3)
    b2, t2 = selective_search(img, seed=3)
    b3, _ = selective_search(img, seed=4)
    assert torch.equal(b1, b2) and np.array_equal(t1.rank_value, t2.rank_value)
    assert not torch.equal(b1, b3)                        # another ranking of the same boxes
    assert {tuple(b) for b in b1.tolist()} == {tuple(b) for b in b3.tolist()}
    assert np.all(np.diff(t1.rank_value) >= 0)            # ranked, smallest value first
    b4, _ = selective_search(img, seed=3, max_proposals=5)
    assert torch.equal(b4, b1[:5])


def test_size_limit_is_a_clear_error():
    side = int(np.sqrt(MAX_SS_PIXELS)) + 1
    big = np.zeros((side, side, 3), np.uint8)
    with pytest.raises(ValueError, match="MAX_SS_PIXELS.*downscale"):
        selective_search(big)


def test_a_photo_gives_about_two_thousand_proposals_in_a_few_seconds():
    from skimage import data

    img = data.coffee()                                   # 600 x 400
    t0 = time.perf_counter()
    boxes, tr = selective_search(img)
    seconds = time.perf_counter() - t0
    assert tr.strategies == FAST_STRATEGIES and 1500 <= len(boxes) <= 3500
    assert tr.n_before_dedup > len(boxes)
    assert (boxes == torch.tensor([0.0, 0.0, 600.0, 400.0])).all(1).any()
    assert seconds < 20, seconds                          # about 2 s on one idle core


def test_every_merge_is_a_most_similar_neighbour_pair_recomputed_from_the_pixels():
    """An independent replay of hierarchical grouping on a real photo: before each merge the label
    image is relabelled, and every region's colour and texture histograms, size and box, and the
    pairs of touching regions, are recomputed from its pixels (no merged histogram, no neighbour
    bookkeeping). The pair merged must be touching, have the largest summed similarity of all pairs
    (the paper's greedy step; either of a tie is right), and the new region's box and size must be
    those of its pixels. Every strategy of the search is replayed, in its own colour space."""
    from skimage import data
    from skimage.transform import resize

    from explainers.ops.selective_search import _as_rgb01, convert_colour, texture_bin_index

    photo = (resize(data.coffee()[100:340, 120:440], (90, 120), anti_aliasing=True) * 255).round().astype(np.uint8)
    strategies = (Strategy("hsv", 30, SIMILARITIES), Strategy("lab", 20, ("texture", "size", "fill")))
    _, tr = selective_search(photo, strategies=strategies)
    rgb = _as_rgb01(photo)
    n_pix = float(photo.shape[0] * photo.shape[1])
    for g in tr.groupings:
        img = convert_colour(rgb, g.strategy.colour_space)
        cb, tb = colour_bin_index(img), texture_bin_index(img)
        w = np.array([float(s in g.strategy.similarities) for s in SIMILARITIES])
        cur = tr.initial_labels[g.segmentation].astype(np.int64)
        assert 30 < g.n_initial == cur.max() + 1 and len(g.merges) == g.n_initial - 1
        for k, (a, b, t) in enumerate(g.merges.tolist()):
            ids = np.unique(cur)
            dense = np.searchsorted(ids, cur)
            col, tex = region_histograms(dense, cb, 75), region_histograms(dense, tb, 240)
            boxes, sizes = region_boxes_and_sizes(dense)
            pairs = neighbour_pairs(dense)
            sims = similarity_parts(pairs[:, 0], pairs[:, 1], col, tex, sizes, boxes, n_pix) @ w
            ia, ib = sorted(np.searchsorted(ids, [a, b]).tolist())
            assert ids[ia] in (a, b) and ids[ib] in (a, b)
            assert any((pairs == [ia, ib]).all(1)), (k, "merged regions that do not touch")
            mine = float(similarity_parts(ia, ib, col, tex, sizes, boxes, n_pix) @ w)
            assert mine == pytest.approx(sims.max(), abs=1e-9), k
            assert g.similarity[k] == pytest.approx(mine, abs=1e-9), k
            cur[(cur == a) | (cur == b)] = t
            rows, cols = np.nonzero(cur == t)
            assert g.region_boxes[t].tolist() == [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
            assert g.region_sizes[t] == len(rows)
        assert (cur == cur.flat[0]).all()                  # one region: the whole image
