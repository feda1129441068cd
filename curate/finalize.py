"""Manifest-wide steps that run once every image is processed.

Per-image stages cannot see the other rows; anything that needs the whole
collection (group medians, human ratings, thresholds on them) lives here and
runs at the end of ``curate build``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from manifests.schema import ImageRecord

from curate.config import CurateConfig


def finalize(records: Sequence[ImageRecord], config: CurateConfig, output: Path) -> list[ImageRecord]:
    """Apply collection-wide steps to the built rows; returns the rows to write."""
    return list(records)
