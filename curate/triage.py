"""Header-level triage: the OpenMind / S3D exclusion rules as a pure function.

A record leaves triage with ``included`` set and every applicable reason in
``exclusion_reasons``; the thresholds come from :class:`curate.config.TriageConfig`.
"""

from __future__ import annotations

from typing import Protocol

from manifests.schema import PRETRAINING_MODALITIES, ExclusionReason, ImageRecord, Modality

from curate.config import TriageConfig

_FOV = ExclusionReason.FOV.value
_SPACING = ExclusionReason.SPACING.value
_SIZE = ExclusionReason.SIZE.value
_MODALITY = ExclusionReason.MODALITY.value


class HeaderFacts(Protocol):
    """What the header rules read: an :class:`ImageRecord`, or anything with these fields."""

    modality: str
    ndim: int | None
    n_volumes: int | None
    fov_mm: tuple[float, ...] | None
    spacing_mm: tuple[float, ...] | None
    file_size_bytes: int | None


def _modality_problem(record: HeaderFacts) -> str | None:
    ndim = record.ndim or 0
    volumes = record.n_volumes or 1
    if record.modality == Modality.DWI.value:
        return "4D diffusion series: source of derived FA/MD/T2w maps, not itself a pre-training image"
    if ndim > 4 and volumes > 1:  # (x, y, z, 1, 1) is a 3D image with a padded header
        return f"{ndim}D image"
    if record.modality not in PRETRAINING_MODALITIES:
        return f"modality {record.modality!r} is not a pre-training image"
    if volumes > 1:
        return f"4D image with {volumes} volumes"
    return None


def triage_reasons(record: HeaderFacts, config: TriageConfig) -> tuple[list[str], list[str]]:
    """The exclusion reasons (and their details) the header rules give ``record``."""
    details: list[str] = []
    reasons: list[str] = []
    if record.fov_mm is not None:
        small = [f"{v:.1f}" for v in record.fov_mm[:3] if v < config.min_fov_mm]
        if small:
            reasons.append(_FOV)
            details.append(f"field of view {small} mm < {config.min_fov_mm:g} mm")
    if record.spacing_mm is not None:
        coarse = [f"{v:.2f}" for v in record.spacing_mm[:3] if v >= config.max_spacing_mm]
        if coarse:
            reasons.append(_SPACING)
            details.append(f"spacing {coarse} mm >= {config.max_spacing_mm:g} mm")
    if record.file_size_bytes is not None and record.file_size_bytes < config.min_file_size_bytes:
        reasons.append(_SIZE)
        details.append(f"file {record.file_size_bytes} B < {config.min_file_size_bytes} B")
    problem = _modality_problem(record)
    if problem is not None:
        reasons.append(_MODALITY)
        details.append(problem)
    return reasons, details


def triage(record: ImageRecord, config: TriageConfig) -> ImageRecord:
    """Apply the header rules to a record whose header fields are filled.

    Records that are already excluded (e.g. ``unreadable``) keep their reasons
    and gain any further ones that apply.

    Examples
    --------
    >>> r = ImageRecord(image_id="x", dataset="d", source_kind="nifti", source_path="a.nii",
    ...                 modality="T1w", included=True, ndim=3, shape=(256, 256, 10),
    ...                 spacing_mm=(1.0, 1.0, 3.0), fov_mm=(256.0, 256.0, 30.0),
    ...                 file_size_bytes=10**6)
    >>> triage(r, TriageConfig()).exclusion_reasons
    ('fov',)
    """
    reasons, details = triage_reasons(record, config)
    if reasons:
        return record.excluded_for(*reasons, detail="; ".join(details))
    if not record.exclusion_reasons and not record.included:
        return record.replace(included=True)
    return record
