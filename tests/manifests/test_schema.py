"""The typed record and the Arrow schema must agree, and rows must round-trip."""

from __future__ import annotations

import dataclasses
import typing

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from manifests.schema import (
    ARROW_SCHEMA, SCHEMA_VERSION, ExclusionReason, ImageRecord, make_image_id,
    records_to_table, table_to_records,
)

_SCALARS = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}


def _arrow_type(annotation: object) -> pa.DataType:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is tuple:
        return pa.list_(_SCALARS[typing.get_args(annotation)[0]])
    if args:
        return _arrow_type(args[0])
    return _SCALARS[annotation]


def test_dataclass_and_arrow_schema_agree_field_by_field() -> None:
    hints = typing.get_type_hints(ImageRecord)
    fields = [f.name for f in dataclasses.fields(ImageRecord)]
    assert fields == ARROW_SCHEMA.names
    for name in fields:
        assert ARROW_SCHEMA.field(name).type == _arrow_type(hints[name]), name


def test_schema_version_is_in_parquet_metadata(tmp_path) -> None:
    path = tmp_path / "m.parquet"
    pq.write_table(records_to_table([]), path)
    assert pq.read_schema(path).metadata[b"schema_version"] == SCHEMA_VERSION.encode()


def test_records_round_trip_through_parquet(tmp_path) -> None:
    record = ImageRecord(
        image_id="a", dataset="d", source_kind="bids", source_path="sub-01/anat/x.nii.gz",
        modality="T1w", included=False, exclusion_reasons=("fov", "size"),
        shape=(10, 20, 30), spacing_mm=(1.0, 1.0, 2.5), fov_mm=(10.0, 20.0, 75.0),
        age=33.5, corrupted=True, stage_fingerprints=("read:abc",),
    )
    path = tmp_path / "m.parquet"
    pq.write_table(records_to_table([record, ImageRecord("b", "d", "nifti", "y.nii", "T2w")]), path)
    back = table_to_records(pq.read_table(path))
    assert back[0] == record
    assert back[1].exclusion_reasons == () and back[1].shape is None


def test_excluded_for_keeps_reasons_unique_and_ordered() -> None:
    r = ImageRecord("a", "d", "bids", "x", "T1w", included=True)
    r = r.excluded_for("fov", detail="small").excluded_for("size", "fov", detail="tiny")
    assert r.included is False
    assert r.exclusion_reasons == ("fov", "size")
    assert r.exclusion_detail == "small; tiny"


def test_image_id_is_stable_and_distinguishes_paths() -> None:
    a = make_image_id("ds", "sub-01/anat/sub-01_T1w.nii.gz")
    assert a == make_image_id("ds", "sub-01/anat/sub-01_T1w.nii.gz")
    assert a != make_image_id("ds", "sub-02/anat/sub-02_T1w.nii.gz")
    assert a != make_image_id("ds2", "sub-01/anat/sub-01_T1w.nii.gz")
    assert len(a) == 16


def test_records_are_immutable() -> None:
    r = ImageRecord("a", "d", "bids", "x", "T1w")
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.included = True  # type: ignore[misc]


def test_exclusion_vocabulary_is_the_documented_one() -> None:
    assert {r.value for r in ExclusionReason} == {
        "fov", "spacing", "size", "unreadable", "empty", "modality", "gradients", "iqs"}


def test_row_from_fields_fills_defaults_and_rejects_unknown_or_missing_columns() -> None:
    from manifests.schema import ImageRecord, row_from_fields, rows_to_table, table_to_records

    row = row_from_fields({"image_id": "a", "dataset": "d", "source_kind": "bids", "source_path": "x.nii",
                           "modality": "T1w", "shape": (2, 3, 4), "included": True})
    record = ImageRecord(*row)
    assert record.shape == (2, 3, 4) and record.exclusion_reasons == () and record.iqs is None
    assert table_to_records(rows_to_table([row])) == [record]
    with pytest.raises(KeyError):
        row_from_fields({"image_id": "a", "no_such_column": 1})
    with pytest.raises(ValueError, match="dataset"):
        row_from_fields({"image_id": "a", "source_kind": "bids", "source_path": "x", "modality": "T1w"})
