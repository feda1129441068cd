"""Manifest parts: atomic writes, newest row wins, filters."""

from __future__ import annotations

import threading
from pathlib import Path

import pyarrow.parquet as pq

from manifests import io as mio
from manifests.filters import select
from manifests.schema import ImageRecord


def _rec(i: str, **kw: object) -> ImageRecord:
    base = dict(image_id=i, dataset="ds", source_kind="bids", source_path=f"{i}.nii.gz",
                modality="T1w", included=True, processed_at="2026-01-01T00:00:00")
    base.update(kw)
    return ImageRecord(**base)  # type: ignore[arg-type]


def test_write_part_leaves_no_temporary_files(tmp_path: Path) -> None:
    mio.write_part(tmp_path, [_rec("a")], "run1", 0)
    assert [p.name for p in tmp_path.iterdir()] == ["part-run1-000000.parquet"]


def test_newest_row_wins_when_an_image_is_rewritten(tmp_path: Path) -> None:
    mio.write_part(tmp_path, [_rec("a", iqs=2.0), _rec("b")], "run1", 0)
    mio.write_part(tmp_path, [_rec("a", iqs=4.0, processed_at="2026-01-02T00:00:00")], "run2", 0)
    records = {r.image_id: r for r in mio.read_records(tmp_path)}
    assert set(records) == {"a", "b"}
    assert records["a"].iqs == 4.0


def test_compact_drops_parts_of_older_runs(tmp_path: Path) -> None:
    mio.write_part(tmp_path, [_rec("a")], "run1", 0)
    mio.write_part(tmp_path, [_rec("a")], "run2", 0)
    mio.compact(tmp_path, "run2")
    assert [p.name for p in mio.list_parts(tmp_path)] == ["part-run2-000000.parquet"]


def test_reader_sees_only_whole_parts_while_a_writer_runs(tmp_path: Path) -> None:
    stop = threading.Event()
    seen: list[int] = []

    def read_loop() -> None:
        while not stop.is_set():
            seen.append(mio.read_table(tmp_path).num_rows)

    reader = threading.Thread(target=read_loop)
    reader.start()
    for seq in range(30):
        mio.write_part(tmp_path, [_rec(f"{seq}-{k}") for k in range(50)], "run", seq)
    stop.set()
    reader.join()
    assert all(n % 50 == 0 for n in seen)
    assert mio.read_table(tmp_path).num_rows == 1500


def test_empty_manifest_reads_as_empty_table(tmp_path: Path) -> None:
    assert mio.read_table(tmp_path / "missing").num_rows == 0


def test_reader_fills_columns_missing_from_older_parts(tmp_path: Path) -> None:
    table = mio.records_to_table([_rec("a")]).drop_columns(["iqs", "array_path"])
    tmp_path.mkdir(exist_ok=True)
    pq.write_table(table, tmp_path / "part-old-000000.parquet")
    (record,) = mio.read_records(tmp_path)
    assert record.iqs is None and record.image_id == "a"


def test_filters_select_included_modality_iqs_and_anonymization(tmp_path: Path) -> None:
    rows = [
        _rec("a", iqs=1.5, anonymization="none", array_path="arrays/a.b2nd"),
        _rec("b", iqs=3.5, anonymization="defaced"),
        _rec("c", modality="FLAIR", iqs=2.0, anonymization="skull_stripped"),
        _rec("d", included=False, exclusion_reasons=("fov",)),
        _rec("e", iqs=None),
    ]
    mio.write_part(tmp_path, rows, "run", 0)
    ids = lambda t: sorted(t.column("image_id").to_pylist())  # noqa: E731
    assert ids(select(tmp_path)) == ["a", "b", "c", "e"]
    assert ids(select(tmp_path, included=False)) == ["d"]
    assert ids(select(tmp_path, modalities=["FLAIR"])) == ["c"]
    assert ids(select(tmp_path, max_iqs=2.0)) == ["a", "c"]
    assert ids(select(tmp_path, exclude_anonymization=["skull_stripped"])) == ["a", "b", "e"]
    assert ids(select(tmp_path, require_array=True)) == ["a"]
