"""Drawing results as overlays (numpy RGB images), with a colour-blind-safe palette."""
from __future__ import annotations

import numpy as np
import torch

#: Okabe-Ito, the colour-blind-safe palette (without black), as RGB
PALETTE = [(230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178), (213, 94, 0),
           (204, 121, 167), (153, 153, 153)]


def colour(i: int) -> tuple[int, int, int]:
    return PALETTE[i % len(PALETTE)]


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """A ``(3, H, W)`` float image in [0, 1] as an ``(H, W, 3)`` uint8 array (for drawing)."""
    return (image.permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)


def render(result, score_threshold: float = 0.5, alpha: float = 0.5) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 overlay of a segmentation or detection result."""
    from PIL import Image, ImageDraw

    from .live import DetectionResult, SegmentationResult

    base = to_uint8(result.image).astype(np.float32)
    H, W = base.shape[:2]
    if isinstance(result, SegmentationResult):
        lab = result.labels
        if lab.shape != (H, W):  # the patch classifier labels a coarser grid: nearest upsampling
            lab = torch.nn.functional.interpolate(lab[None, None].float(), size=(H, W), mode="nearest")[0, 0].long()
        lab = lab.numpy()
        over = base.copy()
        for k in np.unique(lab):
            if k == 0:
                continue
            over[lab == k] = (1 - alpha) * base[lab == k] + alpha * np.array(colour(int(k) - 1), np.float32)
        img = Image.fromarray(over.round().astype(np.uint8))
        draw = ImageDraw.Draw(img)
        names = [result.classes[k] for k in np.unique(lab) if k > 0 and k < len(result.classes)]
        draw.text((4, 4), ", ".join(names) if names else "(background only)", fill=(255, 255, 255))
        return np.asarray(img)
    if not isinstance(result, DetectionResult):
        raise TypeError(f"cannot render a {type(result).__name__}")
    r = result.filter(score_threshold)
    over = base.copy()
    if r.masks is not None:
        for i in range(len(r.boxes)):
            m = r.masks[i].numpy() > 0.5
            over[m] = (1 - alpha) * over[m] + alpha * np.array(colour(int(r.labels[i]) - 1), np.float32)
    img = Image.fromarray(over.round().astype(np.uint8))
    draw = ImageDraw.Draw(img)
    width = max(2, round(min(H, W) / 150))
    for box, name, score, lab in zip(r.boxes.tolist(), r.names, r.scores.tolist(), r.labels.tolist()):
        c = colour(int(lab) - 1)
        draw.rectangle(box, outline=c, width=width)
        text = f"{name} {score:.2f}"
        x, y = box[0], max(0, box[1] - 12)
        draw.rectangle([x, y, x + 6 * len(text) + 4, y + 12], fill=c)
        draw.text((x + 2, y), text, fill=(0, 0, 0))
    return np.asarray(img)
