"""Reading images from anything a user may hand over, with clear errors.

Accepted: a path, raw file bytes, a PIL image, a numpy array (``H x W``, ``H x W x 3``,
``H x W x 4``) or a tensor (``(3, H, W)``, ``(1, H, W)``, ``(H, W)``).
The result is always an RGB ``(3, H, W)`` float tensor in [0, 1].

Pixel values:
* integer images with values in 0..255 are divided by 255;
* ``uint16`` arrays (values above 255) and 16-bit files (PIL modes ``I;16*`` and ``I``,
  values in 0..65535) are divided by 65535;
* any other integer image with values below 0 or above 255 is refused (integer images
  must be 8-bit or 16-bit unsigned), never silently turned black;
* float images must hold values in [0, 1] (or 0..255, which is divided by 255).

Limits (documented, enforced here):
* sides of at least ``MIN_SIDE`` (16) pixels: smaller images carry nothing to detect;
* the longer side at most ``MAX_ASPECT`` (64) times the shorter one: a thinner strip
  cannot be shown to the models without distorting it;
* images with a side above ``MAX_SIDE`` (1024) are downscaled so that the longer side is
  ``MAX_SIDE`` (the result says so);
* files above ``MAX_PIXELS`` (100 megapixels) are refused before decoding (PIL's
  decompression-bomb warning becomes the same one-line error);
* files are shrunk while they are still 8-bit PIL images, before any float copy: JPEGs are
  decoded directly at a reduced size (1/2, 1/4 or 1/8); every other format (PNG, WebP,
  TIFF, BMP, GIF) is decoded whole, so it is refused from its header above
  ``MAX_DECODE_PIXELS`` (48 megapixels, e.g. 6900 x 6900) with a line asking to shrink it.
  Together these keep reading any file under about 1 GB of memory;
* a multi-frame file (animated GIF, APNG, multi-page TIFF) gives its first frame only,
  and the result says so.
"""
from __future__ import annotations

import io
import os
import re
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

MIN_SIDE = 16
MAX_SIDE = 1024
MAX_PIXELS = 100_000_000
MAX_DECODE_PIXELS = 48_000_000
MAX_ASPECT = 64
_HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_FORMATS = "PNG, JPEG, BMP, GIF, TIFF, WebP"


class ImageError(ValueError):
    """An input that is not a usable image; the message is one readable line."""


@dataclass
class LoadedImage:
    tensor: torch.Tensor          # (3, H, W) float in [0, 1]
    original_size: tuple[int, int]  # (H, W) before any downscale
    scale: float                  # size used / original size
    note: str = ""
    orientation: int = 1          # the EXIF orientation it was turned upright by (1: as stored)


def _check_shape(w: int, h: int, name: str = "the image") -> None:
    """The size limits that do not depend on decoding (``MIN_SIDE``, ``MAX_ASPECT``)."""
    if w == 0 or h == 0:
        raise ImageError(f"{name} is empty (0 pixels)")
    if min(w, h) < MIN_SIDE:
        raise ImageError(f"{name} is {w}x{h} pixels; it needs at least {MIN_SIDE} pixels on each side")
    if max(w, h) > MAX_ASPECT * min(w, h):
        raise ImageError(f"{name} is {w}x{h} pixels, a strip {max(w, h) / min(w, h):.0f} times longer than wide; "
                         f"the longer side may be at most {MAX_ASPECT} times the shorter one: crop it into pieces")


def _target_size(w: int, h: int, max_side: int) -> tuple[int, int] | None:
    """(width, height) after the downscale to ``max_side``, or None when none is needed."""
    if max(w, h) <= max_side:
        return None
    s = max_side / max(w, h)
    return max(MIN_SIDE, round(w * s)), max(MIN_SIDE, round(h * s))


