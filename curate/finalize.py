"""Manifest-wide steps that run once every image is processed.

Per-image stages cannot see the other rows; anything that needs the whole
collection (group medians, human ratings, thresholds on them) lives here and
runs at the end of ``curate build``.

IQS, after OpenMind (App. B.1):

* ``iqs_group`` is the median automatic score of the image's group: images of
  one modality in one dataset, or -- for DWI-derived maps -- every map derived
  from the same DWI series (the paper gives those one score).
* Human ratings from ``[iqs] ratings`` (CSV) take precedence: a per-image
  rating (``image_id, rating``) over a per-group one (``dataset, modality,
  rating``); repeated ratings (several raters) are averaged.
* The final ``iqs`` is the rating (``iqs_source = "human"``), else the group
  median when ``score_from = "group"`` or the image has no score of its own
  (``"group"``), else the image's own score (``"auto"``).  A row whose image
  could not be read or holds no image (``unreadable``, ``empty``) takes no
  group score or group rating: there is nothing the score could describe.
* ``max_iqs`` marks included rows whose final score is above it as excluded
  with reason ``iqs``; the row keeps its scores.

Every step is recomputed from the stage's component columns on each build, so
changing ratings or the threshold never needs the images again.
"""

from __future__ import annotations

import csv
import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from manifests.schema import ExclusionReason, ImageRecord

from curate.config import ConfigError, CurateConfig, IqsConfig
from qc.iqs import combine

log = logging.getLogger(__name__)
IQS_REASON = ExclusionReason.IQS.value
#: Reasons that mean there is no image to score: such rows get no group score.
NO_IMAGE_REASONS = frozenset({ExclusionReason.UNREADABLE.value, ExclusionReason.EMPTY.value})


@dataclass(frozen=True, slots=True)
class Ratings:
    """Human ratings by image id and by (dataset, modality)."""

    by_image: dict[str, float] = field(default_factory=dict)
    by_group: dict[tuple[str, str], float] = field(default_factory=dict)


def load_ratings(path: Path | str) -> Ratings:
    """Read a ratings CSV (``image_id, rating`` and/or ``dataset, modality, rating`` rows).

    Raises
    ------
    curate.config.ConfigError
        If the file is unreadable, lacks a ``rating`` column or holds a rating
        outside [1, 5] (the message names the line).
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"cannot read IQS ratings {path}: {exc}") from exc
    images: dict[str, list[float]] = defaultdict(list)
    groups: dict[tuple[str, str], list[float]] = defaultdict(list)
    for line, row in enumerate(rows, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
        try:
            rating = float(row["rating"])
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"{path}:{line}: needs a numeric 'rating' column") from exc
        if not 1.0 <= rating <= 5.0:
            raise ConfigError(f"{path}:{line}: rating {rating} is outside [1, 5]")
        if row.get("image_id"):
            images[row["image_id"]].append(rating)
        elif row.get("dataset") and row.get("modality"):
            groups[(row["dataset"], row["modality"])].append(rating)
        else:
            raise ConfigError(f"{path}:{line}: needs 'image_id' or both 'dataset' and 'modality'")
    return Ratings({k: float(np.mean(v)) for k, v in images.items()},
                   {k: float(np.mean(v)) for k, v in groups.items()})


def group_key(record: ImageRecord) -> tuple[str, str, str]:
    """The IQS group: (dataset, modality) for acquired images, the source DWI for derived maps."""
    if record.derived_from:
        return (record.dataset, "derived", record.derived_from)
    return (record.dataset, record.modality, "")


def auto_score(record: ImageRecord) -> float | None:
    """The image's automatic IQS, recomputed from its components and flags (``None`` if unscored)."""
    if record.corrupted is None:
        return None
    parts = [math.nan if v is None else v for v in (record.iqs_noise, record.iqs_blur, record.iqs_artifact)]
    return combine(parts, bool(record.fov_suboptimal), bool(record.corrupted))


def clear_iqs_exclusion(record: ImageRecord) -> ImageRecord:
    """Undo a previous build's ``iqs`` exclusion (other reasons stay)."""
    if IQS_REASON not in record.exclusion_reasons:
        return record
    reasons = tuple(r for r in record.exclusion_reasons if r != IQS_REASON)
    details = [d for d in (record.exclusion_detail or "").split("; ") if d and not d.startswith("iqs ")]
    return record.replace(exclusion_reasons=reasons, included=not reasons,
                          exclusion_detail="; ".join(details) or None)


def group_medians(records: Sequence[ImageRecord]) -> dict[tuple[str, str, str], float]:
    """Median automatic score per group, over included scored rows."""
    scores: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for record in records:
        score = auto_score(record)
        if record.included and score is not None:
            scores[group_key(record)].append(score)
    return {key: float(np.median(values)) for key, values in scores.items()}


def _final(record: ImageRecord, cfg: IqsConfig, group: float | None, ratings: Ratings) -> ImageRecord:
    own = auto_score(record)
    if NO_IMAGE_REASONS.intersection(record.exclusion_reasons):
        group = None
        human = ratings.by_image.get(record.image_id)
    else:
        human = ratings.by_image.get(record.image_id, ratings.by_group.get((record.dataset, record.modality)))
    if human is not None:
        score, source = human, "human"
    elif group is not None and (cfg.score_from == "group" or own is None):
        score, source = group, "group"
    elif own is not None:
        score, source = own, "auto"
    else:
        return record.replace(iqs=None, iqs_source=None, iqs_group=group)
    record = record.replace(iqs=score, iqs_source=source, iqs_group=group)
    if cfg.max_iqs is not None and record.included and score > cfg.max_iqs:
        record = record.excluded_for(IQS_REASON, detail=f"iqs {score:.2f} > {cfg.max_iqs:g} ({source})")
    return record


def apply_iqs(records: Sequence[ImageRecord], cfg: IqsConfig, ratings: Ratings | None = None) -> list[ImageRecord]:
    """Group medians, human ratings and the threshold on every row (see module doc)."""
    ratings = ratings or Ratings()
    rows = [clear_iqs_exclusion(r) for r in records]
    medians = group_medians(rows)
    return [_final(r, cfg, medians.get(group_key(r)), ratings) for r in rows]


def finalize(records: Sequence[ImageRecord], config: CurateConfig, output: Path) -> list[ImageRecord]:
    """Apply collection-wide steps to the built rows; returns the rows to write."""
    if not config.iqs.enabled:
        return list(records)
    ratings = Ratings()
    if config.iqs.ratings:
        try:
            ratings = load_ratings(config.iqs.ratings)
        except ConfigError as exc:  # checked before the build; a file changed since must not lose it
            log.warning("IQS ratings ignored: %s", exc)
    return apply_iqs(records, config.iqs, ratings)


def as_stages_left_it(record: ImageRecord) -> ImageRecord:
    """``record`` without what :func:`finalize` adds, to compare a stored row with a rebuilt one.

    Finalize recomputes these fields from stage columns on every build, so a
    stored row that differs from a rebuilt one only here needs no new work.
    """
    return clear_iqs_exclusion(record).replace(iqs=None, iqs_group=None, iqs_source=None,
                                               processed_at=None)
