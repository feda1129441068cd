"""Every triage rule, on real images from pip packages and degraded copies of them."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from curate.config import TriageConfig
from curate.index import IndexBatch, index_batch


def _index(tmp_path: Path, img: nib.Nifti1Image, rel: str, config: TriageConfig = TriageConfig()):
    path = tmp_path / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))
    batch = IndexBatch(dataset="ds", root=str(tmp_path), kind="bids", rel_paths=(rel,))
    return index_batch(batch, config)[0]


def _int16(img: nib.Nifti1Image) -> nib.Nifti1Image:
    data = np.asarray(img.dataobj, dtype=np.float32)
    return nib.Nifti1Image(np.round(data / data.max() * 1000).astype(np.int16), img.affine)


def test_real_t1w_template_is_included(tmp_path: Path, mni_t1: nib.Nifti1Image) -> None:
    record = _index(tmp_path, _int16(mni_t1), "sub-01/anat/sub-01_T1w.nii.gz")
    assert record.included, record.exclusion_detail
    assert record.modality == "T1w" and record.shape == (197, 233, 189)
    assert record.fov_mm == pytest.approx((197.0, 233.0, 189.0))


def test_scout_slab_is_excluded_for_field_of_view(tmp_path: Path, mni_t1: nib.Nifti1Image) -> None:
    slab = nib.Nifti1Image(_int16(mni_t1).get_fdata()[:, :, 80:120].astype(np.int16), mni_t1.affine)
    record = _index(tmp_path, slab, "sub-01/anat/sub-01_acq-scout_T1w.nii.gz")
    assert record.exclusion_reasons == ("fov",)
    assert "40.0" in (record.exclusion_detail or "")


def test_thick_slices_are_excluded_for_spacing(tmp_path: Path, mni_t1: nib.Nifti1Image) -> None:
    data = np.asarray(_int16(mni_t1).dataobj)[:, :, ::7]
    affine = mni_t1.affine.copy()
    affine[2, 2] *= 7
    record = _index(tmp_path, nib.Nifti1Image(np.ascontiguousarray(data), affine),
                    "sub-01/anat/sub-01_T2w.nii.gz")
    assert "spacing" in record.exclusion_reasons
    assert record.spacing_mm == pytest.approx((1.0, 1.0, 7.0))


def test_spacing_threshold_is_a_setting(tmp_path: Path, mni_t1: nib.Nifti1Image) -> None:
    data = np.asarray(_int16(mni_t1).dataobj)[:, :, ::7]
    affine = mni_t1.affine.copy()
    affine[2, 2] *= 7
    img = nib.Nifti1Image(np.ascontiguousarray(data), affine)
    relaxed = TriageConfig(max_spacing_mm=8.0)
    assert _index(tmp_path, img, "sub-01/anat/sub-01_T2w.nii.gz", relaxed).included


def test_small_file_is_excluded_for_size(tmp_path: Path, mni_t1: nib.Nifti1Image) -> None:
    # 4 mm voxels keep a 200 mm field of view but compress to a few kilobytes.
    data = np.asarray(_int16(mni_t1).dataobj)[::4, ::4, ::4]
    affine = mni_t1.affine.copy()
    affine[:3, :3] *= 4
    record = _index(tmp_path, nib.Nifti1Image(np.ascontiguousarray(data), affine),
                    "sub-01/anat/sub-01_T1w.nii.gz")
    assert record.exclusion_reasons == ("size",)
    assert record.file_size_bytes is not None and record.file_size_bytes < 200 * 1024


def test_bold_run_is_excluded_for_modality(tmp_path: Path, mni_t1: nib.Nifti1Image) -> None:
    small = np.asarray(_int16(mni_t1).dataobj)[::3, ::3, ::3]
    affine = mni_t1.affine.copy()
    affine[:3, :3] *= 3
    bold = np.stack([small + i for i in range(6)], -1).astype(np.int16)
    record = _index(tmp_path, nib.Nifti1Image(bold, affine), "sub-01/func/sub-01_task-rest_bold.nii.gz")
    assert record.modality == "BOLD" and "modality" in record.exclusion_reasons
    assert record.n_volumes == 6


def test_dwi_series_gets_its_own_row_and_is_not_included(tmp_path: Path, dipy_dwi) -> None:
    nii, _, _ = dipy_dwi
    record = _index(tmp_path, nib.load(str(nii)), "sub-01/dwi/sub-01_dwi.nii.gz")
    assert record.modality == "DWI" and not record.included
    assert "modality" in record.exclusion_reasons
    assert "diffusion" in (record.exclusion_detail or "")


def test_every_applicable_reason_is_recorded(tmp_path: Path, mni_t1: nib.Nifti1Image) -> None:
    data = np.asarray(_int16(mni_t1).dataobj)[::8, ::8, 90:92]
    affine = mni_t1.affine.copy()
    affine[0, 0] *= 8
    affine[1, 1] *= 8
    record = _index(tmp_path, nib.Nifti1Image(np.ascontiguousarray(data), affine),
                    "sub-01/anat/sub-01_T1w.nii.gz")
    assert set(record.exclusion_reasons) == {"fov", "spacing", "size"}


@pytest.mark.parametrize("rel, modality, included", [
    ("sub-01/anat/sub-01_inplaneT2.nii.gz", "inplaneT2", True),
    ("sub-01/anat/sub-01_T1map.nii.gz", "T1map", True),
    ("sub-01/anat/sub-01_echo-1_MEGRE.nii.gz", "T2starw", True),
    ("sub-01/func/sub-01_task-rest_sbref.nii.gz", "sbref", True),
    ("sub-01/fmap/sub-01_phasediff.nii.gz", "other", False),
])
def test_openminds_smaller_groups_are_pretraining_images_and_fieldmaps_are_not(
        tmp_path: Path, mni_t1: nib.Nifti1Image, rel: str, modality: str, included: bool) -> None:
    record = _index(tmp_path, _int16(mni_t1), rel)
    assert record.modality == modality
    assert record.included is included
    assert record.exclusion_reasons == (() if included else ("modality",))
