"""Selective search (Uijlings et al., IJCV 2013): the region proposals of R-CNN and Fast R-CNN.

1. **Initial regions**: Felzenszwalb and Huttenlocher's graph segmentation
   (``skimage.segmentation.felzenszwalb``, threshold ``k``, ``sigma = 0.8``, ``min_size = k``),
   run on the image in one colour space.
2. **Hierarchical grouping**: the similarity of every pair of neighbouring regions (8-connected
   pixels) is the sum of up to four measures, each in [0, 1]:

   * colour: histogram intersection ``sum_k min(c_i^k, c_j^k)`` of 25-bin histograms per
     channel (75 bins, L1-normalised);
   * texture: histogram intersection of gradient-orientation histograms: Gaussian derivatives
     (``sigma = 1``) of each channel in 8 orientations (0, 45, ..., 315 degrees; the response
     in a direction is ``max(0, cos(theta) g_x + sin(theta) g_y)``, divided by the channel's
     largest response), 10 bins each (3 x 8 x 10 = 240 bins, L1-normalised);
   * size: ``1 - (size_i + size_j) / size(image)`` (small regions merge first);
   * fill: ``1 - (size(BB_ij) - size_i - size_j) / size(image)``, ``BB_ij`` the bounding box of
     both (regions that fill each other's gaps merge first).

   The most similar pair is merged into a new region (its histograms are the size-weighted
   means of the two, its box their union), the pair's similarities are removed and the new
   region's with its neighbours added, until one region is left (the whole image).
   Every region of the hierarchy, the initial ones included, gives a box.
3. **Diversification**: several strategies (colour space x ``k`` x similarity subset); the
   default is the paper's "fast" mode: HSV and Lab, ``k`` = 50 and 100, similarities
   colour+texture+size+fill and texture+size+fill (8 strategies).
4. **Ranking**: within a strategy the region created last (the whole image) has position 1,
   the one before it 2, and so on; each position is multiplied by a random number in [0, 1]
   (seeded) and boxes are sorted by that value, smallest first. Duplicate boxes (the same
   pixels) are kept once, with their smallest value.

Boxes are ``(x1, y1, x2, y2)`` pixel edges: a region covering columns ``a..b`` and rows
``c..d`` gives ``(a, c, b + 1, d + 1)``.

Size limit: at most ``MAX_SS_PIXELS`` (2**20 = 1,048,576, e.g. 1280 x 800) image pixels;
a larger image raises ``ValueError`` before anything is built (downscale it first). Measured
on one core of a busy 2-core machine: 1.9-2.4 s for the 600 x 400 photo ``skimage.data.coffee()``
in the fast mode (Felzenszwalb about 1.2 s, histograms about 0.9 s, grouping about 0.15 s;
519, 187, 390 and 147 initial regions; 4,964 boxes, 2,507 after removing duplicates).
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np
import torch

#: the largest image (pixels) selective search runs on: its work and memory grow with the pixels
MAX_SS_PIXELS = 2**20
COLOUR_BINS = 25
TEXTURE_ORIENTATIONS = 8
TEXTURE_BINS = 10
SIMILARITIES = ("colour", "texture", "size", "fill")
COLOUR_SPACES = ("rgb", "hsv", "lab")


@dataclass(frozen=True)
class Strategy:
    """One diversification strategy: the colour space the image is segmented and described in,
    Felzenszwalb's threshold ``k`` and the similarity measures summed (a subset of
    ``("colour", "texture", "size", "fill")``)."""

    colour_space: str
    k: int
    similarities: tuple[str, ...]

    @property
    def name(self) -> str:
        short = "".join(s[0].upper() for s in self.similarities)
        return f"{self.colour_space.upper()}, k={self.k}, {short}"


#: the paper's "fast" mode: 2 colour spaces x 2 thresholds x 2 similarity subsets
FAST_STRATEGIES = tuple(Strategy(cs, k, sims) for cs in ("hsv", "lab") for k in (50, 100)
                        for sims in (SIMILARITIES, ("texture", "size", "fill")))


@dataclass
class GroupingTrace:
    """Hierarchical grouping of one strategy (``n`` initial regions, ``n - 1`` merges if the
    regions are all connected, ``R = n + merges`` regions in all).

    Attributes:
        strategy: the :class:`Strategy`.
        segmentation: index into :attr:`SelectiveSearchTrace.initial_labels` of its initial regions.
        n_initial: ``n``.
        merges: ``(n - 1, 3)`` int: ``(i, j, t)``: regions ``i`` and ``j`` merged into the new region ``t``
            (``t = n, n + 1, ...`` in order).
        similarity: ``(n - 1,)`` the summed similarity of each merged pair (the largest left at that time).
        parts: ``(n - 1, 4)`` its colour, texture, size and fill terms (0 where a term is not used).
        region_boxes: ``(R, 4)`` float boxes of every region, initial then merged.
        region_sizes: ``(R,)`` pixels of every region.
    """

    strategy: Strategy
    segmentation: int
    n_initial: int
    merges: np.ndarray
    similarity: np.ndarray
    parts: np.ndarray
    region_boxes: np.ndarray
    region_sizes: np.ndarray


@dataclass
class SelectiveSearchTrace:
    """A whole selective search (``S`` strategies, ``N`` proposals).

    Attributes:
        image_size: ``(H, W)``.
        strategies: the ``S`` strategies, in order.
        initial_labels: one ``(H, W)`` int32 label image per distinct (colour space, k)
            segmentation, labels ``0..n-1``.
        groupings: ``S`` :class:`GroupingTrace`.
        n_initial: ``(S,)`` number of initial regions per strategy.
        n_before_dedup: boxes of all strategies together, duplicates included.
        boxes: ``(N, 4)`` float32 proposals, ranked (the same as the returned boxes).
        rank_value: ``(N,)`` position in its hierarchy x a random number in [0, 1] (smallest first).
        level: ``(N,)`` int the position in its hierarchy (1 = the whole image).
        strategy_of: ``(N,)`` int the strategy that gave each box its value.
        seed: the seed of the random numbers.
    """

    image_size: tuple[int, int]
    strategies: tuple[Strategy, ...]
    initial_labels: list[np.ndarray]
    groupings: list[GroupingTrace]
    n_initial: np.ndarray
    n_before_dedup: int
    boxes: torch.Tensor
    rank_value: np.ndarray
    level: np.ndarray
    strategy_of: np.ndarray
    seed: int
    seconds: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- checks and images
def check_image_size(h: int, w: int) -> None:
    """Raise ``ValueError`` if an ``h x w`` image is above ``MAX_SS_PIXELS`` pixels."""
    if h * w > MAX_SS_PIXELS:
        raise ValueError(f"selective search on a {w}x{h} image would work on {h * w:,} pixels, more than the "
                         f"{MAX_SS_PIXELS:,} allowed (MAX_SS_PIXELS in explainers/ops/selective_search.py); "
                         "downscale the image first (e.g. to 640x480)")


def _as_rgb01(image) -> np.ndarray:
    """``(H, W, 3)`` float64 in [0, 1] from an ``(H, W, 3)`` array (uint8 or float) or a ``(3, H, W)`` tensor."""
    if isinstance(image, torch.Tensor):
        a = image.detach().cpu()
        if a.dim() == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
            a = a.permute(1, 2, 0)
        a = a.numpy()
    else:
        a = np.asarray(image)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[-1] not in (1, 3, 4):
        raise ValueError(f"the image must be (H, W, 3) (or a (3, H, W) tensor), got shape {a.shape}")
    check_image_size(a.shape[0], a.shape[1])
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, -1)
    a = a[..., :3]
    if a.dtype == np.uint8:
        return a.astype(np.float64) / 255.0
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise ValueError("the image contains NaN or infinite values")
    if a.max() > 1.0:
        a = a / 255.0
    return np.clip(a, 0.0, 1.0)


def convert_colour(rgb: np.ndarray, space: str) -> np.ndarray:
    """``(H, W, 3)`` RGB in [0, 1] -> the colour space ``space`` with every channel scaled to [0, 1]
    (Lab: ``L / 100``, ``(a + 128) / 255``, ``(b + 128) / 255``)."""
    from skimage import color

    if space == "rgb":
        return rgb
    if space == "hsv":
        return color.rgb2hsv(rgb)
    if space == "lab":
        lab = color.rgb2lab(rgb)
        return np.clip(np.stack([lab[..., 0] / 100.0, (lab[..., 1] + 128) / 255.0, (lab[..., 2] + 128) / 255.0],
                                -1), 0.0, 1.0)
    raise ValueError(f"colour space must be one of {', '.join(COLOUR_SPACES)}, got {space!r}")


def initial_regions(image: np.ndarray, k: int) -> np.ndarray:
    """Felzenszwalb's segmentation of ``(H, W, 3)`` ``image`` (in [0, 1]): ``(H, W)`` int32 labels
    ``0..n-1`` (scale ``k``, ``sigma = 0.8``, ``min_size = k``)."""
    from skimage.segmentation import felzenszwalb

    lab = felzenszwalb(image, scale=float(k), sigma=0.8, min_size=int(k), channel_axis=-1)
    _, inv = np.unique(lab, return_inverse=True)
    return inv.reshape(lab.shape).astype(np.int32)


# ----------------------------------------------------------------------------- region features
def colour_bin_index(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` in [0, 1] -> ``(3, H*W)`` index of each pixel's bin in the 75-bin colour histogram
    (channel ``c``, bin ``min(floor(25 v), 24)`` -> ``25 c + bin``)."""
    b = np.minimum((image * COLOUR_BINS).astype(np.int64), COLOUR_BINS - 1)
    return (b + COLOUR_BINS * np.arange(3)).reshape(-1, 3).T


