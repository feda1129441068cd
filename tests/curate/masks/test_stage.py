"""The masks stage through ``curate build`` on a tiny BIDS tree, and on odd input."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from curate import pipeline
from curate.config import CurateConfig, TriageConfig
from curate.io import ImageData
from curate.stages import default_stages
from curate.stages.base import StageContext, WorkItem
from curate.masks.learned import brain_method
from curate.stages.masks import MasksStage, masks_for
from manifests.schema import ImageRecord

from .conftest import rician


def _save(path: Path, data: np.ndarray, affine: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.round(data).astype(np.int16), affine), str(path))


@pytest.fixture(scope="module")
def built(head_parts, head_template, tmp_path_factory):
    """A two-subject BIDS tree (intact and defaced head, 2 mm) run through ``build``."""
    root = tmp_path_factory.mktemp("masks_bids")
    source, output = root / "bids", root / "out"
    data = rician(head_parts["data"], 12.0, seed=7)[::2, ::2, ::2]
    affine = head_template.affine.copy()
    affine[:3, :3] *= 2
    defaced = data.copy()
    defaced[head_parts["face"][::2, ::2, ::2]] = 0
    (source).mkdir(parents=True)
    (source / "dataset_description.json").write_text('{"Name": "m", "BIDSVersion": "1.9.0"}')
    _save(source / "sub-01/anat/sub-01_T1w.nii.gz", data, affine)
    _save(source / "sub-02/anat/sub-02_T1w.nii.gz", defaced, affine)
    config = CurateConfig(triage=TriageConfig(min_file_size_bytes=0))
    result = pipeline.build(source, output, config, pipeline.RunOptions(workers=1))
    return {r.subject: r for r in result.records}, output, affine, data.shape


def test_stage_is_registered_after_read() -> None:
    names = [s.name for s in default_stages(CurateConfig())]
    assert "masks" in names and names.index("masks") > names.index("read")


def test_build_writes_masks_and_fills_columns(built) -> None:
    rows, output, affine, shape = built
    assert rows["01"].anonymization == "none"
    assert rows["02"].anonymization == "defaced"
    assert rows["01"].anon_fraction == 0.0
    assert 0.01 < rows["02"].anon_fraction < 0.5
    for row in rows.values():
        assert row.included
        assert 0.0 <= row.anonymization_confidence <= 1.0
        assert row.anonymization_method in ("rules", f"rules+{brain_method()}")
        assert row.anon_mask_path.endswith("_desc-anon_mask.nii.gz")
        assert row.anatomy_mask_path.endswith("_desc-anatomy_mask.nii.gz")
        for rel in (row.anon_mask_path, row.anatomy_mask_path):
            img = nib.load(str(output / rel))
            values = np.asanyarray(img.dataobj)
            assert img.get_data_dtype() == np.uint8 and values.dtype == np.uint8
            assert set(np.unique(values).tolist()) <= {0, 1}
            assert img.shape == shape
            np.testing.assert_allclose(img.affine, affine, atol=1e-5)
    dataset_root = output / "/".join(rows["01"].anon_mask_path.split("/")[:3])
    assert (dataset_root / "dataset_description.json").exists()


def test_written_anatomy_is_the_head_and_anon_is_not(built, head_parts) -> None:
    rows, output, _, _ = built
    brain = head_parts["brain"][::2, ::2, ::2]
    row = rows["02"]
    anatomy = np.asanyarray(nib.load(str(output / row.anatomy_mask_path)).dataobj) > 0
    anon = np.asanyarray(nib.load(str(output / row.anon_mask_path)).dataobj) > 0
    assert (anatomy & brain).sum() / brain.sum() >= 0.98
    assert (anon & brain).sum() == 0
    face = head_parts["face"][::2, ::2, ::2] & head_parts["head"][::2, ::2, ::2]
    assert (anon & face).sum() / face.sum() >= 0.7


def test_rebuild_reuses_mask_columns(built, tmp_path) -> None:
    rows, output, _, _ = built
    source = output.parent / "bids"
    config = CurateConfig(triage=TriageConfig(min_file_size_bytes=0))
    again = pipeline.build(source, output, config, pipeline.RunOptions(workers=1))
    by_subject = {r.subject: r for r in again.records}
    assert by_subject["02"].anonymization == "defaced"
    assert by_subject["02"].anon_mask_path == rows["02"].anon_mask_path


def _item(data: np.ndarray) -> WorkItem:
    record = ImageRecord(image_id="x1", dataset="d", source_kind="nifti", modality="T1w",
                         source_path="a.nii.gz", subject="s1")
    item = WorkItem(record=record, source_file=None)
    item.image = ImageData(data=data, affine=np.eye(4), zooms=(1.0,) * data.ndim)
    return item


def test_four_d_image_gets_a_warning_not_a_crash(tmp_path) -> None:
    ctx = StageContext(tmp_path, tmp_path / "out", CurateConfig())
    item = MasksStage().run(_item(np.ones((8, 8, 8, 3), np.float32)), ctx)[0]
    assert item.record.anon_mask_path is None
    assert any("not a 3-D image" in w for w in item.record.warnings)


def test_stage_hands_masks_to_later_stages(tmp_path) -> None:
    rng = np.random.default_rng(0)
    data = rng.random((40, 40, 40, 1)).astype(np.float32) * 3
    data[10:30, 10:30, 10:30] += 100
    ctx = StageContext(tmp_path, tmp_path / "out", CurateConfig())
    item = MasksStage().run(_item(data), ctx)[0]
    assert item.extras["anatomy_mask"].dtype == np.uint8
    assert item.extras["anatomy_mask"].sum() == 20**3
    assert item.extras["anon_mask"].sum() == 0
    assert item.record.anonymization == "none"
    written = nib.load(str(tmp_path / "out" / item.record.anatomy_mask_path))
    assert written.shape == (40, 40, 40)


def test_later_stages_get_masks_from_extras_or_files(tmp_path) -> None:
    rng = np.random.default_rng(0)
    data = rng.random((40, 40, 40)).astype(np.float32) * 3
    data[10:30, 10:30, 10:30] += 100
    ctx = StageContext(tmp_path, tmp_path / "out", CurateConfig())
    item = MasksStage().run(_item(data), ctx)[0]
    from_extras = masks_for(item, ctx)
    item.extras.clear()  # as on a resumed build, where the stage was skipped
    from_files = masks_for(item, ctx)
    for got in (from_extras, from_files):
        assert got is not None
        anatomy, anon = got
        assert anatomy.dtype == anon.dtype == np.uint8
        assert anatomy.sum() == 20**3 and anon.sum() == 0
    assert masks_for(_item(data), ctx) is None
