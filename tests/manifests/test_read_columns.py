"""Reading a subset of manifest columns keeps the newest row per image."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from manifests import io as mio
from manifests.schema import ImageRecord


def _record(image_id: str, modality: str, stamp: str) -> ImageRecord:
    return ImageRecord(image_id=image_id, dataset="d", source_kind="nifti", source_path=f"{image_id}.nii",
                       modality=modality, included=True, processed_at=stamp)


def test_column_subset_read_deduplicates_like_the_full_read(tmp_path: Path) -> None:
    mio.write_part(tmp_path, [_record("a", "T1w", "2026-01-01"), _record("b", "T2w", "2026-01-01")], "r1", 0)
    mio.write_part(tmp_path, [_record("a", "FLAIR", "2026-02-01")], "r2", 0)
    subset = mio.read_table(tmp_path, columns=["modality", "included"])
    assert subset.column_names == ["image_id", "modality", "included", "processed_at"]
    assert dict(zip(subset["image_id"].to_pylist(), subset["modality"].to_pylist())) == \
        {"a": "FLAIR", "b": "T2w"}
    full = mio.read_table(tmp_path)
    assert sorted(full["image_id"].to_pylist()) == sorted(subset["image_id"].to_pylist())


def test_column_missing_from_an_older_part_reads_as_null(tmp_path: Path) -> None:
    part = mio.write_part(tmp_path, [_record("a", "T1w", "2026-01-01")], "r1", 0)
    pq.write_table(pq.read_table(part).drop_columns(["iqs"]), part)
    table = mio.read_table(tmp_path, columns=["iqs", "modality"])
    assert table["iqs"].to_pylist() == [None] and table["modality"].to_pylist() == ["T1w"]