def texture_bin_index(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` in [0, 1] -> ``(24, H*W)`` index of each pixel's bin in the 240-bin texture
    histogram: for channel ``c`` and orientation ``o`` (``theta = o * 45`` degrees), the response
    ``max(0, cos(theta) g_x + sin(theta) g_y)`` of Gaussian derivatives (``sigma = 1``), divided by
    the channel's largest response, falls in bin ``min(floor(10 r), 9)`` -> ``(8 c + o) 10 + bin``."""
    from scipy.ndimage import gaussian_filter

    out = np.empty((3 * TEXTURE_ORIENTATIONS, image.shape[0] * image.shape[1]), np.int64)
    theta = np.arange(TEXTURE_ORIENTATIONS) * (2 * np.pi / TEXTURE_ORIENTATIONS)
    for c in range(3):
        ch = image[..., c]
        gx = gaussian_filter(ch, 1.0, order=(0, 1)).reshape(-1)
        gy = gaussian_filter(ch, 1.0, order=(1, 0)).reshape(-1)
        resp = np.maximum(0.0, np.cos(theta)[:, None] * gx + np.sin(theta)[:, None] * gy)   # (8, H*W)
        top = resp.max()
        r = resp / top if top > 0 else resp
        b = np.minimum((r * TEXTURE_BINS).astype(np.int64), TEXTURE_BINS - 1)
        out[c * TEXTURE_ORIENTATIONS:(c + 1) * TEXTURE_ORIENTATIONS] = \
            b + TEXTURE_BINS * (c * TEXTURE_ORIENTATIONS + np.arange(TEXTURE_ORIENTATIONS))[:, None]
    return out


def region_histograms(labels: np.ndarray, bin_index: np.ndarray, n_bins: int) -> np.ndarray:
    """``(n, n_bins)`` L1-normalised histograms of the regions of ``labels`` ``(H, W)`` (``0..n-1``),
    from ``bin_index`` ``(m, H*W)`` (each pixel counts once in each of its ``m`` bins)."""
    n = int(labels.max()) + 1
    flat = (labels.reshape(1, -1).astype(np.int64) * n_bins + bin_index).reshape(-1)
    h = np.bincount(flat, minlength=n * n_bins).reshape(n, n_bins).astype(np.float64)
    return h / h.sum(1, keepdims=True)


def region_boxes_and_sizes(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(n, 4)`` float boxes (pixel edges) and ``(n,)`` pixel counts of the regions ``0..n-1``."""
    from scipy.ndimage import find_objects

    sl = find_objects(labels + 1)
    boxes = np.array([(s[1].start, s[0].start, s[1].stop, s[0].stop) for s in sl], np.float64)
    return boxes, np.bincount(labels.reshape(-1)).astype(np.float64)


def neighbour_pairs(labels: np.ndarray) -> np.ndarray:
    """``(P, 2)`` int pairs ``(i, j)``, ``i < j``, of regions that touch (8-connected pixels), sorted."""
    n = int(labels.max()) + 1
    a = np.concatenate([labels[:, :-1].ravel(), labels[:-1, :].ravel(), labels[:-1, :-1].ravel(),
                        labels[:-1, 1:].ravel()]).astype(np.int64)
    b = np.concatenate([labels[:, 1:].ravel(), labels[1:, :].ravel(), labels[1:, 1:].ravel(),
                        labels[1:, :-1].ravel()]).astype(np.int64)
    m = a != b
    lo, hi = np.minimum(a[m], b[m]), np.maximum(a[m], b[m])
    code = np.unique(lo * n + hi)
    return np.stack([code // n, code % n], 1)


def histogram_intersection(h1: np.ndarray, h2: np.ndarray) -> np.ndarray:
    """``sum_k min(h1_k, h2_k)`` over the last axis (broadcasting)."""
    return np.minimum(h1, h2).sum(-1)


def similarity_parts(i, j, colour: np.ndarray, texture: np.ndarray, sizes: np.ndarray, boxes: np.ndarray,
                     image_size: float) -> np.ndarray:
    """``(..., 4)`` colour, texture, size and fill similarity of regions ``i`` and ``j`` (index arrays
    that broadcast), from their histograms ``(R, 75)``, ``(R, 240)``, sizes ``(R,)`` and boxes ``(R, 4)``."""
    s_col = histogram_intersection(colour[i], colour[j])
    s_tex = histogram_intersection(texture[i], texture[j])
    si, sj = sizes[i], sizes[j]
    s_size = 1.0 - (si + sj) / image_size
    bi, bj = boxes[i], boxes[j]
    bb = ((np.maximum(bi[..., 2], bj[..., 2]) - np.minimum(bi[..., 0], bj[..., 0]))
          * (np.maximum(bi[..., 3], bj[..., 3]) - np.minimum(bi[..., 1], bj[..., 1])))
    s_fill = 1.0 - (bb - si - sj) / image_size
    return np.stack(np.broadcast_arrays(s_col, s_tex, s_size, s_fill), -1)


def _weights(sims: tuple[str, ...]) -> np.ndarray:
    bad = [s for s in sims if s not in SIMILARITIES]
    if bad or not sims:
        raise ValueError(f"similarities must be a non-empty subset of {SIMILARITIES}, got {sims!r}")
    return np.array([float(s in sims) for s in SIMILARITIES])


# ----------------------------------------------------------------------------- grouping
def hierarchical_grouping(colour: np.ndarray, texture: np.ndarray, sizes: np.ndarray, boxes: np.ndarray,
                          pairs: np.ndarray, image_size: float, similarities=SIMILARITIES):
    """Merge the most similar neighbouring pair until no neighbours are left (one region when the
    regions are connected). Inputs are the initial regions' histograms, sizes, boxes, their
    neighbour ``pairs`` ``(P, 2)`` and the image's pixel count.

    Returns ``(merges (M, 3), similarity (M,), parts (M, 4), region_boxes (n + M, 4),
    region_sizes (n + M,))`` as in :class:`GroupingTrace`."""
    w = _weights(tuple(similarities))
    n = len(sizes)
    cap = 2 * n - 1
    col = np.zeros((cap, colour.shape[1]))
    tex = np.zeros((cap, texture.shape[1]))
    size = np.zeros(cap)
    box = np.zeros((cap, 4))
    col[:n], tex[:n], size[:n], box[:n] = colour, texture, sizes, boxes
    nbrs: list[set] = [set() for _ in range(cap)]
    for a, b in pairs.tolist():
        nbrs[a].add(b)
        nbrs[b].add(a)
    alive = np.zeros(cap, bool)
    alive[:n] = True
    heap = []
    if len(pairs):
        parts = similarity_parts(pairs[:, 0], pairs[:, 1], col, tex, size, box, image_size)
        heap = list(zip((-(parts @ w)).tolist(), pairs[:, 0].tolist(), pairs[:, 1].tolist()))
        heapq.heapify(heap)
    merges, sims, mparts = [], [], []
    t = n
    while heap:
        negs, a, b = heapq.heappop(heap)
        if not (alive[a] and alive[b]):
            continue                      # a pair with a region already merged (lazy deletion)
        mparts.append(similarity_parts(a, b, col, tex, size, box, image_size) * w)
        sa, sb = size[a], size[b]
        size[t] = sa + sb
        col[t] = (sa * col[a] + sb * col[b]) / size[t]
        tex[t] = (sa * tex[a] + sb * tex[b]) / size[t]
        box[t] = (min(box[a, 0], box[b, 0]), min(box[a, 1], box[b, 1]),
                  max(box[a, 2], box[b, 2]), max(box[a, 3], box[b, 3]))
        alive[a] = alive[b] = False
        alive[t] = True
        nb = (nbrs[a] | nbrs[b]) - {a, b}
        for x in nb:
            s = nbrs[x]
            s.discard(a)
            s.discard(b)
            s.add(t)
        nbrs[t] = nb
        nbrs[a] = nbrs[b] = set()
        if nb:
            js = np.fromiter(sorted(nb), np.int64, len(nb))
            s_new = similarity_parts(t, js, col, tex, size, box, image_size) @ w
            for s_, j in zip(s_new.tolist(), js.tolist()):
                heapq.heappush(heap, (-s_, j, t))
        merges.append((a, b, t))
        sims.append(-negs)
        t += 1
    m = len(merges)
    return (np.array(merges, np.int64).reshape(m, 3), np.array(sims, np.float64),
            np.array(mparts, np.float64).reshape(m, 4), box[:n + m].copy(), size[:n + m].copy())


# ----------------------------------------------------------------------------- the whole search
def selective_search(image, strategies=FAST_STRATEGIES, seed: int = 0,
                     max_proposals: int | None = None) -> tuple[torch.Tensor, SelectiveSearchTrace]:
    """Selective search on ``image`` (``(H, W, 3)`` uint8 or float array, or a ``(3, H, W)`` tensor
    in [0, 1]).

    Returns ``(boxes, trace)``: ``boxes`` ``(N, 4)`` float32 ``(x1, y1, x2, y2)``, ranked as in the
    paper (position in the hierarchy x a seeded random number, smallest first), duplicates removed;
    ``max_proposals`` keeps the first ones. Raises ``ValueError`` above ``MAX_SS_PIXELS`` pixels.
    """
    import time

    strategies = tuple(strategies)
    if not strategies:
        raise ValueError("give at least one strategy")
    for s in strategies:
        if s.colour_space not in COLOUR_SPACES:
            raise ValueError(f"colour space must be one of {', '.join(COLOUR_SPACES)}, got {s.colour_space!r}")
        if int(s.k) < 1:
            raise ValueError(f"Felzenszwalb's k must be at least 1, got {s.k}")
        _weights(tuple(s.similarities))
    rgb = _as_rgb01(image)
    H, W = rgb.shape[:2]
    n_pix = float(H * W)
    seconds = {"segmentation": 0.0, "features": 0.0, "grouping": 0.0}
    converted, pixel_bins = {}, {}
    segs: dict = {}
    seg_list: list[np.ndarray] = []
    groupings: list[GroupingTrace] = []
    for s in strategies:
        t0 = time.perf_counter()
        if s.colour_space not in converted:
            img = converted[s.colour_space] = convert_colour(rgb, s.colour_space)
            pixel_bins[s.colour_space] = (colour_bin_index(img), texture_bin_index(img))
        t1 = time.perf_counter()
        key = (s.colour_space, int(s.k))
        if key not in segs:
            labels = initial_regions(converted[s.colour_space], int(s.k))
            t2 = time.perf_counter()
            cb, tb = pixel_bins[s.colour_space]
            bx, sz = region_boxes_and_sizes(labels)
            feats = (region_histograms(labels, cb, 3 * COLOUR_BINS),
                     region_histograms(labels, tb, 3 * TEXTURE_ORIENTATIONS * TEXTURE_BINS),
                     sz, bx, neighbour_pairs(labels))
            segs[key] = (len(seg_list), feats)
            seg_list.append(labels)
            t3 = time.perf_counter()
            seconds["segmentation"] += t2 - t1
            seconds["features"] += (t1 - t0) + (t3 - t2)
        else:
            seconds["features"] += t1 - t0
            t3 = time.perf_counter()
        idx, (c, tx, sz, bx, pairs) = segs[key]
        merges, sims, parts, rboxes, rsizes = hierarchical_grouping(c, tx, sz, bx, pairs, n_pix, s.similarities)
        groupings.append(GroupingTrace(s, idx, len(sz), merges, sims, parts, rboxes, rsizes))
        seconds["grouping"] += time.perf_counter() - t3
    # ranking: position in the hierarchy (1 = the last region created) x a random number
    rng = np.random.default_rng(seed)
    all_boxes, values, levels, which = [], [], [], []
    for si, g in enumerate(groupings):
        R = len(g.region_boxes)
        level = R - np.arange(R)                      # the last region created has position 1
        all_boxes.append(g.region_boxes)
        values.append(level * rng.random(R))
        levels.append(level)
        which.append(np.full(R, si))
    boxes = np.concatenate(all_boxes)
    value = np.concatenate(values)
    level = np.concatenate(levels)
    which = np.concatenate(which)
    n_before = len(boxes)
    order = np.lexsort((np.arange(n_before), value))      # by value, ties by position
    _, first = np.unique(boxes[order].astype(np.int64), axis=0, return_index=True)
    keep = order[np.sort(first)]                          # each distinct box at its smallest value, ranked
    if max_proposals is not None:
        keep = keep[:max(0, int(max_proposals))]
    out = torch.from_numpy(boxes[keep].astype(np.float32))
    trace = SelectiveSearchTrace((H, W), strategies, seg_list, groupings,
                                 np.array([g.n_initial for g in groupings]), n_before, out, value[keep],
                                 level[keep], which[keep], int(seed), seconds)
    return out, trace
