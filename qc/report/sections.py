"""HTML of the dataset-card sections: numbers as tables, figures beside them.

Every function returns one ``<section>`` as a string; text from the manifest
is escaped.  Sections whose data is absent say so instead of disappearing, so
a reader knows the difference between "none" and "not measured yet".
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence

import numpy as np
import pandas as pd

from qc.report import aggregate as agg
from qc.report import figures

_META_TITLES = {"age": "Age", "sex": "Sex", "field_strength_t": "Field strength",
                "manufacturer": "Manufacturer"}


def esc(value: object) -> str:
    """HTML-escape any value (``None`` becomes an empty string)."""
    return "" if value is None else html.escape(str(value), quote=True)


def fmt(value: object) -> str:
    """Counts with thousands separators, shares as percentages, floats to 3 digits."""
    if isinstance(value, (bool, np.bool_)):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.3g}"
    return esc(value)


def table(frame: pd.DataFrame, index_label: str, css: str = "", ident: str = "",
          percent: Sequence[str] = ()) -> str:
    """A plain HTML table of ``frame`` (index as the first column)."""
    attrs = (f' class="{css}"' if css else "") + (f' id="{ident}"' if ident else "")
    head = "".join(f'<th class="num">{esc(c)}</th>' for c in frame.columns)
    integer = [pd.api.types.is_integer_dtype(frame[c]) for c in frame.columns]
    body = []
    for label, *values in frame.itertuples(name=None):
        cells = "".join(
            f'<td class="num" data-col="{esc(c)}">'
            f'{f"{v:.1%}" if c in percent else fmt(int(v) if is_int else v)}</td>'
            for c, v, is_int in zip(frame.columns, values, integer))
        body.append(f'<tr data-key="{esc(label)}"><td>{esc(label)}</td>{cells}</tr>')
    return (f"<table{attrs}><thead><tr><th>{esc(index_label)}</th>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def figure(uri: str, alt: str) -> str:
    """An embedded figure."""
    return f'<img class="fig" src="{uri}" alt="{esc(alt)}">'


def card_section(frame: pd.DataFrame) -> str:
    """The dataset card: images, subjects, sessions, datasets."""
    return ('<section id="card"><h2>Dataset card</h2>'
            + table(agg.card(frame), "", css="card", ident="card-table")
            + '<p class="note">Subjects are (dataset, subject) pairs; sessions are (dataset, '
              'subject, session), a subject without sessions counting once. Derived DWI maps '
              'count as images.</p></section>')


def modality_section(frame: pd.DataFrame) -> str:
    """Counts by modality: table and stacked bar chart."""
    counts = agg.modality_counts(frame)
    chart = figure(figures.modality_chart(counts), "images per modality") if len(counts) else ""
    return ('<section id="modalities"><h2>Images by modality</h2><div class="row"><div>'
            + table(counts, "modality", ident="modality-table") + f"</div><div>{chart}</div></div></section>")


def datasets_section(frame: pd.DataFrame) -> str:
    """Cumulative included images over datasets, largest first (OpenMind Fig. 4)."""
    cumulative = agg.dataset_cumulative(frame)
    if cumulative.empty:
        return '<section id="datasets"><h2>Images per dataset</h2><p>No included images.</p></section>'
    marks = agg.coverage(cumulative)
    chart = figure(figures.cumulative_chart(cumulative, marks), "cumulative images over datasets") \
        if len(cumulative) > 1 else ""
    lines = "".join(f"<li>{f:.0%} of included images come from the {n:,} largest "
                    f"dataset{'s' if n != 1 else ''}</li>" for f, n in marks.items())
    top = cumulative.head(10).drop(columns="fraction")
    return ('<section id="datasets"><h2>Images per dataset</h2><div class="row"><div>'
            + chart + f"<ul>{lines}</ul></div><div><h3>Largest datasets ({len(cumulative):,} in all)</h3>"
            + table(top, "dataset", ident="dataset-table") + "</div></div></section>")


def metadata_section(frame: pd.DataFrame) -> str:
    """Age histogram and sex, field strength and manufacturer counts, where present."""
    meta = agg.metadata(frame)
    n_included = int(frame["included"].sum())
    parts = []
    for name, title in _META_TITLES.items():
        if name not in meta:
            continue
        values = meta[name]
        if name == "age":
            n = len(values)
            chart = figures.histogram(values.to_numpy(dtype=float), "age (years)",
                                      bins=np.arange(0, 101, 5))
        else:
            n = int(values.sum())
            chart = figures.category_chart(values)
        parts.append(f'<div data-meta="{name}"><h3>{title} <span class="note">'
                     f"({n:,} of {n_included:,} included images)</span></h3>"
                     + figure(chart, title) + "</div>")
    content = f'<div class="row">{"".join(parts)}</div>' if parts else \
        "<p>No participant or scanner metadata in the manifest.</p>"
    return f'<section id="metadata"><h2>Metadata of included images</h2>{content}</section>'


def _excluded_json(frame: pd.DataFrame, limit: int) -> tuple[str, int]:
    rows = agg.excluded_rows(frame, limit)
    total = int((~frame["included"]).sum())
    payload = {"columns": list(rows.columns), "rows": rows.astype(str).to_numpy().tolist(),
               "total": total}
    # "<" only occurs inside JSON strings, where \\u003c means the same: no "</script>" breakout.
    return json.dumps(payload, separators=(",", ":")).replace("<", "\\u003c"), total


def exclusions_section(data: agg.ReportData, max_rows: int) -> str:
    """Exclusion reasons with counts, and the sortable, filterable table of excluded files."""
    reasons = agg.exclusion_table(data)
    if reasons.empty:
        return ('<section id="exclusions"><h2>Exclusions</h2><p id="no-exclusions">'
                "No image was excluded.</p></section>")
    payload, total = _excluded_json(data.frame, max_rows)
    options = "".join(f'<option value="{esc(r)}">{esc(r)}</option>' for r in reasons.index)
    heads = "".join(f"<th>{c}</th>" for c in ("dataset", "file", "modality", "reasons", "detail"))
    return (
        f'<section id="exclusions"><h2>Exclusions <span class="note">({total:,} image'
        f'{"s" if total != 1 else ""})</span></h2>'
        '<div class="row"><div>' + table(reasons, "reason", ident="reason-table", percent=("share",))
        + '<p class="note">An image may have several reasons; share is of excluded images.</p></div>'
        f'<div>{figure(figures.category_chart(reasons["images"]), "images per exclusion reason")}'
        '</div></div><h3>Excluded files</h3><div id="excluded-controls">'
        '<input id="excluded-filter" type="search" placeholder="filter (any column)" size="32">'
        f'<select id="excluded-reason"><option value="">all reasons</option>{options}</select>'
        '<button id="excluded-prev" type="button">&larr; prev</button>'
        '<button id="excluded-next" type="button">next &rarr;</button>'
        '<span id="excluded-status" class="note"></span></div>'
        f'<table id="excluded-table"><thead><tr>{heads}</tr></thead><tbody></tbody></table>'
        '<noscript>The excluded-files table needs JavaScript.</noscript>'
        f'<script type="application/json" id="excluded-data">{payload}</script></section>'
    )


def iqs_section(frame: pd.DataFrame, threshold: float | None) -> str:
    """IQS histograms per modality with the threshold drawn."""
    values = agg.iqs_by_modality(frame)
    if not values:
        return ('<section id="iqs"><h2>Image quality score</h2><p id="no-iqs">No image has an IQS '
                "yet (the IQS stage has not run on this build).</p></section>")
    rule = (f"Images with IQS above {threshold:g} are excluded." if threshold is not None
            else "No IQS threshold is set (config <code>[iqs] max_iqs</code>).")
    return ('<section id="iqs"><h2>Image quality score by modality</h2>'
            f'<p class="note">IQS runs from 1 (clear, sharp) to 5 (highly compromised). {rule}</p>'
            + table(agg.iqs_summary(frame, threshold), "modality", ident="iqs-table")
            + figure(figures.iqs_grid(values, threshold), "IQS histograms per modality")
            + "</section>")

def timings_section(timing: pd.DataFrame | None) -> str:
    """Per-stage time (p50/p95 per stage and modality) and the slowest images of the last build."""
    from qc.report.timings import slowest_images, stage_summary, totals

    head = '<section id="timings"><h2>Where the build\'s time went</h2>'
    if timing is None or timing.empty:
        return head + "<p>No stage timings recorded (a build before timings existed, or nothing ran).</p></section>"
    summary = stage_summary(timing)
    summary.index = [f"{stage} / {modality}" for stage, modality in summary.index]
    total = totals(timing)
    return (head + f'<p class="note">Last build: {int(total["images"]):,} images timed, '
            f'{total["wall_s"]:.3g} s of stage wall time and {total["cpu_s"]:.3g} CPU-s in all '
            "(seconds per image; CPU counts every thread of the worker).</p>"
            + table(summary, "stage / modality", ident="timings-table")
            + "<h3>Slowest images</h3>" + table(slowest_images(timing), "image", ident="slowest-table")
            + "</section>")


__all__ = ["timings_section", "card_section", "datasets_section", "esc", "exclusions_section", "figure", "fmt",
           "iqs_section", "metadata_section", "modality_section", "table"]
