"""File I/O for images: the only module (with :mod:`curate.dicom`) that reads or writes them.

Every failure to read is turned into :class:`UnreadableImage` with a one-line
reason, so callers record it in the manifest instead of crashing.
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from curate.atomic import temp_beside, write_bytes, write_json, write_text  # noqa: F401

# Header-only reads live in curate.headers (no nibabel import, for the index
# pass); they are re-exported here so this stays the one I/O entry point.
from curate.headers import (  # noqa: F401  (re-exported)
    NIFTI_SUFFIXES,
    HeaderInfo,
    UnreadableImage,
    is_nifti,
    read_header,
    read_json,
    strip_nifti_suffix,
)


@dataclass(slots=True)
class ImageData:
    """Voxel data with its geometry; ``bvals``/``bvecs`` for DWI series."""

    data: np.ndarray
    affine: np.ndarray
    zooms: tuple[float, ...]
    bvals: np.ndarray | None = None
    bvecs: np.ndarray | None = None


_READ_ERRORS = (OSError, EOFError, ValueError, zlib.error, gzip.BadGzipFile,
                nib.filebasedimages.ImageFileError, MemoryError)


def read_image(path: Path) -> ImageData:
    """Read a NIfTI image's data as float32 (every byte decompressed and checked).

    Raises
    ------
    UnreadableImage
        On truncated or corrupt data, as well as on header problems.
    """
    try:
        img = nib.load(str(path))
        if img.get_data_dtype().fields is not None:
            # RGB24 and other structured voxels: a colour map or screenshot (dcm2niix writes
            # Siemens' colour FA so), not grey levels; float conversion would fail.
            raise UnreadableImage(f"data: {img.get_data_dtype()} voxels (a colour image), not intensities")
        data = np.asarray(img.dataobj, dtype=np.float32)
        zooms = tuple(float(z) for z in img.header.get_zooms())
        affine = np.asarray(img.affine, dtype=float)
    except _READ_ERRORS as exc:
        raise UnreadableImage(f"data: {type(exc).__name__}: {exc}") from exc
    return ImageData(data=data, affine=affine, zooms=zooms)


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray, dtype: Any = None) -> None:
    """Write a NIfTI file atomically (temporary name, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.asarray(data if dtype is None else data.astype(dtype))
    img = nib.Nifti1Image(array, affine)
    img.header.set_data_dtype(array.dtype)
    tmp = temp_beside(path)
    # nibabel picks gzip from the name, so keep the suffix on the temporary file.
    tmp = tmp.with_name(tmp.name + ("" if not path.name.endswith(".gz") else ".nii.gz"))
    nib.save(img, str(tmp))
    os.replace(tmp, path)


def read_slice_dim(path: Path) -> int | None:
    """The NIfTI header's slice dimension (0, 1 or 2), or ``None`` when unset or unreadable."""
    try:
        header = nib.load(str(path)).header
        slice_dim = header.get_dim_info()[2] if hasattr(header, "get_dim_info") else None
    except _READ_ERRORS:
        return None
    return int(slice_dim) if slice_dim is not None else None
