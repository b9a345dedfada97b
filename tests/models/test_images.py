import numpy as np
import pytest
import torch
from PIL import Image

from explainers.models import MAX_SIDE, ImageError, load_image


def test_formats(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    for x in (rgb, rgb[..., 0], np.dstack([rgb, np.full((40, 50), 255, np.uint8)]), rgb.astype(np.float32) / 255,
              Image.fromarray(rgb), torch.from_numpy(rgb).permute(2, 0, 1).float() / 255):
        t = load_image(x).tensor
        assert t.shape == (3, 40, 50) and t.dtype == torch.float32 and 0 <= t.min() and t.max() <= 1
    Image.fromarray(rgb).save(tmp_path / "a.png")
    assert torch.allclose(load_image(tmp_path / "a.png").tensor, load_image(rgb).tensor)
    # RGBA composites over white; grayscale is repeated
    rgba = np.zeros((20, 20, 4), np.uint8)
    assert torch.allclose(load_image(rgba).tensor, torch.ones(3, 20, 20))
    assert torch.equal(load_image(rgb[..., 1]).tensor[0], load_image(rgb[..., 1]).tensor[2])


def test_huge_image_is_downscaled():
    r = load_image(np.zeros((3000, 1500, 3), np.uint8))
    assert max(r.tensor.shape[1:]) == MAX_SIDE and r.scale == pytest.approx(MAX_SIDE / 3000)
    assert "downscaled" in r.note


@pytest.mark.parametrize("make, msg", [
    (lambda p: p.write_text("not an image at all"), "not an image"),
    (lambda p: p.write_bytes(_png_bytes()[:60]), "truncated or corrupt"),
    (lambda p: p.mkdir(), "folder"),
])
def test_bad_files(tmp_path, make, msg):
    p = tmp_path / "bad.png"
    make(p)
    with pytest.raises(ImageError, match=msg):
        load_image(p)


def _png_bytes():
    import io
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("x, msg", [
    (np.zeros((1, 1, 3), np.uint8), "at least 16 pixels"),
    (np.zeros((0, 5, 3), np.uint8), "empty"),
    (np.zeros((20, 20, 2), np.uint8), "H x W"),
    (np.full((20, 20, 3), np.nan, np.float32), "NaN"),
    (np.full((20, 20, 3), -3.0, np.float32), r"\[0, 1\]"),
    ("/no/such/file.png", "no such file"),
    (None, "no image"),
    (3.5, "cannot read an image"),
])
def test_bad_inputs(x, msg):
    with pytest.raises(ImageError, match=msg):
        load_image(x)


def test_upload_bytes():
    assert load_image(_png_bytes()).tensor.shape == (3, 64, 64)
    with pytest.raises(ImageError, match="not an image"):
        load_image(b"GIF89a nonsense")


def test_huge_jpeg_file_is_decoded_small(tmp_path):
    p = tmp_path / "big.jpg"
    Image.fromarray(np.full((2600, 4100, 3), 128, np.uint8)).save(p, quality=70)
    r = load_image(p)
    assert max(r.tensor.shape[1:]) == MAX_SIDE and r.original_size == (2600, 4100)
    assert "downscaled from 4100x2600" in r.note