def _from_pil(img, max_side: int | None = None, target: tuple[int, int] | None = None) -> np.ndarray:
    """A PIL image -> a numpy array that :func:`_array_to_hwc` accepts, shrunk in PIL first.

    8-bit images come back as uint8 (``H x W`` or ``H x W x 3``, alpha composited over
    white); 16-bit and 32-bit ones (modes ``I;16*``, ``I``, ``F``) as float32 ``H x W``,
    16-bit values divided by 65535 (``img.convert("RGB")`` would clip them to 255).
    """
    from PIL import Image

    bilinear = getattr(Image, "Resampling", Image).BILINEAR
    if target is None and max_side is not None:
        target = _target_size(*img.size, max_side)

    def shrink(im):
        # reducing_gap: an integer box reduction first, then the (antialiased) bilinear filter
        return im if target is None or im.size == target else im.resize(target, bilinear, reducing_gap=3.0)

    if img.mode in _HIGH_DEPTH_MODES:
        lo, hi = img.getextrema() if img.mode == "I" else (0, 0)  # I;16* hold 0..65535 by definition
        if lo < 0 or hi > 65535:
            raise ImageError(f"the image holds 32-bit integer values {lo}..{hi}; integer images must be 8-bit "
                             f"(0..255) or 16-bit unsigned (0..65535)")
        try:
            f = img.convert("F")
        except ValueError:  # older Pillow: no direct I;16 -> F conversion
            f = img.convert("I").convert("F")
        a = np.asarray(shrink(f), dtype=np.float32)
        return a if img.mode == "F" else a / np.float32(65535)
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        # RGBA and LA shrink as they are (PIL resizes them with premultiplied alpha), P once converted
        rgba = shrink(img).convert("RGBA") if img.mode != "P" else shrink(img.convert("RGBA"))
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(bg, rgba).convert("RGB"))
    if img.mode not in ("L", "RGB", "CMYK"):  # P and 1 would be resized nearest-neighbour: convert first
        img = img.convert("L" if img.mode == "1" else "RGB")
    img = shrink(img)
    if img.mode == "CMYK":  # converted once small
        img = img.convert("RGB")
    return np.asarray(img)  # gray stays H x W (a third of the memory) until the end


#: the EXIF tag that says how a stored photo is to be turned (a phone's sensor is stored sideways)
EXIF_ORIENTATION = 0x0112
#: EXIF orientation 2..8 -> the turn of an (H, W, ...) array that shows the photo upright, as
#: PIL.ImageOps.exif_transpose does (tested against it)
_ORIENT = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1),
           7: lambda a: np.rot90(a, 2).swapaxes(0, 1), 8: lambda a: np.rot90(a, 1)}
_ORIENT_WORDS = {2: "mirrored", 3: "180°", 4: "upside down", 5: "mirrored, 90°", 6: "90° clockwise",
                 7: "mirrored, 90°", 8: "90° anticlockwise"}


def _orientation(img) -> int:
    """A PIL image's EXIF orientation (1: as stored)."""
    try:
        return int(img.getexif().get(EXIF_ORIENTATION, 1))
    except Exception:          # a damaged EXIF block: the pixels as stored
        return 1


def _upright(arr: np.ndarray, size: tuple[int, int], orientation: int) -> tuple[np.ndarray, tuple[int, int], str]:
    """``(array, original (H, W), note)`` turned as the EXIF ``orientation`` says: a phone stores a photo
    sideways with a tag saying how to turn it, and every photo viewer turns it (done after the shrink:
    a few pixels to move, not the camera's)."""
    if orientation not in _ORIENT:
        return arr, size, ""
    h, w = size
    return (np.ascontiguousarray(_ORIENT[orientation](arr)), (w, h) if orientation >= 5 else (h, w),
            f"turned upright as its EXIF orientation tag says ({_ORIENT_WORDS[orientation]})")


def _bomb_message(name: str, exc: Exception) -> str:
    m = re.search(r"\((\d+) pixels\)", str(exc))
    size = f" ({int(m.group(1)) / 1e6:.0f} megapixels)" if m else ""
    return (f"{name} is too large to decode safely{size}: the limit is {MAX_PIXELS // 1_000_000} megapixels; "
            f"shrink it (e.g. to {MAX_SIDE} px on the longer side) first")


def _read_file(data_or_path, max_side: int = MAX_SIDE) -> tuple[np.ndarray, tuple[int, int], str, int]:
    """A file -> (array shrunk to ``max_side``, original (H, W) upright, note, EXIF orientation)."""
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    name = os.fspath(data_or_path) if isinstance(data_or_path, (str, os.PathLike)) else "the upload"
    try:
        src = io.BytesIO(data_or_path) if isinstance(data_or_path, (bytes, bytearray, memoryview)) else data_or_path
        with warnings.catch_warnings():
            # PIL warns between MAX_PIXELS and twice that: one error line, not a warning line too
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(src) as img:
                w, h = img.size
                if w * h > MAX_PIXELS:
                    raise ImageError(f"{name} is {w}x{h} pixels, above the limit of {MAX_PIXELS // 1_000_000} "
                                     f"megapixels; shrink it (e.g. to {MAX_SIDE} px on the longer side) first")
                _check_shape(w, h, name)
                target = _target_size(w, h, max_side)
                if target is not None:
                    img.draft("RGB", target)  # JPEG: decode at 1/2, 1/4 or 1/8 of the size, still >= target
                dw, dh = img.size
                if dw * dh > MAX_DECODE_PIXELS:
                    raise ImageError(
                        f"{name} is {w}x{h} pixels ({w * h / 1e6:.0f} megapixels); {img.format or 'this'} files "
                        f"are decoded whole, up to {MAX_DECODE_PIXELS // 1_000_000} megapixels: shrink it (e.g. to "
                        f"{MAX_SIDE} px on the longer side, all the models use) or save it as JPEG")
                try:
                    frames = getattr(img, "n_frames", 1)  # before load(): counting frames seeks through the file
                except (OSError, EOFError, SyntaxError, ValueError):  # a damaged later frame: frame 0 may do
                    img.seek(0)
                    frames = 1
                orientation = _orientation(img)
                img.load()
                notes = []
                if frames > 1 and img.format != "MPO":  # MPO: a camera JPEG with its preview, not an animation
                    notes.append(f"{os.path.basename(name)} has {frames} frames; only the first one is used")
                arr, (h, w), turned = _upright(_from_pil(img, target=target), (h, w), orientation)
                return (arr, (h, w), "; ".join(notes + [turned] if turned else notes),
                        orientation if turned else 1)
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"no such file: {name}") from None
    except IsADirectoryError:
        raise ImageError(f"{name} is a folder, not an image") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name} is not an image this program can read ({_FORMATS})") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(_bomb_message(name, exc)) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"{name} could not be decoded (truncated or corrupt file: {exc})") from None


