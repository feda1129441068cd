"""The ``dwi`` stage: every valid 4D diffusion series becomes FA, MD and T2w (mean b0) rows.

The maths is :func:`curate.dwi.chain.derive`; this module only finds the
gradient files, writes the maps (BIDS-derivative names, native DWI space, one
JSON sidecar each with every step's parameters) and makes one new manifest
row per map.  The derived rows are triaged on their geometry (field of view
and spacing); the file-size rule is not applied to them, because it screens
raw acquisitions for too few voxels and a compressed, brain-masked map is
small by construction.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from manifests.schema import ExclusionReason, ImageRecord, Modality, make_image_id

from curate.config import CurateConfig, DwiConfig
from curate.derivatives import derivative_path, ensure_dataset_description
from curate.dwi.chain import DwiResult, derive
from curate.dwi.gibbs import slice_axis_from_header
from curate.dwi.gradients import parse_table
from curate.io import ImageData, read_slice_dim, strip_nifti_suffix, write_json, write_nifti
from curate.stages.base import StageContext, WorkItem, is_dwi_source, load_image
from curate.triage import triage

#: (modality, desc, suffix) of the maps that become manifest rows.
MAPS = ((Modality.FA.value, "dti", "FA"), (Modality.MD.value, "dti", "MD"),
        (Modality.T2W.value, "meanb0", "T2w"))

_QC_COLUMNS = ("dwi_shells", "dwi_nan_voxels", "dwi_degenerate_voxels",
               "dwi_motion_max_mm", "dwi_motion_mean_mm")


def gradient_files(item: WorkItem, ctx: StageContext) -> tuple[Path | None, Path | None]:
    """Where the series' .bval and .bvec are (next to the dcm2niix output for DICOM)."""
    record = item.record
    if record.source_kind == "dicom":
        if not record.converted_path:
            return None, None
        stem = ctx.output_root / record.converted_path
        base = stem.with_name(strip_nifti_suffix(stem.name))  # .nii.gz, or .nii above 2 GB
        return Path(f"{base}.bval"), Path(f"{base}.bvec")
    root = Path(item.dataset_root or ctx.source_root)
    return (root / record.bval_path if record.bval_path else None,
            root / record.bvec_path if record.bvec_path else None)


