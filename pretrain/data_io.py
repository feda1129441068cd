"""Reading pre-training array files (format ``mri-curate-array/1``, written by ``curate build``).

Each file is a blosc2 ``DictStore`` (``.b2z``) holding two 3D arrays with the
same chunks: ``/image`` (float16 by default) and ``/masks`` (uint8; bit 0
anatomy, bit 1 anonymization).  The image's ``vlmeta["mri-curate-array"]``
holds the geometry and a coarse anatomy occupancy grid used to centre crops on
tissue.  Only the blocks a crop touches are decompressed.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import blosc2
import numpy as np

META_KEY = "mri-curate-array"
ANATOMY_BIT = 1
ANON_BIT = 2
_OPEN_ERRORS = (OSError, RuntimeError, ValueError, KeyError, TypeError, zipfile.BadZipFile)


class ArrayFileError(Exception):
    """An array file that is missing, truncated or not in our format; ``str`` says why."""


@dataclass(slots=True)
class ArrayHandle:
    """An open array file: its shape, coarse anatomy grid and region reads."""

    path: Path
    store: object
    image: blosc2.NDArray
    masks: blosc2.NDArray
    shape: tuple[int, int, int]
    occupancy: np.ndarray | None
    cell: int

    def read(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Image (float32) and packed masks (uint8) of the half-open box ``[lo, hi)``."""
        window = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        try:
            image, masks = self.image[window], self.masks[window]
        except _OPEN_ERRORS as exc:
            raise ArrayFileError(f"{self.path}: cannot decompress region: {exc}") from exc
        return image.astype(np.float32), masks


def open_array(path: Path) -> ArrayHandle:
    """Open an array file for region reads.

    Raises
    ------
    ArrayFileError
        If the file is missing, unreadable or not a 3D ``mri-curate-array``.
    """
    if not path.is_file():
        raise ArrayFileError(f"{path}: no such file")
    try:
        store = blosc2.DictStore(str(path), mode="r")
        image, masks = store["/image"], store["/masks"]
        meta = dict(image.vlmeta[META_KEY]) if META_KEY in image.vlmeta else None
    except _OPEN_ERRORS as exc:
        raise ArrayFileError(f"{path}: {type(exc).__name__}: {exc}") from exc
    if meta is None or image.ndim != 3 or masks.shape != image.shape:
        raise ArrayFileError(f"{path}: not an {META_KEY} file")
    occupancy, cell = None, 1
    grid = meta.get("anatomy_grid")
    if grid:
        cell = int(grid["cell"])
        occupancy = np.frombuffer(grid["data"], dtype=np.uint8).reshape(grid["shape"])
    return ArrayHandle(path=path, store=store, image=image, masks=masks,
                       shape=tuple(image.shape),  # type: ignore[arg-type]
                       occupancy=occupancy, cell=cell)


def split_masks(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(anatomy, anon)`` uint8 0/1 from packed masks."""
    return (masks & ANATOMY_BIT) // ANATOMY_BIT, (masks & ANON_BIT) // ANON_BIT


def sample_centre(handle: ArrayHandle, rng: np.random.Generator, anatomy_bias: float) -> np.ndarray:
    """A crop centre: with probability ``anatomy_bias`` inside an anatomy cell, else uniform."""
    shape = np.array(handle.shape)
    occ = handle.occupancy
    if occ is not None and occ.any() and rng.uniform() < anatomy_bias:
        weights = occ.ravel().astype(np.float64)
        cell_index = np.array(np.unravel_index(rng.choice(weights.size, p=weights / weights.sum()), occ.shape))
        lo = cell_index * handle.cell
        hi = np.minimum(lo + handle.cell, shape)
        return rng.uniform(lo, hi)
    return rng.uniform(np.zeros(3), shape)
