"""The explainers command line.

    explainers serve [--port N] [--notebook NAME]   the tour as a Voila page on 127.0.0.1
    explainers detect IMAGE -o out.png              boxes (and masks with --instance)
    explainers segment IMAGE -o out.png             semantic segmentation overlay
    explainers train TASK [--out DIR]               train a shapes model into a folder of your own
    explainers download TASK                        fetch torchvision's COCO weights once
    explainers export-site DIR                      every lecture animation as a static web site
    explainers list                                 the explainers
    explainers --version                            its version, torch's and torchvision's
"""
from __future__ import annotations

import argparse
import os
import sys

from ._files import write_whole

#: output extensions the overlay can be written as (PIL picks the format from the extension)
OUTPUT_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")


def _list(_args) -> int:
    from . import EXPLAINERS, __version__

    print(f"cv-explainers {__version__}: the explainers, in lecture order")
    for e in EXPLAINERS:
        print(f"  {e.name:<24} {e.blurb}")
    return 0


def _serve(args) -> int:
    from .app import serve

    return serve(args.port, args.notebook, args.ip, preheat=not args.no_preheat, max_kernels=args.max_kernels,
                 fork=not args.no_fork)


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line: ``explainers detect: argument --threshold: ...``."""

    def error(self, message):
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def _threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; give a score from 0 to 1, e.g. 0.5") from None
    if not 0 <= value <= 1:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text} is not a score from 0 to 1; give e.g. 0.5")
    return value


def _output_problem(image: str, output: str, force: bool = False) -> str | None:
    """Why ``output`` cannot take the overlay of ``image``, or None; checked before any model loads.
    An existing file is never replaced unless ``force`` (and the input image never)."""
    from PIL import Image

    if not output:
        return "the output path is empty; give one such as -o result.png"
    if os.path.isdir(output) or output.endswith(("/", os.sep)):
        return f"the output {output} is a folder; give a file in it, e.g. -o {os.path.join(output, 'result.png')}"
    Image.init()
    saveable = [e for e in OUTPUT_EXTENSIONS if Image.registered_extensions().get(e) in Image.SAVE]
    ext = os.path.splitext(output)[1].lower()
    if ext not in saveable:
        return (f"cannot write {output}: the output must end in one of {' '.join(saveable)} "
                f"(got {ext or 'no extension'})")
    if os.path.exists(image) and (os.path.realpath(image) == os.path.realpath(output) or
                                  (os.path.exists(output) and os.path.samefile(image, output))):
        return f"the output {output} is the input image; it would be overwritten: give another name with -o"
    if os.path.lexists(output) and not force:
        return f"{output} already exists and is kept; give another name with -o, or add --force to replace it"
    folder = os.path.dirname(os.path.realpath(output))
    if not os.path.isdir(folder):
        return f"cannot write {output}: the folder {os.path.dirname(output) or folder} does not exist"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"cannot write {output}: the folder {os.path.dirname(output) or folder} is not writable"
    return None


def _save_whole(picture, output: str, force: bool = False) -> None:
    """Write ``picture`` (uint8 H x W x 3) to ``output`` all at once: a temporary file, then a rename.

    An interrupted or failed write leaves no half-written picture, and never touches
    an existing ``output`` until the new one is complete. Without ``force`` a file that appeared at
    ``output`` while the model ran is kept (FileExistsError).
    """
    from PIL import Image

    dest = os.path.realpath(output)  # a symlinked output is written through, as before
    ext = os.path.splitext(dest)[1].lower()
    # without --force a file that is there (or appeared) is kept; a replaced one keeps its permissions
    write_whole(dest, lambda f: Image.fromarray(picture).save(f, format=Image.registered_extensions()[ext]),
                force, suffix=ext, keep_mode=True)


def _run_model(args, task: str) -> int:
    problem = _output_problem(args.image, args.output, args.force)  # before torch is even imported
    if problem:
        print(f"explainers {args.command}: {problem}", file=sys.stderr)
        return 2

    from .models import ImageError, ModelUnavailable, load, load_image, render

    try:
        image = load_image(args.image)          # a bad image fails before any model loads
        model = load(task, args.weights)
        result = model(image.tensor)
        threshold = getattr(args, "threshold", 0.5)
        _save_whole(render(result, threshold), args.output, args.force)
    except (ImageError, ModelUnavailable, ValueError) as exc:
        print(f"explainers {args.command}: {exc}", file=sys.stderr)
        return 2
    except FileExistsError:
        print(f"explainers {args.command}: {args.output} appeared while the model ran and is kept; "
              "run again with another -o, or --force to replace it", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"explainers {args.command}: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if hasattr(result, "boxes"):
        r = result.filter(threshold)
        found = ", ".join(f"{n} {s:.2f}" for n, s in zip(r.names, r.scores.tolist())) or "nothing"
    else:
        shares = {i: f for i, f in result.shares().items() if i != 0}
        found = ", ".join(f"{result.classes[i] if i < len(result.classes) else i} "
                          f"{'<0.1' if f < 0.001 else f'{100 * f:.1f}'}%"
                          for i, f in shares.items())
        found = f"{found} of the pixels" if found else "background only"
    print(f"{task} ({model.weights}, {model.device}, {result.seconds * 1e3:.0f} ms): {found}")
    for note in (image.note, result.note):
        if note:
            print(f"note: {note}")
    print(f"wrote {args.output}")
    return 0


def _detect(args) -> int:
    return _run_model(args, "instance" if args.instance else "detection")


def _segment(args) -> int:
    return _run_model(args, "segmentation")


def _steps(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; give e.g. 200") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} steps would train nothing; give at least 1, e.g. 200")
    return value


#: what ``explainers train TASK`` writes (the model and its card), by task
TRAIN_TASKS = {"patch": ["patch"], "segmentation": ["segmentation"], "detection": ["detection"],
               "instance": ["detection"], "onestage": ["onestage"],
               "all": ["patch", "segmentation", "detection", "onestage"]}


def _train(args) -> int:
    """Train into a folder of the user's own; the weights bundled with the package are never replaced
    from here (``python -m explainers.models.train`` regenerates those), and files already in the
    folder are kept unless ``--force``: both checked before any training starts."""
    from pathlib import Path

    from .models.train import FILES, WEIGHTS_DIR

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        print(f"explainers train: {out} is a file; give a folder with --out", file=sys.stderr)
        return 2
    if out.resolve() == WEIGHTS_DIR.resolve():
        print("explainers train: --out is the package's bundled weights folder, which every page uses; "
              "give a folder of your own (to regenerate the bundled weights: python -m explainers.models.train)",
              file=sys.stderr)
        return 2
    files = [out / f"{FILES[t]}{ext}" for t in TRAIN_TASKS[args.task] for ext in (".pt", ".json")]
    there = [str(f) for f in files if f.exists()]
    if there and not args.force:
        print(f"explainers train: {', '.join(there)} already exist(s) and are kept; give another --out, or add "
              "--force to replace them", file=sys.stderr)
        return 2
    from .models.train import main as train_main

    extra = [] if args.steps is None else ["--steps", str(args.steps)]
    rc = train_main([args.task, "--out", str(out)] + extra + ([] if args.force else ["--keep"]))
    if rc == 0:
        for t in TRAIN_TASKS[args.task]:
            pt = out / f"{FILES[t]}.pt"
            cli = {"detection": f" or `explainers detect IMAGE --weights {pt}`",
                   "segmentation": f" or `explainers segment IMAGE --weights {pt}`"}.get(t, "")
            print(f"wrote {pt} and its model card; use it: explainers.models.load({t!r}, weights={str(pt)!r}){cli}")
    return rc


def _export_site(args) -> int:
    from .app.site import SiteError, export_site

    try:
        files = export_site(args.directory)
    except SiteError as exc:
        print(f"explainers export-site: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"explainers export-site: interrupted; nothing was written to {args.directory}", file=sys.stderr)
        return 130
    size = sum(f.stat().st_size for f in files) / 2**20
    print(f"wrote {len(files)} files ({size:.1f} MB) to {args.directory}; open {files[0]}")
    return 0


def _download(args) -> int:
    from .models import ModelUnavailable, download

    try:
        path = download(args.task)
    except ModelUnavailable as exc:
        print(f"explainers download: {exc}", file=sys.stderr)
        return 2
    print(f"{args.task}: COCO weights in {path}")
    return 0


def _versions() -> str:
    """``cv-explainers X (torch Y, torchvision Z, Python V)``, read from the installed packages'
    metadata (nothing is imported)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__

    def of(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    return (f"cv-explainers {__version__} (torch {of('torch')}, torchvision {of('torchvision')}, "
            f"Python {platform.python_version()})")


class _VersionAction(argparse.Action):
    """``--version``: the versions read only when asked (not at every command's start)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(_versions())
        parser.exit()


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="explainers", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action=_VersionAction,
                        help="the versions of cv-explainers, torch and torchvision (for a bug report)")
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("serve", help="open the tour of all explainers as a Voila page on 127.0.0.1")
    p.add_argument("--port", type=int, default=8866, help="port (a free one is taken if it is busy)")
    p.add_argument("--notebook", default=None, help="serve one notebook (e.g. 06_nms) instead of the tour")
    p.add_argument("--ip", default="127.0.0.1",
                   help="address to listen on; anything but 127.0.0.1 exposes the pages (a warning is printed)")
    p.add_argument("--no-preheat", action="store_true", help="do not keep a warm kernel for the start page (the tour, or --notebook's page)")
    p.add_argument("--no-fork", action="store_true",
                   help="start each page's kernel as a process of its own instead of a fork of one warm "
                        "process that has torch and the models loaded (Linux; forks share that memory)")
    p.add_argument("--max-kernels", type=int, default=0,
                   help="most pages open at once (each a kernel: ~0.1-0.2 GB forked, ~0.45 GB with --no-fork); "
                        "beyond it visitors see 'the server is full'. 0 (the default): what this machine's "
                        "memory holds")
    p.set_defaults(func=_serve)
    p = sub.add_parser("list", help="list the explainers")
    p.set_defaults(func=_list)
    for name, fn, helptext in (("detect", _detect, "detect objects in an image"),
                               ("segment", _segment, "semantic segmentation of an image")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("image")
        p.add_argument("-o", "--output", default=f"{name}.png",
                       help=f"the picture to write (default {name}.png): {', '.join(OUTPUT_EXTENSIONS)}; "
                            "never the input image, and an existing file only with --force")
        p.add_argument("--force", action="store_true", help="replace the output file if it exists")
        p.add_argument("--weights", default="auto",
                       help="auto, shapes, coco" + (", voc" if name == "segment" else "") + " or a checkpoint path")
        if name == "detect":      # a label map has no scores to threshold: segment draws every pixel's class
            p.add_argument("--threshold", type=_threshold, default=0.5,
                           help="score threshold for drawing boxes, from 0 to 1 (default 0.5)")
            p.add_argument("--instance", action="store_true", help="also draw instance masks (Mask R-CNN)")
        p.set_defaults(func=fn)
    p = sub.add_parser("train", help="train a shapes model (seeded, reproducible) into a folder of your own")
    p.add_argument("task", choices=list(TRAIN_TASKS), help="instance trains the same Mask R-CNN as detection")
    p.add_argument("--steps", type=_steps, default=None,
                   help="optimizer steps, at least 1 (default: the bundled models' own, minutes on a CPU)")
    p.add_argument("--out", default="shapes-weights",
                   help="folder for the weights (.pt) and model cards (.json), default ./shapes-weights; "
                        "the weights bundled with the package are never replaced")
    p.add_argument("--force", action="store_true", help="replace weights already in --out")
    p.set_defaults(func=_train)
    p = sub.add_parser("export-site", help="write every lecture animation as a static web site (offline)")
    p.add_argument("directory", help="a new or empty folder")
    p.set_defaults(func=_export_site)
    p = sub.add_parser("download", help="download torchvision's COCO weights for a task")
    p.add_argument("task", choices=["segmentation", "detection", "instance"])
    p.set_defaults(func=_download)
    args, extra = parser.parse_known_args(argv)
    if extra:            # named by the command they were given to: "explainers segment: ... --threshold"
        (sub.choices.get(args.command) or parser).error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
