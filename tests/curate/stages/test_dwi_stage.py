"""The dwi stage inside ``curate build``: derived FA/MD/T2w rows, files, and clear exclusions."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from curate.config import CurateConfig
from curate.pipeline import RunOptions, build
from curate.stages import default_stages


def _real_dwi(n_volumes: int = 25) -> tuple[np.ndarray, str, str]:
    """dipy's small_64D upsampled 3x to a 30 x 30 x 30 grid, stored at 2 mm (60 mm FOV)."""
    from dipy.data import get_fnames

    nii, bval, bvec = get_fnames(name="small_64D")
    data = np.asarray(nib.load(nii).dataobj, np.float32)[..., :n_volumes]
    big = np.stack([ndimage.zoom(data[..., v], 3, order=1) for v in range(n_volumes)], axis=-1)
    bvals = Path(bval).read_text().split()[:n_volumes]
    rows = [r.split() for r in Path(bvec).read_text().splitlines() if r.strip()]
    vecs = np.array(rows, dtype=object)
    vecs = vecs[:n_volumes].T if vecs.shape[0] != 3 else vecs[:, :n_volumes]  # write 3 x n
    return big, " ".join(bvals) + "\n", "\n".join(" ".join(r) for r in vecs) + "\n"


@pytest.fixture(scope="module")
def bids_dwi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("src") / "dwids"
    (root).mkdir()
    (root / "dataset_description.json").write_text(json.dumps({"Name": "dwids",
                                                               "BIDSVersion": "1.9.0"}))
    data, bval, bvec = _real_dwi()
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    for sub, bad in (("01", None), ("02", "count")):
        folder = root / f"sub-{sub}" / "dwi"
        folder.mkdir(parents=True)
        nib.save(nib.Nifti1Image(data, affine), folder / f"sub-{sub}_dwi.nii.gz")
        values = bval if bad is None else " ".join(bval.split()[:-1]) + "\n"
        (folder / f"sub-{sub}_dwi.bval").write_text(values)
        (folder / f"sub-{sub}_dwi.bvec").write_text(bvec)
    folder = root / "sub-03" / "dwi"  # a 3D volume labelled dwi
    folder.mkdir(parents=True)
    noise = np.random.default_rng(0).random((64, 64, 30)).astype(np.float32)
    nib.save(nib.Nifti1Image(noise, affine), folder / "sub-03_dwi.nii.gz")
    (folder / "sub-03_dwi.bval").write_text("0\n")
    (folder / "sub-03_dwi.bvec").write_text("0\n0\n0\n")
    return root


def test_dwi_stage_is_registered_after_read() -> None:
    names = [s.name for s in default_stages(CurateConfig())]
    assert names.index("dwi") == names.index("read") + 1


