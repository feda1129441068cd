"""Bad input gets a row with a reason (or a warning) and the build goes on."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from curate import index as index_module
from curate import pipeline
from curate.config import CurateConfig
from manifests.io import read_records


def _t1(mni_t1: nib.Nifti1Image) -> nib.Nifti1Image:
    data = np.asarray(mni_t1.dataobj, dtype=np.float32)
    return nib.Nifti1Image(np.round(data / data.max() * 1000).astype(np.int16), mni_t1.affine)


@pytest.fixture()
def bids_root(tmp_path: Path) -> Path:
    root = tmp_path / "ds"
    root.mkdir()
    (root / "dataset_description.json").write_text('{"Name": "t", "BIDSVersion": "1.9.0"}')
    return root


def _build(root: Path, out: Path) -> dict[str, object]:
    result = pipeline.build(root, out, CurateConfig(), pipeline.RunOptions(workers=1))
    return {r.source_path: r for r in result.records}


def _anat(root: Path, name: str) -> Path:
    path = root / "sub-01" / "anat" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_truncated_gzip_passes_the_header_but_not_the_build(bids_root, tmp_path, mni_t1) -> None:
    path = _anat(bids_root, "sub-01_T1w.nii.gz")
    nib.save(_t1(mni_t1), str(path))
    path.write_bytes(path.read_bytes()[:400_000])
    indexed = {r.source_path: r for r in pipeline.index(
        bids_root, tmp_path / "idx", CurateConfig(), pipeline.RunOptions(workers=1)).records}
    assert indexed["sub-01/anat/sub-01_T1w.nii.gz"].included  # header still reads
    built = _build(bids_root, tmp_path / "out")["sub-01/anat/sub-01_T1w.nii.gz"]
    assert not built.included and built.exclusion_reasons == ("unreadable",)
    assert "Compressed file ended" in (built.exclusion_detail or "")


def test_zero_byte_file_is_unreadable_and_small(bids_root, tmp_path) -> None:
    _anat(bids_root, "sub-01_T1w.nii.gz").write_bytes(b"")
    row = _build(bids_root, tmp_path / "out")["sub-01/anat/sub-01_T1w.nii.gz"]
    assert set(row.exclusion_reasons) == {"unreadable", "size"}


def test_broken_symlink_gets_a_row(bids_root, tmp_path) -> None:
    os.symlink(tmp_path / "gone.nii.gz", _anat(bids_root, "sub-01_T1w.nii.gz"))
    row = _build(bids_root, tmp_path / "out")["sub-01/anat/sub-01_T1w.nii.gz"]
    assert row.exclusion_reasons == ("unreadable",)
    assert "stat" in (row.exclusion_detail or "")


def test_unreadable_permissions_get_a_row(bids_root, tmp_path, mni_t1, monkeypatch) -> None:
    path = _anat(bids_root, "sub-01_T1w.nii.gz")
    nib.save(_t1(mni_t1), str(path))
    path.chmod(0)
    real_access = os.access
    # Tests may run as root, who reads anything: make the permission check see what a user would.
    monkeypatch.setattr(index_module.os, "access",
                        lambda p, mode: False if Path(p) == path else real_access(p, mode))
    row = _build(bids_root, tmp_path / "out")["sub-01/anat/sub-01_T1w.nii.gz"]
    assert row.exclusion_reasons == ("unreadable",)
    assert "permission" in (row.exclusion_detail or "")


def test_invalid_json_sidecar_is_a_warning_in_the_row(bids_root, tmp_path, mni_t1) -> None:
    nib.save(_t1(mni_t1), str(_anat(bids_root, "sub-01_T1w.nii.gz")))
    _anat(bids_root, "sub-01_T1w.json").write_text("{ not json")
    row = _build(bids_root, tmp_path / "out")["sub-01/anat/sub-01_T1w.nii.gz"]
    assert row.included
    assert any("sidecar" in w for w in row.warnings)


def test_non_utf8_file_name_is_indexed_and_read(tmp_path, mni_t1) -> None:
    folder = tmp_path / "clinical"
    folder.mkdir()
    name = os.fsencode(folder) + b"/T1_M\xfcller.nii.gz"
    nib.save(_t1(mni_t1), os.fsdecode(name))
    result = pipeline.build(folder, tmp_path / "out", CurateConfig(), pipeline.RunOptions(workers=1))
    (row,) = result.records
    assert row.included and "\ufffd" in row.source_path
    assert "not valid UTF-8" in row.warnings[0]
    assert len(read_records(tmp_path / "out" / "manifests")) == 1


def test_nan_voxels_warn_and_all_nan_is_empty(bids_root, tmp_path, mni_t1) -> None:
    data = np.asarray(mni_t1.dataobj, dtype=np.float32).copy()
    data[:20] = np.nan
    nib.save(nib.Nifti1Image(data, mni_t1.affine), str(_anat(bids_root, "sub-01_T1w.nii")))
    nib.save(nib.Nifti1Image(np.full(data.shape, np.nan, np.float32), mni_t1.affine),
             str(_anat(bids_root, "sub-01_T2w.nii")))
    rows = _build(bids_root, tmp_path / "out")
    partial, empty = rows["sub-01/anat/sub-01_T1w.nii"], rows["sub-01/anat/sub-01_T2w.nii"]
    assert partial.included and any("non-finite" in w for w in partial.warnings)
    assert empty.exclusion_reasons == ("empty",)


def test_constant_image_is_empty(bids_root, tmp_path, mni_t1) -> None:
    const = np.full(mni_t1.shape, 7, np.int16)
    nib.save(nib.Nifti1Image(const, mni_t1.affine), str(_anat(bids_root, "sub-01_T1w.nii")))
    row = _build(bids_root, tmp_path / "out")["sub-01/anat/sub-01_T1w.nii"]
    assert row.exclusion_reasons == ("empty",) and "constant" in (row.exclusion_detail or "")


def test_five_dimensional_image_is_excluded_with_reason(bids_root, tmp_path) -> None:
    data = np.random.default_rng(0).normal(100, 10, (64, 64, 64, 2, 2)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])), str(_anat(bids_root, "sub-01_T1w.nii")))
    row = _build(bids_root, tmp_path / "out")["sub-01/anat/sub-01_T1w.nii"]
    assert "modality" in row.exclusion_reasons and "5D" in (row.exclusion_detail or "")


def test_garbage_bytes_with_nifti_name_are_unreadable(bids_root, tmp_path) -> None:
    _anat(bids_root, "sub-01_T1w.nii.gz").write_bytes(os.urandom(300_000))
    row = _build(bids_root, tmp_path / "out")["sub-01/anat/sub-01_T1w.nii.gz"]
    assert row.exclusion_reasons == ("unreadable",)
