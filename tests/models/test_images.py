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


# --- pixel values: integer images are 8-bit or 16-bit, never silently black -------------------------------------

def test_integer_arrays_8_and_16_bit():
    a8 = np.arange(20 * 20).reshape(20, 20) % 256
    for dtype in (np.uint8, np.int32, np.int64, np.uint16):  # values 0..255 are 8-bit whatever the dtype
        assert torch.allclose(load_image(a8.astype(dtype)).tensor[0], torch.from_numpy(a8 / 255).float())
    a16 = np.full((20, 20), 40000, np.uint16)
    t = load_image(a16).tensor
    assert torch.allclose(t, torch.full((3, 20, 20), 40000 / 65535))
    assert load_image(torch.from_numpy(a16.astype(np.int32)).clamp(0, 255)).tensor.max() == 1


@pytest.mark.parametrize("a", [
    np.linspace(0, 1000, 400).reshape(20, 20).astype(np.int64),   # was divided by iinfo(int64).max: all black
    np.full((20, 20), 70000, np.int32),
    np.full((20, 20, 3), -1, np.int16),
])
def test_integer_arrays_outside_8_and_16_bit_are_refused(a):
    with pytest.raises(ImageError, match=r"integer images must be 8-bit \(0\.\.255\) or 16-bit unsigned"):
        load_image(a)


def test_16_bit_png_keeps_its_values(tmp_path):
    a = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (32, 1))
    p = tmp_path / "deep.png"
    Image.fromarray(a).save(p)
    assert Image.open(p).mode in ("I;16", "I")  # a 16-bit PNG, which convert("RGB") would clip at 255
    t = load_image(p).tensor
    assert torch.allclose(t[1], torch.from_numpy(a / 65535).float(), atol=1e-6)
    assert 0.45 < t.mean() < 0.55  # not saturated: clipping would make almost every pixel white
    # the same for PIL images in the 16/32-bit modes
    assert torch.allclose(load_image(Image.fromarray(a)).tensor, t)
    assert torch.allclose(load_image(Image.fromarray(a.astype(">u2"))).tensor, t)  # mode I;16B
    assert torch.allclose(load_image(Image.open(p).convert("I")).tensor, t)
    f = Image.fromarray((a / 65535).astype(np.float32))
    assert f.mode == "F" and torch.allclose(load_image(f).tensor, t, atol=1e-6)
    with pytest.raises(ImageError, match="8-bit .* or 16-bit unsigned"):
        load_image(Image.fromarray(np.full((20, 20), 100_000, np.int32)))


def test_big_16_bit_png_is_shrunk_with_its_values(tmp_path):
    p = tmp_path / "deep.png"
    Image.fromarray(np.full((300, 2100), 30000, np.uint16)).save(p)
    r = load_image(p)
    assert r.tensor.shape == (3, 146, MAX_SIDE) and "downscaled from 2100x300" in r.note
    assert torch.allclose(r.tensor, torch.full_like(r.tensor, 30000 / 65535), atol=1e-5)


# --- files that are too large, too thin or animated ---------------------------------------------------------------

