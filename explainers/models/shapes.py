"""The "shapes world": seeded synthetic scenes of circles, squares and triangles.

Every scene is a pure function of its seed, so the training and held-out sets
are reproducible anywhere without downloading anything.  A scene has a
textured, noisy background and 1-6 objects (sizes, colours, overlaps); later
objects occlude earlier ones, and every target (boxes, instance masks, the
semantic label map) describes what is *visible*.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

CLASSES = ("background", "circle", "square", "triangle")
#: held-out scenes use seeds from here on; training uses seeds below it
HELD_OUT_SEED = 10_000_000


@dataclass
class Scene:
    """One scene.

    Attributes:
        image: ``(H, W, 3)`` uint8.
        boxes: ``(N, 4)`` float32 ``(x1, y1, x2, y2)``, tight around the visible part,
            ends exclusive (a one-pixel object at column 3 has x1=3, x2=4).
        labels: ``(N,)`` int64 in ``1..3`` (index into ``CLASSES``).
        masks: ``(N, H, W)`` bool visible instance masks.
        semantic: ``(H, W)`` int64 label map, 0 = background.
    """

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    semantic: np.ndarray
    seed: int

    def target(self) -> dict:
        return {
            "boxes": torch.from_numpy(self.boxes),
            "labels": torch.from_numpy(self.labels),
            "masks": torch.from_numpy(self.masks.astype(np.uint8)),
            "semantic": torch.from_numpy(self.semantic),
        }

    def tensor(self) -> torch.Tensor:
        """``(3, H, W)`` float in [0, 1]."""
        return torch.from_numpy(self.image).permute(2, 0, 1).float() / 255.0


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    base = rng.uniform(40, 215, size=3)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    grad = (np.cos(angle) * xx + np.sin(angle) * yy) / max(h, w)
    img = base[None, None, :] + rng.uniform(-40, 40, size=3)[None, None, :] * grad[..., None]
    # low-frequency texture: a coarse random grid, upsampled
    gh, gw = rng.integers(3, 9, size=2)
    coarse = rng.normal(0, 18, size=(gh, gw, 3)).astype(np.float32)
    ys = np.linspace(0, gh - 1, h)
    xs = np.linspace(0, gw - 1, w)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, gh - 1), np.minimum(x0 + 1, gw - 1)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    tex = (coarse[y0][:, x0] * (1 - fy) * (1 - fx) + coarse[y0][:, x1] * (1 - fy) * fx
           + coarse[y1][:, x0] * fy * (1 - fx) + coarse[y1][:, x1] * fy * fx)
    img = img + tex + rng.normal(0, rng.uniform(3, 12), size=(h, w, 3))
    return img


def _shape_mask(kind: int, cx: float, cy: float, r: float, angle: float, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy += 0.5
    xx += 0.5
    if kind == 1:  # circle of radius r
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    # rotate the coordinates into the shape's frame
    c, s = np.cos(angle), np.sin(angle)
    u = c * (xx - cx) + s * (yy - cy)
    v = -s * (xx - cx) + c * (yy - cy)
    if kind == 2:  # square of half side r * 0.85
        a = r * 0.85
        return (np.abs(u) <= a) & (np.abs(v) <= a)
    # equilateral triangle inscribed in the circle of radius 1.3 r (apex up in its frame)
    r = 1.3 * r
    inside = np.ones((h, w), dtype=bool)
    for k in range(3):
        t = np.pi / 2 + k * 2 * np.pi / 3  # direction of each vertex
        # edge opposite vertex k: points whose projection on -vertex direction <= r/2
        inside &= (-(np.cos(t) * u - np.sin(t) * v)) <= r / 2
    return inside


def _colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    for _ in range(20):
        col = rng.uniform(0, 255, size=3)
        if np.abs(col - background).sum() > 150:
            return col
    return 255 - background


def make_scene(seed: int, size: int | tuple[int, int] | None = None, max_objects: int = 6) -> Scene:
    """Generate the scene of ``seed``.

    Args:
        seed: any non-negative integer; the same seed always gives the same scene.
        size: ``(H, W)`` or one side; default: each side drawn from 128..256.
        max_objects: at most this many objects (at least one).

    Returns:
        :class:`Scene`.
    """
    rng = np.random.default_rng(seed)
    if size is None:
        h, w = (int(v) for v in rng.integers(128, 257, size=2))
    elif isinstance(size, (tuple, list)):
        h, w = int(size[0]), int(size[1])
    else:
        h = w = int(size)
    img = _background(rng, h, w)
    mean_bg = img.mean(axis=(0, 1))
    n_obj = int(rng.integers(1, max_objects + 1))
    side = min(h, w)
    full_masks, kinds = [], []
    for _ in range(n_obj):
        for _attempt in range(30):
            kind = int(rng.integers(1, 4))
            r = rng.uniform(0.07, 0.17) * side
            cx, cy = rng.uniform(r * 0.6, w - r * 0.6), rng.uniform(r * 0.6, h - r * 0.6)
            angle = rng.uniform(-0.5, 0.5)
            m = _shape_mask(kind, cx, cy, r, angle, h, w)
            # keep most of every earlier object visible
            ok = all((prev & ~m).sum() >= 0.6 * prev.sum() for prev in full_masks)
            if ok and m.sum() >= 40:
                break
        else:
            continue
        col = _colour(rng, mean_bg)
        shade = rng.normal(0, 6, size=(h, w, 1))
        img = np.where(m[..., None], col[None, None, :] + shade, img)
        full_masks.append(m)
        kinds.append(kind)
    # visible masks: later objects occlude earlier ones
    visible = []
    cover = np.zeros((h, w), dtype=bool)
    for m in reversed(full_masks):
        visible.append(m & ~cover)
        cover |= m
    visible = visible[::-1]
    semantic = np.zeros((h, w), dtype=np.int64)
    for k, m in zip(kinds, visible):
        semantic[m] = k
    boxes = []
    for m in visible:
        ys, xs = np.nonzero(m)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    image = np.clip(img, 0, 255).astype(np.uint8)
    return Scene(image, np.asarray(boxes, dtype=np.float32).reshape(-1, 4), np.asarray(kinds, dtype=np.int64),
                 np.stack(visible) if visible else np.zeros((0, h, w), dtype=bool), semantic, seed)


class ShapesDataset(Dataset):
    """``n`` scenes with seeds ``first_seed .. first_seed + n - 1``.

    Each item is ``(image (3, H, W) float in [0, 1], target dict)`` with the
    target keys ``boxes``, ``labels``, ``masks`` (uint8) and ``semantic``, the
    format torchvision's detection models train on.
    """

    def __init__(self, n: int, first_seed: int = 0, size=None, max_objects: int = 6):
        self.n, self.first_seed, self.size, self.max_objects = int(n), int(first_seed), size, max_objects

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        if not 0 <= i < self.n:
            raise IndexError(i)
        s = make_scene(self.first_seed + i, self.size, self.max_objects)
        return s.tensor(), s.target()


def held_out(n: int = 200, size=None) -> ShapesDataset:
    """The held-out scenes the model cards report on (never used in training)."""
    return ShapesDataset(n, HELD_OUT_SEED, size)