def _array_to_hwc(a: np.ndarray) -> np.ndarray:
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
        a = np.moveaxis(a, 0, -1)  # channels first
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[-1] not in (1, 3, 4):
        raise ImageError(f"an image array must be H x W, H x W x 3 or H x W x 4; got shape {a.shape}")
    if a.dtype == bool:
        a = a.astype(np.float32)
    if np.issubdtype(a.dtype, np.integer):
        lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
        if 0 <= lo and hi <= 255:
            a = a.astype(np.float32) / np.float32(255)
        elif a.dtype == np.uint16:
            a = a.astype(np.float32) / np.float32(65535)
        else:
            raise ImageError(f"integer images must be 8-bit (0..255) or 16-bit unsigned (uint16, 0..65535); "
                             f"got {a.dtype} values {lo}..{hi}")
    a = a.astype(np.float32)
    if not np.isfinite(a).all():
        raise ImageError("the image contains NaN or infinite values")
    if a.size and (a.min() < 0 or a.max() > 1):
        lo, hi = float(a.min()), float(a.max())
        if hi <= 255 and lo >= 0:
            a = a / 255.0
        else:
            raise ImageError(f"float images must hold values in [0, 1] (or 0..255); got {lo:.3g}..{hi:.3g}")
    if a.shape[-1] == 4:  # composite over white
        rgb, alpha = a[..., :3], a[..., 3:]
        a = rgb * alpha + (1 - alpha)
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    return a


def load_image(image, max_side: int = MAX_SIDE) -> LoadedImage:
    """Any image-like input -> :class:`LoadedImage` (RGB float ``(3, H, W)``)."""
    if image is None:
        raise ImageError("no image given")
    original, note, turn = None, "", 1
    if isinstance(image, (str, os.PathLike, bytes, bytearray, memoryview)):
        arr, original, note, turn = _read_file(image, max_side)
        arr = _array_to_hwc(arr)
    elif isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.dim() == 4 and t.shape[0] == 1:
            t = t[0]
        if t.dim() == 3 and t.shape[0] in (1, 3, 4):
            t = t.permute(1, 2, 0)
        arr = _array_to_hwc(t.numpy())
    elif isinstance(image, np.ndarray):
        arr = _array_to_hwc(image)
    elif hasattr(image, "mode") and hasattr(image, "size"):  # PIL
        w, h = image.size
        _check_shape(w, h)
        # the tag is trusted on an image as opened from a file; rotate(), transpose() and copy() keep
        # it while the pixels may already be turned (format None), and exif_transpose removes it
        turn = _orientation(image) if getattr(image, "format", None) else 1
        arr, original, note = _upright(_from_pil(image, max_side), (h, w), turn)
        turn = turn if note else 1
        arr = _array_to_hwc(arr)
    else:
        raise ImageError(f"cannot read an image from a {type(image).__name__}; give a path, array, PIL image or tensor")
    h, w = arr.shape[:2]
    if original is None:
        _check_shape(w, h)
    t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).contiguous()
    oh, ow = original or (h, w)   # a file or PIL image has been shrunk in PIL already
    scale = min(h / oh, w / ow)
    if max(h, w) > max_side:
        s = max_side / max(h, w)
        nh, nw = max(MIN_SIDE, round(h * s)), max(MIN_SIDE, round(w * s))
        t = F.interpolate(t[None], size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)[0].clamp(0, 1)
        scale *= s
    notes = [note] if note else []
    if scale < 1:
        nh, nw = t.shape[-2:]
        notes.insert(0, f"downscaled from {ow}x{oh} to {nw}x{nh} (limit {max_side} px per side)")
    return LoadedImage(t, (oh, ow), scale, "; ".join(notes), turn)
