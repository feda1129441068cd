"""Header-only reads for the index pass: NIfTI headers and JSON sidecars.

This module deliberately imports neither nibabel nor numpy.  ``curate index``
must read 100k headers in seconds, and importing nibabel alone costs about
0.3 s (it pulls in pydicom) — more than the whole per-file work on a small
collection.  The fields we need (magic, datatype, dim, pixdim; sform when
pixdim is 0 or NaN) sit at offsets set by the NIfTI-1 and NIfTI-2 standards,
so they are unpacked with :mod:`struct`;
``tests/curate/test_headers.py`` checks every offset and every datatype code
against nibabel's own header layouts, and images are still read with nibabel
(:mod:`curate.io`).
"""

from __future__ import annotations

import json
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NIFTI_SUFFIXES = (".nii.gz", ".nii")


class UnreadableImage(Exception):
    """An image whose header or data cannot be read; ``str(exc)`` says why."""


class TooLarge(UnreadableImage):
    """An image or DICOM series whose header says it decodes to more than the ``[read]`` limits.

    Raised before the data are decoded; the read stage excludes the image with
    reason ``size`` and the limit that refused it.
    """


def format_bytes(n: float) -> str:
    """``n`` bytes for messages, in binary units.

    Examples
    --------
    >>> format_bytes(4 * 1024**3), format_bytes(1536), format_bytes(10)
    ('4.0 GiB', '1.5 KiB', '10 B')
    """
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


@dataclass(frozen=True, slots=True)
class HeaderInfo:
    """What a header-only read of an image tells."""

    shape: tuple[int, ...]
    zooms: tuple[float, ...]
    dtype: str


#: Files beside an image that describe it: BIDS sidecar JSON and FSL gradient tables.
SIDECAR_SUFFIXES = (".json", ".bval", ".bvec")


def is_nifti(name: str) -> bool:
    """True for ``.nii`` and ``.nii.gz`` names, in any letter case (``T1.NII`` from a Windows export).

    Examples
    --------
    >>> is_nifti("T1.NII.GZ"), is_nifti("T1.nii"), is_nifti("T1.gz")
    (True, True, False)
    """
    return name.lower().endswith(NIFTI_SUFFIXES)


def strip_nifti_suffix(name: str) -> str:
    """``sub-01_T1w.nii.gz`` -> ``sub-01_T1w`` (the suffix in any letter case)."""
    lowered = name.lower()
    for suffix in NIFTI_SUFFIXES:
        if lowered.endswith(suffix):
            return name[: -len(suffix)]
    return name


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where the fields we need sit in one header flavour (offsets from the standard)."""

    size: int
    magic: tuple[int, int]      # offset, length
    datatype: int               # int16
    dim: tuple[int, str]        # offset, struct code of 8 elements
    pixdim: tuple[int, str]
    sform_code: tuple[int, str]  # offset, struct code
    srow_x: tuple[int, str]     # offset, struct code of 4 elements; srow_y, srow_z follow


#: NIfTI-1 (348-byte) and NIfTI-2 (540-byte) headers.
LAYOUTS = {
    348: _Layout(size=348, magic=(344, 4), datatype=70, dim=(40, "h"), pixdim=(76, "f"),
                 sform_code=(254, "h"), srow_x=(280, "f")),
    540: _Layout(size=540, magic=(4, 4), datatype=12, dim=(16, "q"), pixdim=(104, "d"),
                 sform_code=(348, "i"), srow_x=(400, "d")),
}

_MAGICS = (b"n+1", b"ni1", b"n+2", b"ni2")

#: NIfTI datatype codes of plain numeric types, as numpy dtype names.  Rare
#: codes (RGB, 128-bit floats) fall back to nibabel's table.
_DTYPES = {
    2: "uint8", 4: "int16", 8: "int32", 16: "float32", 32: "complex64",
    64: "float64", 256: "int8", 512: "uint16", 768: "uint32", 1024: "int64",
    1280: "uint64", 1792: "complex128",
}


def _dtype_name(code: int) -> str:
    name = _DTYPES.get(code)
    if name is not None:
        return name
    from nibabel.nifti1 import data_type_codes  # rare codes only: keeps nibabel off the hot path

    if code not in data_type_codes.code:
        raise ValueError(f"unknown NIfTI datatype code {code}")
    return str(data_type_codes.dtype[code])


def _read_prefix(fd: int) -> bytes:
    """The first 540 bytes of an open NIfTI file, decompressing only as much gzip as needed."""
    chunk = os.read(fd, 2048)
    if chunk[:2] != b"\x1f\x8b":
        return chunk[:540]
    inflater = zlib.decompressobj(wbits=31)
    out = inflater.decompress(chunk, 540)
    while len(out) < 540:
        more = os.read(fd, 16384)
        if not more:
            break
        out += inflater.decompress(inflater.unconsumed_tail + more, 540 - len(out))
    return out


def header_bytes(path: str | os.PathLike[str]) -> bytes:
    """The first 540 bytes of a NIfTI file (decompressed), read with bare file descriptors."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return _read_prefix(fd)
    finally:
        os.close(fd)


