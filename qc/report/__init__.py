"""The HTML dataset card and QC gallery of a curated collection.

Pure rendering: a manifest table in, an HTML string out.  Reading the
manifest, drawing missing thumbnails and writing the page are done by
:mod:`curate.report`.

Examples
--------
>>> from qc.report.synthetic import synthetic_table
>>> page = render_report(synthetic_table(200, n_datasets=5, dwi_series=2), available=set())
>>> page.startswith("<!DOCTYPE html>") and 'id="card-table"' in page
True
"""

from __future__ import annotations

import pyarrow as pa

from qc.report.aggregate import ReportData, prepare
from qc.report.gallery import Gallery, select
from qc.report.page import PageOptions, render_html


def render_report(table: pa.Table, available: set[str], options: PageOptions | None = None,
                  worst_n: int = 12, best_n: int = 12, per_modality: int = 4,
                  max_dwi_series: int = 8, seed: int = 0) -> str:
    """Prepare ``table``, choose the gallery and render the page in one call."""
    data = prepare(table)
    gallery = select(data.frame, worst_n, best_n, per_modality, max_dwi_series, seed)
    return render_html(data, gallery, available, options)


__all__ = ["Gallery", "PageOptions", "ReportData", "prepare", "render_html", "render_report",
           "select"]
