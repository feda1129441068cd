"""Summaries of a manifest for the terminal (``curate status`` and the end of a build).

The numbers come from :mod:`qc.report.aggregate`, the same code that fills
the HTML dataset card, so the terminal and the report always agree.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import pandas as pd
import pyarrow as pa
from rich.console import Console
from rich.table import Table

from manifests.schema import ARROW_SCHEMA, ImageRecord
from qc.report import aggregate as agg


def summary_table(records: Sequence[ImageRecord]) -> pa.Table:
    """The columns the summary reads, as an Arrow table (cheaper than the full schema at 100k rows)."""
    columns = {name: [getattr(r, name) for r in records] for name in agg.READ_COLUMNS}
    columns["exclusion_reasons"] = [list(v) for v in columns["exclusion_reasons"]]
    schema = pa.schema([ARROW_SCHEMA.field(name) for name in agg.READ_COLUMNS])
    return pa.Table.from_pydict(columns, schema=schema)


def counts(records: Sequence[ImageRecord]) -> tuple[Counter[str], Counter[str], Counter[str]]:
    """(all images by modality, included by modality, excluded by reason)."""
    data = agg.prepare(summary_table(records))
    by_modality = agg.modality_counts(data.frame)
    return (Counter({str(m): int(n) for m, n in by_modality["images"].items()}),
            Counter({str(m): int(n) for m, n in by_modality["included"].items() if n}),
            Counter({str(r): int(n) for r, n in data.reason_counts.items()}))


def _rich_table(frame: pd.DataFrame, title: str, index_label: str,
                formats: dict[str, str] | None = None) -> Table:
    """A rich table of ``frame`` (index first), numbers right-aligned."""
    formats = formats or {}
    out = Table(title=title)
    out.add_column(index_label)
    for column in frame.columns:
        out.add_column(str(column), justify="right")
    integer = {c: pd.api.types.is_integer_dtype(frame[c]) for c in frame.columns}
    for label, *values in frame.itertuples(name=None):
        cells = []
        for column, value in zip(frame.columns, values):
            spec = formats.get(str(column)) or (",d" if integer[column] else ".3g")
            cells.append(format(int(value) if integer[column] else value, spec))
        out.add_row(str(label), *cells)
    return out


def tables(data: agg.ReportData, iqs_threshold: float | None = None,
           title: str = "mri-curate") -> list[Table]:
    """The summary as rich tables: card, modalities, exclusion reasons, IQS (where present)."""
    frame = data.frame
    n_included = int(frame["included"].sum())
    card = agg.card(frame).astype(int)
    out = [_rich_table(card, f"{title}: {len(frame):,} images, {n_included:,} included", "")]
    out.append(_rich_table(agg.modality_counts(frame).astype(int), "images by modality", "modality"))
    reasons = agg.exclusion_table(data)
    if not reasons.empty:
        out.append(_rich_table(reasons, "exclusion reasons (an image may have several)", "reason",
                               {"share": ".1%"}))
    iqs = agg.iqs_summary(frame, iqs_threshold)
    if not iqs.empty:
        limit = f", threshold {iqs_threshold:g}" if iqs_threshold is not None else ""
        out.append(_rich_table(iqs, f"IQS by modality (1 best, 5 worst{limit})", "modality"))
    return out



def timing_tables(timing: pd.DataFrame, slowest: int = 10) -> list[Table]:
    """The last build's per-stage timings (p50/p95 per stage and modality) and slowest images."""
    from qc.report.timings import slowest_images, stage_summary

    summary = stage_summary(timing)
    summary.index = [f"{stage} / {modality}" for stage, modality in summary.index]
    seconds = {c: ".3g" for c in summary.columns if c != "images"}
    worst = slowest_images(timing, slowest)
    return [_rich_table(summary, "Seconds per image, by stage (last build)", "stage / modality", seconds),
            _rich_table(worst.drop(columns=["modality", "slowest stage"]),
                        f"Slowest {len(worst)} images (wall s over all stages)", "image")]


def render_table(table: pa.Table, console: Console | None = None, title: str = "mri-curate",
                 iqs_threshold: float | None = None, notes: Iterable[str] = ()) -> None:
    """Print the summary of a manifest table."""
    console = console or Console()
    for rich_table in tables(agg.prepare(table), iqs_threshold, title):
        console.print(rich_table)
    for note in notes:
        console.print(note)


def render(records: Sequence[ImageRecord], console: Console | None = None,
           title: str = "mri-curate") -> None:
    """Print the summary tables of a list of records."""
    render_table(summary_table(records), console, title)
