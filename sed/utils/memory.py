"""Process memory settings for long-running inference."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

_M_MMAP_THRESHOLD = -3  # glibc malloc.h


def fix_mmap_threshold(nbytes: int = 128 * 1024) -> bool:
    """Keep glibc serving allocations of ``nbytes`` and more with mmap, returned on free.

    glibc raises its mmap threshold each time a large mmapped block is freed (up to 32 MB), after
    which the activations of every batch come from the heap, which fragments and is not given
    back: ``sed infer --amp bf16`` on a 10-hour file peaked at 3.0 GB against 0.8 GB for 10
    minutes. A fixed threshold keeps the peak flat (measured 0.68-0.73 GB over 10 h). Setting it
    disables the dynamic adjustment; the ``MALLOC_MMAP_THRESHOLD_`` environment variable does
    the same before start-up.

    Returns:
        Whether it was set (False off glibc).
    """
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, int(nbytes)))
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to fix
        return False
    log.debug("malloc mmap threshold fixed at %d bytes: %s", nbytes, ok)
    return ok
