"""The report's figures: matplotlib (Agg, object API, no pyplot state) to SVG data URIs.

Each function takes the small aggregates of :mod:`qc.report.aggregate` and
returns a ``data:image/svg+xml;base64,...`` string for an ``<img>`` tag, so
the page stays one self-contained file.  Text stays text inside the SVG
(``svg.fonttype = none``) and ids are salted so the output is reproducible.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

INCLUDED_COLOR = "#3b7dd8"
EXCLUDED_COLOR = "#d8893b"
LINE_COLOR = "#c0392b"
_RC = {"svg.fonttype": "none", "svg.hashsalt": "mri-curate", "font.size": 9,
       "axes.spines.top": False, "axes.spines.right": False}


def to_data_uri(fig: Figure) -> str:
    """Render ``fig`` as an SVG data URI."""
    buffer = io.BytesIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(width: float, height: float, layout: str | None = None) -> Figure:
    with matplotlib.rc_context(_RC):
        return Figure(figsize=(width, height), layout=layout)


def _short_count(value: float, _pos: object = None) -> str:
    """Tick label for a count: ``12.5k`` from 1,000 up.

    Examples
    --------
    >>> _short_count(12500.0), _short_count(800.0)
    ('12.5k', '800')
    """
    return f"{value / 1000:g}k" if abs(value) >= 1000 else f"{value:g}"


def _counts_on(axis: Any, nbins: int = 5) -> None:
    """Integer ticks, at most ``nbins``, with short labels."""
    axis.set_major_locator(MaxNLocator(nbins=nbins, integer=True))
    axis.set_major_formatter(FuncFormatter(_short_count))


def _axes(width: float, height: float, labels: Sequence[str] = (), ylabel: bool = False,
          top_in: float = 0.15) -> tuple[Figure, Axes]:
    """A figure with one axes and margins fitted to the tick labels.

    Fixed margins instead of constrained layout: the layout engine doubles
    the drawing time of these small charts.
    """
    fig = _figure(width, height)
    ax = fig.add_subplot()
    longest = max((len(str(label)) for label in labels), default=4)
    left_in = 0.2 + 0.068 * longest + (0.25 if ylabel else 0.0)  # ~9 pt text width per character
    fig.subplots_adjust(left=min(left_in / width, 0.6), right=1 - 0.2 / width,
                        bottom=0.5 / height, top=1 - top_in / height)
    return fig, ax


def modality_chart(counts: pd.DataFrame) -> str:
    """Horizontal stacked bars: included and excluded images per modality."""
    with matplotlib.rc_context(_RC):
        labels = [str(i) for i in counts.index][::-1]
        fig, ax = _axes(6.0, 0.95 + 0.28 * max(len(counts), 1), labels, top_in=0.35)
        inc = counts["included"].to_numpy()[::-1]
        exc = counts["excluded"].to_numpy()[::-1]
        ax.barh(labels, inc, color=INCLUDED_COLOR, label="included")
        ax.barh(labels, exc, left=inc, color=EXCLUDED_COLOR, label="excluded")
        ax.set_xlabel("images")
        _counts_on(ax.xaxis)
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=2, frameon=False)
        return to_data_uri(fig)


def _mark_labels(marks: Mapping[float, int]) -> dict[int, str]:
    """One label per dataset count: ``{1: "50%, 75% in 1 dataset"}``."""
    shares: dict[int, list[str]] = {}
    for fraction, n in marks.items():
        shares.setdefault(n, []).append(f"{fraction:.0%}")
    return {n: f"{', '.join(f)} in {n} dataset{'s' if n != 1 else ''}" for n, f in shares.items()}


def cumulative_chart(cumulative: pd.DataFrame, marks: Mapping[float, int]) -> str:
    """Cumulative included images over datasets sorted by size, with coverage marks."""
    with matplotlib.rc_context(_RC):
        fig, ax = _axes(6.0, 3.0, ["000000"], ylabel=True)
        x = np.arange(1, len(cumulative) + 1)
        reached = cumulative["cumulative"].to_numpy()
        ax.plot(x, reached, color=INCLUDED_COLOR, lw=1.8, marker="o" if len(x) <= 30 else None, ms=3)
        total = int(cumulative["images"].sum())
        for fraction in marks:
            ax.axhline(fraction * total, color="0.85", lw=0.8, zorder=0)
        for n, label in _mark_labels(marks).items():
            ax.plot([n], [reached[n - 1]], "o", color=LINE_COLOR, ms=4)
            ax.annotate(label, (n, reached[n - 1]), xytext=(-6, 6), textcoords="offset points",
                        fontsize=8, ha="right")
        ax.set_xlabel("number of datasets (largest first)")
        ax.set_ylabel("included images")
        ax.set_ylim(0, total * 1.05)
        _counts_on(ax.yaxis)
        if len(cumulative) > 50:
            ax.set_xscale("log")
        else:
            _counts_on(ax.xaxis)
        return to_data_uri(fig)


def histogram(values: np.ndarray, xlabel: str, bins: int | np.ndarray = 30,
              threshold: float | None = None) -> str:
    """A histogram of ``values`` with an optional vertical threshold line."""
    with matplotlib.rc_context(_RC):
        fig, ax = _axes(4.0, 2.6, ["0000"], ylabel=True, top_in=0.3)
        ax.hist(values, bins=bins, color=INCLUDED_COLOR, edgecolor="white", linewidth=0.4)
        if threshold is not None:
            ax.axvline(threshold, color=LINE_COLOR, lw=1.5, ls="--", label=f"threshold {threshold:g}")
            ax.legend(frameon=False, loc="upper right")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("images")
        _counts_on(ax.yaxis)
        return to_data_uri(fig)


def category_chart(counts: pd.Series, xlabel: str = "images") -> str:
    """Horizontal bars of value counts, largest on top."""
    with matplotlib.rc_context(_RC):
        labels = [str(i) for i in counts.index][::-1]
        fig, ax = _axes(4.0, 0.8 + 0.28 * max(len(counts), 1), labels)
        ax.barh(labels, counts.to_numpy()[::-1], color=INCLUDED_COLOR)
        ax.set_xlabel(xlabel)
        _counts_on(ax.xaxis)
        return to_data_uri(fig)


def iqs_grid(values: Mapping[str, np.ndarray], threshold: float | None,
             bins: np.ndarray | None = None) -> str:
    """One IQS histogram per modality on a shared 1-5 axis, the threshold drawn in each."""
    bins = bins if bins is not None else np.linspace(1.0, 5.0, 17)
    n = max(len(values), 1)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    with matplotlib.rc_context(_RC):
        # A fixed grid: constrained layout costs about 0.1 s per panel.
        fig = _figure(2.6 * cols, 2.0 * rows)
        axes = np.atleast_1d(fig.subplots(rows, cols, sharex=True, squeeze=False)).ravel()
        fig.subplots_adjust(left=0.07, right=0.98, top=0.9, bottom=0.16 if rows == 1 else 0.1,
                            hspace=0.45, wspace=0.35)
        for ax, (modality, scores) in zip(axes, values.items()):
            ax.hist(np.clip(scores, bins[0], bins[-1]), bins=bins, color=INCLUDED_COLOR,
                    edgecolor="white", linewidth=0.4)
            if threshold is not None:
                ax.axvline(threshold, color=LINE_COLOR, lw=1.5, ls="--")
            ax.set_title(f"{modality} (n={len(scores):,})", fontsize=9)
            _counts_on(ax.yaxis, nbins=3)
        for ax in axes[len(values):]:
            ax.set_visible(False)
        fig.supxlabel("IQS (1 best, 5 worst)" + (f"; dashed: threshold {threshold:g}"
                                                  if threshold is not None else ""))
        return to_data_uri(fig)


__all__ = ["category_chart", "cumulative_chart", "histogram", "iqs_grid", "modality_chart",
           "to_data_uri"]
