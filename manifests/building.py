"""Whether a ``curate build`` is writing into an OUTPUT: an advisory lock file, one definition.

``curate build`` holds an exclusive ``flock`` on ``OUTPUT/.curate_build.lock`` while it
runs (:func:`building`); a reader such as ``pretrain --follow`` asks
:func:`build_running` without waiting.  The kernel drops the lock when the build's
process ends, however it ends (``kill -9`` included), so a crashed build never looks
as if it were still running.  The file itself is left in place (removing it would
race with a build that is just opening it).

Examples
--------
>>> import tempfile, pathlib
>>> out = pathlib.Path(tempfile.mkdtemp())
>>> build_running(out)
False
>>> with building(out):
...     build_running(out)
True
>>> build_running(out)
False
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

LOCK_NAME = ".curate_build.lock"


@contextlib.contextmanager
def building(output: Path | str) -> Iterator[None]:
    """Hold OUTPUT's build lock for the ``with`` block (waiting while another build holds it)."""
    fd = os.open(Path(output) / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def build_running(output: Path | str) -> bool:
    """``True`` while a build holds OUTPUT's lock; never waits, never creates a file."""
    try:
        fd = os.open(Path(output) / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
