"""Per-stage timings of a build: recorded by the workers, kept beside the manifests.

Each worker times every stage it runs on every image (wall seconds and CPU
seconds of its process) and writes its batch's rows to
``OUTPUT/timings/<run id>/<part>.parquet`` itself, so nothing but manifest rows
travels back to the driver.  At the end of the build the parts of the run are
compacted into ``OUTPUT/timings/<run id>.parquet``; ``curate status`` and the
report read the newest run.  A table beside the manifests rather than manifest
columns: a rerun that skips a stage has no new time for it, and the manifest
stays one row per image with what the image *is*, not how long it took.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from curate.atomic import replacing

log = logging.getLogger(__name__)

#: Folder under OUTPUT that holds the timing tables.
TIMINGS_DIR = "timings"

TIMINGS_SCHEMA = pa.schema([
    pa.field("run_id", pa.string()),
    pa.field("image_id", pa.string()),
    pa.field("source_path", pa.string()),
    pa.field("modality", pa.string()),
    pa.field("stage", pa.string()),
    pa.field("wall_s", pa.float64()),
    pa.field("cpu_s", pa.float64()),
])


@dataclass(slots=True)
class StageClock:
    """Collects ``(image, stage, wall, cpu)`` rows while a batch runs."""

    run_id: str
    rows: list[tuple[str, str, str, str, str, float, float]] = field(default_factory=list)

    @contextmanager
    def time(self, image_id: str, source_path: str, modality: str, stage: str) -> Iterator[None]:
        """Time the ``with`` body as one stage on one image (kept even when the stage fails)."""
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.rows.append((self.run_id, image_id, source_path, modality, stage,
                              time.perf_counter() - wall, time.process_time() - cpu))

    def table(self) -> pa.Table:
        columns = list(zip(*self.rows)) if self.rows else [[] for _ in TIMINGS_SCHEMA]
        return pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(columns, TIMINGS_SCHEMA)],
                                    schema=TIMINGS_SCHEMA)


def _write_atomic(target: Path, table: pa.Table) -> None:
    with replacing(target) as tmp:
        pq.write_table(table, tmp)


def write_part(output: Path, clock: StageClock) -> None:
    """Write a batch's timings atomically; a failure costs the timings, never the rows."""
    if not clock.rows:
        return
    target = output / TIMINGS_DIR / clock.run_id / f"{uuid.uuid4().hex}.parquet"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(target, clock.table())
    except OSError as exc:
        log.warning("timings of %d stage runs not written: %s", len(clock.rows), exc)


def compact(output: Path, run_id: str) -> Path | None:
    """Merge a run's parts into ``timings/<run id>.parquet``; None when the run timed nothing."""
    folder = output / TIMINGS_DIR / run_id
    parts = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    if not parts:
        return None
    table = pa.concat_tables([pq.read_table(p, schema=TIMINGS_SCHEMA) for p in parts])
    target = output / TIMINGS_DIR / f"{run_id}.parquet"
    _write_atomic(target, table)
    shutil.rmtree(folder, ignore_errors=True)
    return target


def latest(output: Path) -> pa.Table | None:
    """The newest compacted run's timings, or None when no build recorded any."""
    folder = Path(output) / TIMINGS_DIR
    runs = sorted(folder.glob("*.parquet"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
    if not runs:
        return None
    return pq.read_table(runs[-1], schema=TIMINGS_SCHEMA)


__all__ = ["TIMINGS_DIR", "TIMINGS_SCHEMA", "StageClock", "compact", "latest", "write_part"]
