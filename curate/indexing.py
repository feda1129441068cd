"""``curate index``: discover every image, index its header in batches on Dask, write the manifest.

This is also the first step of ``curate build`` (:mod:`curate.pipeline`).
It stays light to import (no pandas, no dask.distributed, no stages) because
on a small collection importing is a large share of the whole run.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from manifests import io as mio
from manifests.schema import (
    ARROW_SCHEMA,
    ImageRecord,
    SourceKind,
    make_image_id,
    records_to_table,
    table_to_records,
)

from curate import clinical
from curate.config import CurateConfig, dump_config
from curate.discover import DatasetFiles, SourceError, holds_bids, raw_bids_roots, walk_bids, walk_plain
from curate.execution import Progress, RunOptions, map_batches
from curate.index import IndexBatch, index_batch_table, plan_batches
from curate.errors import is_out_of_space, out_of_space
from curate.output import OutputLock, check_paths, keep_earlier_rows, sweep_temporaries
from curate.atomic import write_json, write_text

#: ``{image_id: (source root, image path, DICOM files relative to the root)}``.
SourceFiles = dict[str, tuple[str, str, tuple[str, ...]]]


@dataclass(slots=True)
class IndexResult:
    """One index pass: the manifest rows as a table, and where each image's files are."""

    kind: SourceKind
    table: pa.Table
    batches: list[IndexBatch] = field(default_factory=list)
    dicom_files: SourceFiles = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    _records: list[ImageRecord] | None = None

    def __len__(self) -> int:
        return self.table.num_rows

    @property
    def records(self) -> list[ImageRecord]:
        """The rows as records (converted once, on first use)."""
        if self._records is None:
            self._records = table_to_records(self.table)
        return self._records

    def source_files(self) -> SourceFiles:
        """Where to load each indexed image from."""
        files = dict(self.dicom_files)
        for batch in self.batches:
            for rel in batch.rel_paths:
                files[make_image_id(batch.dataset, rel)] = (batch.root, os.path.join(batch.root, rel), ())
        return files


def run_index(source: Path, config: CurateConfig, options: RunOptions,
              progress: Progress | None = None) -> IndexResult:
    """Discover and index every image under ``source`` (headers only)."""
    if not source.is_dir():
        raise SourceError(f"source {source} is not a readable directory")
    if options.source_kind is SourceKind.DICOM:
        return _index_dicom(source, walk_plain(source, keep_all=True), config, options, progress)
    if options.source_kind is SourceKind.BIDS or (options.source_kind is None and holds_bids(source)):
        roots, warnings = raw_bids_roots(source)
        return _index_nifti(SourceKind.BIDS, [walk_bids(r) for r in roots], warnings, config, options,
                            progress)
    return _index_clinical(source, config, options, progress)


def _index_nifti(kind: SourceKind, founds: list[DatasetFiles], warnings: list[str], config: CurateConfig,
                 options: RunOptions, progress: Progress | None) -> IndexResult:
    """Index the NIfTI files of walked BIDS datasets or clinical folders."""
    batches: list[IndexBatch] = []
    size = max(1, config.execution.index_batch_size)
    for found in founds:
        batches.extend(plan_batches(found, kind, options.labels(), size))
        warnings.extend(f"{found.name}: {w}" for w in found.walk_warnings)
    small = sum(len(b.rel_paths) for b in batches) <= config.execution.small_collection
    if not small:
        # pyarrow loads pandas on its first conversion of Python objects (~0.3 s);
        # do it once here so forked workers inherit it instead of each paying.
        pa.array(["warm-up"], pa.string())
    tables = map_batches(index_batch_table, batches, (config.triage,), options, small, progress)
    table = pa.concat_tables(tables) if tables else ARROW_SCHEMA.empty_table()
    return IndexResult(kind=kind, table=table, batches=batches, warnings=warnings)


def _index_clinical(source: Path, config: CurateConfig, options: RunOptions,
                    progress: Progress | None) -> IndexResult:
    """A hospital export: NIfTI files and DICOM series, possibly side by side in one tree.

    NIfTI files are indexed from their headers; every other file is offered to
    the DICOM reader, which keeps what is DICOM.  ``--source-kind nifti`` skips
    the DICOM pass, ``--source-kind dicom`` skips the NIfTI one.
    """
    found = walk_plain(source, keep_all=options.source_kind is not SourceKind.NIFTI)
    nifti = _index_nifti(SourceKind.NIFTI, [found], [], config, options, progress)
    if not found.other_files:
        return nifti
    dicom = _index_dicom(source, found, config, options, progress, include_images=False,
                         walk_warnings=False)
    return IndexResult(kind=SourceKind.NIFTI if found.images else SourceKind.DICOM,
                       table=pa.concat_tables([nifti.table, dicom.table]), batches=nifti.batches,
                       dicom_files=dicom.dicom_files, warnings=nifti.warnings + dicom.warnings)


