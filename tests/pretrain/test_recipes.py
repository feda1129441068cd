"""The OpenMind recipes of docs/pretrain.md load as configs and select what they say."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from manifests import io as mio
from manifests.filters import apply
from manifests.schema import ImageRecord
from pretrain.config import DataConfig, load_config_text

DOC = Path(__file__).resolve().parents[2] / "docs" / "pretrain.md"


def recipes() -> list[str]:
    """Every config of the recipes section: TOML blocks, one config per blank-line-separated chunk."""
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("### Recipes"):text.index("## Loading files")]
    blocks = re.findall(r"```toml\n(.*?)```", section, re.S)
    return [chunk.strip() for block in blocks for chunk in block.split("\n\n") if chunk.strip()]


def _rows() -> list[ImageRecord]:
    rows, n = [], 0
    for modality in ("T1w", "T2w", "FLAIR", "FA", "PDw"):
        for anon in ("none", "defaced", "face_blurred", "skull_stripped"):
            for iqs in (1.2, 2.0, 2.7, 3.2, None):
                rows.append(ImageRecord(image_id=f"i{n}", dataset=f"d{n % 3}", subject=f"s{n}",
                                        source_kind="bids", source_path=f"{n}.nii.gz", modality=modality,
                                        included=True, iqs=iqs, anonymization=anon,
                                        array_path=f"arrays/{n}.b2z"))
                n += 1
    return rows


def _keeps(d: DataConfig, r: ImageRecord) -> bool:
    """The selection's meaning, row by row (independent of the Arrow implementation)."""
    limit = d.max_iqs_by_modality.get(r.modality, d.max_iqs)
    iqs_ok = limit is None or (r.iqs <= limit if r.iqs is not None else d.keep_unscored)
    return ((not d.modalities or r.modality in d.modalities)
            and (not d.datasets or r.dataset in d.datasets) and r.dataset not in d.exclude_datasets
            and r.anonymization not in d.exclude_anonymization and iqs_ok)


def test_the_page_holds_every_recipe() -> None:
    assert len(recipes()) == 10


def test_table_7_recipes_switch_the_anonymization_aware_loss() -> None:
    methods = [load_config_text(t).method for t in recipes() if "[method]" in t]
    assert sorted((m.name, m.anonymization_aware) for m in methods) == [
        ("mae", False), ("mae", True), ("s3d", False), ("s3d", True)]


@pytest.mark.parametrize("text", recipes())
def test_each_recipe_loads_and_keeps_exactly_what_it_says(text: str) -> None:
    data = load_config_text(text).data
    rows = _rows()
    table = mio.records_to_table(rows)
    kept = set(apply(table, dataclasses.replace(data.selection(), require_array=True))["image_id"].to_pylist())
    assert kept == {r.image_id for r in rows if _keeps(data, r)}
    assert kept  # every recipe trains on something


def test_the_quality_recipes_are_nested() -> None:
    rows = mio.records_to_table(_rows())
    sizes = [apply(rows, load_config_text(f"[data]\nmax_iqs = {x}\n").data.selection()).num_rows
             for x in (1.5, 2.5, 3.0)]
    assert sizes[0] < sizes[1] < sizes[2]
