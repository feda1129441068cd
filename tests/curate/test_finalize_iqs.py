"""Group scores, human ratings and the --max-iqs threshold (curate.finalize)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pyarrow as pa
import pytest

from manifests.filters import Selection, apply
from manifests.schema import ImageRecord, records_to_table

from curate.config import ConfigError, CurateConfig, IqsConfig
from curate.finalize import apply_iqs, auto_score, finalize, group_key, load_ratings


def _row(image_id: str, parts: tuple[float, float, float | None], dataset: str = "ds1",
         modality: str = "T1w", derived_from: str | None = None, **kw) -> ImageRecord:
    noise, blur, artifact = parts
    return ImageRecord(image_id=image_id, dataset=dataset, source_kind="bids", source_path=image_id,
                       modality=modality, included=True, derived_from=derived_from,
                       iqs_noise=noise, iqs_blur=blur, iqs_artifact=artifact,
                       fov_suboptimal=kw.pop("fov", False), corrupted=kw.pop("corrupted", False),
                       iqs_source="auto", **kw)


def test_auto_score_follows_openmind_rules() -> None:
    assert auto_score(_row("a", (2.0, 1.0, 3.0))) == pytest.approx(2.0)
    assert auto_score(_row("a", (2.0, 1.0, 3.0), fov=True)) == pytest.approx(3.0)
    assert auto_score(_row("a", (1.0, 1.0, 1.0), corrupted=True)) == 5.0
    assert auto_score(_row("a", (1.0, 5.0, 1.0))) == 5.0
    assert auto_score(_row("a", (2.0, 4.0, None))) == pytest.approx(3.0)  # FA/MD: no artifact part
    assert auto_score(ImageRecord("x", "d", "bids", "p", "T1w")) is None


def test_group_median_per_dataset_and_modality_and_per_source_dwi() -> None:
    rows = [_row("a", (1, 1, 1)), _row("b", (3, 3, 3)), _row("c", (2, 2, 2)),
            _row("d", (4, 4, 4), modality="T2w"),
            _row("fa", (2, 2, None), modality="FA", derived_from="dwi1"),
            _row("md", (4, 4, None), modality="MD", derived_from="dwi1")]
    out = {r.image_id: r for r in apply_iqs(rows, IqsConfig())}
    assert out["a"].iqs_group == out["b"].iqs_group == 2.0
    assert out["d"].iqs_group == 4.0
    assert out["fa"].iqs_group == out["md"].iqs_group == 3.0
    assert group_key(out["fa"]) == group_key(out["md"])
    assert [out[k].iqs for k in "abc"] == [1.0, 3.0, 2.0] and out["a"].iqs_source == "auto"


def test_score_from_group_uses_the_median() -> None:
    rows = [_row("a", (1, 1, 1)), _row("b", (3, 3, 3)), _row("c", (2, 2, 2))]
    out = apply_iqs(rows, IqsConfig(score_from="group"))
    assert {r.iqs for r in out} == {2.0} and {r.iqs_source for r in out} == {"group"}


def test_human_ratings_take_precedence_image_over_group(tmp_path: Path) -> None:
    csv = tmp_path / "ratings.csv"
    csv.write_text("dataset,modality,image_id,rating\nds1,T1w,,4\nds1,T1w,,5\n,,b,1.5\n")
    ratings = load_ratings(csv)
    assert ratings.by_group[("ds1", "T1w")] == 4.5  # two raters averaged
    out = {r.image_id: r for r in apply_iqs([_row("a", (1, 1, 1)), _row("b", (3, 3, 3)),
                                             _row("t2", (2, 2, 2), modality="T2w")], IqsConfig(), ratings)}
    assert (out["a"].iqs, out["a"].iqs_source) == (4.5, "human")
    assert (out["b"].iqs, out["b"].iqs_source) == (1.5, "human")
    assert (out["t2"].iqs, out["t2"].iqs_source) == (2.0, "auto")


@pytest.mark.parametrize("text, message", [
    ("image_id,score\na,2\n", "rating"),
    ("image_id,rating\na,7\n", "outside"),
    ("dataset,rating\nds1,2\n", "image_id"),
])
def test_bad_ratings_csv_gives_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    csv = tmp_path / "r.csv"
    csv.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_ratings(csv)


def test_max_iqs_excludes_with_reason_and_keeps_the_score() -> None:
    rows = [_row("good", (1, 1, 1)), _row("bad", (4, 4, 4)),
            _row("other", (4, 4, 4)).excluded_for("fov", detail="fov small")]
    out = {r.image_id: r for r in apply_iqs(rows, IqsConfig(max_iqs=2.5))}
    assert out["good"].included and out["good"].exclusion_reasons == ()
    assert not out["bad"].included and out["bad"].exclusion_reasons == ("iqs",)
    assert out["bad"].iqs == 4.0 and "iqs 4.00 > 2.5" in out["bad"].exclusion_detail
    assert out["other"].exclusion_reasons == ("fov",)  # excluded rows are not re-judged


def test_threshold_change_is_undone_on_the_next_build() -> None:
    rows = apply_iqs([_row("bad", (4, 4, 4)).excluded_for("fov")], IqsConfig())
    first = apply_iqs([_row("bad", (4, 4, 4))], IqsConfig(max_iqs=2.0))
    assert not first[0].included
    again = apply_iqs(first, IqsConfig(max_iqs=None))
    assert again[0].included and again[0].exclusion_reasons == () and again[0].exclusion_detail is None
    assert rows[0].exclusion_reasons == ("fov",)


def test_finalize_reads_ratings_from_config(tmp_path: Path) -> None:
    csv = tmp_path / "r.csv"
    csv.write_text("image_id,rating\na,5\n")
    config = dataclasses.replace(CurateConfig(), iqs=IqsConfig(ratings=str(csv), max_iqs=3.0))
    out = finalize([_row("a", (1, 1, 1))], config, tmp_path)
    assert out[0].iqs == 5.0 and out[0].exclusion_reasons == ("iqs",)


def test_config_rejects_unknown_score_source() -> None:
    with pytest.raises(ConfigError):
        IqsConfig(score_from="mean")


def test_manifest_filter_max_iqs_keeps_rows_at_or_below() -> None:
    rows = apply_iqs([_row("a", (1, 1, 1)), _row("b", (3, 3, 3)), ImageRecord("c", "d", "bids", "c", "T1w",
                                                                              included=True)], IqsConfig())
    table = records_to_table(rows)
    kept = apply(table, Selection(max_iqs=2.0))
    assert kept.column("image_id").to_pylist() == ["a"]  # 'c' has no score and is dropped
    assert isinstance(kept, pa.Table)