def _index_dicom(source: Path, found: DatasetFiles, config: CurateConfig, options: RunOptions,
                 progress: Progress | None, include_images: bool = True,
                 walk_warnings: bool = True) -> IndexResult:
    """Index the DICOM series among ``found``'s files (all files when ``include_images``)."""
    from curate import dicom  # pydicom is imported only for DICOM sources

    paths = [rel for rel in found.other_files if not clinical.never_an_image(rel)]
    paths += found.images if include_images else []
    size = max(1, config.execution.index_batch_size)
    batches = [paths[i: i + size] for i in range(0, len(paths), size)]
    small = len(paths) <= config.execution.small_collection
    headers = [h for part in map_batches(dicom.read_headers_batch, batches, (str(source),), options,
                                         small, progress) for h in part]
    labels = options.labels()
    if labels is not None:
        headers = [h for h in headers if h.get("PatientID") in labels]
    records, series_files = dicom.series_records(source.name, headers, config.triage)
    files = {image_id: (str(source), "", tuple(rels)) for image_id, rels in series_files.items()}
    read = {h.rel_path for h in headers}
    unread, rest = clinical.other_format_rows(source.name, source, [p for p in paths if p not in read])
    records += unread
    warnings = (list(found.walk_warnings) if walk_warnings else []) + clinical.skipped_files_warning(rest)
    return IndexResult(kind=SourceKind.DICOM, table=records_to_table(records), dicom_files=files,
                       warnings=warnings, _records=records)


def write_manifest(output: Path, rows: pa.Table | list[ImageRecord], run_id: str,
                   part_rows: int = 5000) -> None:
    """Write rows as manifest parts and drop parts of older runs."""
    table = rows if isinstance(rows, pa.Table) else records_to_table(list(rows))
    manifest_dir = output / "manifests"
    stamp = mio.now_iso()
    for seq, start in enumerate(range(0, max(table.num_rows, 1), part_rows)):
        mio.write_table_part(manifest_dir, table.slice(start, part_rows), run_id, seq,
                             default_processed_at=stamp)
    mio.compact(manifest_dir, run_id)


def prepare_output(output: Path, config: CurateConfig) -> None:
    """Create OUTPUT and write the effective config into it."""
    try:
        output.mkdir(parents=True, exist_ok=True)
        write_text(output / "curate_config.toml", dump_config(config))
    except OSError as exc:
        raise SourceError(f"output {output} is not writable: {exc.strerror}") from exc


SOURCE_RECORD = "curate_source.json"


def record_source(output: Path, source: Path, kind: SourceKind) -> None:
    """Note in OUTPUT which SOURCE it was built from (``curate report`` finds images there)."""
    write_json(output / SOURCE_RECORD, {"source": str(source.resolve()), "source_kind": kind.value})


def recorded_source(output: Path) -> Path | None:
    """The SOURCE recorded in ``output`` by the last index or build, if it still exists."""
    try:
        data = json.loads((output / SOURCE_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    source = Path(str(data.get("source", ""))) if isinstance(data, dict) else None
    return source if source is not None and source.is_dir() else None


def index(source: Path, output: Path, config: CurateConfig, options: RunOptions,
          progress: Progress | None = None) -> IndexResult:
    """``curate index``: header-only manifest of every image.

    SOURCE and OUTPUT are checked first (:func:`curate.output.check_paths`)
    and nothing is written to OUTPUT until SOURCE has been read; OUTPUT is
    locked against a concurrent index or build (:class:`curate.output.OutputLock`).

    On the OUTPUT of a build, the stage results of unchanged images are kept
    (:func:`curate.resume.kept_rows`), so the next build has only new and
    changed images to process.
    """
    check_paths(source, output)
    with OutputLock(output) as lock:
        result = run_index(source, config, options, progress)  # nothing is written before SOURCE is read
        keep_earlier_rows(output, len(result), source)
        prepare_output(output, config)
        lock.acquire()
        try:
            write_manifest(output, _keeping_stage_results(output, result, config), mio.new_run_id())
            record_source(output, source, result.kind)
        except OSError as exc:
            sweep_temporaries(output / "manifests")
            if is_out_of_space(exc):
                raise out_of_space(output / "manifests") from exc
            raise
    return result


def _keeping_stage_results(output: Path, result: IndexResult,
                           config: CurateConfig) -> pa.Table | list[ImageRecord]:
    """The index rows, with the still-valid stage results of a build already in ``output``."""
    manifest_dir = output / "manifests"
    if not mio.list_parts(manifest_dir):
        return result.table
    previous = {r.image_id: r for r in mio.read_records(manifest_dir)}
    if not any(r.stage_fingerprints for r in previous.values()):
        return result.table
    # Only here, on a built OUTPUT, does the index need the stages (their fingerprints).
    from curate.resume import kept_rows
    from curate.stages import default_stages
    from curate.stages.runner import stage_fingerprints

    stages = default_stages(config)
    return kept_rows(result.records, previous, stages, stage_fingerprints(stages, config))


__all__ = ["IndexResult", "index", "prepare_output", "record_source", "recorded_source", "run_index",
           "write_manifest"]
