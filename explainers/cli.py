"""The ``explainers`` command line.

    explainers serve [--port N] [--notebook NAME]   the tour as a Voila page on 127.0.0.1
    explainers detect IMAGE -o out.png              boxes (and masks with --instance)
    explainers segment IMAGE -o out.png             semantic segmentation overlay
    explainers train TASK                           train a bundled shapes model
    explainers download TASK                        fetch torchvision's COCO weights once
    explainers list                                 the explainers
"""
from __future__ import annotations

import argparse
import sys


def _list(_args) -> int:
    from . import EXPLAINERS, __version__

    print(f"cv-explainers {__version__}: the explainers, in lecture order")
    for name, line in EXPLAINERS:
        print(f"  {name:<24} {line}")
    return 0


def _serve(args) -> int:
    from .app import serve

    return serve(args.port, args.notebook, args.ip, preheat=not args.no_preheat)


def _run_model(args, task: str) -> int:
    from PIL import Image

    from .models import ImageError, ModelUnavailable, load, load_image, render

    try:
        image = load_image(args.image)          # a bad image fails before any model loads
        model = load(task, args.weights)
        result = model(image.tensor)
        Image.fromarray(render(result, args.threshold)).save(args.output)
    except (ImageError, ModelUnavailable, ValueError) as exc:
        print(f"explainers {args.command}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"explainers {args.command}: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if hasattr(result, "boxes"):
        r = result.filter(args.threshold)
        found = ", ".join(f"{n} {s:.2f}" for n, s in zip(r.names, r.scores.tolist())) or "nothing"
    else:
        found = ", ".join(result.present) or "background only"
    print(f"{task} ({model.source}, {model.device}, {result.seconds * 1e3:.0f} ms): {found}")
    for note in (image.note, result.note):
        if note:
            print(f"note: {note}")
    print(f"wrote {args.output}")
    return 0


def _detect(args) -> int:
    return _run_model(args, "instance" if args.instance else "detection")


def _segment(args) -> int:
    return _run_model(args, "segmentation")


def _train(args) -> int:
    from .models.train import main as train_main

    extra = [] if args.steps is None else ["--steps", str(args.steps)]
    return train_main([args.task] + extra)


def _download(args) -> int:
    from .models import ModelUnavailable, download

    try:
        path = download(args.task)
    except ModelUnavailable as exc:
        print(f"explainers download: {exc}", file=sys.stderr)
        return 2
    print(f"{args.task}: COCO weights in {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="explainers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("serve", help="open the tour of all explainers as a Voila page on 127.0.0.1")
    p.add_argument("--port", type=int, default=8866, help="port (a free one is taken if it is busy)")
    p.add_argument("--notebook", default=None, help="serve one notebook (e.g. 06_nms) instead of the tour")
    p.add_argument("--ip", default="127.0.0.1",
                   help="address to listen on; anything but 127.0.0.1 exposes the pages (a warning is printed)")
    p.add_argument("--no-preheat", action="store_true", help="do not keep a warm kernel for the tour")
    p.set_defaults(func=_serve)
    p = sub.add_parser("list", help="list the explainers")
    p.set_defaults(func=_list)
    for name, fn, helptext in (("detect", _detect, "detect objects in an image"),
                               ("segment", _segment, "semantic segmentation of an image")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("image")
        p.add_argument("-o", "--output", default=f"{name}.png")
        p.add_argument("--weights", default="auto", help="auto, shapes, coco (voc) or a checkpoint path")
        p.add_argument("--threshold", type=float, default=0.5, help="score threshold for drawing boxes")
        if name == "detect":
            p.add_argument("--instance", action="store_true", help="also draw instance masks (Mask R-CNN)")
        p.set_defaults(func=fn)
    p = sub.add_parser("train", help="train a bundled shapes model")
    p.add_argument("task", choices=["patch", "segmentation", "detection", "instance", "all"])
    p.add_argument("--steps", type=int, default=None)
    p.set_defaults(func=_train)
    p = sub.add_parser("download", help="download torchvision's COCO weights for a task")
    p.add_argument("task", choices=["segmentation", "detection", "instance"])
    p.set_defaults(func=_download)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
