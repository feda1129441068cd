"""The full data read: decompress every voxel and reject corrupt or empty images.

A truncated ``.nii.gz`` still has a readable header, so the header-only index
cannot see it; this stage reads all the data and excludes such files as
``unreadable``.  Images that are constant, all zero or nowhere finite are
excluded as ``empty``.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from manifests.schema import ExclusionReason, ImageRecord

from curate.config import CurateConfig, ReadConfig
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


class ReadStage:
    """Read all voxel data once; exclude unreadable and empty images."""

    name: ClassVar[str] = "read"
    version: ClassVar[str] = "2"
    requires: ClassVar[tuple[str, ...]] = ()
    columns: ClassVar[tuple[str, ...]] = ("converted_path",)
    reasons: ClassVar[tuple[str, ...]] = (ExclusionReason.EMPTY.value,)

    def settings(self, config: CurateConfig) -> ReadConfig:
        return config.read

    def applies(self, record: ImageRecord) -> bool:
        return record.included or is_dwi_source(record)

    def run(self, item: WorkItem, ctx: StageContext) -> list[WorkItem]:
        image = load_image(item, ctx)
        for note in image.notes:
            item.record = item.record.with_warning(f"read: {note}")
        problem = emptiness(image.data, ctx.config.read.min_finite_fraction)
        if problem is not None:
            item.record = item.record.excluded_for(ExclusionReason.EMPTY.value, detail=problem)
        elif not np.isfinite(image.data).all():
            n_bad = int((~np.isfinite(image.data)).sum())
            item.record = item.record.with_warning(f"{n_bad} non-finite voxels")
        return [item]


