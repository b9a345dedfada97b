"""The ``explainers`` command line."""
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
    # The Voila app (tour notebook) is not built yet: say so, and list what exists.
    _list(args)
    print("\nThe Voila tour is not available in this version yet; "
          "the operators are importable now: `import explainers.ops`.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="explainers", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("serve", help="open the tour of all explainers as a Voila page on 127.0.0.1")
    p.add_argument("--port", type=int, default=8866)
    p.add_argument("--notebook", default=None)
    p.set_defaults(func=_serve)
    p = sub.add_parser("list", help="list the explainers")
    p.set_defaults(func=_list)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
