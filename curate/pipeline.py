"""Wire discovery, indexing and stages into Dask.  No image logic lives here.

* ``index``: walk on the driver, then header reads in batches of a few hundred
  files per Dask task (no per-file task overhead).  Small collections run
  in-process; larger ones on Dask's multiprocessing scheduler, or on the
  dask.distributed cluster given with ``scheduler``.
* ``build``: the index, then every stage on batches of images as futures on a
  dask.distributed cluster, results streamed into manifest parts as they
  complete with a bounded number of tasks in flight.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask

from manifests import io as mio
from manifests.schema import ImageRecord, SourceKind

from curate import dicom
from curate.config import CurateConfig, dump_config
from curate.finalize import as_stages_left_it, finalize
from curate.discover import SourceError, bids_roots, detect_kind, walk_bids, walk_plain
from curate.index import NiftiTask, index_nifti_batch, plan_nifti_tasks
from curate.io import write_text
from curate.stages import default_stages
from curate.stages.base import Stage, StageContext, WorkItem
from curate.stages.runner import process_batch, producer_of, reset, restore, stage_fingerprints

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class RunOptions:
    """How to run: where, how wide, which participants."""

    workers: int = 0
    scheduler: str | None = None
    participant_labels: tuple[str, ...] = ()
    source_kind: SourceKind | None = None

    @property
    def n_workers(self) -> int:
        return self.workers if self.workers > 0 else (os.cpu_count() or 1)


@dataclass(slots=True)
class IndexResult:
    """Records of one index pass, plus what build needs to load each image."""

    kind: SourceKind
    records: list[ImageRecord]
    files: dict[str, tuple[str, str, tuple[str, ...]]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _chunks(items: Sequence[Any], size: int) -> list[list[Any]]:
    return [list(items[i: i + size]) for i in range(0, len(items), size)]


def _map_batches(func: Callable[..., list[Any]], batches: list[list[Any]], extra: tuple[Any, ...],
                 options: RunOptions, small: bool) -> list[Any]:
    """Apply ``func(batch, *extra)`` to every batch with Dask; flatten the results."""
    if not batches:
        return []
    # One delayed call per batch with an explicit key: dask then does not hash
    # (tokenize) the batches' contents, which cost seconds on 100k files.
    tasks = [dask.delayed(func, pure=False)(dask.delayed(batch, traverse=False), *extra,
                                            dask_key_name=f"{func.__name__}-{i}")
             for i, batch in enumerate(batches)]
    if options.scheduler:
        from distributed import Client

        with Client(options.scheduler) as client:
            results = client.gather(client.compute(tasks))
    elif small or options.n_workers == 1 or len(batches) == 1:
        results = dask.compute(*tasks, scheduler="sync")
    else:
        results = dask.compute(*tasks, scheduler="processes", num_workers=options.n_workers)
    return [row for batch in results for row in batch]


def _labels(options: RunOptions) -> frozenset[str] | None:
    if not options.participant_labels:
        return None
    return frozenset(label.removeprefix("sub-") for label in options.participant_labels)


def run_index(source: Path, config: CurateConfig, options: RunOptions) -> IndexResult:
    """Discover and index every image under ``source`` (headers only)."""
    if not source.is_dir():
        raise SourceError(f"source {source} is not a readable directory")
    kind = options.source_kind or detect_kind(source)
    batch = config.execution.index_batch_size
    if kind is SourceKind.DICOM:
        return _index_dicom(source, config, options)
    founds = [walk_bids(r) for r in bids_roots(source)] if kind is SourceKind.BIDS \
        else [walk_plain(source, keep_all=False)]
    tasks: list[NiftiTask] = []
    warnings: list[str] = []
    for found in founds:
        tasks.extend(plan_nifti_tasks(found, kind, _labels(options)))
        warnings.extend(f"{found.name}: {w}" for w in found.walk_warnings)
    small = len(tasks) <= config.execution.small_collection
    records = _map_batches(index_nifti_batch, _chunks(tasks, batch), (config.triage,), options, small)
    files = {r.image_id: (t.root, os.path.join(t.root, t.rel_path), ()) for r, t in zip(records, tasks)}
    return IndexResult(kind=kind, records=records, files=files, warnings=warnings)


def _index_dicom(source: Path, config: CurateConfig, options: RunOptions) -> IndexResult:
    found = walk_plain(source, keep_all=True)
    paths = found.other_files + found.images
    small = len(paths) <= config.execution.small_collection
    headers = _map_batches(dicom.read_headers_batch, _chunks(paths, config.execution.index_batch_size),
                           (str(source),), options, small)
    labels = _labels(options)
    if labels is not None:
        headers = [h for h in headers if h.get("PatientID") in labels]
    records, series_files = dicom.series_records(source.name, headers, config.triage)
    files = {image_id: (str(source), "", tuple(rels)) for image_id, rels in series_files.items()}
    return IndexResult(kind=SourceKind.DICOM, records=records, files=files,
                       warnings=list(found.walk_warnings))


def write_manifest(output: Path, records: Sequence[ImageRecord], run_id: str,
                   part_rows: int = 5000) -> None:
    """Write records as manifest parts and drop parts of older runs."""
    manifest_dir = output / "manifests"
    stamp = mio.now_iso()
    for seq, chunk in enumerate(_chunks(records, part_rows)):
        mio.write_part(manifest_dir, chunk, run_id, seq, default_processed_at=stamp)
    mio.compact(manifest_dir, run_id)


def prepare_output(output: Path, config: CurateConfig) -> None:
    """Create OUTPUT and write the effective config into it."""
    try:
        output.mkdir(parents=True, exist_ok=True)
        write_text(output / "curate_config.toml", dump_config(config))
    except OSError as exc:
        raise SourceError(f"output {output} is not writable: {exc.strerror}") from exc


def index(source: Path, output: Path, config: CurateConfig, options: RunOptions) -> list[ImageRecord]:
    """``curate index``: header-only manifest of every image."""
    prepare_output(output, config)
    result = run_index(source, config, options)
    write_manifest(output, result.records, mio.new_run_id())
    return result.records


# --------------------------------------------------------------------------- build


def _plan(result: IndexResult, previous: dict[str, ImageRecord], stages: Sequence[Stage],
          fps: dict[str, str], ctx: StageContext) -> tuple[list[WorkItem], list[int], list[ImageRecord]]:
    """Work items (with the stage index to start at) and rows that need no work at all."""
    children: dict[str, list[ImageRecord]] = {}
    for row in previous.values():
        if row.derived_from:
            children.setdefault(row.derived_from, []).append(row)
    items: list[WorkItem] = []
    starts: list[int] = []
    done: list[ImageRecord] = []
    for fresh in result.records:
        old = previous.get(fresh.image_id)
        unchanged = old is not None and (old.file_size_bytes, old.source_mtime_ns) == (
            fresh.file_size_bytes, fresh.source_mtime_ns)
        record = restore(fresh, old if unchanged else None, stages, fps)
        if unchanged and old is not None and as_stages_left_it(record) == as_stages_left_it(old):
            done.append(old)
            done.extend(children.get(fresh.image_id, []))
            continue
        root, path, dicom_files = result.files.get(fresh.image_id, ("", None, ()))
        if record.converted_path and (ctx.output_root / record.converted_path).exists():
            path = str(ctx.output_root / record.converted_path)
        items.append(WorkItem(record, path or None, root, dicom_files))
        starts.append(0)
        kept_children = _requeue_children(record, children.get(fresh.image_id, []), stages, fps, ctx)
        for child, start in kept_children:
            items.append(child)
            starts.append(start)
    return items, starts, done


def _requeue_children(parent: ImageRecord, kids: list[ImageRecord], stages: Sequence[Stage],
                      fps: dict[str, str], ctx: StageContext) -> list[tuple[WorkItem, int]]:
    """Derived rows whose producing stage is unchanged go on from the stage after it.

    When the producing stage must run again it makes the rows anew, so the old
    ones are not re-queued.
    """
    names = [stage.name for stage in stages]
    out: list[tuple[WorkItem, int]] = []
    for kid in kids:
        producer = producer_of(kid)
        if producer not in names or kid.derived_path is None:
            continue
        tag = f"{producer}:{fps[producer]}"
        if tag not in parent.stage_fingerprints or not (ctx.output_root / kid.derived_path).exists():
            continue
        later = stages[names.index(producer) + 1:]
        base = restore(reset(kid, later), kid, later, fps)
        out.append((WorkItem(base, str(ctx.output_root / kid.derived_path)), names.index(producer) + 1))
    return out


@contextmanager
def _client(options: RunOptions, n_tasks: int) -> Iterator[Any]:
    """A dask.distributed client: the given scheduler, a LocalCluster, or none (in-process)."""
    from distributed import Client, LocalCluster

    if options.scheduler:
        with Client(options.scheduler) as client:
            yield client
    elif options.n_workers <= 1 or n_tasks <= 1:
        yield None
    else:
        with LocalCluster(n_workers=min(options.n_workers, n_tasks), threads_per_worker=1,
                          processes=True, dashboard_address=None) as cluster, \
                Client(cluster) as client:
            yield client


def _run_tasks(batches: list[tuple[list[WorkItem], list[int]]], stages: Sequence[Stage],
               ctx: StageContext, options: RunOptions,
               sink: Callable[[list[ImageRecord]], None]) -> None:
    """Run every batch, handing each result to ``sink`` as soon as it completes."""
    with _client(options, len(batches)) as client:
        if client is None:
            for items, starts in batches:
                sink(process_batch(items, stages, ctx, starts))
            return
        from distributed import as_completed

        window = 2 * max(1, len(client.scheduler_info().get("workers", {})) or options.n_workers)
        pending = iter(batches)
        futures = as_completed()
        for items, starts in [b for _, b in zip(range(window), pending)]:
            futures.add(client.submit(process_batch, items, stages, ctx, starts, pure=False))
        for future in futures:
            sink(future.result())
            future.release()
            nxt = next(pending, None)
            if nxt is not None:
                futures.add(client.submit(process_batch, nxt[0], stages, ctx, nxt[1], pure=False))


@dataclass(slots=True)
class BuildResult:
    """What a build produced."""

    records: list[ImageRecord]
    processed: int
    reused: int
    warnings: list[str]


def build(source: Path, output: Path, config: CurateConfig, options: RunOptions,
          progress: Progress | None = None, stages: Sequence[Stage] | None = None) -> BuildResult:
    """``curate build``: index plus every stage, resuming from a previous build in OUTPUT."""
    prepare_output(output, config)
    stages = list(stages if stages is not None else default_stages(config))
    fps = stage_fingerprints(stages, config)
    ctx = StageContext(source_root=source, output_root=output, config=config)
    result = run_index(source, config, options)
    manifest_dir = output / "manifests"
    previous = {r.image_id: r for r in mio.read_records(manifest_dir)}
    items, starts, done = _plan(result, previous, stages, fps, ctx)
    run_id = mio.new_run_id()
    seq = 0
    rows: list[ImageRecord] = []

    def sink(batch_rows: list[ImageRecord]) -> None:
        nonlocal seq
        mio.write_part(manifest_dir, batch_rows, run_id, seq)
        seq += 1
        rows.extend(batch_rows)
        if progress:
            progress(len(rows), len(items))

    size = max(1, config.execution.build_batch_size)
    batches = [(items[i: i + size], starts[i: i + size]) for i in range(0, len(items), size)]
    if progress:
        progress(0, len(items))
    _run_tasks(batches, stages, ctx, options, sink)
    final = finalize(rows + done, config, output)
    # Rows were streamed into parts as they finished; the final rows replace them.
    write_manifest(output, final, mio.new_run_id())
    return BuildResult(records=final, processed=len(items), reused=len(done),
                       warnings=result.warnings)


def _configure_dask() -> None:
    # Workers may start processes of their own (the DWI stage registers volumes in
    # parallel), which daemonic processes cannot.  distributed reads its log level
    # when it is first imported (lazily, below) and in each worker process: keep
    # its INFO chatter about starting and closing clusters out of the terminal.
    dask.config.set({"distributed.worker.daemon": False, "logging.distributed": "warning"})
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")


_configure_dask()
