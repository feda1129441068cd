"""Atomic file writes: a temporary name beside the target, then a rename.

A reader (or a crashed run) never sees half a file.  Light to import, so the
index pass can use it without loading the image libraries of :mod:`curate.io`.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from curate.errors import is_out_of_space, out_of_space


def temp_beside(path: Path) -> Path:
    """A hidden, unique temporary name in ``path``'s folder."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")


def write_bytes(path: Path, data: bytes) -> None:
    """Write a binary file (e.g. a PNG) atomically; a full disk raises :class:`~curate.errors.OutOfSpace`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(path)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        if is_out_of_space(exc):
            raise out_of_space(path) from exc
        raise
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    """Write a UTF-8 text file atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write a JSON file atomically, indented, keys sorted."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


__all__ = ["temp_beside", "write_bytes", "write_json", "write_text"]
