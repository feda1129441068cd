"""The pre-training array file: one blosc2 ``.b2nd`` per image (format ``mri-curate-array/1``).

Layout: a 3D blosc2 NDArray with a structured dtype of two fields per voxel,
``image`` (float16 z-scored intensities by default) and ``masks`` (uint8, bit 0
anatomy, bit 1 anonymization; see :mod:`curate.arrays`).  One slice of the file
therefore returns the image and both masks of a crop in a single decompression
pass.  The file's ``vlmeta["mri-curate-array"]`` records the format version, the
array affine, spacing, crop box and the settings that made it.

Why blosc2 and not zarr: docs/loader.md (the numbers are from
``benchmarks/bench_array_format.py``).  Writes are atomic (temporary name, then
rename), so a reader never sees half a file.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import blosc2
import numpy as np

FORMAT = "mri-curate-array"
FORMAT_VERSION = 1
META_KEY = FORMAT


def voxel_dtype(image_dtype: str = "float16") -> np.dtype:
    """The structured per-voxel dtype of an array file."""
    return np.dtype([("image", np.dtype(image_dtype).newbyteorder("<")), ("masks", "u1")])


def write_array(path: Path, image: np.ndarray, masks: np.ndarray, meta: dict[str, Any], *,
                image_dtype: str = "float16", codec: str = "ZSTD", clevel: int = 1,
                chunks: tuple[int, ...] = (64, 64, 64), blocks: tuple[int, ...] = (16, 16, 16)) -> int:
    """Write one array file atomically; returns its size in bytes.

    ``chunks``/``blocks`` are clipped to the array shape (blosc2 needs them no larger).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    packed = np.empty(image.shape, dtype=voxel_dtype(image_dtype))
    packed["image"] = image
    packed["masks"] = masks
    chunks = tuple(min(c, s) for c, s in zip(chunks, image.shape))
    blocks = tuple(min(b, c) for b, c in zip(blocks, chunks))
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        array = blosc2.asarray(packed, urlpath=str(tmp), mode="w", chunks=chunks, blocks=blocks,
                               cparams={"codec": blosc2.Codec[codec.upper()], "clevel": clevel,
                                        "filters": [blosc2.Filter.SHUFFLE], "nthreads": 1})
        array.vlmeta[META_KEY] = {"format": FORMAT, "version": FORMAT_VERSION, **meta}
        del array  # flush and close before the rename
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path.stat().st_size


def read_array(path: Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Read a whole array file: ``(image float32, packed masks uint8, metadata)``."""
    array = blosc2.open(str(path), mode="r")
    data = array[...]
    return data["image"].astype(np.float32), data["masks"], dict(array.vlmeta[META_KEY])