def parse_header(raw: bytes) -> tuple[tuple[int, ...], tuple[float, ...], str]:
    """Shape, zooms and dtype name from the bytes of a NIfTI-1 or NIfTI-2 header.

    Raises
    ------
    ValueError
        If the bytes are not a NIfTI header.
    """
    for order in ("<", ">"):
        size = int.from_bytes(raw[:4], "little" if order == "<" else "big") if len(raw) >= 4 else 0
        if size in LAYOUTS:
            break
    else:
        raise ValueError("not a NIfTI header (bad sizeof_hdr)")
    layout = LAYOUTS[size]
    if len(raw) < layout.size:
        raise ValueError(f"file too short for a NIfTI header ({len(raw)} bytes)")
    start, length = layout.magic
    if raw[start: start + length].rstrip(b"\x00") not in _MAGICS:
        raise ValueError("not a NIfTI header (bad magic)")
    dim = struct.unpack_from(f"{order}8{layout.dim[1]}", raw, layout.dim[0])
    ndim = dim[0]
    if not 1 <= ndim <= 7:
        raise ValueError(f"invalid number of dimensions {ndim}")
    pixdim = struct.unpack_from(f"{order}8{layout.pixdim[1]}", raw, layout.pixdim[0])
    (code,) = struct.unpack_from(f"{order}h", raw, layout.datatype)
    zooms = [float(z) for z in pixdim[1: ndim + 1]]
    if not all(0 < abs(z) < math.inf for z in zooms[:3]):
        zooms[:3] = _sform_sizes(raw, layout, order)[: min(ndim, 3)]
    return tuple(dim[1: ndim + 1]), tuple(zooms), _dtype_name(code)


def _sform_sizes(raw: bytes, layout: _Layout, order: str) -> list[float]:
    """Voxel sizes from the sform's column lengths, for a header whose ``pixdim`` is 0 or NaN.

    Without a usable sform each size is 1 mm, as nibabel reads such headers.
    """
    (code,) = struct.unpack_from(f"{order}{layout.sform_code[1]}", raw, layout.sform_code[0])
    offset, kind = layout.srow_x
    rows = struct.unpack_from(f"{order}12{kind}", raw, offset)
    sizes = [math.sqrt(sum(rows[4 * r + c] ** 2 for r in range(3))) for c in range(3)]
    if code > 0 and all(0 < v < math.inf for v in sizes):
        return sizes
    return [1.0, 1.0, 1.0]


_READ_ERRORS = (OSError, EOFError, ValueError, zlib.error, MemoryError, struct.error)


def read_header(path: str | os.PathLike[str]) -> HeaderInfo:
    """Read a NIfTI-1/2 header without touching voxel data.

    Raises
    ------
    UnreadableImage
        If the file is missing, unreadable or has no valid NIfTI header.
    """
    try:
        shape, zooms, dtype = parse_header(header_bytes(path))
    except _READ_ERRORS as exc:
        raise UnreadableImage(f"header: {type(exc).__name__}: {exc}") from exc
    if min(shape) < 1:
        raise UnreadableImage(f"header: invalid shape {shape}")
    return HeaderInfo(shape=shape, zooms=zooms, dtype=dtype)


def read_json(path: str | os.PathLike[str]) -> tuple[dict[str, Any], str | None]:
    """Read a JSON sidecar; returns ``(data, warning)`` and never raises."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            text = b"".join(iter(lambda: os.read(fd, 1 << 16), b""))
        finally:
            os.close(fd)
        data = json.loads(text.decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return {}, f"sidecar {Path(path).name} unreadable: {type(exc).__name__}"
    if not isinstance(data, dict):
        return {}, f"sidecar {Path(path).name} is not a JSON object"
    return data, None


__all__ = ["HeaderInfo", "NIFTI_SUFFIXES", "TooLarge", "UnreadableImage", "format_bytes", "header_bytes",
           "is_nifti", "parse_header", "read_header", "read_json", "strip_nifti_suffix"]
