"""``curate build`` stages, in the order they run.

Each later issue adds its stage to :func:`default_stages`.
"""

from __future__ import annotations

from curate.config import CurateConfig
from curate.stages.base import Stage, StageContext, WorkItem, load_image
from curate.stages.iqs import IqsStage
from curate.stages.read import ReadStage


def default_stages(config: CurateConfig) -> list[Stage]:
    """The stages ``curate build`` runs, in order, as enabled in ``config``."""
    stages: list[Stage] = []
    if config.read.enabled:
        stages.append(ReadStage())
    # dwi and masks stages register here (read -> dwi -> masks -> iqs -> arrays -> thumbnails)
    if config.iqs.enabled:
        stages.append(IqsStage())
    return stages


__all__ = ["Stage", "StageContext", "WorkItem", "default_stages", "load_image"]
