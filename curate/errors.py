"""Errors that stop a run (as opposed to a verdict on one image), and how to word an exception.

A full disk is not a property of an image: a stage that cannot write its
output raises :class:`OutOfSpace`, which the stage runner lets through, and
``curate build`` stops with one line naming the path.  Light to import (the
index pass and the Dask workers both use it).
"""

from __future__ import annotations

import errno
from pathlib import Path

#: errno values that mean "the file system is full" (no space, or over the user's quota).
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
#: How libraries that lose the errno (pyarrow, blosc2) still say it.
_FULL_TEXTS = ("no space left on device", "disk quota exceeded")


class OutputError(Exception):
    """OUTPUT cannot be used (overlaps SOURCE, locked by another build, full); the run stops."""


class OutOfSpace(OutputError):
    """The file system holding OUTPUT is full."""


def is_out_of_space(exc: BaseException) -> bool:
    """Whether ``exc``, or an exception it was raised from, says the file system is full.

    Examples
    --------
    >>> is_out_of_space(OSError(errno.ENOSPC, "No space left on device"))
    True
    >>> is_out_of_space(OSError("IOError: [errno 28] No space left on device"))  # as pyarrow words it
    True
    >>> is_out_of_space(ValueError("bad header"))
    False
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OutOfSpace):
            return True
        if isinstance(current, OSError) and (current.errno in FULL_ERRNOS
                                             or any(t in str(current).lower() for t in _FULL_TEXTS)):
            return True
        current = current.__cause__ or current.__context__
    return False


def out_of_space(path: Path | str) -> OutOfSpace:
    """The one-line error for a full file system while writing ``path``."""
    return OutOfSpace(f"no space left on the device holding {path}; free some space (or use another "
                      "OUTPUT) and run the same command again: finished images are kept")


def describe(exc: BaseException) -> str:
    """``Type: message``, never with an empty message (a bare ``MemoryError()`` says nothing).

    Examples
    --------
    >>> describe(ValueError("bad value"))
    'ValueError: bad value'
    >>> describe(MemoryError())
    'MemoryError: out of memory'
    >>> describe(KeyError())
    'KeyError (no message)'
    """
    text = " ".join(str(exc).split())
    if text:
        return f"{type(exc).__name__}: {text}"
    if isinstance(exc, MemoryError):
        return "MemoryError: out of memory"
    return f"{type(exc).__name__} (no message)"


__all__ = ["OutOfSpace", "OutputError", "describe", "is_out_of_space", "out_of_space"]
