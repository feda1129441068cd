"""DICOM trees: one row per series, geometry checks, localizers, dcm2niix conversion."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from curate import dicom, pipeline
from curate.config import CurateConfig
from curate.dicom_geometry import series_geometry
from curate.demo import write_dicom_series
from manifests.schema import SourceKind


@pytest.fixture()
def volume(mni_t1: nib.Nifti1Image) -> np.ndarray:
    data = np.asarray(mni_t1.dataobj, dtype=np.float32)
    return np.round(data / data.max() * 1000).astype(np.int16)


def _build(tree: Path, out: Path):
    result = pipeline.build(tree, out, CurateConfig(),
                            pipeline.RunOptions(workers=1, source_kind=SourceKind.DICOM))
    return {r.source_path: r for r in result.records}


def test_series_is_converted_once_with_dcm2niix(tmp_path, volume, pydicom_mr) -> None:
    tree = tmp_path / "export"
    write_dicom_series(tree / "s1", volume, 2.0, "T1 MPRAGE", ["ORIGINAL", "PRIMARY", "M"],
                       list(range(20, 170, 2)), pydicom_mr, seed=1)
    row = _build(tree, tmp_path / "out")["s1"]
    assert row.included, row.exclusion_detail
    assert row.modality == "T1w" and row.series_description == "T1 MPRAGE"
    assert row.shape == (197, 233, 75) and row.spacing_mm == pytest.approx((1.0, 1.0, 2.0))
    converted = tmp_path / "out" / row.converted_path
    img = nib.load(str(converted))
    assert img.shape == (197, 233, 75)
    assert converted.with_name(converted.name.replace(".nii.gz", ".json")).exists()
    mtime = converted.stat().st_mtime_ns
    again = _build(tree, tmp_path / "out")["s1"]
    assert again.converted_path == row.converted_path and converted.stat().st_mtime_ns == mtime


def test_two_series_in_one_folder_are_two_rows(tmp_path, volume, pydicom_mr) -> None:
    tree = tmp_path / "export"
    write_dicom_series(tree / "mixed", volume, 2.0, "T1 SPGR", ["ORIGINAL", "PRIMARY"],
                       list(range(20, 170, 2)), pydicom_mr, seed=1)
    write_dicom_series(tree / "other", volume, 2.0, "AX FLAIR", ["ORIGINAL", "PRIMARY"],
                       list(range(21, 171, 2)), pydicom_mr, seed=2)
    for f in (tree / "other").iterdir():
        f.rename(tree / "mixed" / f"b_{f.name}")
    rows = pipeline.index(tree, tmp_path / "out", CurateConfig(), pipeline.RunOptions(workers=1)).records
    assert sorted(r.modality for r in rows) == ["FLAIR", "T1w"]


def test_missing_slices_exclude_the_series(tmp_path, volume, pydicom_mr) -> None:
    tree = tmp_path / "export"
    slices = [k for k in range(20, 170, 2) if not 90 <= k < 100]
    write_dicom_series(tree / "gap", volume, 2.0, "T2 TSE", ["ORIGINAL", "PRIMARY"], slices,
                       pydicom_mr, seed=3)
    row = _build(tree, tmp_path / "out")["gap"]
    assert row.exclusion_reasons == ("unreadable",)
    assert "missing slices" in (row.exclusion_detail or "")


def test_mixed_orientations_exclude_the_series(tmp_path, volume, pydicom_mr) -> None:
    tree = tmp_path / "export"
    write_dicom_series(tree / "mixed", volume, 2.0, "T1 SE", ["ORIGINAL", "PRIMARY"],
                       list(range(20, 170, 2)), pydicom_mr, seed=4)
    victim = sorted((tree / "mixed").iterdir())[5]
    ds = pydicom.dcmread(victim)
    ds.ImageOrientationPatient = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]
    ds.save_as(victim)
    row = _build(tree, tmp_path / "out")["mixed"]
    assert "unreadable" in row.exclusion_reasons
    assert "mixed slice orientations" in (row.exclusion_detail or "")


def test_localizer_and_derived_test_file_are_flagged(tmp_path, volume, pydicom_mr) -> None:
    tree = tmp_path / "export"
    write_dicom_series(tree / "loc", volume, 2.0, "3-Plane Localizer",
                       ["ORIGINAL", "PRIMARY", "LOCALIZER"], [60, 90, 120], pydicom_mr, seed=5)
    (tree / "MR_small.dcm").write_bytes(pydicom_mr.read_bytes())
    rows = _build(tree, tmp_path / "out")
    assert rows["loc"].modality == "localizer" and "modality" in rows["loc"].exclusion_reasons
    small = rows["MR_small.dcm"]
    assert "derived series" in (small.exclusion_detail or "")
    assert {"fov", "size", "modality"} <= set(small.exclusion_reasons)


def test_corrupt_dicom_file_gets_a_row_and_non_dicom_files_are_ignored(tmp_path, pydicom_mr) -> None:
    tree = tmp_path / "export"
    tree.mkdir()
    (tree / "broken.dcm").write_bytes(pydicom_mr.read_bytes()[:300])
    (tree / "README.txt").write_text("exported by PACS")
    rows = _build(tree, tmp_path / "out")
    assert list(rows) == ["broken.dcm"]
    assert "unreadable" in rows["broken.dcm"].exclusion_reasons


def _slice_header(z: float, n: int) -> dicom.DicomFileHeader:
    fields = (("Rows", 64), ("Columns", 64), ("PixelSpacing", [1.0, 1.0]), ("SliceThickness", 2.0),
              ("ImageOrientationPatient", [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]),
              ("ImagePositionPatient", [0.0, 0.0, z]))
    return dicom.DicomFileHeader(f"s/{n}.dcm", 1000, 0, "1.2.3", None, fields)


def test_repeated_positions_are_volumes_only_when_every_slice_repeats_alike() -> None:
    four_volumes = [_slice_header(2.0 * z, 10 * v + z) for v in range(4) for z in range(30)]
    geometry, problems = series_geometry(four_volumes)
    assert problems == []
    assert geometry["shape"] == (64, 64, 30, 4) and geometry["n_volumes"] == 4 and geometry["ndim"] == 4
    assert geometry["spacing_mm"] == (1.0, 1.0, 2.0)
    uneven = four_volumes + [_slice_header(0.0, 999)]
    assert "duplicated slice positions" in series_geometry(uneven)[1]


def test_clinical_export_with_nifti_and_dicom_side_by_side_gets_every_image(
        tmp_path, volume, pydicom_mr, mni_t1) -> None:
    from pydicom.data import get_testdata_file

    tree = tmp_path / "export"
    (tree / "nifti").mkdir(parents=True)
    nib.save(mni_t1, tree / "nifti" / "t1.nii.gz")
    write_dicom_series(tree / "dicom" / "s1", volume, 2.0, "T1 MPRAGE", ["ORIGINAL", "PRIMARY", "M"],
                       list(range(20, 170, 2)), pydicom_mr, seed=1)
    (tree / "bad").mkdir()
    (tree / "bad" / "badVR.dcm").write_bytes(Path(get_testdata_file("badVR.dcm")).read_bytes())
    (tree / "philips").mkdir()
    (tree / "philips" / "scan.PAR").write_text("# === DATA DESCRIPTION FILE ===\n")
    (tree / "philips" / "scan.REC").write_bytes(bytes(4096))
    (tree / "philips" / "orphan.img").write_bytes(bytes(4096))
    (tree / "README.txt").write_text("exported by PACS")
    (tree / "more.zip").write_bytes(b"PK\x05\x06" + bytes(18))
    result = pipeline.index(tree, tmp_path / "out", CurateConfig(), pipeline.RunOptions(workers=1))
    rows = {r.source_path: r for r in result.records}
    assert set(rows) == {"nifti/t1.nii.gz", "dicom/s1", "bad/badVR.dcm", "philips/scan.PAR",
                         "philips/orphan.img"}
    # an image in a format not read here is a row that says what to do, never dropped
    par = rows["philips/scan.PAR"]
    assert par.exclusion_reasons == ("unreadable",) and "dcm2niix" in par.exclusion_detail
    assert "header file is missing" in rows["philips/orphan.img"].exclusion_detail
    assert rows["nifti/t1.nii.gz"].source_kind == "nifti"
    assert rows["dicom/s1"].source_kind == "dicom" and rows["dicom/s1"].modality == "T1w"
    # badVR.dcm's NumberOfFrames is "1A": its own row says so, the index goes on
    bad = rows["bad/badVR.dcm"]
    assert "unreadable" in bad.exclusion_reasons and "1A" in bad.exclusion_detail
    (skipped,) = [w for w in result.warnings if "skipped" in w]
    assert skipped.startswith("1 file skipped") and ".zip x1" in skipped and "unpack" in skipped
    files = result.source_files()
    assert files[rows["dicom/s1"].image_id][2] and files[rows["nifti/t1.nii.gz"].image_id][1].endswith("t1.nii.gz")
