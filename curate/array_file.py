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

Compression (measured on random 160^3 crops, one thread; docs/loader.md):

* image: LZ4HC level 1 with byte shuffle.  It decodes about 2.5x faster than
  ZSTD level 1 (~3.5 vs ~8.5 ms for the float16 crop) for files ~13 % larger
  (1.39x the source ``.nii.gz`` on the benchmark head, 1.25x on the MNI
  template; budget 1.5x).  Higher LZ4HC levels shrink files by 3-5 % but
  double the write time (0.36-0.42 s vs 0.17-0.3 s for the head on this shared
  machine, budget 0.5 s) and decode no faster; LZ4 and BLOSCLZ decode no
  faster and make files 1.45-1.55x; bit shuffle decodes slower.
* masks: BLOSCLZ with *no* filter.  Byte shuffle on a 1-byte type is not free in
  blosc2: it cost ~3 ms per crop on its own, and ZSTD decodes these mostly
  constant blocks slower than BLOSCLZ (1.7 vs 0.85 ms); the masks stay ~2 % of
  the file either way.
* 32 x 32 x 64 blocks in 64^3 chunks: only the blocks a crop touches are
  decompressed; 16^3 or 8-deep blocks cut the over-read but cost as much in
  per-block overhead (all within ~10 % of each other), and 32 x 32 x 64 kept
  the files smallest.

The codec is stored in every blosc2 chunk header, so a reader needs no setting:
files written with the earlier defaults (ZSTD level 1 + shuffle on both
arrays, 32^3 blocks) have the same layout and ``FORMAT_VERSION`` and read with
the same code, only slower.  A change of *layout* bumps ``FORMAT_VERSION``;
readers refuse versions they do not know (see :data:`READABLE_VERSIONS`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import blosc2
import numpy as np

from curate.atomic import replacing

FORMAT = "mri-curate-array"
FORMAT_VERSION = 1
#: Format versions this code reads; a newer file means "update mri-curate or rebuild the arrays".
READABLE_VERSIONS = (1,)
META_KEY = FORMAT
SUFFIX = ".b2z"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: blosc2 creates the store with mode 0600 (a temporary file); outputs get the usual mode.
_FILE_MODE = 0o666 & ~_umask()


def _cparams(codec: str, clevel: int, shuffle: bool) -> dict[str, Any]:
    """blosc2 compression settings: one thread (loader workers are the parallelism)."""
    return {"codec": blosc2.Codec[codec.upper()], "clevel": clevel,
            "filters": [blosc2.Filter.SHUFFLE if shuffle else blosc2.Filter.NOFILTER], "nthreads": 1}


def write_array(path: Path, image: np.ndarray, masks: np.ndarray, meta: dict[str, Any], *,
                image_dtype: str = "float16", codec: str = "LZ4HC", clevel: int = 1,
                masks_codec: str = "BLOSCLZ", masks_clevel: int = 5,
                chunks: tuple[int, ...] = (64, 64, 64), blocks: tuple[int, ...] = (32, 32, 64)) -> int:
    """Write one array file atomically; returns its size in bytes.

    The image is compressed with ``codec``/``clevel`` after a byte shuffle, the
    packed masks with ``masks_codec``/``masks_clevel`` and no filter (module
    docstring: why).  ``chunks``/``blocks`` are clipped to the array shape
    (blosc2 needs them no larger).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    chunks = tuple(min(c, s) for c, s in zip(chunks, image.shape))
    blocks = tuple(min(b, c) for b, c in zip(blocks, chunks))
    with replacing(path, SUFFIX) as tmp:
        stored = blosc2.asarray(np.ascontiguousarray(image, dtype=image_dtype), chunks=chunks, blocks=blocks,
                                cparams=_cparams(codec, clevel, shuffle=True))
        stored.vlmeta[META_KEY] = {"format": FORMAT, "version": FORMAT_VERSION, **meta}
        with blosc2.DictStore(str(tmp), mode="w") as store:
            store["/image"] = stored
            store["/masks"] = blosc2.asarray(np.ascontiguousarray(masks, dtype=np.uint8), chunks=chunks,
                                             blocks=blocks, cparams=_cparams(masks_codec, masks_clevel, False))
        os.chmod(tmp, _FILE_MODE)
    return path.stat().st_size


def read_array(path: Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Read a whole array file: ``(image float32, packed masks uint8, metadata)``.

    Raises
    ------
    ValueError
        If the file's format version is not one this code reads.
    """
    store = blosc2.DictStore(str(path), mode="r")
    image = store["/image"]
    meta = dict(image.vlmeta[META_KEY])
    if meta.get("version") not in READABLE_VERSIONS:
        raise ValueError(f"{path}: {FORMAT} version {meta.get('version')!r} is not readable here "
                         f"(reads {READABLE_VERSIONS}); rebuild the arrays with `curate build`")
    return image[...].astype(np.float32), store["/masks"][...], meta
