"""The header-only index of NIfTI images (BIDS and loose NIfTI folders).

:func:`plan_batches` runs on the driver: it cuts a directory walk into
:class:`IndexBatch` es, each carrying only the sidecar listing and participant
rows its images need, so a batch pickles small however large the dataset.
:func:`index_batch` runs on a worker and turns a batch into triaged manifest
records (:func:`index_batch_table`: the same as one Arrow table, which crosses
process boundaries far cheaper than 80-field dataclasses).  No voxel data is
read, and nothing here imports nibabel or Dask.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pyarrow as pa

from manifests.schema import (
    ExclusionReason,
    ImageRecord,
    Modality,
    SourceKind,
    make_image_id,
    row_from_fields,
    rows_to_table,
)

from curate import bids
from curate.config import TriageConfig
from curate.discover import DatasetFiles, display_path
from curate.headers import SIDECAR_SUFFIXES, UnreadableImage, read_header, strip_nifti_suffix
from curate.metadata import acquisition_fields
from curate.modality import ModalityRules, bids_modality, load_rules, non_magnitude_part, series_modality
from curate.triage import triage_reasons


@dataclass(frozen=True, slots=True)
class IndexBatch:
    """A batch of NIfTI files of one dataset: the unit of work of one Dask task.

    ``sidecars_by_dir`` holds only the folders whose sidecars can apply to
    these files, and ``participants`` only their participants.tsv rows.
    """

    dataset: str
    root: str
    kind: str
    rel_paths: tuple[str, ...]
    sidecars_by_dir: dict[str, list[str]] = field(default_factory=dict)
    participants: dict[str, dict[str, str]] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


def _subject_pattern() -> re.Pattern[str]:
    return dict(bids.entity_patterns())["subject"]


def plan_batches(found: DatasetFiles, kind: SourceKind, participant_labels: frozenset[str] | None,
                 size: int) -> list[IndexBatch]:
    """Batches of at most ``size`` images of one walked dataset, filtered by participant."""
    is_bids = kind is SourceKind.BIDS
    participants: dict[str, dict[str, str]] = {}
    warnings: tuple[str, ...] = ()
    if is_bids:
        participants, pw = bids.read_participants(found.root)
        warnings = tuple(pw)
    images = found.images
    subjects: list[str | None] = []
    if is_bids:
        pattern = _subject_pattern()
        matches = [pattern.search("/" + rel) for rel in images]
        subjects = [m.group(1) if m else None for m in matches]
        if participant_labels is not None:
            keep = [i for i, s in enumerate(subjects) if s in participant_labels]
            images, subjects = [images[i] for i in keep], [subjects[i] for i in keep]
    batches = []
    listing: dict[str, set[str]] = {}
    for start in range(0, len(images), size):
        rels = tuple(images[start: start + size])
        side = _bids_sidecars(found, rels) if is_bids else _same_stem_sidecars(found, rels, listing)
        rows = {s: participants[s] for s in set(subjects[start: start + size]) if s in participants}
        batches.append(IndexBatch(dataset=found.name, root=str(found.root), kind=kind.value,
                                  rel_paths=rels, sidecars_by_dir=side, participants=rows,
                                  warnings=warnings))
    return batches


def _bids_sidecars(found: DatasetFiles, rels: tuple[str, ...]) -> dict[str, list[str]]:
    """The sidecar listing of every folder whose files these images may inherit."""
    folders = {f for rel in rels for f in bids.folders_down_to(rel.rpartition("/")[0])}
    return {f: found.sidecars_by_dir[f] for f in folders if f in found.sidecars_by_dir}


def _same_stem_sidecars(found: DatasetFiles, rels: tuple[str, ...],
                        listing: dict[str, set[str]]) -> dict[str, list[str]]:
    """Only the sidecars named like these images (a clinical folder may hold 100k files).

    ``listing`` caches each folder's names as a set across batches.
    """
    side: dict[str, list[str]] = {}
    for rel in rels:
        folder, _, name = rel.rpartition("/")
        names = listing.get(folder)
        if names is None:
            names = listing[folder] = _by_lower_name(found.sidecars_by_dir.get(folder, ()))
        stem = strip_nifti_suffix(name).lower()
        side.setdefault(folder, []).extend(names[stem + ext] for ext in SIDECAR_SUFFIXES
                                           if stem + ext in names)
    return side


def _by_lower_name(names: Iterable[str]) -> dict[str, str]:
    """``{name.lower(): name}``: a clinical export's ``T1.JSON`` or ``dwi.BVAL`` is still a sidecar."""
    return {name.lower(): name for name in names}


