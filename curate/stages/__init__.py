"""``curate build`` stages, in the order they run.

read -> dwi -> masks -> iqs -> arrays -> thumbnails.  Each stage says which
earlier ones it reads from (``requires``), which drives what a rebuild re-runs.
"""

from __future__ import annotations

from curate.config import CurateConfig
from curate.stages.arrays import ArraysStage
from curate.stages.base import Stage, StageContext, WorkItem, load_image
from curate.stages.dwi import DwiStage
from curate.stages.iqs import IqsStage
from curate.stages.masks import MasksStage
from curate.stages.read import ReadStage
from curate.stages.thumbnails import ThumbnailStage


def default_stages(config: CurateConfig) -> list[Stage]:
    """The stages ``curate build`` runs, in order, as enabled in ``config``."""
    stages: list[Stage] = []
    if config.read.enabled:
        stages.append(ReadStage())
    if config.dwi.enabled:
        stages.append(DwiStage())
    if config.masks.enabled:
        stages.append(MasksStage())
    if config.iqs.enabled:
        stages.append(IqsStage())
    # arrays run after read -> dwi -> masks -> iqs (keep it last but thumbnails).
    if config.arrays.enabled:
        stages.append(ArraysStage())
    # thumbnails stays last: it draws what the earlier stages produced.
    if config.report.thumbnails:
        stages.append(ThumbnailStage())
    return stages


__all__ = ["Stage", "StageContext", "WorkItem", "default_stages", "load_image"]
