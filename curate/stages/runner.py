"""Run a list of stages over work items, skipping what a previous build already did.

Resume works per stage.  Each stage's fingerprint hashes its name, version,
settings and the fingerprints of the stages it ``requires``.  When an image's
source is unchanged, columns of stages whose fingerprint matches the previous
build are copied from the previous row and the stage is skipped; every other
stage runs again.  So a changed IQS setting re-runs IQS only, while a changed
mask setting re-runs masks and the arrays that contain them.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

from manifests.io import now_iso
from manifests.schema import ImageRecord

from curate.config import CurateConfig, fingerprint
from curate.errors import OutOfSpace, describe, is_out_of_space, out_of_space
from curate.io import UnreadableImage
from curate.terminal import printable
from curate.stages.base import Stage, StageContext, WorkItem
from curate.threads import limit_threads
from curate.timings import StageClock, write_part

log = logging.getLogger(__name__)

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ImageRecord)
             if f.default is not dataclasses.MISSING}


def stage_fingerprints(stages: Sequence[Stage], config: CurateConfig) -> dict[str, str]:
    """``{stage name: fingerprint}``, dependencies folded in."""
    fps: dict[str, str] = {}
    for stage in stages:
        deps = [fps[name] for name in stage.requires if name in fps]
        fps[stage.name] = fingerprint(stage.name, stage.version, stage.settings(config), deps)
    return fps


#: Tag prefix on a derived row naming the stage that produced it.
DERIVED_TAG = "derived:"


def producer_of(record: ImageRecord) -> str | None:
    """Name of the stage that derived ``record``, or ``None`` for a source image."""
    for tag in record.stage_fingerprints:
        if tag.startswith(DERIVED_TAG):
            return tag[len(DERIVED_TAG):]
    return None


def _tag(name: str, fp: str) -> str:
    return f"{name}:{fp}"


def _done(record: ImageRecord, name: str, fp: str) -> bool:
    return _tag(name, fp) in record.stage_fingerprints


def _mark(record: ImageRecord, name: str, fp: str) -> ImageRecord:
    kept = tuple(t for t in record.stage_fingerprints if not t.startswith(name + ":"))
    return record.replace(stage_fingerprints=(*kept, _tag(name, fp)))


def restore(fresh: ImageRecord, previous: ImageRecord | None, stages: Sequence[Stage],
            fps: dict[str, str]) -> ImageRecord:
    """Start from ``fresh`` and copy over what unchanged stages produced in ``previous``."""
    if previous is None:
        return fresh
    record = fresh
    restored = False
    for stage in stages:
        if not _done(previous, stage.name, fps[stage.name]):
            continue
        values = {c: getattr(previous, c) for c in stage.columns}
        record = record.replace(**values)
        carried = [r for r in previous.exclusion_reasons if r in stage.reasons]
        if carried:
            merged = tuple(dict.fromkeys((*record.exclusion_reasons, *carried)))
            record = record.replace(included=False, exclusion_reasons=merged,
                                    exclusion_detail=previous.exclusion_detail)
        record = _mark(record, stage.name, fps[stage.name])
        restored = True
    if restored:
        record = record.replace(warnings=_carried_warnings(fresh, previous, stages, fps))
    return record


#: Start of the warning a stage bug leaves (:func:`_run_stage`).
INTERNAL_ERROR = "internal error in stage "


def _carried_warnings(fresh: ImageRecord, previous: ImageRecord, stages: Sequence[Stage],
                      fps: dict[str, str]) -> tuple[str, ...]:
    """The index's warnings plus the previous build's, less those of stages that run again.

    A stage that runs again says its warnings anew; a stage bug of an earlier
    build (``internal error in stage X``) is never carried: X either runs
    again or was done since.
    """
    again = {s.name for s in stages if not _done(previous, s.name, fps[s.name])}
    kept = [w for w in previous.warnings if not w.startswith(INTERNAL_ERROR)
            and w.split(":", 1)[0] not in again]
    return tuple(dict.fromkeys((*fresh.warnings, *kept)))


def reset(record: ImageRecord, stages: Sequence[Stage]) -> ImageRecord:
    """Clear every column and reason the given stages own (for re-queued derived rows)."""
    values = {c: _DEFAULTS.get(c) for stage in stages for c in stage.columns}
    owned = {r for stage in stages for r in stage.reasons}
    names = {stage.name for stage in stages}
    reasons = tuple(r for r in record.exclusion_reasons if r not in owned)
    return record.replace(
        **values, exclusion_reasons=reasons, included=not reasons,
        exclusion_detail=record.exclusion_detail if reasons else None,
        stage_fingerprints=tuple(t for t in record.stage_fingerprints
                                 if t.split(":", 1)[0] not in names),
    )


def _run_stage(stage: Stage, item: WorkItem, ctx: StageContext) -> tuple[list[WorkItem], bool]:
    """Run one stage; a failure excludes the item as ``unreadable`` and returns ``ok=False``.

    A failed stage is not marked done, so the next build tries it again.  A
    full disk is not a failure of the image: it raises
    :class:`~curate.errors.OutOfSpace` and the build stops.
    """
    try:
        return stage.run(item, ctx), True
    except Exception as exc:
        if is_out_of_space(exc):  # a full disk is no verdict on the image: the build stops
            if isinstance(exc, OutOfSpace):
                raise
            raise out_of_space(getattr(exc, "filename", None) or ctx.output_root) from exc
        if isinstance(exc, UnreadableImage):
            item.record = item.record.excluded_for("unreadable", detail=f"{stage.name}: {exc}")
        else:  # a stage bug must cost one row, never the build
            log.exception("stage %s failed on %s", stage.name, printable(item.record.source_path))
            item.record = item.record.excluded_for(
                "unreadable", detail=f"stage {stage.name} failed: {describe(exc)}"
            ).with_warning(f"{INTERNAL_ERROR}{stage.name}")
    return [item], False


def _timed_stage(stage: Stage, item: WorkItem, ctx: StageContext,
                 clock: StageClock | None) -> tuple[list[WorkItem], bool]:
    if clock is None:
        return _run_stage(stage, item, ctx)
    record = item.record
    with clock.time(record.image_id, record.source_path, str(record.modality), stage.name):
        return _run_stage(stage, item, ctx)


def process_item(item: WorkItem, stages: Sequence[Stage], ctx: StageContext,
                 fps: dict[str, str], start: int = 0,
                 clock: StageClock | None = None) -> list[ImageRecord]:
    """Run ``stages[start:]`` on one item and on every item it derives; return their rows.

    With a ``clock``, every stage that runs is timed into it.
    """
    queue: list[tuple[WorkItem, int]] = [(item, start)]
    rows: list[ImageRecord] = []
    while queue:
        current, first = queue.pop(0)
        for index in range(first, len(stages)):
            stage = stages[index]
            if not stage.applies(current.record) or _done(current.record, stage.name, fps[stage.name]):
                continue
            produced, ok = _timed_stage(stage, current, ctx, clock)
            current = produced[0]
            if not ok:
                break
            current.record = _mark(current.record, stage.name, fps[stage.name])
            for new in produced[1:]:
                tags = (*current.record.stage_fingerprints, DERIVED_TAG + stage.name)
                new.record = new.record.replace(stage_fingerprints=tuple(dict.fromkeys(tags)))
                queue.append((new, index + 1))
        current.image = None  # free voxel memory as soon as the item is done
        current.extras.clear()
        rows.append(current.record.replace(processed_at=now_iso()))
    return rows


def process_batch(items: list[WorkItem], stages: Sequence[Stage], ctx: StageContext,
                  starts: list[int] | None = None) -> list[ImageRecord]:
    """Process a batch of items (the unit of one Dask task).

    The worker first limits its libraries' threads to ``ctx.threads`` (once per
    process) and, for a build with a run id, writes the batch's stage timings
    to OUTPUT itself: only the rows go back to the driver.
    """
    if ctx.threads > 0:
        limit_threads(ctx.threads)
    fps = stage_fingerprints(stages, ctx.config)
    clock = StageClock(ctx.run_id) if ctx.run_id else None
    rows: list[ImageRecord] = []
    for i, item in enumerate(items):
        rows.extend(process_item(item, stages, ctx, fps, start=starts[i] if starts else 0,
                                 clock=clock))
    if clock is not None:
        write_part(ctx.output_root, clock)
    return rows
