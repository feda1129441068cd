"""The header-only index of NIfTI images (BIDS and loose NIfTI folders).

:func:`plan_nifti_tasks` runs on the driver and turns a directory walk into
small picklable tasks; :func:`index_nifti_batch` runs on a worker and turns a
batch of tasks into triaged manifest records.  No voxel data is read.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from manifests.schema import ExclusionReason, ImageRecord, SourceKind, make_image_id

from curate import bids
from curate.config import TriageConfig
from curate.discover import DatasetFiles, display_path
from curate.io import UnreadableImage, read_header, strip_nifti_suffix
from curate.metadata import acquisition_fields
from curate.modality import bids_modality, load_rules, series_modality
from curate.triage import triage_reasons


@dataclass(frozen=True, slots=True)
class NiftiTask:
    """Everything a worker needs to index one NIfTI file."""

    dataset: str
    root: str
    rel_path: str
    kind: str
    sidecars: tuple[str, ...] = ()
    bval: str | None = None
    bvec: str | None = None
    participant: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


def plan_nifti_tasks(found: DatasetFiles, kind: SourceKind,
                     participant_labels: frozenset[str] | None) -> list[NiftiTask]:
    """Tasks for every image of one walked dataset, filtered by participant label."""
    tasks: list[NiftiTask] = []
    participants: dict[str, dict[str, str]] = {}
    warnings: tuple[str, ...] = ()
    if kind is SourceKind.BIDS:
        participants, pw = bids.read_participants(found.root)
        warnings = tuple(pw)
    for rel in found.images:
        if kind is SourceKind.BIDS:
            subject = bids.parse_entities(rel).get("subject")
            if participant_labels is not None and subject not in participant_labels:
                continue
            sidecars = bids.inherited_files(rel, found.sidecars_by_dir, ".json")
            bvals = bids.inherited_files(rel, found.sidecars_by_dir, ".bval")
            bvecs = bids.inherited_files(rel, found.sidecars_by_dir, ".bvec")
            part = bids.participant_fields(participants.get(subject or ""))
        else:
            directory, _, name = rel.rpartition("/")
            stem = strip_nifti_suffix(name)
            siblings = found.sidecars_by_dir.get(directory, [])
            prefix = f"{directory}/" if directory else ""
            sidecars = [prefix + f"{stem}.json"] if f"{stem}.json" in siblings else []
            bvals = [prefix + f"{stem}.bval"] if f"{stem}.bval" in siblings else []
            bvecs = [prefix + f"{stem}.bvec"] if f"{stem}.bvec" in siblings else []
            part = {}
        tasks.append(NiftiTask(
            dataset=found.name, root=str(found.root), rel_path=rel, kind=kind.value,
            sidecars=tuple(sidecars), bval=bvals[-1] if bvals else None,
            bvec=bvecs[-1] if bvecs else None, participant=part, warnings=warnings,
        ))
    return tasks


def _geometry(shape: tuple[int, ...], zooms: tuple[float, ...]) -> dict[str, Any]:
    spatial = tuple(int(s) for s in shape[:3]) + (1,) * max(0, 3 - len(shape))
    spacing = tuple(abs(float(z)) for z in zooms[:3]) + (1.0,) * max(0, 3 - len(zooms))
    n_volumes = int(math.prod(shape[3:])) if len(shape) > 3 else 1
    return {
        "ndim": len(shape),
        "shape": tuple(int(s) for s in shape),
        "spacing_mm": spacing,
        "fov_mm": tuple(s * z for s, z in zip(spatial, spacing)),
        "n_volumes": n_volumes,
    }


def _folder_entities(rel_path: str) -> dict[str, str]:
    """Subject (and session) of a loose NIfTI file from its folders.

    Clinical exports nest files as ``patient/[study/]file``: the first folder is
    taken as the subject and, two levels down, the second as the session.
    """
    parts = rel_path.split("/")[:-1]
    out = {"subject": display_path(parts[0])} if parts else {}
    if len(parts) >= 2:
        out["session"] = display_path(parts[1])
    return out


def _modality(task: NiftiTask, meta: dict[str, Any]) -> tuple[str, dict[str, str]]:
    rules = load_rules()
    if task.kind == SourceKind.BIDS.value:
        entities = bids.parse_entities(task.rel_path)
        return bids_modality(entities.get("suffix"), entities, rules), entities
    image_type = meta.get("ImageType")
    texts = [meta.get("SeriesDescription"), meta.get("ProtocolName"),
             strip_nifti_suffix(task.rel_path.rsplit("/", 1)[-1])]
    image_type = tuple(image_type) if isinstance(image_type, list) else None
    return series_modality(texts, image_type, rules), _folder_entities(task.rel_path)


def _stat_and_header(path: Path) -> tuple[dict[str, Any], str | None]:
    """File size/mtime and header geometry, or the reason they cannot be read."""
    try:
        stat = os.stat(path)
    except OSError as exc:
        return {}, f"cannot stat file: {exc.strerror}"
    fields: dict[str, Any] = {"file_size_bytes": stat.st_size, "source_mtime_ns": stat.st_mtime_ns}
    if not os.access(path, os.R_OK):
        return fields, "permission denied"
    try:
        header = read_header(path)
    except UnreadableImage as exc:
        return fields, str(exc)
    fields.update(dtype=header.dtype, **_geometry(header.shape, header.zooms))
    return fields, None


def index_nifti(task: NiftiTask, config: TriageConfig) -> ImageRecord:
    """Index one NIfTI file: stat, sidecars, header, modality, triage.

    The record is built once from all its fields (records are frozen, and
    copying a 90-field dataclass per step dominated the index's run time).
    """
    root = Path(task.root)
    shown = display_path(task.rel_path)
    meta, side_warnings = bids.merge_sidecars(root, list(task.sidecars))
    modality, entities = _modality(task, meta)
    warnings = [*task.warnings, *side_warnings]
    if shown != task.rel_path:
        warnings.append("file name is not valid UTF-8")
    fields, problem = _stat_and_header(root / task.rel_path)
    draft = ImageRecord(
        image_id=make_image_id(task.dataset, task.rel_path),
        dataset=task.dataset, source_kind=task.kind, source_path=shown, modality=modality,
        subject=entities.get("subject"), session=entities.get("session"),
        run=entities.get("run"), acquisition=entities.get("acquisition"),
        suffix=entities.get("suffix"), included=problem is None, warnings=tuple(warnings),
        exclusion_reasons=(ExclusionReason.UNREADABLE.value,) if problem else (),
        exclusion_detail=problem, bval_path=task.bval, bvec_path=task.bvec,
        **task.participant, **acquisition_fields(meta), **fields,
    )
    reasons, details = triage_reasons(draft, config)
    if not reasons:
        return draft
    # Rebuild once with the triage outcome (cheaper than copy-on-write twice).
    kwargs = {name: getattr(draft, name) for name in draft.__dataclass_fields__}
    kwargs.update(included=False,
                  exclusion_reasons=tuple(dict.fromkeys((*draft.exclusion_reasons, *reasons))),
                  exclusion_detail="; ".join(d for d in (problem, *details) if d))
    return ImageRecord(**kwargs)


def index_nifti_batch(tasks: list[NiftiTask], config: TriageConfig) -> list[ImageRecord]:
    """Index a batch of NIfTI files (the unit of one Dask task)."""
    return [index_nifti(task, config) for task in tasks]


__all__ = ["NiftiTask", "index_nifti", "index_nifti_batch", "plan_nifti_tasks"]
