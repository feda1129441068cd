"""Selections: per-modality IQS limits, unscored rows, dataset exclusion, and the drop counts."""

from __future__ import annotations

import pyarrow as pa

from manifests import io as mio
from manifests.filters import Selection, apply, explain
from manifests.schema import ImageRecord


def _rec(i: str, **kw: object) -> ImageRecord:
    base = dict(image_id=i, dataset="ds", subject=f"s{i}", source_kind="bids",
                source_path=f"{i}.nii.gz", modality="T1w", included=True)
    base.update(kw)
    return ImageRecord(**base)  # type: ignore[arg-type]


def _table(rows: list[ImageRecord]) -> pa.Table:
    return mio.records_to_table(rows)


def _ids(table: pa.Table) -> list[str]:
    return sorted(table["image_id"].to_pylist())


TABLE = _table([
    _rec("t1_good", iqs=2.0), _rec("t1_bad", iqs=3.2), _rec("t1_none"),
    _rec("fa_ok", modality="FA", iqs=3.4), _rec("fa_bad", modality="FA", iqs=3.6),
    _rec("other_ds", dataset="big", iqs=1.0, anonymization="skull_stripped"),
    _rec("excl", included=False, iqs=1.0),
])


def test_a_modality_limit_replaces_the_overall_one_for_that_modality_only() -> None:
    sel = Selection(max_iqs=3.0, max_iqs_by_modality=(("FA", 3.5),))
    assert _ids(apply(TABLE, sel)) == ["fa_ok", "other_ds", "t1_good"]


def test_a_modality_limit_alone_leaves_other_modalities_unlimited() -> None:
    sel = Selection(max_iqs_by_modality=(("FA", 3.5),))
    assert _ids(apply(TABLE, sel)) == ["fa_ok", "other_ds", "t1_bad", "t1_good", "t1_none"]


def test_unscored_rows_pass_a_limit_only_when_asked() -> None:
    assert "t1_none" not in _ids(apply(TABLE, Selection(max_iqs=3.0)))
    assert "t1_none" in _ids(apply(TABLE, Selection(max_iqs=3.0, keep_unscored=True)))
    assert "t1_bad" not in _ids(apply(TABLE, Selection(max_iqs=3.0, keep_unscored=True)))


def test_excluding_a_dataset_drops_only_its_rows() -> None:
    kept = _ids(apply(TABLE, Selection(exclude_datasets=("big",))))
    assert kept == sorted(set(_ids(apply(TABLE, Selection()))) - {"other_ds"})


def test_a_looser_limit_never_keeps_fewer_rows() -> None:
    sizes = [apply(TABLE, Selection(max_iqs=x)).num_rows for x in (1.0, 2.0, 3.0, 3.5, 5.0)]
    assert sizes == sorted(sizes)


def test_explain_counts_add_up_to_the_table() -> None:
    sel = Selection(modalities=("T1w",), max_iqs=3.0, exclude_anonymization=("skull_stripped",))
    before, kept, dropped = explain(TABLE, sel)
    assert (before.rows, before.datasets) == (7, 2)
    assert kept.rows == apply(TABLE, sel).num_rows == 1
    assert kept.rows + sum(c.rows for _, c in dropped) == before.rows
    assert kept.subjects + sum(c.subjects for _, c in dropped) == before.subjects
    assert kept.datasets + sum(c.datasets for _, c in dropped) == before.datasets
    reasons = dict(dropped)
    assert reasons["excluded by curate"].rows == 1
    assert reasons["modality not selected"].rows == 2  # the FA rows
    assert reasons["anonymization left out"].rows == 1 and reasons["anonymization left out"].datasets == 1
