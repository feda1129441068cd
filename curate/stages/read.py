"""The full data read: decompress every voxel and reject corrupt or empty images.

A truncated ``.nii.gz`` still has a readable header, so the header-only index
cannot see it; this stage reads all the data and excludes such files as
``unreadable``.  Images that are constant, all zero or nowhere finite are
excluded as ``empty``; images and DICOM series whose headers say they decode
to more than ``[read] max_image_bytes`` / ``max_series_bytes`` are excluded as
``size`` without being decoded.

A DICOM series is converted here (dcm2niix, once).  Its shape and spacing in
the manifest were estimated from the DICOM headers in DICOM order (columns,
rows, slices); after conversion they are replaced by those of the NIfTI image
the later stages read, which dcm2niix may have reordered (sagittal and coronal
stacks) or resampled (gantry tilt).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from manifests.schema import ExclusionReason, ImageRecord, SourceKind

from curate.config import CurateConfig, ReadConfig
from curate.io import ImageData, TooLarge, UnreadableImage
from curate.stages.base import StageContext, WorkItem, is_dwi_source, load_image


def emptiness(data: np.ndarray, min_finite_fraction: float) -> str | None:
    """Why ``data`` is empty, or ``None`` when it holds an image.

    Examples
    --------
    >>> emptiness(np.zeros((4, 4, 4)), 0.01)
    'all voxels are zero'
    >>> emptiness(np.full((4, 4, 4), np.nan), 0.01)
    'no finite voxels'
    >>> emptiness(np.arange(64.0).reshape(4, 4, 4), 0.01) is None
    True
    """
    finite = np.isfinite(data)
    n_finite = int(finite.sum())
    if n_finite == 0:
        return "no finite voxels"
    if n_finite < min_finite_fraction * data.size:
        return f"only {n_finite} of {data.size} voxels are finite"
    values = data[finite]
    low, high = float(values.min()), float(values.max())
    if low == high:
        return "all voxels are zero" if low == 0 else f"constant image (value {low:g})"
    return None


def image_geometry(image: ImageData) -> dict[str, Any]:
    """Manifest geometry columns of an image as read.

    Examples
    --------
    >>> g = image_geometry(ImageData(np.zeros((4, 5, 6, 2)), np.eye(4), (2.0, 2.0, 3.0, 1.0)))
    >>> g["shape"], g["spacing_mm"], g["fov_mm"], g["n_volumes"]
    ((4, 5, 6, 2), (2.0, 2.0, 3.0), (8.0, 10.0, 18.0), 2)
    """
    shape = tuple(int(n) for n in image.data.shape)
    spacing = tuple(float(z) for z in image.zooms[:3])
    volumes = int(np.prod(shape[3:])) if len(shape) > 3 else 1
    return {"ndim": len(shape), "shape": shape, "spacing_mm": spacing, "n_volumes": volumes,
            "fov_mm": tuple(n * z for n, z in zip(shape[:3], spacing))}


def with_converted_geometry(record: ImageRecord, image: ImageData, dwi_source: bool) -> ImageRecord:
    """``record`` with the geometry of its converted DICOM series.

    Raises
    ------
    UnreadableImage
        When dcm2niix wrote several volumes where the headers describe one
        (the series holds images the index could not tell apart).
    """
    geometry = image_geometry(image)
    if geometry["n_volumes"] != (record.n_volumes or 1) and not dwi_source:
        raise UnreadableImage(f"dcm2niix wrote {geometry['n_volumes']} volumes {geometry['shape']}, "
                              f"the DICOM headers describe {record.n_volumes or 1} {record.shape}")
    header_voxels = int(np.prod(record.shape[:3])) if record.shape else None
    if header_voxels != int(np.prod(geometry["shape"][:3])):
        record = record.with_warning(f"converted shape {geometry['shape'][:3]} differs from the "
                                     f"DICOM headers' {record.shape}")
    return record.replace(**geometry)


class ReadStage:
    """Read all voxel data once; exclude unreadable and empty images."""

    name: ClassVar[str] = "read"
    version: ClassVar[str] = "2"
    requires: ClassVar[tuple[str, ...]] = ()
    columns: ClassVar[tuple[str, ...]] = ("converted_path", "ndim", "shape", "spacing_mm", "fov_mm",
                                          "n_volumes")
    reasons: ClassVar[tuple[str, ...]] = (ExclusionReason.EMPTY.value, ExclusionReason.SIZE.value)

    def settings(self, config: CurateConfig) -> ReadConfig:
        return config.read

    def applies(self, record: ImageRecord) -> bool:
        return record.included or is_dwi_source(record)

    def run(self, item: WorkItem, ctx: StageContext) -> list[WorkItem]:
        try:
            image = load_image(item, ctx)
        except TooLarge as exc:  # refused from its header by a [read] limit: a verdict, not a failure
            item.record = item.record.excluded_for(ExclusionReason.SIZE.value, detail=str(exc))
            return [item]
        for note in image.notes:
            item.record = item.record.with_warning(f"read: {note}")
        if item.record.source_kind == SourceKind.DICOM.value:
            item.record = with_converted_geometry(item.record, image, is_dwi_source(item.record))
        problem = emptiness(image.data, ctx.config.read.min_finite_fraction)
        if problem is not None:
            item.record = item.record.excluded_for(ExclusionReason.EMPTY.value, detail=problem)
        elif not np.isfinite(image.data).all():
            n_bad = int((~np.isfinite(image.data)).sum())
            item.record = item.record.with_warning(f"{n_bad} non-finite voxels")
        return [item]


