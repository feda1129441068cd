"""The ``arrays`` stage: every included image becomes a compressed 1 mm pre-training array.

Masks come from the ``masks`` stage when it ran in the same task
(``item.extras["anatomy_mask"]``/``["anon_mask"]``), else from the mask files the
manifest names, else the anatomy falls back to the image's non-zero region and
the anonymization mask is empty.  The maths is :func:`curate.arrays.prepare`;
the file format is :mod:`curate.array_file`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

import numpy as np

from manifests.schema import ImageRecord

from curate.array_file import SUFFIX, write_array
from curate.arrays import PreparedArray, coarse_occupancy, prepare
from curate.config import ArraysConfig, CurateConfig
from curate.io import UnreadableImage, read_image
from curate.stages.base import StageContext, WorkItem, load_image

_SAFE = re.compile(r"[^A-Za-z0-9._+-]")
#: Edge (voxels) of the coarse anatomy-occupancy cells stored for crop sampling.
_CELL = 8


def array_path(record: ImageRecord, folder: str = "arrays") -> str:
    """Where the array of ``record`` lives, relative to OUTPUT.

    Examples
    --------
    >>> r = ImageRecord(image_id="ab12", dataset="ds 1", source_kind="bids", source_path="x", modality="T1w")
    >>> array_path(r)
    'arrays/ds_1/ab12.b2z'
    """
    return f"{folder}/{_SAFE.sub('_', record.dataset)}/{record.image_id}{SUFFIX}"


def _mask(item: WorkItem, ctx: StageContext, key: str, rel: str | None,
          shape: tuple[int, ...]) -> tuple[np.ndarray | None, str | None]:
    """The mask ``key`` on the image grid, or ``(None, warning)`` when unusable."""
    mask = item.extras.get(key)
    if mask is None and rel:
        try:
            mask = read_image(ctx.output_root / rel).data
        except UnreadableImage as exc:
            return None, f"arrays: {key} file unreadable ({exc}); fallback used"
    if mask is None:
        return None, None
    mask = np.asarray(mask)
    if mask.shape[:3] != shape:
        return None, f"arrays: {key} shape {mask.shape} != image {shape}; fallback used"
    return (mask.reshape(shape) > 0.5).astype(np.uint8), None


def _meta(record: ImageRecord, prepared: PreparedArray, cfg: ArraysConfig) -> dict[str, object]:
    grid = coarse_occupancy(prepared.masks, _CELL)
    return {
        "image_id": record.image_id, "affine": prepared.affine.tolist(),
        "spacing_mm": list(prepared.spacing_mm), "crop_box": list(prepared.crop_box),
        "normalization": cfg.normalization, "interpolation": cfg.image_interpolation,
        "margin_mm": cfg.margin_mm,
        "anatomy_grid": {"cell": _CELL, "shape": list(grid.shape), "data": grid.tobytes()},
    }


class ArraysStage:
    """Reorient, crop, resample, z-score and store one image with its masks."""

    name: ClassVar[str] = "arrays"
    version: ClassVar[str] = "2"
    requires: ClassVar[tuple[str, ...]] = ("masks",)
    columns: ClassVar[tuple[str, ...]] = ("array_path", "array_shape", "array_spacing_mm",
                                          "array_crop_box", "array_affine")
    reasons: ClassVar[tuple[str, ...]] = ()

    def settings(self, config: CurateConfig) -> ArraysConfig:
        return config.arrays

    def applies(self, record: ImageRecord) -> bool:
        return record.included

    def run(self, item: WorkItem, ctx: StageContext) -> list[WorkItem]:
        cfg = ctx.config.arrays
        image = load_image(item, ctx)
        data = image.data
        if data.ndim == 4 and data.shape[3] == 1:
            data = data[..., 0]
        if data.ndim != 3:
            item.record = item.record.with_warning(f"arrays: skipped, image is {data.ndim}D")
            return [item]
        anatomy, warn_anat = _mask(item, ctx, "anatomy_mask", item.record.anatomy_mask_path, data.shape)
        anon, warn_anon = _mask(item, ctx, "anon_mask", item.record.anon_mask_path, data.shape)
        prepared = prepare(data, image.affine, anatomy, anon, target=cfg.spacing_mm,
                           margin_mm=cfg.margin_mm, interpolation=cfg.image_interpolation,
                           normalization=cfg.normalization, tolerance_mm=cfg.spacing_tolerance_mm,
                           outlier_spans=cfg.outlier_spans)
        rel = array_path(item.record, cfg.folder)
        write_array(Path(ctx.output_root) / rel, prepared.image, prepared.masks,
                    _meta(item.record, prepared, cfg), image_dtype=cfg.image_dtype, codec=cfg.codec,
                    clevel=cfg.clevel, masks_codec=cfg.masks_codec, masks_clevel=cfg.masks_clevel,
                    chunks=cfg.chunks, blocks=cfg.blocks)
        record = item.record.replace(
            array_path=rel, array_shape=tuple(int(s) for s in prepared.image.shape),
            array_spacing_mm=tuple(prepared.spacing_mm), array_crop_box=prepared.crop_box,
            array_affine=tuple(float(v) for v in prepared.affine.ravel()),
        )
        for note in (warn_anat, warn_anon, *prepared.notes):
            if note:
                record = record.with_warning(note)
        item.record = record
        return [item]
