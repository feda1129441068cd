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
from collections.abc import Mapping

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

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


def _figure(width: float, height: float, layout: str | None = "constrained") -> Figure:
    with matplotlib.rc_context(_RC):
        return Figure(figsize=(width, height), layout=layout)


def modality_chart(counts: pd.DataFrame) -> str:
    """Horizontal stacked bars: included and excluded images per modality."""
    with matplotlib.rc_context(_RC):
        fig = _figure(6.0, 0.8 + 0.28 * max(len(counts), 1))
        ax = fig.add_subplot()
        labels = [str(i) for i in counts.index][::-1]
        inc = counts["included"].to_numpy()[::-1]
        exc = counts["excluded"].to_numpy()[::-1]
        ax.barh(labels, inc, color=INCLUDED_COLOR, label="included")
        ax.barh(labels, exc, left=inc, color=EXCLUDED_COLOR, label="excluded")
        ax.set_xlabel("images")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
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
        fig = _figure(6.0, 3.0)
        ax = fig.add_subplot()
        x = np.arange(1, len(cumulative) + 1)
        reached = cumulative["cumulative"].to_numpy()
        ax.plot(x, reached, color=INCLUDED_COLOR, lw=1.8, marker="o" if len(x) <= 30 else None, ms=3)
        total = int(cumulative["images"].sum())
        for fraction in marks:
            ax.axhline(fraction * total, color="0.85", lw=0.8, zorder=0)
        for n, label in _mark_labels(marks).items():
            ax.plot([n], [reached[n - 1]], "o", color=LINE_COLOR, ms=4)
            ax.annotate(label, (n, reached[n - 1]), xytext=(6, -12), textcoords="offset points",
                        fontsize=8)
        ax.set_xlabel("number of datasets (largest first)")
        ax.set_ylabel("included images")
        ax.set_ylim(0, total * 1.05)
        if len(cumulative) > 50:
            ax.set_xscale("log")
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        return to_data_uri(fig)


def histogram(values: np.ndarray, xlabel: str, bins: int | np.ndarray = 30,
              threshold: float | None = None) -> str:
    """A histogram of ``values`` with an optional vertical threshold line."""
    with matplotlib.rc_context(_RC):
        fig = _figure(4.0, 2.6)
        ax = fig.add_subplot()
        ax.hist(values, bins=bins, color=INCLUDED_COLOR, edgecolor="white", linewidth=0.4)
        if threshold is not None:
            ax.axvline(threshold, color=LINE_COLOR, lw=1.5, ls="--", label=f"threshold {threshold:g}")
            ax.legend(frameon=False, loc="upper right")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("images")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        return to_data_uri(fig)


def category_chart(counts: pd.Series, xlabel: str = "images") -> str:
    """Horizontal bars of value counts, largest on top."""
    with matplotlib.rc_context(_RC):
        fig = _figure(4.0, 0.8 + 0.28 * max(len(counts), 1))
        ax = fig.add_subplot()
        ax.barh([str(i) for i in counts.index][::-1], counts.to_numpy()[::-1], color=INCLUDED_COLOR)
        ax.set_xlabel(xlabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
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
        fig = _figure(2.6 * cols, 2.0 * rows, layout=None)
        axes = np.atleast_1d(fig.subplots(rows, cols, sharex=True, squeeze=False)).ravel()
        fig.subplots_adjust(left=0.07, right=0.98, top=0.9, bottom=0.16 if rows == 1 else 0.1,
                            hspace=0.45, wspace=0.35)
        for ax, (modality, scores) in zip(axes, values.items()):
            ax.hist(np.clip(scores, bins[0], bins[-1]), bins=bins, color=INCLUDED_COLOR,
                    edgecolor="white", linewidth=0.4)
            if threshold is not None:
                ax.axvline(threshold, color=LINE_COLOR, lw=1.5, ls="--")
            ax.set_title(f"{modality} (n={len(scores)})", fontsize=9)
        for ax in axes[len(values):]:
            ax.set_visible(False)
        fig.supxlabel("IQS (1 best, 5 worst)" + (f"; dashed: threshold {threshold:g}"
                                                  if threshold is not None else ""))
        return to_data_uri(fig)


__all__ = ["category_chart", "cumulative_chart", "histogram", "iqs_grid", "modality_chart",
           "to_data_uri"]
