"""The ``arrays`` stage glued to files: outputs, manifest columns, masks, reruns."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from manifests.schema import ImageRecord

from curate.array_file import read_array
from curate.arrays import unpack_masks
from curate.config import CurateConfig
from curate.io import write_nifti
from curate.stages import default_stages
from curate.stages.arrays import ArraysStage
from curate.stages.base import StageContext, WorkItem
from curate.stages.runner import process_item, stage_fingerprints


@pytest.fixture()
def source(tmp_path: Path, mni_t1: nib.Nifti1Image) -> Path:
    path = tmp_path / "src" / "sub-01_T1w.nii.gz"
    data = np.asarray(mni_t1.dataobj, np.float32)[30:170, 30:200, 20:170]
    write_nifti(path, data, mni_t1.affine)
    return path


def _item(source: Path, **extras: np.ndarray) -> WorkItem:
    record = ImageRecord(image_id="img01", dataset="ds1", source_kind="nifti", modality="T1w",
                         source_path=source.name, subject="01", included=True)
    return WorkItem(record=record, source_file=str(source), extras=dict(extras))


def _ctx(tmp_path: Path) -> StageContext:
    return StageContext(source_root=tmp_path / "src", output_root=tmp_path / "out", config=CurateConfig())


def test_stage_writes_array_and_fills_manifest_columns(tmp_path, source):
    item = ArraysStage().run(_item(source), _ctx(tmp_path))[0]
    rec = item.record
    assert rec.array_path == "arrays/ds1/img01.b2z"
    image, masks, meta = read_array(tmp_path / "out" / rec.array_path)
    assert image.shape == rec.array_shape and masks.shape == rec.array_shape
    assert rec.array_spacing_mm == (1.0, 1.0, 1.0)
    assert len(rec.array_crop_box) == 6 and len(rec.array_affine) == 16
    assert np.allclose(np.reshape(rec.array_affine, (4, 4)), meta["affine"])
    src = nib.load(source)
    src_data = np.asarray(src.dataobj, np.float32)
    # any array voxel maps back to its source voxel: same intensity up to the z-score
    vox = np.array([[10, 20, 30], [60, 70, 80], [5, 100, 40]])
    back = (np.linalg.inv(src.affine) @ np.reshape(rec.array_affine, (4, 4)) @ np.c_[vox, np.ones(3)].T)[:3]
    src_vals = src_data[tuple(np.rint(back).astype(int))]
    arr_vals = image[tuple(vox.T)]
    slope, intercept = np.polyfit(src_vals, arr_vals, 1)
    assert np.allclose(arr_vals, slope * src_vals + intercept, atol=5e-3)
    assert not list((tmp_path / "out").rglob("*.tmp*"))
    umask = os.umask(0)
    os.umask(umask)
    # the usual mode of a new file, not blosc2's private 0600 temporary
    assert (tmp_path / "out" / rec.array_path).stat().st_mode & 0o777 == 0o666 & ~umask


def test_stage_prefers_in_memory_masks(tmp_path, source):
    shape = nib.load(source).shape
    anat = np.zeros(shape, np.uint8)
    anat[40:100, 50:120, 30:110] = 1
    anon = np.zeros(shape, np.uint8)
    anon[40:60, 50:60, 30:40] = 1
    item = ArraysStage().run(_item(source, anatomy_mask=anat, anon_mask=anon), _ctx(tmp_path))[0]
    _, masks, _ = read_array(tmp_path / "out" / item.record.array_path)
    anatomy, anon_out = unpack_masks(masks)
    assert anatomy.sum() == anat.sum() and anon_out.sum() == anon.sum()
    # cropped to the anatomy box plus the default 8 mm margin
    assert item.record.array_shape == (60 + 16, 70 + 16, 80 + 16)


def test_stage_reads_mask_files_named_in_manifest(tmp_path, source):
    src = nib.load(source)
    anat = np.zeros(src.shape, np.uint8)
    anat[20:90, 20:90, 20:90] = 1
    write_nifti(tmp_path / "out" / "derivatives" / "anat.nii.gz", anat, src.affine)
    item = _item(source)
    item.record = item.record.replace(anatomy_mask_path="derivatives/anat.nii.gz")
    rec = ArraysStage().run(item, _ctx(tmp_path))[0].record
    assert rec.array_shape == (70 + 16, 70 + 16, 70 + 16)
    assert not rec.warnings


def test_mismatched_mask_falls_back_with_warning(tmp_path, source):
    item = _item(source, anatomy_mask=np.ones((5, 5, 5), np.uint8))
    rec = ArraysStage().run(item, _ctx(tmp_path))[0].record
    assert rec.array_path is not None
    assert any("anatomy_mask shape" in w for w in rec.warnings)


def test_rerun_is_idempotent(tmp_path, source):
    ctx = _ctx(tmp_path)
    first = ArraysStage().run(_item(source), ctx)[0].record
    a1, m1, _ = read_array(tmp_path / "out" / first.array_path)
    second = ArraysStage().run(_item(source), ctx)[0].record
    a2, m2, _ = read_array(tmp_path / "out" / second.array_path)
    assert first == second
    assert np.array_equal(a1, a2) and np.array_equal(m1, m2)
    assert len(list((tmp_path / "out" / "arrays").rglob("*"))) == 2  # ds1/ and the one file


def test_registered_last_and_resumed_by_runner(tmp_path, source):
    config = CurateConfig()
    stages = default_stages(config)
    names = [stage.name for stage in stages]
    assert [n for n in names if n != "thumbnails"][-1] == "arrays"  # only thumbnails come later
    ctx = _ctx(tmp_path)
    fps = stage_fingerprints(stages, config)
    (row,) = process_item(_item(source), stages, ctx, fps)
    assert f"arrays:{fps['arrays']}" in row.stage_fingerprints and row.array_path
