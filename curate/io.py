"""File I/O for images: the only module (with :mod:`curate.dicom`) that reads or writes them.

Every failure to read is turned into :class:`UnreadableImage` with a one-line
reason, so callers record it in the manifest instead of crashing.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.nifti1 import Nifti1Header
from nibabel.nifti2 import Nifti2Header
from nibabel.spatialimages import HeaderDataError

from curate import nifti
from curate.atomic import replacing, temp_beside, write_bytes, write_json, write_text  # noqa: F401
from curate.errors import describe

# Header-only reads live in curate.headers (no nibabel import, for the index
# pass); they are re-exported here so this stays the one I/O entry point.
from curate.headers import (  # noqa: F401  (re-exported)
    NIFTI_SUFFIXES,
    HeaderInfo,
    TooLarge,
    UnreadableImage,
    format_bytes,
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
    #: What reading changed to make the file usable (fallback affine, magnitude of complex data...).
    notes: tuple[str, ...] = ()


_READ_ERRORS = (OSError, EOFError, ValueError, zlib.error, gzip.BadGzipFile, HeaderDataError,
                nib.filebasedimages.ImageFileError, MemoryError)

_GZIP_MAGIC = b"\x1f\x8b"


def _open(path: Path) -> tuple[Any, str | None]:
    """The file opened for reading, decompressed when its bytes (not its name) say gzip.

    Returns the file object and a note when the name says otherwise (a
    ``.nii.gz`` that is not compressed, a ``.nii`` that is).
    """
    with open(path, "rb") as probe:
        compressed = probe.read(2) == _GZIP_MAGIC
    named_gz = str(path).lower().endswith(".gz")
    note = None
    if compressed != named_gz:
        note = (f"file is {'' if compressed else 'not '}gzip-compressed although "
                f"its name {'does not end' if compressed else 'ends'} in .gz")
    return (gzip.open(path, "rb") if compressed else open(path, "rb")), note


def _header(fobj: Any) -> Nifti1Header:
    """The NIfTI-1 or NIfTI-2 header at the start of ``fobj`` (told apart by ``sizeof_hdr``)."""
    start = fobj.read(4)
    fobj.seek(0)
    sizes = {int.from_bytes(start, "little"), int.from_bytes(start, "big")}
    klass = Nifti2Header if 540 in sizes else Nifti1Header
    if not sizes & {348, 540}:
        raise HeaderDataError("not a NIfTI-1/2 header (bad sizeof_hdr)")
    return klass.from_fileobj(fobj)


def decoded_bytes(shape: tuple[int, ...], itemsize: int) -> int:
    """Bytes a worker holds for an image of ``shape`` read as float32 (or its wider type).

    Python integers, so a header claiming 32767^7 voxels cannot overflow.

    Examples
    --------
    >>> decoded_bytes((1024, 1024, 1024), 4) == 4 * 1024**3, decoded_bytes((10, 10), 8)
    (True, 800)
    """
    voxels = 1
    for n in shape:
        voxels *= max(int(n), 1)
    return voxels * max(int(itemsize), 4)


def check_decoded_size(shape: tuple[int, ...], itemsize: int, max_bytes: int | None, what: str) -> None:
    """Raise :class:`TooLarge` when an image of ``shape`` would decode to more than ``max_bytes``."""
    size = decoded_bytes(shape, itemsize)
    if max_bytes is not None and size > max_bytes:
        dims = "x".join(str(int(n)) for n in shape)
        raise TooLarge(f"{what} decodes to {format_bytes(size)} ({dims} voxels as float32), above "
                       f"[read] max_image_bytes = {max_bytes} ({format_bytes(max_bytes)}); not read")


def read_image(path: Path, max_bytes: int | None = None) -> ImageData:
    """Read a NIfTI image's data as float32 (every byte decompressed and checked).

    nibabel reads the header and data; :mod:`curate.nifti` decides the
    intensities (complex data as magnitude), the affine (an invalid sform or
    qform is passed over) and the voxel sizes; a 2D image becomes a one-slice
    volume and length-1 axes after the third are dropped.  What was changed is
    listed in ``ImageData.notes``.

    ``max_bytes`` bounds what is decoded: an image whose header says it holds
    more (:func:`decoded_bytes`) raises :class:`TooLarge` before any data are read,
    so a small ``.nii.gz`` that inflates to 1024^3 float32 costs no memory.

    Raises
    ------
    UnreadableImage
        On truncated or corrupt data, header problems, or colour (RGB) data;
        :class:`TooLarge` (a subclass) for an image above ``max_bytes``.
    """
    try:
        fobj, note = _open(path)
        with fobj:
            header = _header(fobj)
            check_decoded_size(tuple(header.get_data_shape()), header.get_data_dtype().itemsize,
                               max_bytes, "the image")
            data, notes = nifti.intensities(header.data_from_fileobj(fobj))
    except (*_READ_ERRORS, nifti.NotIntensities) as exc:
        raise UnreadableImage(f"data: {describe(exc)}") from exc
    affine, affine_notes = nifti.best_affine(header)
    data = nifti.as_volume(data)
    zooms, zoom_notes = nifti.voxel_sizes(tuple(float(z) for z in header.get_zooms()),
                                          tuple(header.get_data_shape()), affine)
    notes = (*([note] if note else []), *notes, *affine_notes, *zoom_notes)
    return ImageData(data=data, affine=affine, zooms=zooms, notes=notes)


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray, dtype: Any = None) -> None:
    """Write a NIfTI file atomically (temporary name, then rename); nothing is left on failure.

    Raises
    ------
    curate.errors.OutOfSpace
        If the file system is full.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.asarray(data if dtype is None else data.astype(dtype))
    img = nib.Nifti1Image(array, affine)
    img.header.set_data_dtype(array.dtype)
    # nibabel picks gzip from the name, so keep the suffix on the temporary file.
    with replacing(path, ".nii.gz" if path.name.endswith(".gz") else "") as tmp:
        nib.save(img, str(tmp))


def read_slice_dim(path: Path) -> int | None:
    """The NIfTI header's slice dimension (0, 1 or 2), or ``None`` when unset or unreadable."""
    try:
        fobj, _ = _open(path)
        with fobj:
            slice_dim = _header(fobj).get_dim_info()[2]
    except _READ_ERRORS:
        return None
    return int(slice_dim) if slice_dim is not None else None
