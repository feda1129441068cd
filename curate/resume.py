"""What a previous build left in OUTPUT that a new index or build may keep.

One rule for ``curate build`` (which images need work) and ``curate index``
(which stage results to keep when it rewrites the manifest of a built OUTPUT):
an image whose source file is unchanged (size and mtime) keeps the columns of
every stage whose fingerprint still matches (:func:`curate.stages.runner.restore`);
it is *finished* when that is all its old row had and no stage that applies
to it is left undone.  Rows derived from it (DWI maps) stay with it.
"""

from __future__ import annotations

from collections.abc import Sequence

from manifests.schema import ImageRecord

from curate.finalize import as_stages_left_it
from curate.stages.base import Stage
from curate.stages.runner import producer_of, restore


def unchanged(fresh: ImageRecord, old: ImageRecord | None) -> bool:
    """Whether ``old`` describes the same source file as ``fresh`` (size and mtime)."""
    return old is not None and (old.file_size_bytes, old.source_mtime_ns) == (
        fresh.file_size_bytes, fresh.source_mtime_ns)


def pending(record: ImageRecord, stages: Sequence[Stage], fps: dict[str, str]) -> list[str]:
    """Names of the stages that apply to ``record`` (as the stages left it) but are not done."""
    left = as_stages_left_it(record)
    return [s.name for s in stages
            if s.applies(left) and f"{s.name}:{fps[s.name]}" not in record.stage_fingerprints]


def resume(fresh: ImageRecord, old: ImageRecord | None, stages: Sequence[Stage],
           fps: dict[str, str]) -> tuple[ImageRecord, bool]:
    """The row to start ``fresh`` from, and whether ``old`` can be kept as it is (no work left)."""
    same = unchanged(fresh, old)
    record = restore(fresh, old if same else None, stages, fps)
    finished = (same and old is not None and as_stages_left_it(record) == as_stages_left_it(old)
                and not pending(old, stages, fps))
    return record, finished


def children_of(previous: dict[str, ImageRecord]) -> dict[str, list[ImageRecord]]:
    """Derived rows of a previous manifest, by the ``image_id`` they derive from."""
    children: dict[str, list[ImageRecord]] = {}
    for row in previous.values():
        if row.derived_from:
            children.setdefault(row.derived_from, []).append(row)
    return children


def kept_rows(fresh: Sequence[ImageRecord], previous: dict[str, ImageRecord], stages: Sequence[Stage],
              fps: dict[str, str]) -> list[ImageRecord]:
    """``fresh`` index rows with the stage results of ``previous`` that are still valid.

    A finished image keeps its old row and its derived rows; an image with work
    left keeps what its unchanged stages made, and the derived rows of a
    producing stage that is still done; a changed or new image is its fresh row.
    """
    children = children_of(previous)
    rows: list[ImageRecord] = []
    for row in fresh:
        record, finished = resume(row, previous.get(row.image_id), stages, fps)
        rows.append(previous[row.image_id] if finished else record)
        for kid in children.get(row.image_id, []):
            producer = producer_of(kid)
            if producer in fps and f"{producer}:{fps[producer]}" in record.stage_fingerprints:
                rows.append(kid)
    return rows


__all__ = ["children_of", "kept_rows", "pending", "resume", "unchanged"]