def png_header_only(w: int, h: int) -> bytes:
    """A PNG that claims to be ``w x h`` (8-bit gray) but holds one tiny IDAT: cheap to make, costly to decode."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * (w + 1))) + chunk(b"IEND", b""))


@pytest.mark.parametrize("w, h", [(12_000, 12_000),     # PIL warns (over the limit, under twice it)
                                  (40_000, 40_000)])    # PIL refuses (over twice the limit)
def test_decompression_bomb_is_one_error_and_no_warning(tmp_path, w, h):
    import warnings

    p = tmp_path / "bomb.png"
    p.write_bytes(png_header_only(w, h))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ImageError, match=r"too large to decode safely .*limit is 100 megapixels") as err:
            load_image(p)
    assert not caught, [str(c.message) for c in caught]
    assert "\n" not in str(err.value)


def test_decompression_bomb_with_a_small_limit(tmp_path, monkeypatch):
    from explainers.models import images

    p = tmp_path / "a.png"
    p.write_bytes(_png_bytes())  # 64 x 64
    monkeypatch.setattr(images, "MAX_PIXELS", 3000)  # 4096 pixels: PIL's warning range
    with pytest.raises(ImageError, match="too large to decode safely"):
        load_image(p)


def test_png_above_the_decode_limit_is_refused_from_its_header(tmp_path):
    from explainers.models.images import MAX_DECODE_PIXELS

    p = tmp_path / "big.png"
    p.write_bytes(png_header_only(10_000, 10_000))  # would need 100 MB (400 MB as floats) to decode
    with pytest.raises(ImageError, match=r"10000x10000 pixels .*PNG files are decoded whole, up to 48 megapixels: "
                                         r"shrink it"):
        load_image(p)
    assert 40_000_000 <= MAX_DECODE_PIXELS <= 50_000_000


@pytest.mark.parametrize("w, h, ok", [(16, 16 * 64, True), (16, 16 * 64 + 1, False), (6_000_000, 16, False)])
def test_aspect_ratio_limit(tmp_path, w, h, ok):
    from explainers.models.images import MAX_ASPECT

    assert MAX_ASPECT == 64
    p = tmp_path / "strip.png"
    if ok:
        Image.new("L", (w, h), 7).save(p)
        assert load_image(p).tensor.shape == (3, MAX_SIDE, 16)
        assert load_image(np.zeros((h, w), np.uint8)).tensor.shape == (3, MAX_SIDE, 16)
        return
    p.write_bytes(png_header_only(w, h))
    for x in (p, np.zeros((h, w), np.uint8)) if w * h < 10**7 else (p,):
        with pytest.raises(ImageError, match=r"times longer than wide; the longer side may be at most 64 times"):
            load_image(x)


def test_animated_gif_uses_its_first_frame_and_says_so(tmp_path):
    frames = [Image.new("RGB", (40, 30), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    p = tmp_path / "anim.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=100, loop=0)
    r = load_image(p)
    assert "anim.gif has 3 frames; only the first one is used" in r.note
    assert r.tensor[0].mean() > 0.9 and r.tensor[1:].mean() < 0.1  # red: the first frame
    single = tmp_path / "one.gif"
    frames[0].save(single)
    assert load_image(single).note == ""


def test_big_files_are_shrunk_before_any_float_copy(tmp_path, monkeypatch):
    """Files and PIL images reach the array stage at MAX_SIDE already (8-bit in PIL, not float)."""
    from explainers.models import images

    seen = []
    real = images._array_to_hwc
    monkeypatch.setattr(images, "_array_to_hwc", lambda a: seen.append(a.shape) or real(a))
    p = tmp_path / "wide.png"
    Image.new("RGBA", (3000, 1000), (0, 0, 0, 0)).save(p)  # fully transparent: white once composited
    r = load_image(p)
    assert seen == [(341, MAX_SIDE, 3)] and r.tensor.shape == (3, 341, MAX_SIDE) and r.original_size == (1000, 3000)
    assert torch.allclose(r.tensor, torch.ones_like(r.tensor))
    assert "downscaled from 3000x1000 to 1024x341" in r.note
    seen.clear()
    r = load_image(Image.new("P", (1000, 3000), 3))
    assert seen == [(MAX_SIDE, 341, 3)] and "downscaled from 1000x3000 to 341x1024" in r.note


def test_tiny_file_is_refused_before_decoding(tmp_path):
    p = tmp_path / "tiny.png"
    p.write_bytes(png_header_only(8, 4000))
    with pytest.raises(ImageError, match="8x4000 pixels; it needs at least 16 pixels on each side"):
        load_image(p)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("big", [False, True])
def test_a_phone_photo_is_turned_upright_as_its_exif_tag_says(tmp_path, orientation, big):
    """Phones store photos sideways with an EXIF orientation tag; every viewer turns them. The models
    ran on (and the pages drew) the stored pixels, a portrait photo lying on its side. The image loaded
    equals PIL's ImageOps.exif_transpose, also when it is shrunk on the way (big), and the note says so."""
    from PIL import Image, ImageOps

    from explainers.models.images import EXIF_ORIENTATION, MAX_SIDE

    w, h = (3 * MAX_SIDE // 2, MAX_SIDE) if big else (60, 40)
    rng = np.random.default_rng(orientation)
    small = rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)          # blocks: a shrink keeps them apart
    pixels = np.asarray(Image.fromarray(small).resize((w, h), Image.NEAREST))
    img = Image.fromarray(pixels)
    exif = img.getexif()
    exif[EXIF_ORIENTATION] = orientation
    path = tmp_path / "phone.png"
    img.save(path, exif=exif)
    loaded = load_image(path)
    upright = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    expect = np.asarray(upright if not big else upright.resize((loaded.tensor.shape[2], loaded.tensor.shape[1]),
                                                                Image.BILINEAR))
    got = (loaded.tensor.permute(1, 2, 0).numpy() * 255).round().astype(int)
    assert got.shape == expect.shape
    assert loaded.original_size == (upright.height, upright.width)
    if big:          # shrunk by two different filters: the same picture, not the same bytes
        assert np.abs(got - expect.astype(int)).mean() < 8
    else:
        assert np.array_equal(got, expect)
    assert ("EXIF orientation" in loaded.note) == (orientation != 1), loaded.note
    if not big:                                       # a PIL image opened by the user: the same
        assert torch.equal(load_image(Image.open(path)).tensor, loaded.tensor)


def test_a_pil_image_the_user_turned_already_is_not_turned_again(tmp_path):
    """rotate() and transpose() keep the EXIF tag while the pixels are already upright: the tag is
    trusted only on an image as opened from a file."""
    from PIL import Image

    from explainers.models.images import EXIF_ORIENTATION

    img = Image.fromarray(np.zeros((40, 60, 3), np.uint8))
    exif = img.getexif()
    exif[EXIF_ORIENTATION] = 6
    img.save(tmp_path / "phone.jpg", exif=exif)
    opened = Image.open(tmp_path / "phone.jpg")
    turned = opened.rotate(-90, expand=True)             # the student's own fix
    assert turned.getexif().get(EXIF_ORIENTATION) == 6 and turned.size == (40, 60)
    assert load_image(turned).tensor.shape[1:] == (60, 40) and "EXIF" not in load_image(turned).note
    assert load_image(opened).tensor.shape[1:] == (60, 40) and "EXIF" in load_image(opened).note
