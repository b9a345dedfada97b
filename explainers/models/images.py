"""Reading images from anything a user may hand over, with clear errors.

Accepted: a path, a PIL image, a numpy array (``H x W``, ``H x W x 3``, ``H x W x 4``,
uint8 or float in [0, 1]), or a tensor (``(3, H, W)``, ``(1, H, W)``, ``(H, W)``).
The result is always an RGB ``(3, H, W)`` float tensor in [0, 1].

Limits (documented, enforced here):
* sides of at least ``MIN_SIDE`` (16) pixels: smaller images carry nothing to detect;
* images with a side above ``MAX_SIDE`` (1024) are downscaled so that the longer side is
  ``MAX_SIDE`` (the result says so);
* files above ``MAX_PIXELS`` (100 megapixels) are refused before decoding.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

MIN_SIDE = 16
MAX_SIDE = 1024
MAX_PIXELS = 100_000_000


class ImageError(ValueError):
    """An input that is not a usable image; the message is one readable line."""


@dataclass
class LoadedImage:
    tensor: torch.Tensor          # (3, H, W) float in [0, 1]
    original_size: tuple[int, int]  # (H, W) before any downscale
    scale: float                  # size used / original size
    note: str = ""


def _from_pil(img) -> np.ndarray:
    from PIL import Image

    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, rgba)
    return np.asarray(img.convert("RGB"))


def _read_file(data_or_path) -> tuple[np.ndarray, tuple[int, int]]:
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    name = data_or_path if isinstance(data_or_path, (str, os.PathLike)) else "the upload"
    try:
        src = io.BytesIO(data_or_path) if isinstance(data_or_path, (bytes, bytearray, memoryview)) else data_or_path
        with Image.open(src) as img:
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise ImageError(f"{name} is {w}x{h} pixels, above the limit of {MAX_PIXELS // 1_000_000} megapixels")
            if max(w, h) > 2 * MAX_SIDE:
                img.draft("RGB", (MAX_SIDE, MAX_SIDE))  # JPEG: decode at a reduced size
            img.load()
            return _from_pil(img), (h, w)
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"no such file: {name}") from None
    except IsADirectoryError:
        raise ImageError(f"{name} is a folder, not an image") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name} is not an image this program can read (PNG, JPEG, BMP, GIF, TIFF, WebP)") from None
    except Image.DecompressionBombError:
        raise ImageError(f"{name} is too large to decode safely (over {MAX_PIXELS // 1_000_000} megapixels)") from None
    except (OSError, SyntaxError, ValueError) as exc:
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
        a = a.astype(np.float32) / (255.0 if a.max(initial=0) <= 255 else float(np.iinfo(a.dtype).max))
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
    original = None
    if isinstance(image, (str, os.PathLike, bytes, bytearray, memoryview)):
        arr, original = _read_file(image)
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
        arr = _array_to_hwc(_from_pil(image))
    else:
        raise ImageError(f"cannot read an image from a {type(image).__name__}; give a path, array, PIL image or tensor")
    h, w = arr.shape[:2]
    if h == 0 or w == 0:
        raise ImageError("the image is empty (0 pixels)")
    if min(h, w) < MIN_SIDE:
        raise ImageError(f"the image is {w}x{h} pixels; it needs at least {MIN_SIDE} pixels on each side")
    t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).contiguous()
    oh, ow = original or (h, w)   # a JPEG may have been decoded at a reduced size already
    scale, note = min(h / oh, w / ow), ""
    if max(h, w) > max_side:
        s = max_side / max(h, w)
        nh, nw = max(MIN_SIDE, round(h * s)), max(MIN_SIDE, round(w * s))
        t = F.interpolate(t[None], size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)[0].clamp(0, 1)
        scale *= s
    if scale < 1:
        nh, nw = t.shape[-2:]
        note = f"downscaled from {ow}x{oh} to {nw}x{nh} (limit {max_side} px per side)"
    return LoadedImage(t, (oh, ow), scale, note)
