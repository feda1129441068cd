"""What a processing stage is, and the unit of work it runs on.

A stage is a small object with a name, a version, the config section it
reads, the manifest columns and exclusion reasons it owns, and a ``run``
method that takes one :class:`WorkItem` and returns it updated (plus any new
derived items, e.g. DWI maps).  Stages do their maths in pure functions of
their own modules; ``run`` only glues those to I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from manifests.schema import ExclusionReason, ImageRecord, Modality, SourceKind, make_image_id

from curate.config import CurateConfig
from curate.io import ImageData, read_image, strip_nifti_suffix
from curate.nifti import clip_outliers


@dataclass(frozen=True, slots=True)
class StageContext:
    """Where a stage reads from and writes to, and the settings."""

    source_root: Path
    output_root: Path
    config: CurateConfig
    #: Threads each native library of the worker may use (:mod:`curate.threads`); 0 leaves them be.
    threads: int = 0
    #: The build's run id; when set, workers write per-stage timings (:mod:`curate.timings`).
    run_id: str = ""


@dataclass(slots=True)
class WorkItem:
    """One image on its way through the stages.

    Parameters
    ----------
    record
        The manifest row so far.
    source_file
        Absolute path of the file to load voxel data from (``None`` for DICOM
        series before conversion).
    dicom_files
        For DICOM series, the series' files relative to the dataset root.
    dataset_root
        Root of the dataset the record's ``source_path`` is relative to.
    image
        Voxel data, loaded on first use and dropped when the item is done.
    extras
        In-memory products one stage hands to later ones in the same task
        (e.g. ``"anatomy_mask"``).  Absent when the producing stage was
        skipped on a resumed build: read the file from the record then.
    """

    record: ImageRecord
    source_file: str | None
    dataset_root: str = ""
    dicom_files: tuple[str, ...] = ()
    image: ImageData | None = field(default=None, repr=False)
    extras: dict[str, Any] = field(default_factory=dict, repr=False)


class Stage(Protocol):
    """The interface every ``curate build`` stage implements."""

    name: ClassVar[str]
    version: ClassVar[str]
    #: Stages whose outputs this one reads (their fingerprints feed into ours).
    requires: ClassVar[tuple[str, ...]]
    #: Manifest columns this stage writes (restored from a previous run when unchanged).
    columns: ClassVar[tuple[str, ...]]
    #: Exclusion reasons this stage may add.
    reasons: ClassVar[tuple[str, ...]]

    def settings(self, config: CurateConfig) -> Any:
        """The config section (or any JSON-able value) that changes this stage's output."""

    def applies(self, record: ImageRecord) -> bool:
        """Whether this stage runs on ``record``."""

    def run(self, item: WorkItem, ctx: StageContext) -> list[WorkItem]:
        """Process one item; return it (updated) first, then any new derived items."""


def is_dwi_source(record: ImageRecord) -> bool:
    """True for a DWI series excluded only for being 4D diffusion (the source of maps).

    A derived DICOM series of a diffusion scan (the scanner's ADC, FA or trace
    map: ImageType DERIVED) is excluded for its modality too, but is no source.
    """
    derived = bool(record.image_type) and record.image_type[0].upper() in ("DERIVED", "SECONDARY")
    return record.modality == Modality.DWI.value and not derived and record.exclusion_reasons == (
        ExclusionReason.MODALITY.value,
    )


def converted_rel_path(record: ImageRecord, dicom_files: tuple[str, ...]) -> str:
    """Where a DICOM series' NIfTI is written, relative to OUTPUT.

    The name holds a stamp of the series' files (names, total size, newest
    mtime), so a series that gained or lost files since the last build is
    converted again instead of reusing the old NIfTI.

    Examples
    --------
    >>> r = ImageRecord(image_id="abc", dataset="ds", source_kind="dicom", source_path="s",
    ...                 modality="T1w", file_size_bytes=10, source_mtime_ns=5)
    >>> converted_rel_path(r, ("s/1.dcm",)) != converted_rel_path(r, ("s/1.dcm", "s/2.dcm"))
    True
    """
    stamp = make_image_id(str(record.file_size_bytes), str(record.source_mtime_ns), *dicom_files)[:8]
    return f"converted/{record.dataset}/{record.image_id}-{stamp}.nii.gz"


def _drop_stale_conversions(folder: Path, image_id: str, keep: str) -> None:
    """Remove earlier conversions of ``image_id`` (NIfTI and sidecars) other than ``keep``."""
    for old in folder.glob(f"{image_id}*"):
        if old.is_file() and not old.name.startswith(keep + "."):
            old.unlink(missing_ok=True)


def _single_volume_slices(record: ImageRecord) -> int | None:
    """Slices of a series the headers describe as one regular 3D volume (``None`` otherwise).

    A series being converted passed the index's geometry checks (no missing
    slices, mixed orientations or matrix sizes); a multi-volume series is left
    to dcm2niix alone (its gradient tables come from dcm2niix).
    """
    if record.ndim == 3 and (record.n_volumes or 1) == 1 and record.shape and len(record.shape) == 3:
        return int(record.shape[2])
    return None


def _existing(target: Path) -> Path:
    """``target`` (``.nii.gz``), or the plain ``.nii`` dcm2niix wrote instead when only that exists."""
    plain = target.with_name(strip_nifti_suffix(target.name) + ".nii")
    return plain if not target.exists() and plain.exists() else target


def load_image(item: WorkItem, ctx: StageContext) -> ImageData:
    """The item's voxel data, converting a DICOM series with dcm2niix on first use.

    Extreme outlier voxels are clipped here (``[read] outlier_spans``), so that
    every stage sees the same data whether or not the read stage ran in this task.

    Raises
    ------
    curate.io.UnreadableImage
        If the data cannot be read or converted.
    """
    if item.image is not None:
        return item.image
    if item.source_file is None and item.record.source_kind == SourceKind.DICOM.value:
        from curate.dicom import convert_series

        rel = item.record.converted_path or converted_rel_path(item.record, item.dicom_files)
        target = _existing(ctx.output_root / rel)
        if not target.exists():
            read = ctx.config.read
            name = strip_nifti_suffix(target.name)
            conversion = convert_series(Path(item.dataset_root), list(item.dicom_files), target.parent, name,
                                        read.dcm2niix_timeout_s, read.max_series_bytes, read.max_image_bytes,
                                        _single_volume_slices(item.record))
            if conversion.note:
                item.record = item.record.with_warning(conversion.note)
            _drop_stale_conversions(target.parent, item.record.image_id, name)
            target = conversion.path
        item.record = item.record.replace(converted_path=str(target.relative_to(ctx.output_root)))
        item.source_file = str(target)
    if item.source_file is None:
        from curate.io import UnreadableImage

        raise UnreadableImage("no file to read")
    image = read_image(Path(item.source_file), ctx.config.read.max_image_bytes)
    data, n_clipped = clip_outliers(image.data, ctx.config.read.outlier_spans)
    if n_clipped:
        image.data = data
        image.notes = (*image.notes, f"{n_clipped} outlier voxels (beyond "
                       f"{ctx.config.read.outlier_spans:g}x the 0.1-99.9 percentile range) clipped")
    item.image = image
    return item.image