@pytest.mark.slow
def test_build_derives_maps_and_excludes_bad_series(bids_dwi: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = build(bids_dwi, out, CurateConfig(), RunOptions(workers=1))
    rows = {(r.subject, r.modality): r for r in result.records}
    dwi = rows[("01", "DWI")]
    assert dwi.exclusion_reasons == ("modality",)  # the 4D source stays out of pre-training
    assert dwi.dwi_shells == (0.0, 994.0)
    assert dwi.dwi_nan_voxels == 0 and dwi.dwi_degenerate_voxels is not None
    assert dwi.dwi_motion_max_mm is not None and dwi.dwi_motion_mean_mm <= dwi.dwi_motion_max_mm
    for modality in ("FA", "MD", "T2w"):
        child = rows[("01", modality)]
        assert child.derived_from == dwi.image_id
        assert child.included, child.exclusion_detail
        assert child.ndim == 3 and child.shape == (30, 30, 30) and child.spacing_mm == (2.0, 2.0, 2.0)
        path = out / child.derived_path
        assert path.exists() and path.with_name(path.name.replace(".nii.gz", ".json")).exists()
        img = nib.load(path)
        assert img.shape == (30, 30, 30) and np.allclose(img.affine, np.diag([2, 2, 2, 1]))
    fa = np.asarray(nib.load(out / rows[("01", "FA")].derived_path).dataobj)
    assert 0 <= fa.min() and fa.max() <= 1 and fa.max() > 0.2
    sidecar = json.loads((out / rows[("01", "FA")].derived_path.replace(".nii.gz", ".json")).read_text())
    assert sidecar["Parameters"]["denoise"] == "mppca" and "TimingsSeconds" in sidecar
    description = next((out / "derivatives").rglob("dataset_description.json"))
    assert json.loads(description.read_text())["DatasetType"] == "derivative"
    assert list((out / "derivatives").rglob("*_desc-brain_mask.nii.gz"))
    bad = rows[("02", "DWI")]
    assert "gradients" in bad.exclusion_reasons and "24 values" in bad.exclusion_detail
    flat = rows[("03", "DWI")]
    assert "gradients" in flat.exclusion_reasons and "not a 4D" in flat.exclusion_detail
    assert not any(r.derived_from in (bad.image_id, flat.image_id) for r in result.records)
    # a second build resumes: nothing is derived again, rows are the same
    again = build(bids_dwi, out, CurateConfig(), RunOptions(workers=1))
    assert again.processed == 0 and len(again.records) == len(result.records)


def _write_dicom_dwi(folder: Path, data: np.ndarray, bval: str, bvec: str) -> None:
    """A DWI series as a scanner exports it: one file per slice per volume, b-value and
    gradient in the standard (0018,9087)/(0018,9089) and Siemens private tags; the
    other header fields come from pydicom's MR test file."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    bvals = [float(b) for b in bval.split()]
    vecs = np.array([[float(x) for x in row.split()] for row in bvec.splitlines()])
    template = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    series, scale = generate_uid(), 1000.0 / float(data.max())
    folder.mkdir(parents=True)
    for v in range(data.shape[3]):
        for z in range(data.shape[2]):
            ds = template.copy()
            plane = np.round(data[:, :, z, v].T * scale).astype(np.int16)
            ds.Rows, ds.Columns = plane.shape
            ds.PixelData = plane.tobytes()
            ds.PixelSpacing, ds.SliceThickness = [2.0, 2.0], 2.0
            ds.ImagePositionPatient, ds.ImageOrientationPatient = [0.0, 0.0, 2.0 * z], [1, 0, 0, 0, 1, 0]
            ds.SeriesInstanceUID, ds.SOPInstanceUID = series, generate_uid()
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.InstanceNumber, ds.AcquisitionNumber = v * data.shape[2] + z + 1, v + 1
            ds.SeriesDescription = ds.ProtocolName = "ep2d_diff_mddw"
            ds.ImageType = ["ORIGINAL", "PRIMARY", "DIFFUSION", "NONE"]
            ds.Manufacturer, ds.PatientID = "SIEMENS", "dwi01"
            ds.add_new((0x0018, 0x9087), "FD", bvals[v])
            ds.add_new((0x0018, 0x9089), "FD", vecs[:, v].tolist())
            ds.add_new((0x0019, 0x0010), "LO", "SIEMENS MR HEADER")
            ds.add_new((0x0019, 0x100C), "IS", str(int(bvals[v])))
            ds.add_new((0x0019, 0x100E), "FD", vecs[:, v].tolist())
            ds.SmallestImagePixelValue, ds.LargestImagePixelValue = int(plane.min()), int(plane.max())
            ds.save_as(folder / f"IM{ds.InstanceNumber:05d}.dcm", enforce_file_format=True)


@pytest.mark.slow
def test_dicom_dwi_series_is_converted_with_its_gradients_and_derives_maps(tmp_path: Path) -> None:
    data, bval, bvec = _real_dwi(n_volumes=13)
    _write_dicom_dwi(tmp_path / "export" / "dwi01" / "diff", data, bval, bvec)
    out = tmp_path / "out"
    result = build(tmp_path / "export", out, CurateConfig(), RunOptions(workers=1))
    rows = {r.modality: r for r in result.records}
    dwi = rows["DWI"]
    assert dwi.shape == (30, 30, 30, 13) and dwi.n_volumes == 13 and dwi.ndim == 4
    assert dwi.exclusion_reasons == ("modality",), dwi.exclusion_detail
    converted = out / dwi.converted_path
    stem = str(converted).removesuffix(".nii.gz")
    assert Path(stem + ".bval").is_file() and Path(stem + ".bvec").is_file()  # written by dcm2niix
    assert dwi.dwi_shells is not None and len(dwi.dwi_shells) == 2
    for modality in ("FA", "MD", "T2w"):
        child = rows[modality]
        assert child.derived_from == dwi.image_id and child.included, child.exclusion_detail
        assert child.shape == (30, 30, 30) and (out / child.derived_path).is_file()
