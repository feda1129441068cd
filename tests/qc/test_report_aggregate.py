"""Dataset-card numbers from a manifest: hand-made rows with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd

from manifests.schema import ImageRecord, records_to_table
from qc.report import aggregate as agg
from qc.report.synthetic import synthetic_table


def _row(i: int, dataset: str, subject: str | None, modality: str = "T1w", session: str | None = None,
         reasons: tuple[str, ...] = (), **kw: object) -> ImageRecord:
    return ImageRecord(image_id=f"id{i:03d}", dataset=dataset, source_kind="bids",
                       source_path=f"sub-{subject}/anat/f{i}.nii.gz", modality=modality,
                       subject=subject, session=session, included=not reasons,
                       exclusion_reasons=reasons, **kw)


def _data(records: list[ImageRecord]) -> agg.ReportData:
    return agg.prepare(records_to_table(records))


def test_card_counts_subjects_per_dataset_and_sessions_per_subject() -> None:
    data = _data([
        _row(1, "a", "01", session="1"), _row(2, "a", "01", session="2"),
        _row(3, "a", "02"), _row(4, "b", "01"),  # same label, other dataset: another subject
        _row(5, "b", "03", reasons=("fov",)), _row(6, "c", None),
    ])
    card = agg.card(data.frame)
    assert card.loc["all indexed"].tolist() == [6, 4, 5, 3]
    assert card.loc["included"].tolist() == [5, 3, 4, 3]


def test_reasons_are_counted_per_image_and_joined_for_the_table() -> None:
    data = _data([_row(1, "a", "1", reasons=("fov", "spacing")), _row(2, "a", "2", reasons=("fov",)),
                  _row(3, "a", "3")])
    assert data.reason_counts.to_dict() == {"fov": 2, "spacing": 1}
    assert data.frame["reasons"].tolist() == ["fov, spacing", "fov", ""]
    table = agg.exclusion_table(data)
    assert table.loc["fov", "share"] == 1.0 and table.loc["spacing", "share"] == 0.5


def test_modality_counts_split_included_and_excluded() -> None:
    data = _data([_row(1, "a", "1"), _row(2, "a", "2", reasons=("empty",)),
                  _row(3, "a", "3", modality="FLAIR"), _row(4, "a", "4")])
    counts = agg.modality_counts(data.frame)
    assert counts.index.tolist() == ["T1w", "FLAIR"]
    assert counts.loc["T1w"].tolist() == [3, 2, 1]


def test_coverage_counts_largest_datasets_needed_for_each_share() -> None:
    rows = [_row(i, "big", str(i)) for i in range(6)] + [_row(10 + i, "mid", str(i)) for i in range(3)]
    rows.append(_row(20, "small", "0"))
    cumulative = agg.dataset_cumulative(_data(rows).frame)
    assert cumulative["cumulative"].tolist() == [6, 9, 10]
    # 50% of 10 is in the biggest; 75% needs two; exactly 90% is reached with two.
    assert agg.coverage(cumulative) == {0.5: 1, 0.75: 2, 0.9: 2}


def test_metadata_is_normalised_and_only_present_fields_returned() -> None:
    rows = [
        _row(1, "a", "1", age=30.0, sex="male", manufacturer="SIEMENS", field_strength_t=2.89),
        _row(2, "a", "2", age=150.0, sex="M", manufacturer="Siemens Healthineers"),
        _row(3, "a", "3", age=40.0, sex="f", manufacturer="GE MEDICAL SYSTEMS", field_strength_t=3.0),
        _row(4, "a", "4", age=50.0, sex="F", reasons=("fov",)),  # excluded: not counted
    ]
    meta = agg.metadata(_data(rows).frame)
    assert meta["age"].tolist() == [30.0, 40.0]  # 150 is not an age
    assert meta["sex"].to_dict() == {"M": 2, "F": 1}
    assert meta["manufacturer"].to_dict() == {"SIEMENS": 2, "GE": 1}
    assert meta["field_strength_t"].to_dict() == {"2.9 T": 1, "3 T": 1}
    assert "age" not in agg.metadata(_data([_row(5, "a", "5")]).frame)


def test_iqs_summary_and_missing_iqs() -> None:
    rows = [_row(i, "a", str(i), iqs=v) for i, v in enumerate([1.0, 2.0, 3.5, 4.5])]
    summary = agg.iqs_summary(_data(rows).frame, threshold=3.0)
    assert summary.loc["T1w"].tolist() == [4, 2.75, 4.5, 2]
    no_iqs = _data([_row(9, "a", "9")]).frame
    assert agg.iqs_by_modality(no_iqs) == {} and agg.iqs_summary(no_iqs, 3.0).empty


def test_excluded_rows_are_capped_and_sorted() -> None:
    rows = [_row(i, "b" if i % 2 else "a", str(i), reasons=("size",),
                 exclusion_detail=f"{i} bytes") for i in range(7)]
    table = agg.excluded_rows(_data(rows).frame, limit=4)
    assert len(table) == 4 and table["dataset"].tolist() == ["a", "a", "a", "a"]
    assert list(table.columns) == ["dataset", "file", "modality", "reasons", "detail"]


def test_empty_manifest_gives_zero_counts() -> None:
    data = _data([])
    assert agg.card(data.frame).to_numpy().sum() == 0
    assert agg.modality_counts(data.frame).empty and agg.dataset_cumulative(data.frame).empty


def test_vectorised_counts_match_a_per_row_count_on_a_large_manifest() -> None:
    table = synthetic_table(5000, seed=3, n_datasets=50)
    data = agg.prepare(table)
    rows = table.select(["modality", "included", "exclusion_reasons"]).to_pylist()
    per_row: dict[str, int] = {}
    for row in rows:
        for reason in row["exclusion_reasons"]:
            per_row[reason] = per_row.get(reason, 0) + 1
    assert data.reason_counts.to_dict() == per_row
    counts = agg.modality_counts(data.frame)
    t1w = [r for r in rows if r["modality"] == "T1w"]
    assert counts.loc["T1w", "images"] == len(t1w)
    assert counts.loc["T1w", "included"] == sum(r["included"] for r in t1w)
    assert isinstance(counts, pd.DataFrame) and np.issubdtype(counts["images"].dtype, np.integer)
