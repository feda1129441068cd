"""QC thumbnails, rendered on the build's Dask workers while the voxels are in memory.

The last stage.  For every image a person may want to look at (included
images, DWI series and their maps, images excluded only for their IQS) it
writes ``OUTPUT/reports/thumbs/<image_id>.png``: the three mid-slices with
the anonymization mask tinted and the anatomy mask outlined
(:mod:`qc.thumbnails` does the drawing).  ``curate report`` reuses these files
and renders the ones that are missing.  The stage writes no manifest column:
the file name follows from ``image_id``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from manifests.schema import ImageRecord
from qc.thumbnails import ThumbnailStyle, mosaic_png, showable, thumbnail_name

from curate.config import CurateConfig, ReportConfig
from curate.io import UnreadableImage, read_image, write_bytes
from curate.stages.base import StageContext, WorkItem, load_image

log = logging.getLogger(__name__)

#: Where thumbnails live, relative to OUTPUT.
THUMBS_DIR = "reports/thumbs"
#: ``WorkItem.extras`` keys under which the masks stage may hand over its arrays.
MASK_KEYS = {"anon_mask": "anon_mask_path", "anatomy_mask": "anatomy_mask_path"}


def thumbnail_path(output: Path, image_id: str) -> Path:
    """Absolute path of an image's thumbnail under ``output``."""
    return output / THUMBS_DIR / thumbnail_name(image_id)


def thumbnail_style(config: ReportConfig) -> ThumbnailStyle:
    """The drawing settings of the ``[report]`` config section."""
    return ThumbnailStyle(panel_px=config.panel_px, low_percentile=config.low_percentile,
                          high_percentile=config.high_percentile,
                          overlay_alpha=config.overlay_alpha)


def wants_thumbnail(record: ImageRecord) -> bool:
    """Whether ``record`` is worth a thumbnail (the rule the report's gallery uses too)."""
    return showable(record.included, record.modality, record.exclusion_reasons)


def read_mask(output: Path, rel_path: str | None, shape: tuple[int, ...]) -> np.ndarray | None:
    """A mask file (relative to ``output``) on the image's grid, or ``None``.

    A missing, unreadable or mis-shaped mask is logged and left out: a
    thumbnail without an overlay is still worth having.
    """
    if not rel_path:
        return None
    try:
        data = read_image(output / rel_path).data
    except UnreadableImage as exc:
        log.warning("mask %s left out of thumbnail: %s", rel_path, exc)
        return None
    if tuple(data.shape[:3]) != tuple(shape[:3]):
        log.warning("mask %s left out of thumbnail: shape %s, image %s", rel_path,
                    data.shape, shape)
        return None
    return data


def masks_for(item: WorkItem, ctx: StageContext, shape: tuple[int, ...]) -> dict[str, np.ndarray | None]:
    """The item's anon and anatomy masks, from the masks stage's extras or from their files."""
    masks: dict[str, np.ndarray | None] = {}
    for key, column in MASK_KEYS.items():
        handed = item.extras.get(key)
        if isinstance(handed, np.ndarray) and tuple(handed.shape[:3]) == tuple(shape[:3]):
            masks[key] = handed
        else:
            masks[key] = read_mask(ctx.output_root, getattr(item.record, column), shape)
    return masks


def render_thumbnail(data: np.ndarray, affine: np.ndarray, zooms: tuple[float, ...],
                     masks: dict[str, np.ndarray | None], style: ThumbnailStyle) -> bytes:
    """PNG bytes of one thumbnail (the masks dict as from :func:`masks_for`)."""
    return mosaic_png(data, affine, zooms, anon_mask=masks.get("anon_mask"),
                      anatomy_mask=masks.get("anatomy_mask"), style=style)


class ThumbnailStage:
    """Write a QC mosaic PNG per image for the report."""

    name: ClassVar[str] = "thumbnails"
    version: ClassVar[str] = "2"  # 2: thin slabs keep their proportions
    requires: ClassVar[tuple[str, ...]] = ("read", "dwi", "masks")
    columns: ClassVar[tuple[str, ...]] = ()
    reasons: ClassVar[tuple[str, ...]] = ()

    def settings(self, config: CurateConfig) -> Any:
        return thumbnail_style(config.report)

    def applies(self, record: ImageRecord) -> bool:
        return wants_thumbnail(record)

    def run(self, item: WorkItem, ctx: StageContext) -> list[WorkItem]:
        image = load_image(item, ctx)
        masks = masks_for(item, ctx, image.data.shape)
        png = render_thumbnail(image.data, image.affine, image.zooms, masks,
                               thumbnail_style(ctx.config.report))
        write_bytes(thumbnail_path(ctx.output_root, item.record.image_id), png)
        return [item]
