"""Writing a user's files: whole or not at all, and never over an existing file unless asked."""
from __future__ import annotations

import os


def publish(tmp: str | os.PathLike, dest: str | os.PathLike, overwrite: bool) -> None:
    """Move the finished temporary file ``tmp`` (in ``dest``'s folder) to ``dest``.

    With ``overwrite`` an existing ``dest`` is replaced atomically. Without it ``dest`` must not
    exist, checked at the moment of the move (a hard link, which fails if a file appeared since any
    earlier check): FileExistsError, and the file there is kept. On a file system without hard
    links it checks, then renames. ``tmp`` is gone afterwards unless an error is raised.
    """
    if overwrite:
        os.replace(tmp, dest)
        return
    try:
        os.link(tmp, dest)
    except FileExistsError:
        raise
    except OSError:                  # no hard links here (some network or FAT file systems)
        if os.path.lexists(dest):
            raise FileExistsError(str(dest)) from None
        os.replace(tmp, dest)
    else:
        os.unlink(tmp)


def default_mode() -> int:
    """The permissions a new file gets under the process's umask (mkstemp makes 0600 files)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask
