"""Geometry of a DICOM series from its headers alone: shape, spacing, and what is wrong.

Three layouts are met in exports:

* classic single-frame files, one slice each (``ImagePositionPatient`` and
  ``ImageOrientationPatient`` per file); slices of several volumes (DWI, BOLD)
  repeat the same positions;
* Siemens mosaics: one file per volume, the slices tiled in a square grid of
  ``ceil(sqrt(n))`` tiles, ``n`` given by the private tag NumberOfImagesInMosaic
  (0019,100A), the layout dcm2niix and nibabel read; United Imaging "VFRAME"
  mosaics likewise, with a grid of acquisition-matrix tiles listed in (0065,1050);
* enhanced multi-frame objects (one file, ``NumberOfFrames`` > 1), whose spacing,
  orientation and per-frame positions live in the shared and per-frame
  functional group sequences (DICOM PS3.3 C.7.6.16).

Header values are gathered by :func:`header_fields` when a file is read, as plain
Python values (with the vendors' private marks that matter: Siemens' mosaic
size, GE's magnitude/phase image type), so the grouping of files into series
never touches pydicom objects.
"""

from __future__ import annotations

import math
import struct
import zlib
from typing import Any, Protocol

import numpy as np
import pydicom

#: What pydicom raises on a damaged file (found by corrupting pydicom's own test files):
#: an unknown VR, a value of odd length, a cut deflate stream, a short struct.
PYDICOM_ERRORS: tuple[type[BaseException], ...] = (
    pydicom.errors.InvalidDicomError, pydicom.errors.BytesLengthException, OSError, EOFError, ValueError,
    TypeError, AttributeError, KeyError, IndexError, NotImplementedError, OverflowError, struct.error,
    zlib.error)
#: Siemens private tags: the creator of block (0019,10xx) and NumberOfImagesInMosaic.
MOSAIC_CREATOR = 0x00190010
MOSAIC_IMAGES = 0x0019100A
#: GE private tags: the creator of block (0043,10xx) and the image type
#: (0 magnitude, 1 phase, 2 real, 3 imaginary), GE's only mark of a phase image.
GE_CREATOR = 0x00430010
GE_IMAGE_TYPE = 0x0043102F
#: United Imaging private tags: the creator of block (0065,10xx) and the grid of a
#: "VFRAME" mosaic (a sequence with one item per tile, or the number of tiles).
UIH_CREATOR = 0x00650010
UIH_GRID = 0x00651050
#: What pydicom must read for :func:`header_fields` beyond the keywords asked for.
PRIVATE_TAGS = (MOSAIC_CREATOR, MOSAIC_IMAGES, GE_CREATOR, GE_IMAGE_TYPE, UIH_CREATOR, UIH_GRID)
_GE_PARTS = {0: "M", 1: "P", 2: "R", 3: "I"}


class Header(Protocol):
    """What geometry needs of one file's header."""

    def get(self, name: str) -> Any: ...


def _plain(value: Any) -> Any:
    """A header value as plain Python (tuples, floats, ints, strings)."""
    if isinstance(value, (pydicom.multival.MultiValue, list, tuple)):
        return tuple(_plain(v) for v in value)
    if isinstance(value, (pydicom.valuerep.DSfloat, pydicom.valuerep.IS)):
        return float(value)
    if isinstance(value, (int, float)):
        return value
    return None if value is None else str(value)


def _first_item(ds: Any, *path: str) -> Any:
    """The first item at ``path`` of nested sequences, or ``None``."""
    node = ds
    for keyword in path:
        seq = getattr(node, keyword, None) if node is not None else None
        node = seq[0] if seq else None
    return node


def _private_int(ds: Any, creator_tag: int, tag: int, vendor: str, signed: bool = False) -> int | None:
    """A 16-bit private value when its block's creator names ``vendor``."""
    creator = ds.get(creator_tag)
    element = ds.get(tag)
    if creator is None or element is None or vendor not in str(creator.value).upper():
        return None
    value = element.value
    if isinstance(value, bytes):  # implicit VR without the private dictionary: little endian
        value = int.from_bytes(value[:2], "little", signed=signed) if len(value) >= 2 else None
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        value = value[0] if len(value) else None
    return int(value) if isinstance(value, (int, float)) else None


def _mosaic_images(ds: Any) -> int | None:
    """The number of tiles of a Siemens (NumberOfImagesInMosaic) or United Imaging mosaic."""
    value = _private_int(ds, MOSAIC_CREATOR, MOSAIC_IMAGES, "SIEMENS")
    creator, grid = ds.get(UIH_CREATOR), ds.get(UIH_GRID)
    if value is None and creator is not None and grid is not None and \
            "IMAGE PRIVATE HEADER" in str(creator.value).upper():
        if isinstance(grid.value, pydicom.sequence.Sequence):
            value = len(grid.value)
        elif not isinstance(grid.value, bytes):
            value = int(float(grid.value))
    return value if value is not None and value > 0 else None


def _enhanced_fields(ds: Any) -> dict[str, Any]:
    """Spacing, orientation, frame positions and echo time of an enhanced multi-frame object."""
    shared = _first_item(ds, "SharedFunctionalGroupsSequence")
    frames = getattr(ds, "PerFrameFunctionalGroupsSequence", None) or []
    first = frames[0] if frames else None
    out: dict[str, Any] = {}
    for group in (shared, first):  # shared groups first; per-frame ones where not shared
        measures = _first_item(group, "PixelMeasuresSequence")
        orientation = _first_item(group, "PlaneOrientationSequence")
        for keyword, item in (("PixelSpacing", measures), ("SliceThickness", measures),
                              ("SpacingBetweenSlices", measures),
                              ("ImageOrientationPatient", orientation)):
            if keyword not in out and item is not None and item.get(keyword) is not None:
                out[keyword] = _plain(item.get(keyword))
    echo_times = {_plain(echo.get("EffectiveEchoTime")) for frame in frames
                  if (echo := _first_item(frame, "MREchoSequence")) is not None}
    if len(echo_times) == 1 and None not in echo_times:
        # one echo per file (Siemens XA writes a file per echo): the series splits on it
        out["EchoTime"] = echo_times.pop()
    positions = []
    for frame in frames:
        position = _first_item(frame, "PlanePositionSequence")
        value = position.get("ImagePositionPatient") if position is not None else None
        if value is None:
            return out  # positions of some frames only: the series check cannot use them
        positions.append(_plain(value))
    if positions:
        out["FramePositions"] = tuple(positions)
    return out


def header_fields(ds: Any, keywords: list[str]) -> tuple[tuple[str, Any], ...]:
    """The plain values of ``keywords`` in ``ds``, plus mosaic and multi-frame geometry.

    Top-level values win over those of the functional groups.
    """
    fields = {tag: _plain(ds.get(tag)) for tag in keywords
              if ds.get(tag) is not None and not tag.endswith("Sequence")}
    if "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds:
        for key, value in _enhanced_fields(ds).items():
            fields.setdefault(key, value)
    mosaic = _mosaic_images(ds)
    if mosaic is not None:
        fields["MosaicImages"] = mosaic
    ge_part = _GE_PARTS.get(_private_int(ds, GE_CREATOR, GE_IMAGE_TYPE, "GEMS", signed=True))
    if ge_part is not None:
        # GE writes ORIGINAL\PRIMARY\OTHER for every part; the part is in its private tag.
        fields["VendorImagePart"] = ge_part
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is not None:
        fields["TransferSyntaxUID"] = str(syntax)
    return tuple(fields.items())


def _is_mosaic(header: Header) -> bool:
    """Siemens (ImageType MOSAIC) and United Imaging (VFRAME) mosaics whose tile count is known."""
    image_type = header.get("ImageType") or ()
    types = image_type if isinstance(image_type, tuple) else (image_type,)
    return bool({"MOSAIC", "VFRAME"} & {str(t).upper() for t in types}) and bool(header.get("MosaicImages"))


def _tile(header: Header, rows: int, cols: int) -> tuple[int, int]:
    """(rows, columns) of one mosaic tile.

    Siemens tiles a square grid of ``ceil(sqrt(n))``; United Imaging's grid is
    not square, its tile is the acquisition matrix.
    """
    image_type = header.get("ImageType") or ()
    types = {str(t).upper() for t in (image_type if isinstance(image_type, tuple) else (image_type,))}
    matrix = [int(v) for v in (header.get("AcquisitionMatrix") or ()) if v]
    if "VFRAME" in types and len(matrix) == 2:
        for a, b in (matrix, matrix[::-1]):
            if rows % a == 0 and cols % b == 0 and (rows // a) * (cols // b) >= int(header.get("MosaicImages")):
                return a, b
    # Siemens: the acquisition matrix is no guide (a 90 x 45 matrix at 50% phase
    # resolution is stored as 90 x 90 tiles; dcm2niix's dcm_qa TotalReadoutTime set).
    tiles = math.ceil(math.sqrt(int(header.get("MosaicImages"))))
    return rows // tiles, cols // tiles


def _positions(files: list[Header]) -> list[Any]:
    """One position per slice: per file, or per frame of multi-frame files.

    Enhanced series come as one file, or as one file per volume (Siemens XA
    writes a 6-frame file per fMRI volume): every frame of every file counts.
    """
    if all(f.get("FramePositions") for f in files):
        return [p for f in files for p in f.get("FramePositions")]
    return [f.get("ImagePositionPatient") for f in files]


def _stack(orient: Any, positions: list[Any], problems: list[str]) -> tuple[int | None, int, float | None]:
    """Slices, volumes and slice spacing from positions along the slice normal."""
    normal = np.cross(np.asarray(orient[:3], float), np.asarray(orient[3:6], float))
    if not 0.95 < float(np.linalg.norm(normal)) < 1.05:
        # not two orthogonal unit vectors (all zeros, say): no slice direction to order along
        problems.append(f"invalid ImageOrientationPatient {tuple(orient)}")
        return None, 1, None
    depth, counts = np.unique(np.round(np.asarray(positions, float) @ normal, 3), return_counts=True)
    n_slices, n_volumes = None, 1
    if counts.min() != counts.max():
        problems.append("duplicated slice positions")
    else:
        # Every position the same number of times: one slice per volume of a
        # multi-volume series (DWI, BOLD), as dcm2niix stacks them.
        n_volumes, n_slices = int(counts[0]), int(depth.size)
    gaps = np.diff(depth)
    if not gaps.size:
        return n_slices, n_volumes, None
    spacing = float(np.median(gaps))
    if gaps.max() > 1.5 * spacing:
        problems.append(f"missing slices (gap of {gaps.max():.2f} mm, spacing {spacing:.2f} mm)")
    return n_slices, n_volumes, spacing


def series_geometry(files: list[Header]) -> tuple[dict[str, Any], list[str]]:
    """Shape, spacing and FOV of a series (DICOM column, row, slice order), and its problems."""
    problems: list[str] = []
    first = files[0]
    rows, cols = first.get("Rows"), first.get("Columns")
    if rows is None or cols is None:
        return {}, ["no Rows/Columns"]
    rows, cols = int(rows), int(cols)
    if len({(f.get("Rows"), f.get("Columns")) for f in files}) > 1:
        problems.append("inconsistent matrix sizes")
    orientations = {tuple(round(v, 3) for v in (f.get("ImageOrientationPatient") or ()))
                    for f in files}
    if len(orientations) > 1:
        problems.append("mixed slice orientations")
    if len({tuple(round(v, 4) for v in (f.get("PixelSpacing") or ())) for f in files}) > 1:
        problems.append("inconsistent pixel spacing")
    spacing_xy = first.get("PixelSpacing") or (1.0, 1.0)
    n_slices = sum(int(f.get("NumberOfFrames") or 1) for f in files)
    slice_spacing = float(first.get("SpacingBetweenSlices") or first.get("SliceThickness") or 1.0)
    orient = first.get("ImageOrientationPatient")
    positions = _positions(files)
    n_volumes = 1
    if _is_mosaic(first):
        # One file per volume; positions of mosaics are not slice positions.
        rows, cols = _tile(first, rows, cols)
        n_slices, n_volumes = int(first.get("MosaicImages")), len(files)
    elif not orient or not all(p for p in positions):
        # dcm2niix would stack such slices in file order on a made-up grid.
        problems.append("no ImagePositionPatient/ImageOrientationPatient: slice geometry unknown")
    elif len(positions) > 1 and len(orientations) == 1:
        stacked, n_volumes, spacing = _stack(orient, positions, problems)
        n_slices = stacked or n_slices
        slice_spacing = spacing if spacing is not None else slice_spacing
    shape = (cols, rows, int(n_slices))
    spacing = (float(spacing_xy[1]), float(spacing_xy[0]), abs(slice_spacing))
    return {
        "ndim": 3 if n_volumes == 1 else 4,
        "shape": shape if n_volumes == 1 else (*shape, n_volumes),
        "spacing_mm": spacing, "n_volumes": n_volumes,
        "fov_mm": tuple(s * z for s, z in zip(shape, spacing)),
    }, problems
