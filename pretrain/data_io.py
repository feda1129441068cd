"""Reading pre-training array files (format ``mri-curate-array/1``, written by ``curate build``).

Each file is a blosc2 ``.b2nd`` array of structured voxels: ``image`` (float16
by default) and ``masks`` (uint8; bit 0 anatomy, bit 1 anonymization).  Its
``vlmeta["mri-curate-array"]`` holds the geometry and a coarse anatomy
occupancy grid used to centre crops on tissue.  Only the region a crop needs
is decompressed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import blosc2
import numpy as np

META_KEY = "mri-curate-array"
ANATOMY_BIT = 1
ANON_BIT = 2


class ArrayFileError(Exception):
    """An array file that is missing, truncated or not in our format; ``str`` says why."""


@dataclass(slots=True)
class ArrayHandle:
    """An open array file: its shape, coarse anatomy grid and region reads."""

    path: Path
    array: blosc2.NDArray
    shape: tuple[int, int, int]
    occupancy: np.ndarray | None
    cell: int

    def read(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Image (float32) and packed masks (uint8) of the half-open box ``[lo, hi)``."""
        window = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        try:
            data = self.array[window]
        except (RuntimeError, ValueError, OSError) as exc:
            raise ArrayFileError(f"{self.path}: cannot decompress region: {exc}") from exc
        return data["image"].astype(np.float32), np.ascontiguousarray(data["masks"])


def open_array(path: Path) -> ArrayHandle:
    """Open an array file for region reads.

    Raises
    ------
    ArrayFileError
        If the file is missing, unreadable or not a 3D ``mri-curate-array``.
    """
    try:
        array = blosc2.open(str(path), mode="r")
        meta = dict(array.vlmeta[META_KEY]) if META_KEY in array.vlmeta else None
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise ArrayFileError(f"{path}: {type(exc).__name__}: {exc}") from exc
    names = array.dtype.names or ()
    if meta is None or array.ndim != 3 or "image" not in names or "masks" not in names:
        raise ArrayFileError(f"{path}: not an {META_KEY} file")
    occupancy, cell = None, 1
    grid = meta.get("anatomy_grid")
    if grid:
        cell = int(grid["cell"])
        occupancy = np.frombuffer(grid["data"], dtype=np.uint8).reshape(grid["shape"])
    return ArrayHandle(path=path, array=array, shape=tuple(array.shape),  # type: ignore[arg-type]
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
