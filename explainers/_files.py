"""Writing a user's files: whole or not at all, and never over an existing file unless asked."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import IO


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
        raise FileExistsError(str(dest)) from None     # the user's file, not the hidden temporary one
    except OSError:                  # no hard links here (some network or FAT file systems)
        if os.path.lexists(dest):
            raise FileExistsError(str(dest)) from None
        os.replace(tmp, dest)
    else:
        os.unlink(tmp)


def default_mode(folder: bool = False) -> int:
    """The permissions a new file (or ``folder``) gets under the process's umask (mkstemp makes 0600
    files, mkdtemp 0700 folders)."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if folder else 0o666) & ~umask


def write_whole(dest: str | os.PathLike, write: Callable[[IO[bytes]], None], overwrite: bool,
                suffix: str = ".tmp", keep_mode: bool = False) -> None:
    """Write a file all at once: ``write(f)`` fills a temporary file in ``dest``'s folder (binary),
    which then becomes ``dest`` through :func:`publish`. An interrupted or failed write leaves no
    half-written file and no temporary one, and never touches an existing ``dest`` until the new one
    is complete. The new file gets the usual permissions, or with ``keep_mode`` those of the file
    it replaces."""
    dest = os.fspath(dest)
    folder, base = os.path.split(dest)
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=suffix, dir=folder or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, os.stat(dest).st_mode & 0o7777 if keep_mode and os.path.exists(dest) else default_mode())
        publish(tmp, dest, overwrite)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
