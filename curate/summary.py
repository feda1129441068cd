"""Summaries of a manifest for the terminal: counts by modality and by exclusion reason."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from manifests.schema import ImageRecord


def counts(records: Sequence[ImageRecord]) -> tuple[Counter[str], Counter[str], Counter[str]]:
    """(all images by modality, included by modality, excluded by reason)."""
    by_modality = Counter(r.modality for r in records)
    included = Counter(r.modality for r in records if r.included)
    reasons = Counter(reason for r in records for reason in r.exclusion_reasons)
    return by_modality, included, reasons


def render(records: Sequence[ImageRecord], console: Console | None = None,
           title: str = "mri-curate") -> None:
    """Print the summary tables."""
    console = console or Console()
    by_modality, included, reasons = counts(records)
    n_included = sum(included.values())
    modality_table = Table(title=f"{title}: {len(records)} images, {n_included} included")
    modality_table.add_column("modality")
    modality_table.add_column("images", justify="right")
    modality_table.add_column("included", justify="right")
    for modality, n in sorted(by_modality.items(), key=lambda kv: (-kv[1], kv[0])):
        modality_table.add_row(modality, str(n), str(included.get(modality, 0)))
    console.print(modality_table)
    if reasons:
        reason_table = Table(title="exclusion reasons (an image may have several)")
        reason_table.add_column("reason")
        reason_table.add_column("images", justify="right")
        for reason, n in reasons.most_common():
            reason_table.add_row(reason, str(n))
        console.print(reason_table)
