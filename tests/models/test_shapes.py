import numpy as np
import torch

from explainers.models import CLASSES, ShapesDataset, held_out, make_scene
from explainers.models.shapes import HELD_OUT_SEED


def test_deterministic_per_seed():
    a, b = make_scene(123), make_scene(123)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.masks, b.masks)
    assert not np.array_equal(make_scene(124).image.shape, a.image.shape) or \
        not np.array_equal(make_scene(124).image, a.image)


def test_targets_are_consistent():
    for seed in range(40):
        s = make_scene(seed)
        H, W = s.semantic.shape
        assert 128 <= H <= 256 and 128 <= W <= 256
        n = len(s.labels)
        assert 1 <= n <= 6 and s.masks.shape == (n, H, W) and s.boxes.shape == (n, 4)
        assert set(s.labels.tolist()) <= {1, 2, 3}
        # masks don't overlap; semantic map = union of masks with their classes
        assert s.masks.sum(0).max() <= 1
        sem = np.zeros((H, W), dtype=np.int64)
        for m, lab in zip(s.masks, s.labels):
            sem[m] = lab
        assert np.array_equal(sem, s.semantic)
        # boxes are tight around the visible masks
        for m, box in zip(s.masks, s.boxes):
            ys, xs = np.nonzero(m)
            assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_dataset_items_and_held_out_split():
    ds = ShapesDataset(3, first_seed=5, size=128)
    img, tgt = ds[1]
    assert img.shape == (3, 128, 128) and img.dtype == torch.float32 and 0 <= img.min() and img.max() <= 1
    assert set(tgt) == {"boxes", "labels", "masks", "semantic"}
    assert held_out(2).first_seed == HELD_OUT_SEED
    assert CLASSES[0] == "background" and len(CLASSES) == 4
