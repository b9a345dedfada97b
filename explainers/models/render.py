"""Drawing results as overlays (numpy RGB images), with a colour-blind-safe palette.

One palette for every page: :func:`class_colour` gives class ``k``'s colour (``k`` = label
index, 0 = background) for label maps, boxes, masks and legends alike."""
from __future__ import annotations

import functools
import html

import numpy as np
import torch

#: Okabe-Ito, the colour-blind-safe palette (without black), as RGB
PALETTE = [(230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178), (213, 94, 0),
           (204, 121, 167), (153, 153, 153)]
#: the background class (label 0): a light grey that shows on white and differs from the palette's grey
BACKGROUND = (190, 190, 190)


def colour(i: int) -> tuple[int, int, int]:
    return PALETTE[i % len(PALETTE)]


def class_colour(k: int) -> tuple[int, int, int]:
    """The colour of class ``k`` (a label index: 0 is the background, 1 the first object class)."""
    return BACKGROUND if k == 0 else colour(k - 1)


def hex_colour(rgb) -> str:
    return "#{:02X}{:02X}{:02X}".format(*(int(v) for v in rgb))


def class_hex(k: int) -> str:
    """:func:`class_colour` as ``#RRGGBB`` (plotly, HTML)."""
    return hex_colour(class_colour(k))


def legend_items(classes, indices) -> list[str]:
    """"■ name" for each class index in ``indices``, the square in its class colour (plotly/HTML text)."""
    return [f"<span style='color:{class_hex(k)}'>■</span> {html.escape(classes[k] if k < len(classes) else str(k))}"
            for k in indices]


def legend_html(classes, indices, what: str = "") -> str:
    """A one-line legend of the classes ``indices`` (see :func:`legend_items`), after ``what`` the
    colours mark (e.g. "label map"): a scene's shapes have colours of their own, the legend is
    about what the page draws."""
    items = " &nbsp; ".join(legend_items(classes, indices))
    return f"{html.escape(what)}: {items}" if what else items