def _geometry(shape: tuple[int, ...], zooms: tuple[float, ...]) -> dict[str, Any]:
    spatial = shape[:3] + (1,) * max(0, 3 - len(shape))
    spacing = tuple(abs(z) for z in zooms[:3]) + (1.0,) * max(0, 3 - len(zooms))
    return {
        "ndim": len(shape),
        "shape": shape,
        "spacing_mm": spacing,
        "fov_mm": tuple(s * z for s, z in zip(spatial, spacing)),
        "n_volumes": math.prod(shape[3:]) if len(shape) > 3 else 1,
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


def _stat_and_header(path: str) -> tuple[dict[str, Any], str | None]:
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


class _BatchContext:
    """What one worker keeps while it indexes a batch: parsed sidecars, rules, participants."""

    def __init__(self, batch: IndexBatch, config: TriageConfig) -> None:
        self.batch = batch
        self.config = config
        self.is_bids = batch.kind == SourceKind.BIDS.value
        self.sidecars = bids.SidecarIndex(batch.sidecars_by_dir)
        self.rules: ModalityRules = load_rules()
        self._participants: dict[str, dict[str, Any]] = {}
        self._siblings: dict[str, dict[str, str]] = {}

    def participant(self, subject: str | None) -> dict[str, Any]:
        key = subject or ""
        if key not in self._participants:
            self._participants[key] = bids.participant_fields(self.batch.participants.get(key))
        return self._participants[key]

    def side_files(self, rel_path: str) -> dict[str, list[str]]:
        if self.is_bids:
            return self.sidecars.applying_to(rel_path)
        directory, _, name = rel_path.rpartition("/")
        stem = strip_nifti_suffix(name).lower()
        siblings = self._siblings.get(directory)
        if siblings is None:  # a mapping: a clinical folder may hold thousands of files
            siblings = self._siblings[directory] = _by_lower_name(self.batch.sidecars_by_dir.get(directory, ()))
        prefix = f"{directory}/" if directory else ""
        return {ext: [prefix + siblings[stem + ext]] if stem + ext in siblings else []
                for ext in SIDECAR_SUFFIXES}

    def modality(self, rel_path: str, meta: dict[str, Any]) -> tuple[str, dict[str, str]]:
        if self.is_bids:
            entities = bids.parse_entities(rel_path)
            return bids_modality(entities.get("suffix"), entities, self.rules), entities
        image_type = meta.get("ImageType")
        texts = [meta.get("SeriesDescription"), meta.get("ProtocolName"),
                 strip_nifti_suffix(rel_path.rsplit("/", 1)[-1])]
        image_type = tuple(image_type) if isinstance(image_type, list) else None
        return series_modality(texts, image_type, self.rules), _folder_entities(rel_path)


def _index_one(rel_path: str, ctx: _BatchContext) -> tuple[Any, ...]:
    """Index one NIfTI file (stat, sidecars, header, modality, triage) into a manifest row.

    The row is a plain tuple in schema order (:func:`manifests.schema.row_from_fields`):
    at 100k files, making a dataclass per file was a tenth of the pass.
    """
    batch = ctx.batch
    shown = display_path(rel_path)
    side = ctx.side_files(rel_path)
    meta, side_warnings = bids.merge_sidecars(batch.root, side[".json"])
    modality, entities = ctx.modality(rel_path, meta)
    warnings = [*batch.warnings, *side_warnings]
    if shown != rel_path:
        warnings.append("file name is not valid UTF-8")
    fields, problem = _stat_and_header(os.path.join(batch.root, rel_path))
    if (not ctx.is_bids and modality != Modality.DWI.value and side[".bval"] and side[".bvec"]
            and (fields.get("n_volumes") or 1) > 1):
        modality = Modality.DWI.value  # a 4D series with gradient files is diffusion, whatever its name
    fields.update(
        image_id=make_image_id(batch.dataset, rel_path),
        dataset=batch.dataset, source_kind=batch.kind, source_path=shown, modality=modality,
        subject=entities.get("subject"), session=entities.get("session"),
        run=entities.get("run"), acquisition=entities.get("acquisition"),
        suffix=entities.get("suffix"), warnings=tuple(warnings),
        bval_path=side[".bval"][-1] if side[".bval"] else None,
        bvec_path=side[".bvec"][-1] if side[".bvec"] else None,
        **(ctx.participant(entities.get("subject")) if ctx.is_bids else {}),
        **acquisition_fields(meta),
    )
    facts = SimpleNamespace(modality=modality, file_size_bytes=fields.get("file_size_bytes"),
                            **{k: fields.get(k) for k in ("ndim", "n_volumes", "fov_mm", "spacing_mm")})
    reasons, details = triage_reasons(facts, ctx.config)
    part = non_magnitude_part(entities, meta.get("ImageType"))
    if part is not None:
        reasons.append(ExclusionReason.MODALITY.value)
        details.append(f"{part} image, not magnitude")
    if problem:
        reasons.insert(0, ExclusionReason.UNREADABLE.value)
        details.insert(0, problem)
    fields.update(included=not reasons, exclusion_reasons=tuple(dict.fromkeys(reasons)),
                  exclusion_detail="; ".join(details) if details else None)
    return row_from_fields(fields)


def _rows(batch: IndexBatch, config: TriageConfig) -> list[tuple[Any, ...]]:
    ctx = _BatchContext(batch, config)
    return [_index_one(rel, ctx) for rel in batch.rel_paths]


def index_batch(batch: IndexBatch, config: TriageConfig) -> list[ImageRecord]:
    """Index every file of a batch, in order."""
    return [ImageRecord(*row) for row in _rows(batch, config)]


def index_batch_table(batch: IndexBatch, config: TriageConfig) -> pa.Table:
    """:func:`index_batch` as one Arrow table with the manifest schema."""
    return rows_to_table(_rows(batch, config))


__all__ = ["IndexBatch", "index_batch", "index_batch_table", "plan_batches"]
