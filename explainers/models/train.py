"""Train the bundled "shapes" models: ``python -m explainers.models.train TASK``.

TASK is ``patch`` (the sliding-window classifier), ``segmentation`` (SegNet),
``detection`` / ``instance`` (one Mask R-CNN serves both), ``onestage`` (a one-stage
FCOS) or ``all``.  Training is
seeded and reproducible; each run writes ``<name>.pt`` (weights) and
``<name>.json`` (the model card: data, steps, time, held-out metrics) into
``--out`` (default: the package's bundled weights folder).
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .._files import write_whole
from .device import default_device
from .evaluate import evaluate_detector, evaluate_one_stage, evaluate_patch, evaluate_segnet
from .nets import PatchClassifier, SegNet, small_fcos, small_mask_rcnn
from .shapes import CLASSES, HELD_OUT_SEED, make_scene

WEIGHTS_DIR = Path(__file__).parent / "weights"
FILES = {"patch": "patch_classifier", "segmentation": "segnet", "detection": "mask_rcnn", "onestage": "fcos"}
DEFAULT_STEPS = {"patch": 3000, "segmentation": 1500, "detection": 1600, "onestage": 1600}
#: a time limit by default: the one-stage detector must train in at most 20 minutes on 2 CPU cores,
#: also on a shared machine (its cosine schedule then ends with the time, see ``train``)
DEFAULT_MAX_MINUTES = {"onestage": 18.5}
CROP = 128


class ScenePool:
    """Training scenes (seeds 0..n-1, sizes 128-256), generated once and kept in memory."""

    def __init__(self, n: int, progress: bool = True):
        self.scenes = [make_scene(s) for s in tqdm(range(n), desc="generating scenes", disable=not progress)]
        assert all(s.seed < HELD_OUT_SEED for s in self.scenes)

    def crops(self, rng: np.random.Generator, batch: int, size: int = CROP):
        """Random ``size`` crops with horizontal flips: images (B, 3, s, s), semantic (B, s, s)."""
        imgs, sems = [], []
        for k in rng.integers(0, len(self.scenes), size=batch):
            s = self.scenes[k]
            h, w = s.semantic.shape
            y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
            im = s.image[y:y + size, x:x + size]
            se = s.semantic[y:y + size, x:x + size]
            if rng.random() < 0.5:
                im, se = im[:, ::-1], se[:, ::-1]
            imgs.append(torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1).float() / 255)
            sems.append(torch.from_numpy(np.ascontiguousarray(se)))
        return torch.stack(imgs), torch.stack(sems)

    def detection_batch(self, rng: np.random.Generator, batch: int, with_masks: bool = True):
        """Whole scenes with horizontal flips: images and torchvision targets (``masks`` only if asked)."""
        imgs, targets = [], []
        for k in rng.integers(0, len(self.scenes), size=batch):
            s = self.scenes[k]
            img = torch.from_numpy(s.image).permute(2, 0, 1).float() / 255
            boxes = torch.from_numpy(s.boxes.copy())
            masks = torch.from_numpy(s.masks.astype(np.uint8)) if with_masks else None
            if rng.random() < 0.5:
                w = img.shape[-1]
                img = img.flip(-1)
                masks = masks.flip(-1) if with_masks else None
                boxes = torch.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], 1)
            imgs.append(img)
            target = {"boxes": boxes, "labels": torch.from_numpy(s.labels)}
            if with_masks:
                target["masks"] = masks
            targets.append(target)
        return imgs, targets


def _cosine(step: int, total: int, warmup: int, progress: float | None = None) -> float:
    """Linear warm-up, then a cosine from 1 to 0; ``progress`` (0..1, optional) overrides how far along it is."""
    if step < warmup:
        return (step + 1) / warmup
    if progress is None:
        progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train(task: str, steps: int | None = None, out: Path = WEIGHTS_DIR, seed: int = 0, pool: int = 1500,
          eval_scenes: int = 200, max_minutes: float | None = None, progress: bool = True,
          overwrite: bool = True) -> dict:
    """Train one model; returns its model card (also written beside the weights). Each file is
    written whole or not at all (Ctrl-C during the save leaves no truncated ``.pt``); with
    ``overwrite=False`` a file that appeared during training is kept (FileExistsError)."""
    task = "detection" if task == "instance" else task
    if task not in FILES:
        raise ValueError(f"task must be one of patch, segmentation, detection, instance, onestage; got {task!r}")
    if steps is not None and int(steps) < 1:
        raise ValueError(f"steps must be at least 1 (got {steps}): 0 steps would write an untrained model")
    steps = int(steps or DEFAULT_STEPS[task])
    max_minutes = max_minutes if max_minutes is not None else DEFAULT_MAX_MINUTES.get(task)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    device = default_device()
    data = ScenePool(pool, progress)
    if task == "patch":
        model, batch = PatchClassifier(), 8
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
        warmup = 100
    elif task == "segmentation":
        model, batch = SegNet(), 8
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
        warmup = 100
    elif task == "onestage":
        model, batch = small_fcos(), 8
        opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
        warmup = 100
    else:
        model, batch = small_mask_rcnn(), 8
        opt = torch.optim.SGD(model.parameters(), lr=0.03, momentum=0.9, weight_decay=1e-4)
        warmup = 200
    t0 = time.perf_counter()

    def factor(s: int) -> float:
        # with a time limit, the cosine ends when the steps or the time run out, whichever comes first,
        # so a slow (shared) machine still ends with a small learning rate
        p = (s - warmup) / max(1, steps - warmup)
        if max_minutes:
            p = max(p, (time.perf_counter() - t0) / (60 * max_minutes))
        return _cosine(s, steps, warmup, p)

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    model.to(device).train()
    t0 = time.perf_counter()
    done = 0
    bar = tqdm(range(steps), desc=f"train {task}", disable=not progress)
    for step in bar:
        if task in ("detection", "onestage"):
            imgs, targets = data.detection_batch(rng, batch, with_masks=task == "detection")
            losses = model([i.to(device) for i in imgs], [{k: v.to(device) for k, v in t.items()} for t in targets])
            loss = sum(losses.values())
        else:
            x, y = data.crops(rng, batch)
            x, y = x.to(device), y.to(device)
            logits = model(x)
            if task == "patch":
                y = model.centre_targets(y)
            loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        sched.step()
        done = step + 1
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
        if max_minutes and time.perf_counter() - t0 > 60 * max_minutes:
            break
    seconds = time.perf_counter() - t0
    model.eval()
    evaluate = {"patch": evaluate_patch, "segmentation": evaluate_segnet, "detection": evaluate_detector,
                "onestage": evaluate_one_stage}[task]
    metrics = evaluate(model, eval_scenes, progress)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    name = FILES[task]
    if not overwrite:                      # both or neither: never a new .pt beside someone's .json
        for there in (out / f"{name}.pt", out / f"{name}.json"):
            if there.exists():
                raise FileExistsError(str(there))
    write_whole(out / f"{name}.pt", lambda f: torch.save(model.cpu().state_dict(), f), overwrite)
    card = {
        "model": name, "task": task, "classes": list(CLASSES),
        "parameters": sum(p.numel() for p in model.parameters()),
        "data": {"generator": "explainers.models.shapes.make_scene", "train_seeds": f"0..{pool - 1}",
                 "held_out_seeds": f"{HELD_OUT_SEED}..{HELD_OUT_SEED + eval_scenes - 1}",
                 "augmentation": "random 128x128 crops and horizontal flips" if task not in ("detection", "onestage")
                 else "horizontal flips; images resized to a 128 px short side by the model"},
        "training": {"steps": done, "planned_steps": steps, "max_minutes": max_minutes, "batch": batch, "seed": seed,
                     "optimizer": type(opt).__name__, "seconds": round(seconds, 1), "device": str(device),
                     "threads": torch.get_num_threads(), "torch": torch.__version__,
                     "machine": platform.machine()},
        "held_out": metrics,
    }
    write_whole(out / f"{name}.json", lambda f: f.write((json.dumps(card, indent=2) + "\n").encode()), overwrite)
    return card


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m explainers.models.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", choices=["patch", "segmentation", "detection", "instance", "onestage", "all"])
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (default: per task)")
    p.add_argument("--out", type=Path, default=WEIGHTS_DIR, help="folder for weights and model cards")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pool", type=int, default=1500, help="number of training scenes")
    p.add_argument("--eval-scenes", type=int, default=200)
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch's own; 1 is faster on a busy shared machine)")
    p.add_argument("--max-minutes", type=float, default=None, help="stop training after this long "
                   "(and end the learning-rate schedule with it); default 18.5 for onestage, else none")
    p.add_argument("--keep", action="store_true", help="keep a file that appeared in --out while training "
                   "(explainers train passes it unless --force)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    tasks = ["patch", "segmentation", "detection", "onestage"] if a.task == "all" else [a.task]
    for t in tasks:
        try:
            card = train(t, a.steps, a.out, a.seed, a.pool, a.eval_scenes, a.max_minutes, overwrite=not a.keep)
        except FileExistsError as exc:
            print(f"explainers train: {exc} appeared in the folder while training and is kept; the new "
                  f"{t} model is not saved (give another --out, or --force)", file=sys.stderr)
            return 2
        print(json.dumps({"model": card["model"], "held_out": card["held_out"],
                          "seconds": card["training"]["seconds"]}, indent=None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
