"""Atomic file writes: a temporary name beside the target, then a rename.

A reader (or a crashed run) never sees half a file.  Light to import, so the
index pass can use it without loading the image libraries of :mod:`curate.io`.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from curate.errors import is_out_of_space, out_of_space


def temp_beside(path: Path) -> Path:
    """A hidden, unique temporary name in ``path``'s folder."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")


@contextmanager
def replacing(path: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary name beside ``path``; on success it replaces ``path``.

    The one atomic-write contract every writer uses: the temporary file is
    removed whatever happens, and a full disk raises
    :class:`~curate.errors.OutOfSpace` naming ``path``.  ``suffix`` is appended
    to the temporary name for writers that choose a format from it (nibabel's
    ``.nii.gz``, blosc2's ``.b2z``).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(path)
    tmp = tmp.with_name(tmp.name + suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    except Exception as exc:
        if is_out_of_space(exc):
            raise out_of_space(path) from exc
        raise
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: Path, data: bytes) -> None:
    """Write a binary file (e.g. a PNG) atomically; a full disk raises :class:`~curate.errors.OutOfSpace`."""
    with replacing(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: Path, text: str) -> None:
    """Write a UTF-8 text file atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write a JSON file atomically, indented, keys sorted."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


__all__ = ["replacing", "temp_beside", "write_bytes", "write_json", "write_text"]
