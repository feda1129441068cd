"""``curate report`` and ``curate status``: read a build's manifest, draw what is missing, write the page.

The page itself is rendered by :mod:`qc.report` (pure: a table in, HTML out).
This module does the I/O around it: finding the manifest and the config the
build ran with, drawing the gallery's thumbnails that the ``thumbnails`` stage
did not (builds made before it existed, or images it skipped), in parallel
with Dask, and writing ``OUTPUT/reports/index.html`` atomically.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import dask.bag as db
import pandas as pd
import pyarrow as pa

from manifests import io as mio
from qc.report.aggregate import READ_COLUMNS, prepare
from qc.thumbnails import ThumbnailStyle

from curate import timings
from curate.config import ConfigError, CurateConfig, load_config
from curate.indexing import recorded_source
from curate.io import UnreadableImage, read_image, write_bytes, write_text
from curate.stages.thumbnails import THUMBS_DIR, read_mask, render_thumbnail, thumbnail_path, thumbnail_style

log = logging.getLogger(__name__)

REPORT_PAGE = "reports/index.html"
#: Below this many missing thumbnails, drawing them in-process beats starting workers.
PARALLEL_FROM = 16


class ReportError(Exception):
    """OUTPUT cannot be reported on (no manifest, page not writable); ``str(exc)`` says why in one line."""


@dataclass(slots=True)
class ReportResult:
    """What ``curate report`` did."""

    path: Path
    n_images: int
    shown: int
    rendered: int
    missing: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def load_manifest(output: Path, columns: Iterable[str] | None = None) -> pa.Table:
    """The manifest of the build in ``output`` (only ``columns`` when given).

    Raises
    ------
    ReportError
        If ``output`` holds no manifest.
    """
    manifest_dir = Path(output) / "manifests"
    if not Path(output).is_dir():
        raise ReportError(f"{output} is not a directory")
    if not mio.list_parts(manifest_dir):
        raise ReportError(f"no manifest in {output} (no {manifest_dir}/part-*.parquet; "
                          "run `curate build` or `curate index` first)")
    return mio.read_table(manifest_dir, columns=columns)


def output_config(output: Path) -> CurateConfig:
    """The config the build in ``output`` ran with (defaults when absent or unreadable)."""
    path = Path(output) / "curate_config.toml"
    if not path.is_file():
        return CurateConfig()
    try:
        return load_config(path)
    except ConfigError as exc:
        log.warning("using default settings: %s", exc)
        return CurateConfig()


def _text(value: object) -> str | None:
    """A non-empty string cell, else ``None`` (pandas gives NaN or None for nulls)."""
    return value if isinstance(value, str) and value else None


def image_file(row: dict, output: Path, source: Path | None) -> Path | None:
    """The file holding a row's voxels: a derived map or converted series under OUTPUT,
    else the source file under ``source`` (single dataset or folder of datasets)."""
    for column in ("derived_path", "converted_path"):
        rel = _text(row.get(column))
        if rel and (output / rel).is_file():
            return output / rel
    if source is None or _text(row.get("source_path")) is None:
        return None
    for candidate in (source / row["source_path"], source / str(row["dataset"]) / row["source_path"]):
        if candidate.is_file():
            return candidate
    return None


def draw_thumbnail(task: tuple[str, str, str, str | None, str | None, ThumbnailStyle]) -> tuple[str, str | None]:
    """Draw and write one thumbnail; returns ``(image_id, problem or None)``, never raises on bad data."""
    image_id, output, path, anon_rel, anatomy_rel, style = task
    out = Path(output)
    try:
        image = read_image(Path(path))
        shape = image.data.shape
        masks = {"anon_mask": read_mask(out, anon_rel, shape),
                 "anatomy_mask": read_mask(out, anatomy_rel, shape)}
        png = render_thumbnail(image.data, image.affine, image.zooms, masks, style)
        write_bytes(thumbnail_path(out, image_id), png)
    except (UnreadableImage, ValueError, OSError) as exc:
        return image_id, f"{type(exc).__name__}: {exc}"
    return image_id, None


def ensure_thumbnails(output: Path, rows: pd.DataFrame, style: ThumbnailStyle,
                      source: Path | None = None, workers: int = 1,
                      parallel_from: int = PARALLEL_FROM) -> tuple[set[str], int, dict[str, str]]:
    """Make sure the thumbnails of ``rows`` exist, drawing missing ones.

    With ``workers > 1`` and at least ``parallel_from`` to draw, they are drawn
    by that many processes with Dask's multiprocessing scheduler.

    Returns the ids that have a thumbnail, how many were drawn now, and why the others have none.
    """
    available: set[str] = set()
    problems: dict[str, str] = {}
    tasks = []
    for row in rows.to_dict("records"):
        image_id = str(row["image_id"])
        if thumbnail_path(output, image_id).is_file():
            available.add(image_id)
            continue
        path = image_file(row, output, source)
        if path is None:
            problems[image_id] = "image file not found" + ("" if source else " (pass --source SOURCE)")
            continue
        tasks.append((image_id, str(output), str(path), _text(row.get("anon_mask_path")),
                      _text(row.get("anatomy_mask_path")), style))
    if workers > 1 and len(tasks) >= parallel_from:
        bag = db.from_sequence(tasks, npartitions=min(len(tasks), 4 * workers)).map(draw_thumbnail)
        results = bag.compute(scheduler="processes", num_workers=workers)
    else:
        results = [draw_thumbnail(task) for task in tasks]
    for image_id, problem in results:
        if problem is None:
            available.add(image_id)
        else:
            problems[image_id] = problem
    return available, len(results) - sum(p is not None for _, p in results), problems


def _timings_frame(output: Path) -> pd.DataFrame | None:
    table = timings.latest(output)
    return None if table is None else table.to_pandas()


def make_report(output: Path, worst: int | None = None, best: int | None = None,
                source: Path | None = None, workers: int = 1,
                config: CurateConfig | None = None) -> ReportResult:
    """Write ``OUTPUT/reports/index.html`` for the build in ``output``.

    Raises
    ------
    ReportError
        If ``output`` holds no manifest or the page cannot be written.
    """
    # Imported here: matplotlib is only needed for the page, not for `curate status`.
    from qc.report.gallery import select
    from qc.report.page import PageOptions, render_html

    started = time.perf_counter()
    output = Path(output)
    table = load_manifest(output, READ_COLUMNS)
    config = config or output_config(output)
    source = source or recorded_source(output)
    settings = config.report
    data = prepare(table)
    gallery = select(data.frame, settings.worst_n if worst is None else worst,
                     settings.best_n if best is None else best, settings.per_modality,
                     settings.max_dwi_series, settings.sample_seed)
    shown = data.frame[data.frame["image_id"].isin(gallery.image_ids())]
    available, rendered, missing = ensure_thumbnails(output, shown, thumbnail_style(settings),
                                                     source, workers)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    options = PageOptions(
        title=f"mri-curate report: {output.resolve().name}",
        subtitle=f"{output.resolve()} \u00b7 {table.num_rows:,} manifest rows \u00b7 generated {stamp}",
        iqs_threshold=config.iqs.max_iqs, max_table_rows=settings.max_table_rows,
        thumbs_dir=Path(THUMBS_DIR).name,
    )
    page = output / REPORT_PAGE
    try:
        write_text(page, render_html(data, gallery, available, options, _timings_frame(output)))
    except OSError as exc:
        raise ReportError(f"cannot write {page}: {exc.strerror or exc}") from exc
    return ReportResult(path=page, n_images=table.num_rows, shown=len(shown), rendered=rendered,
                        missing=missing, seconds=time.perf_counter() - started)


__all__ = ["REPORT_PAGE", "ReportError", "ReportResult", "ensure_thumbnails", "image_file",
           "load_manifest", "make_report", "output_config"]
