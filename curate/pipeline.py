"""Wire discovery, indexing and stages into Dask.  No image logic lives here.

* ``index`` (:mod:`curate.indexing`, re-exported here): walk on the driver,
  then header reads in batches of a few hundred files per Dask task (no
  per-file task overhead).  Small collections run in-process; larger ones on
  Dask's multiprocessing scheduler, or on the dask.distributed cluster given
  with ``scheduler``.
* ``build``: the index, then every stage on batches of images as futures on a
  dask.distributed cluster, results streamed into manifest parts as they
  complete with a bounded number of tasks in flight.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask

from manifests import io as mio
from manifests.building import building
from manifests.schema import ImageRecord

from curate import timings
from curate.config import CurateConfig
from curate.discover import SourceError
from curate.errors import OutOfSpace, is_out_of_space, out_of_space
from curate.execution import Progress, RunOptions
from curate.finalize import finalize
from curate.indexing import IndexResult, index, prepare_output, record_source, run_index, write_manifest
from curate.output import OutputLock, check_paths, keep_earlier_rows, sweep_temporaries
from curate.resume import children_of, resume
from curate.stages import default_stages
from curate.stages.base import Stage, StageContext, WorkItem
from curate.stages.runner import process_batch, producer_of, reset, restore, stage_fingerprints
from curate.threads import worker_share

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- build


def _plan(result: IndexResult, previous: dict[str, ImageRecord], stages: Sequence[Stage],
          fps: dict[str, str], ctx: StageContext) -> tuple[list[WorkItem], list[int], list[ImageRecord]]:
    """Work items (with the stage index to start at) and rows that need no work at all."""
    files = result.source_files()
    children = children_of(previous)
    items: list[WorkItem] = []
    starts: list[int] = []
    done: list[ImageRecord] = []
    for fresh in result.records:
        old = previous.get(fresh.image_id)
        record, finished = resume(fresh, old, stages, fps)
        if finished and old is not None:
            done.append(old)
            done.extend(children.get(fresh.image_id, []))
            continue
        root, path, dicom_files = files.get(fresh.image_id, ("", None, ()))
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


def _threads_per_task(options: RunOptions, config: CurateConfig, n_batches: int) -> int:
    """Each worker's share of the cores (:mod:`curate.threads`): one process in-process, else the pool."""
    setting = config.execution.threads_per_worker
    if options.scheduler:
        return setting or 1  # the cluster's layout is unknown here: one thread per task
    in_process = options.n_workers <= 1 or n_batches <= 1
    return worker_share(1 if in_process else min(options.n_workers, n_batches), setting)


@dataclass(slots=True)
class BuildResult:
    """What a build produced."""

    records: list[ImageRecord]
    processed: int
    reused: int
    warnings: list[str]


def build(source: Path, output: Path, config: CurateConfig, options: RunOptions,
          progress: Progress | None = None, stages: Sequence[Stage] | None = None) -> BuildResult:
    """``curate build``: index plus every stage, resuming from a previous build in OUTPUT.

    SOURCE and OUTPUT are checked before anything is written, SOURCE is read
    before OUTPUT is touched, and OUTPUT is locked for the whole build
    (:mod:`curate.output`).  A full disk stops the build with
    :class:`~curate.errors.OutOfSpace`; its temporary files are removed and a
    rerun resumes from the rows already written.  OUTPUT's build lock
    (:mod:`manifests.building`) is held too, so ``pretrain --follow`` knows the
    build is still running.
    """
    output = output.absolute()  # never a relative path that starts with "-" (dcm2niix reads options)
    check_paths(source, output)
    with OutputLock(output) as lock:
        result = run_index(source, config, options)
        keep_earlier_rows(output, len(result), source)
        prepare_output(output, config)
        lock.acquire()
        sweep_temporaries(output)  # left by a killed run
        try:
            with building(output):
                return _build(source, output, config, options, result, progress, stages)
        except BaseException as exc:
            sweep_temporaries(output)
            if is_out_of_space(exc) and not isinstance(exc, OutOfSpace):
                raise out_of_space(getattr(exc, "filename", None) or output) from exc
            raise


def _build(source: Path, output: Path, config: CurateConfig, options: RunOptions, result: IndexResult,
           progress: Progress | None, stages: Sequence[Stage] | None) -> BuildResult:
    """The build once SOURCE is indexed and OUTPUT prepared and locked."""
    stages = list(stages if stages is not None else default_stages(config))
    fps = stage_fingerprints(stages, config)
    run_id = mio.new_run_id()
    ctx = StageContext(source_root=source, output_root=output, config=config, run_id=run_id)
    record_source(output, source, result.kind)
    manifest_dir = output / "manifests"
    previous = {r.image_id: r for r in mio.read_records(manifest_dir)}
    items, starts, done = _plan(result, previous, stages, fps, ctx)
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
    ctx = dataclasses.replace(ctx, threads=_threads_per_task(options, config, len(batches)))
    _run_tasks(batches, stages, ctx, options, sink)
    timings.compact(output, run_id)
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


__all__ = ["BuildResult", "IndexResult", "Progress", "RunOptions", "SourceError", "build", "index", "prepare_output",
           "run_index", "write_manifest"]