def read_gradients(bval: Path | None, bvec: Path | None) -> tuple[np.ndarray, np.ndarray] | str:
    """The gradient table, or why it cannot be read."""
    if bval is None or bvec is None:
        return "no .bval/.bvec file for this series"
    try:
        return parse_table(bval.read_text(encoding="utf-8")), \
            parse_table(bvec.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        return f"cannot read gradient file: {type(exc).__name__}: {exc}"
    except ValueError as exc:
        return f"malformed gradient file: {exc}"


class DwiStage:
    """Derive FA, MD and mean-b0 maps from a DWI series; each map becomes a row."""

    name: ClassVar[str] = "dwi"
    version: ClassVar[str] = "1"
    requires: ClassVar[tuple[str, ...]] = ("read",)
    columns: ClassVar[tuple[str, ...]] = _QC_COLUMNS
    reasons: ClassVar[tuple[str, ...]] = (ExclusionReason.GRADIENTS.value,
                                          ExclusionReason.EMPTY.value)

    def settings(self, config: CurateConfig) -> DwiConfig:
        return config.dwi

    def applies(self, record: ImageRecord) -> bool:
        return is_dwi_source(record)

    def run(self, item: WorkItem, ctx: StageContext) -> list[WorkItem]:
        image = load_image(item, ctx)
        table = read_gradients(*gradient_files(item, ctx))
        if isinstance(table, str):
            item.record = item.record.excluded_for(ExclusionReason.GRADIENTS.value,
                                                   detail=f"dwi: {table}")
            return [item]
        slice_dim = read_slice_dim(Path(item.source_file)) if item.source_file else None
        axis = slice_axis_from_header(slice_dim, image.zooms)
        result = derive(image.data, image.zooms, image.affine, table[0], table[1],
                        ctx.config.dwi, axis)
        record = item.record
        for note in result.warnings:
            record = record.with_warning(f"dwi: {note}")
        if not result.ok:
            item.record = record.excluded_for(result.reason_code, detail=f"dwi: {result.reason}")
            return [item]
        record = record.replace(
            dwi_shells=result.shells_used, dwi_nan_voxels=result.nan_voxels,
            dwi_degenerate_voxels=result.degenerate_voxels,
            dwi_motion_max_mm=result.motion_max_mm, dwi_motion_mean_mm=result.motion_mean_mm)
        item.record = record
        return [item, *self._write(item, result, image, ctx)]

    def _write(self, item: WorkItem, result: DwiResult, image: ImageData,
               ctx: StageContext) -> list[WorkItem]:
        parent = item.record
        ensure_dataset_description(ctx.output_root, parent.dataset)
        sidecar = _sidecar(parent, result)
        mask_rel = derivative_path(parent, "brain", "mask")
        write_nifti(ctx.output_root / mask_rel, result.brain_mask, image.affine, np.uint8)
        write_json(ctx.output_root / mask_rel.replace(".nii.gz", ".json"), sidecar)
        maps = {"FA": result.fa, "MD": result.md, "T2w": result.t2w}
        triage_cfg = dataclasses.replace(ctx.config.triage, min_file_size_bytes=0)
        derived = []
        for modality, desc, suffix in MAPS:
            rel = derivative_path(parent, desc, suffix)
            path = ctx.output_root / rel
            write_nifti(path, maps[suffix], image.affine, np.float32)
            write_json(path.with_name(path.name.replace(".nii.gz", ".json")),
                       {**sidecar, "Modality": modality, "BrainMask": mask_rel})
            record = _derived_record(parent, modality, rel, maps[suffix], image.zooms,
                                     os.stat(path).st_size)
            derived.append(WorkItem(
                triage(record, triage_cfg), str(path), item.dataset_root,
                image=ImageData(maps[suffix], image.affine, tuple(image.zooms[:3])),
                extras={"dwi_brain_mask": result.brain_mask}))
        return derived


def _derived_record(parent: ImageRecord, modality: str, rel: str, data: np.ndarray,
                    zooms: tuple[float, ...], size: int) -> ImageRecord:
    spacing = tuple(abs(float(z)) for z in zooms[:3])
    shape = tuple(int(s) for s in data.shape)
    keep = ("dataset", "source_kind", "source_path", "subject", "session", "run",
            "acquisition", "age", "sex", "participant_json", "manufacturer",
            "manufacturer_model", "field_strength_t", "repetition_time_s", "echo_time_s",
            "phase_encoding_direction", "series_description", "protocol_name",
            "series_instance_uid", "source_mtime_ns", *_QC_COLUMNS)
    return ImageRecord(
        image_id=make_image_id(parent.image_id, modality), modality=modality,
        suffix=modality, derived_from=parent.image_id, included=True, ndim=3, shape=shape,
        spacing_mm=spacing, fov_mm=tuple(n * z for n, z in zip(shape, spacing)), n_volumes=1,
        dtype="float32", file_size_bytes=size, derived_path=rel,
        **{name: getattr(parent, name) for name in keep},
    )


def _sidecar(parent: ImageRecord, result: DwiResult) -> dict[str, Any]:
    return {
        "Sources": [f"bids:raw:{parent.source_path}"],
        "SourceImageId": parent.image_id,
        "Pipeline": ["gradients", "denoise", "gibbs", "motion", "bias", "mask", "tensor"],
        "Parameters": result.parameters,
        "Shells": list(result.shells), "ShellsUsedForTensor": list(result.shells_used),
        "NaNVoxels": result.nan_voxels, "DegenerateVoxels": result.degenerate_voxels,
        "MotionMaxMm": result.motion_max_mm, "MotionMeanMm": result.motion_mean_mm,
        "TimingsSeconds": result.timings_s, "CpuSeconds": result.cpu_s,
        "Warnings": result.warnings,
    }
