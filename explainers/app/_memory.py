"""Give a kernel's freed memory back to the machine (a class runs one kernel per student).

Python frees objects into the C heap, and glibc's malloc keeps freed heap pages mapped: the
kernel's unique memory stays at its high-water mark (a built page, a live model's
activations) long after the page stopped showing it. :func:`release` collects the garbage and
asks glibc to return the free pages (``malloc_trim``); elsewhere it only collects.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys


def _trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim          # glibc only (musl has none: AttributeError)
    except (OSError, AttributeError):
        return None


_malloc_trim = _trim()


def release() -> bool:
    """Collect garbage and return free heap pages to the OS; True when the pages were returned."""
    gc.collect()
    if _malloc_trim is None:
        return False
    _malloc_trim(0)
    return True


def keep_recent(built: dict, key, keep: int, evictable=lambda key, value: True) -> bool:
    """Mark ``built[key]`` the most recently shown (last), then ``close()`` and drop the oldest
    ``evictable`` entries beyond ``keep`` of them; True when one was dropped (its memory is then
    worth giving back: :func:`release`)."""
    built[key] = built.pop(key)
    older = [k for k, v in built.items() if evictable(k, v)]
    for k in older[:max(0, len(older) - keep)]:
        built.pop(k).close()
    return len(older) > keep
