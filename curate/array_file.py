"""The pre-training array file: one blosc2 ``.b2z`` store per image (format ``mri-curate-array/1``).

Layout: a blosc2 ``DictStore`` (a single zip-like file, members stored
uncompressed so they are read in place) holding two 3D NDArrays with the same
chunk and block shapes: ``/image`` (float16 z-scored intensities by default)
and ``/masks`` (uint8, bit 0 anatomy, bit 1 anonymization; see
:mod:`curate.arrays`).  The image's ``vlmeta["mri-curate-array"]`` records the
format version, the array affine, spacing, crop box, a coarse anatomy grid and
the settings that made it.

Why this layout: docs/loader.md (``benchmarks/bench_array_format.py``): against
zarr and against a single structured-dtype ``.b2nd`` it gives the fastest 160^3
crops in one file per image.  Writes are atomic (temporary name, then rename),
so a reader never sees half a file.
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
SUFFIX = ".b2z"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: blosc2 creates the store with mode 0600 (a temporary file); outputs get the usual mode.
_FILE_MODE = 0o666 & ~_umask()


def write_array(path: Path, image: np.ndarray, masks: np.ndarray, meta: dict[str, Any], *,
                image_dtype: str = "float16", codec: str = "ZSTD", clevel: int = 1,
                chunks: tuple[int, ...] = (64, 64, 64), blocks: tuple[int, ...] = (32, 32, 32)) -> int:
    """Write one array file atomically; returns its size in bytes.

    ``chunks``/``blocks`` are clipped to the array shape (blosc2 needs them no larger).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    chunks = tuple(min(c, s) for c, s in zip(chunks, image.shape))
    blocks = tuple(min(b, c) for b, c in zip(blocks, chunks))
    cparams = {"codec": blosc2.Codec[codec.upper()], "clevel": clevel,
               "filters": [blosc2.Filter.SHUFFLE], "nthreads": 1}
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp{SUFFIX}")
    try:
        stored = blosc2.asarray(np.ascontiguousarray(image, dtype=image_dtype), chunks=chunks, blocks=blocks,
                                cparams=cparams)
        stored.vlmeta[META_KEY] = {"format": FORMAT, "version": FORMAT_VERSION, **meta}
        with blosc2.DictStore(str(tmp), mode="w") as store:
            store["/image"] = stored
            store["/masks"] = blosc2.asarray(np.ascontiguousarray(masks, dtype=np.uint8), chunks=chunks,
                                             blocks=blocks, cparams=cparams)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path.stat().st_size


def read_array(path: Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Read a whole array file: ``(image float32, packed masks uint8, metadata)``."""
    store = blosc2.DictStore(str(path), mode="r")
    image = store["/image"]
    return image[...].astype(np.float32), store["/masks"][...], dict(image.vlmeta[META_KEY])
