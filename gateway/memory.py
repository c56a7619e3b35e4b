"""Giving back to the system the memory a burst of messages left free.

A backlog that drains in batches of 64 parses, verifies and holds hundreds of messages at once. The C allocator
(glibc's malloc, under lxml, OpenSSL and SQLite) keeps what they freed for the next allocation, so the hub's
resident memory stays at the burst's high-water mark. ``malloc_trim`` returns the free pages to the system: the
running hub calls it between scheduler passes. Elsewhere (another C library) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable

__all__ = ["give_back_free_memory"]


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def give_back_free_memory() -> bool:
    """Return the allocator's free pages to the system; True if there was any to return (glibc only)."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
