"""Assemble the report page: one self-contained HTML file.

Figures are embedded as SVG data URIs, styles and scripts are inline; the
only files referenced are the gallery thumbnails in ``thumbs/`` beside the
page.  Nothing is fetched from the network.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pyarrow as pa

from qc.report import sections
from qc.report.aggregate import ReportData, prepare
from qc.report.assets import CSS, ERROR_TRAP_JS, REPORT_JS
from qc.report.gallery import Gallery, gallery_html, select

_NAV = (("card", "Card"), ("modalities", "Modalities"), ("datasets", "Datasets"),
        ("metadata", "Metadata"), ("exclusions", "Exclusions"), ("iqs", "IQS"),
        ("timings", "Timings"), ("gallery", "Gallery"))


@dataclass(frozen=True, slots=True)
class PageOptions:
    """What the page says about itself and how much it holds."""

    title: str = "mri-curate report"
    subtitle: str = ""
    iqs_threshold: float | None = None
    max_table_rows: int = 20000
    thumbs_dir: str = "thumbs"


def render_html(data: ReportData, gallery: Gallery, available: set[str],
                options: PageOptions | None = None, timings: pd.DataFrame | None = None) -> str:
    """The full report page.

    Parameters
    ----------
    data
        The manifest, as prepared by :func:`qc.report.aggregate.prepare`.
    gallery
        The images the gallery shows (:func:`qc.report.gallery.select`).
    available
        ``image_id`` of every image whose thumbnail exists in ``thumbs_dir``.
    options
        Title, IQS threshold and limits.
    timings
        The last build's per-stage timings (``curate.timings``), if any.
    """
    options = options or PageOptions()
    frame = data.frame
    body = "".join((
        sections.card_section(frame),
        sections.modality_section(frame),
        sections.datasets_section(frame),
        sections.metadata_section(frame),
        sections.exclusions_section(data, options.max_table_rows),
        sections.iqs_section(frame, options.iqs_threshold),
        sections.timings_section(timings),
        gallery_html(gallery, available, options.thumbs_dir),
    ))
    nav = "".join(f'<a href="#{ident}">{label}</a>' for ident, label in _NAV)
    title = sections.esc(options.title)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title><style>{CSS}</style><script>{ERROR_TRAP_JS}</script></head>"
        f"<body><header><h1>{title}</h1><p>{sections.esc(options.subtitle)}</p></header>"
        f"<nav>{nav}</nav><main>{body}</main>"
        '<div id="lightbox" role="dialog" aria-label="larger view"><img alt=""><p></p></div>'
        f"<script>{REPORT_JS}</script></body></html>\n"
    )


def render_report(table: pa.Table, available: set[str], options: PageOptions | None = None,
                  worst_n: int = 12, best_n: int = 12, per_modality: int = 4,
                  max_dwi_series: int = 8, seed: int = 0) -> str:
    """Prepare ``table``, choose the gallery and render the page in one call.

    Examples
    --------
    >>> from qc.report.synthetic import synthetic_table
    >>> page = render_report(synthetic_table(200, n_datasets=5, dwi_series=2), available=set())
    >>> page.startswith("<!DOCTYPE html>") and 'id="card-table"' in page
    True
    """
    data = prepare(table)
    gallery = select(data.frame, worst_n, best_n, per_modality, max_dwi_series, seed)
    return render_html(data, gallery, available, options)


__all__ = ["PageOptions", "render_html", "render_report"]
