"""Where a build's time went: per-stage percentiles and the slowest images.

Input is the timing table a build writes beside its manifests (columns
``image_id``, ``source_path``, ``modality``, ``stage``, ``wall_s``, ``cpu_s``;
see ``curate.timings``).  Pure functions of a data frame, shared by
``curate status`` and the HTML report so the two agree.
"""

from __future__ import annotations

import pandas as pd

#: Stages in the order a build runs them (others follow, alphabetically).
STAGE_ORDER = ("read", "dwi", "masks", "iqs", "arrays", "thumbnails")


def _stage_key(stage: str) -> tuple[int, str]:
    return (STAGE_ORDER.index(stage) if stage in STAGE_ORDER else len(STAGE_ORDER), stage)


def stage_summary(frame: pd.DataFrame, by_modality: bool = True) -> pd.DataFrame:
    """Per stage (and modality): images, wall p50/p95, CPU p50/p95 and CPU total, in seconds.

    Examples
    --------
    >>> frame = pd.DataFrame({"stage": ["read", "read", "iqs"], "modality": ["T1w"] * 3,
    ...                       "wall_s": [1.0, 3.0, 2.0], "cpu_s": [1.0, 2.0, 2.0]})
    >>> float(stage_summary(frame, by_modality=False).loc["read", "wall p50"])
    2.0
    """
    keys = ["stage", "modality"] if by_modality else ["stage"]
    grouped = frame.groupby(keys, sort=False)
    out = pd.DataFrame({
        "images": grouped.size(),
        "wall p50": grouped["wall_s"].median(),
        "wall p95": grouped["wall_s"].quantile(0.95),
        "cpu p50": grouped["cpu_s"].median(),
        "cpu p95": grouped["cpu_s"].quantile(0.95),
        "cpu total": grouped["cpu_s"].sum(),
    })
    order = sorted(out.index, key=lambda k: (_stage_key(k[0] if by_modality else k), k))
    return out.loc[order]


def slowest_images(frame: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """The ``n`` images with the most wall time over all stages, with their slowest stage."""
    if frame.empty:
        return pd.DataFrame(columns=["source_path", "modality", "wall s", "cpu s", "slowest stage"])
    per_image = frame.groupby("image_id", sort=False).agg(
        source_path=("source_path", "first"), modality=("modality", "first"),
        wall=("wall_s", "sum"), cpu=("cpu_s", "sum"))
    worst_stage = frame.loc[frame.groupby("image_id", sort=False)["wall_s"].idxmax(), ["image_id", "stage"]]
    per_image["slowest stage"] = worst_stage.set_index("image_id")["stage"]
    top = per_image.nlargest(n, "wall").rename(columns={"wall": "wall s", "cpu": "cpu s"})
    return top.set_index("source_path")


def totals(frame: pd.DataFrame) -> dict[str, float]:
    """Images timed, and wall/CPU seconds summed over every stage run."""
    return {"images": float(frame["image_id"].nunique()), "wall_s": float(frame["wall_s"].sum()),
            "cpu_s": float(frame["cpu_s"].sum())}


__all__ = ["STAGE_ORDER", "slowest_images", "stage_summary", "totals"]