@functools.lru_cache(maxsize=16)
def font(size: int):
    """A scalable TrueType font of ``size`` pixels (Pillow's bundled one, else DejaVu Sans)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)          # Pillow >= 10.1, no file needed
    except (TypeError, ImportError, OSError, AttributeError):
        pass
    for name in ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "Arial.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default()


def label_font(height: int, width: int):
    """The label font for an ``height x width`` overlay seen at its own size: 8% of its shorter side
    (about 20 px on a 256 x 256 image), at least 13 px."""
    return font(max(13, round(0.08 * min(height, width))))


#: ``render(panel=True)`` enlarges a smaller image until its longer side is at least this (pixels)
PANEL_SIDE = 400


def _text_colour(c) -> tuple[int, int, int]:
    """Black on light colours, white on dark ones."""
    return (0, 0, 0) if 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2] >= 110 else (255, 255, 255)


def _overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _cover(a, b) -> float:
    """The area of ``a`` that lies on ``b`` (both ``[x1, y1, x2, y2]``)."""
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _label_place(box, lw: float, lh: float, W: int, H: int, placed: list, boxes: list) -> list:
    """Where the label of ``box`` goes: never on a label already placed, and covering as little of
    the objects' boxes as it can (small shapes stay visible). Tried in order: just above the box,
    just below it, inside its top; then a line further out each way."""
    x = min(max(0, box[0]), max(0, W - lw))
    tried = []
    for k in range(max(1, int(H // max(lh, 1)))):
        tried += [box[1] - lh * (k + 1), box[3] + lh * k, box[1] + lh * k]
    best, best_cost = None, None
    for i, y in enumerate(tried):
        if y < 0 or y + lh > H:
            continue
        rect = [x, y, x + lw, y + lh]
        if any(_overlaps(rect, p) for p in placed):
            continue
        cost = sum(_cover(rect, b) for b in boxes)
        if best_cost is None or cost < best_cost - 1e-9:
            best, best_cost = rect, cost
            if cost == 0:
                break
    if best is None:      # no free place (a crowded image): inside the top of the box
        y = min(max(0, box[1]), H - lh)
        best = [x, y, x + lw, y + lh]
    return best


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """A ``(3, H, W)`` float image in [0, 1] as an ``(H, W, 3)`` uint8 array (for drawing)."""
    return (image.permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)


def _legend(draw, fnt, H: int, W: int, entries) -> None:
    """``(colour, name)`` entries as "■ name" on a dark strip at the top left, wrapping lines."""
    pad = max(2, fnt.size // 6)
    _, t, _, b = fnt.getbbox("Ag")
    lh = b - t + 2 * pad
    x = y = 0
    items = []
    for c, name in entries:
        tw = fnt.getbbox(name)[2]
        w = lh + pad + tw + 2 * pad
        if x and x + w > W:
            x, y = 0, y + lh
        items.append((x, y, w, c, name))
        x += w
    for x, y, w, c, name in items:
        draw.rectangle([x, y, x + w, y + lh], fill=(0, 0, 0))
        draw.rectangle([x + pad, y + pad, x + lh - pad, y + lh - pad], fill=c)
        draw.text((x + lh + pad, y + pad - t), name, fill=(255, 255, 255), font=fnt)


def render(result, score_threshold: float = 0.5, alpha: float = 0.5, legend: bool = True,
           panel: bool = False) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 overlay of a segmentation or detection result. ``legend``: the
    segmentation's class legend drawn in its top left corner (a page with its own legend leaves it out).

    Labels are 8% of the image's shorter side (at least 13 px), for a picture seen at its own size.
    ``panel``: for a page's panel instead, where the image is fitted into a few hundred screen pixels
    whatever its size: labels are 5% of the longer side, so they look the same size on every image,
    and a small image (the shapes scenes are about 150 px) is first enlarged by a whole factor ``k``
    (each pixel a ``k x k`` block) until its longer side is at least 400 px; the result is then
    ``(kH, kW, 3)``."""
    from PIL import Image, ImageDraw

    from .live import DetectionResult, SegmentationResult

    base = to_uint8(result.image).astype(np.float32)
    k = max(1, -(-PANEL_SIDE // max(base.shape[:2]))) if panel else 1    # ceil(400 / longer side)

    def bigger(a: np.ndarray) -> np.ndarray:                      # (H, W, ...) -> (kH, kW, ...)
        return a.repeat(k, axis=0).repeat(k, axis=1) if k > 1 else a

    base = bigger(base)
    H, W = base.shape[:2]
    fnt = font(max(13, round(0.05 * max(H, W)))) if panel else label_font(H, W)
    if isinstance(result, SegmentationResult):
        lab = result.labels
        if lab.shape != (H, W):  # the patch classifier labels a coarser grid: nearest upsampling
            lab = torch.nn.functional.interpolate(lab[None, None].float(), size=(H, W), mode="nearest")[0, 0].long()
        lab = lab.numpy()
        over = base.copy()
        for k in np.unique(lab):
            if k == 0:
                continue
            over[lab == k] = (1 - alpha) * base[lab == k] + alpha * np.array(class_colour(int(k)), np.float32)
        img = Image.fromarray(over.round().astype(np.uint8))
        if legend:
            draw = ImageDraw.Draw(img)
            present = [int(k) for k in np.unique(lab) if 0 < k < len(result.classes)]
            entries = [(class_colour(k), result.classes[k]) for k in present]
            _legend(draw, fnt, H, W, entries or [(class_colour(0), "(background only)")])
        return np.asarray(img)
    if not isinstance(result, DetectionResult):
        raise TypeError(f"cannot render a {type(result).__name__}")
    r = result.filter(score_threshold)
    over = base.copy()
    if r.masks is not None:
        for i in range(len(r.boxes)):
            m = bigger(r.masks[i].numpy() > 0.5)
            over[m] = (1 - alpha) * over[m] + alpha * np.array(class_colour(int(r.labels[i])), np.float32)
    img = Image.fromarray(over.round().astype(np.uint8))
    draw = ImageDraw.Draw(img)
    width = max(2, round(min(H, W) / 150))
    pad = max(2, fnt.size // 8)
    _, t, _, b = fnt.getbbox("Ag")
    lh = b - t + 2 * pad
    items = sorted(zip((r.boxes * k).tolist(), r.names, r.scores.tolist(), r.labels.tolist()), key=lambda it: -it[2])
    for box, _, _, lab in items:
        draw.rectangle(box, outline=class_colour(int(lab)), width=width)
    placed = []
    boxes = [it[0] for it in items]
    for box, name, score, lab in items:                # best first: it gets the best place
        c = class_colour(int(lab))
        text = f"{name} {score:.2f}"
        lw = fnt.getbbox(text)[2] + 2 * pad
        rect = _label_place(box, lw, lh, W, H, placed, boxes)
        placed.append(rect)
        draw.rectangle(rect, fill=c)
        draw.text((rect[0] + pad, rect[1] + pad - t), text, fill=_text_colour(c), font=fnt)
    return np.asarray(img)
