"""How work runs: the run options and one batched Dask map.

Kept apart from :mod:`curate.pipeline` so that ``curate index`` imports Dask's
core and nothing of dask.distributed, pandas or the processing stages.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import dask
from dask.callbacks import Callback

from manifests.schema import SourceKind

#: ``progress(done, total)`` callbacks, counted in batches or images.
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

    def labels(self) -> frozenset[str] | None:
        """Participant labels without their ``sub-`` prefix, or None for everyone."""
        if not self.participant_labels:
            return None
        return frozenset(label.removeprefix("sub-") for label in self.participant_labels)


def _start_method() -> str:
    """``fork`` where it is safe (POSIX, no thread started yet), else Dask's default ``spawn``.

    Spawned workers re-import the whole package (about a second each), which
    would be most of an index pass over a small collection; forked ones start
    in milliseconds with everything already imported.
    """
    if "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1:
        return "fork"
    return "spawn"


class _Counter(Callback):
    """Calls ``progress(done, total)`` as Dask finishes each batch."""

    def __init__(self, progress: Progress, keys: set[str]) -> None:
        super().__init__()
        self.progress, self.keys, self.done = progress, keys, 0

    def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        if key in self.keys:  # not the tasks that merely hold a batch's data
            self.done += 1
            self.progress(self.done, len(self.keys))


def map_batches(func: Callable[..., Any], batches: Sequence[Any], extra: tuple[Any, ...],
                options: RunOptions, small: bool, progress: Progress | None = None) -> list[Any]:
    """``[func(batch, *extra) for batch in batches]`` on Dask, in order.

    One task per batch (never per file); in-process for small collections or
    one worker, in local processes otherwise, or on ``options.scheduler``.
    """
    if not batches:
        return []
    # One delayed call per batch with an explicit key: Dask then does not hash
    # (tokenize) the batches' contents, which cost seconds on 100k files.
    tasks = [dask.delayed(func, pure=False)(dask.delayed(batch, traverse=False), *extra,
                                            dask_key_name=f"{func.__name__}-{i}")
             for i, batch in enumerate(batches)]
    if options.scheduler:
        return _on_cluster(tasks, options.scheduler, progress)
    counter = _Counter(progress, {t.key for t in tasks}) if progress else Callback()
    with counter:
        if small or options.n_workers == 1 or len(batches) == 1:
            return list(dask.compute(*tasks, scheduler="sync"))
        with dask.config.set({"multiprocessing.context": _start_method()}):
            return list(dask.compute(*tasks, scheduler="processes",
                                     num_workers=min(options.n_workers, len(tasks))))


def _on_cluster(tasks: list[Any], address: str, progress: Progress | None) -> list[Any]:
    from distributed import Client, as_completed

    with Client(address) as client:
        futures = client.compute(tasks)
        for done, _ in enumerate(as_completed(futures), start=1):
            if progress:
                progress(done, len(futures))
        return client.gather(futures)


__all__ = ["Progress", "RunOptions", "map_batches"]
