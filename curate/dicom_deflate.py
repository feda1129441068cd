"""Deflated DICOM files (transfer syntax 1.2.840.10008.1.2.1.99), inflated within a bound.

pydicom reads a deflated file by inflating everything after its file meta
information at once, in memory and without a limit (``zlib.decompress`` in
``pydicom.filereader.read_partial``), even when only the header is wanted; and
deflate compresses a plane of zeros about 1000:1, so an 8 MB series can hold
GBs.  Here the deflate stream is inflated in chunks with ``zlib.decompressobj``
(hand-rolled for that reason only) and stops at a bound:

* :func:`read_deflated_header` inflates only as far as the pixel data tag
  (at most :data:`MAX_HEADER_BYTES`) and lets pydicom parse that;
* :func:`inflate_file` rewrites a file as explicit VR little endian, the
  syntax dcm2niix reads, and raises :class:`~curate.headers.TooLarge` as soon
  as it would write more than the caller's budget.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import ExplicitVRLittleEndian

from curate.headers import TooLarge, format_bytes

DEFLATED = "1.2.840.10008.1.2.1.99"
#: The most of a deflated file's data set inflated to read its header (tags before the pixel data).
MAX_HEADER_BYTES = 16 * 1024**2
#: Compressed bytes read, and inflated bytes produced, per step.
_CHUNK = 1024**2
#: (7FE0,0010) PixelData as it starts an explicit VR little endian element.
_PIXEL_TAG = b"\xe0\x7f\x10\x00"


def is_deflated(path: Path) -> bool:
    """True when the file meta of ``path`` names the deflated transfer syntax.

    The file meta group comes first and is short; the UID is looked for in its
    first bytes, so ordinary files cost one small read.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(2048)
    except OSError:
        return False
    return DEFLATED.encode() in head


def _meta(path: Path) -> tuple[Any, int]:
    """The file meta of ``path`` and the offset of the deflated data set that follows it."""
    meta = pydicom.filereader.read_file_meta_info(path)
    length = meta.get("FileMetaInformationGroupLength")
    if length is None:
        raise ValueError("deflated DICOM without FileMetaInformationGroupLength")
    return meta, 128 + 4 + 12 + int(length)


def _inflated(path: Path, offset: int) -> Iterator[bytes]:
    """The inflated data set of ``path`` in pieces of at most :data:`_CHUNK` bytes."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    with open(path, "rb") as handle:
        handle.seek(offset)
        pending = b""
        while not inflater.eof:
            if not pending:
                pending = handle.read(_CHUNK)
                if not pending:
                    raise zlib.error("deflate stream cut short")
            piece = inflater.decompress(pending, _CHUNK)
            pending = inflater.unconsumed_tail
            if piece:
                yield piece


def _meta_bytes(meta: Any) -> bytes:
    """Preamble, ``DICM`` and ``meta`` re-encoded for explicit VR little endian."""
    meta = pydicom.dataset.FileMetaDataset(meta)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    del meta.FileMetaInformationGroupLength  # written anew for the new UID's length
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_file_meta_info(buffer, meta, enforce_standard=True)
    return b"\0" * 128 + b"DICM" + buffer.getvalue()


def read_deflated_header(path: Path, **dcmread: Any) -> pydicom.Dataset:
    """The header of a deflated file (pydicom ``dcmread`` keywords), inflating only the header.

    Raises
    ------
    ValueError
        When no pixel data tag comes within :data:`MAX_HEADER_BYTES` of inflated data
        and the file goes on.
    """
    meta, offset = _meta(path)
    if meta.get("TransferSyntaxUID") != DEFLATED:  # the UID was met elsewhere in the first bytes
        return pydicom.dcmread(path, **dcmread)
    prefix = bytearray()
    try:
        for piece in _inflated(path, offset):
            prefix += piece
            if _PIXEL_TAG in prefix[-len(piece) - 3:] or len(prefix) >= MAX_HEADER_BYTES:
                break
    except zlib.error:
        if not prefix:
            raise
    if len(prefix) >= MAX_HEADER_BYTES and _PIXEL_TAG not in prefix:
        raise ValueError(f"deflated DICOM header longer than {format_bytes(MAX_HEADER_BYTES)}")
    ds = pydicom.dcmread(DicomBytesIO(_meta_bytes(meta) + bytes(prefix)), **dcmread)
    ds.file_meta.TransferSyntaxUID = DEFLATED  # what the file says, for messages and checks
    return ds


def inflate_file(source: Path, target: Path, budget: int) -> int:
    """Rewrite deflated ``source`` as explicit VR little endian ``target``; return bytes written.

    Raises
    ------
    TooLarge
        As soon as more than ``budget`` bytes would be written (``target`` is removed).
    """
    meta, offset = _meta(source)
    written = 0
    try:
        with open(target, "wb") as out:
            written += out.write(_meta_bytes(meta))
            for piece in _inflated(source, offset):
                written += len(piece)
                if written > budget:
                    raise TooLarge(f"inflating deflated DICOM {source.name} goes past "
                                   f"[read] max_series_bytes ({format_bytes(budget)} left for it); "
                                   "stopped, nothing kept")
                out.write(piece)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return written


__all__ = ["DEFLATED", "MAX_HEADER_BYTES", "inflate_file", "is_deflated", "read_deflated_header"]
