"""A demo collection built from real images that ship inside pip packages.

``python -m curate.demo OUT`` writes ``OUT/source/{bids,dicom,nifti}`` and runs
``curate build`` on each.  The images are real: nilearn's MNI152 T1 template,
pydeface's mean head (with face) and face mask, dipy's bundled DWI series and
pydicom's MR test file.  Degraded and broken variants of them exercise every
triage rule and bad-input path: a scout slab, thick slices, a truncated gzip,
a zero-byte file, an all-zero and an all-NaN image, a 4D BOLD run, a 5D image,
bad gradient tables, an invalid sidecar, a non-UTF-8 file name, a derivative
that must not be ingested, and DICOM series with a localizer and missing slices.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np


def _save(img: nib.Nifti1Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))
    return path


def _mni() -> nib.Nifti1Image:
    from nilearn.datasets import load_mni152_template

    img = load_mni152_template(resolution=1)
    data = np.asarray(img.dataobj, dtype=np.float32)
    scaled = np.round(data / max(float(data.max()), 1e-6) * 1000).astype(np.int16)
    return nib.Nifti1Image(scaled, img.affine)


def _pydeface(name: str) -> nib.Nifti1Image:
    import pydeface

    img = nib.load(str(Path(pydeface.__file__).parent / "data" / name))
    return nib.Nifti1Image(np.asarray(img.dataobj), img.affine)


def _rician(data: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    real = data + rng.normal(0, sigma, data.shape)
    imag = rng.normal(0, sigma, data.shape)
    return np.sqrt(real**2 + imag**2)


def _dwi(root: Path, stem: str, zoom: float = 3.0) -> None:
    """dipy's real small_64D series, upsampled to a realistic field of view."""
    from dipy.data import get_fnames
    from scipy.ndimage import zoom as nd_zoom

    nii, bval, bvec = (Path(p) for p in get_fnames(name="small_64D"))
    img = nib.load(str(nii))
    data = np.asarray(img.dataobj, dtype=np.float32)
    big = nd_zoom(data, (zoom, zoom, zoom, 1), order=1)
    # Same 2 mm voxels on a grid `zoom` times larger: a 60 mm field of view.
    _save(nib.Nifti1Image(np.round(big).astype(np.int16), img.affine), root / f"{stem}.nii.gz")
    shutil.copy(bval, root / f"{stem}.bval")
    shutil.copy(bvec, root / f"{stem}.bvec")


def make_bids(root: Path) -> Path:
    """A small BIDS dataset with good, degraded and broken images."""
    ds = root / "ds-demo"
    ds.mkdir(parents=True, exist_ok=True)
    (ds / "dataset_description.json").write_text(json.dumps(
        {"Name": "mri-curate demo", "BIDSVersion": "1.9.0", "DatasetType": "raw"}))
    (ds / "participants.tsv").write_text(
        "participant_id\tage\tsex\nsub-01\t34\tF\nsub-02\t61\tM\nsub-03\t27\tF\nsub-04\t45\tM\nsub-05\t52\tF\n")
    (ds / "T1w.json").write_text(json.dumps({"MagneticFieldStrength": 3, "Manufacturer": "Siemens"}))
    mni, head, face = _mni(), _pydeface("mean_reg2mean.nii.gz"), _pydeface("facemask.nii.gz")
    data = np.asarray(mni.dataobj, dtype=np.float32)
    anat = lambda sub: ds / f"sub-{sub}" / "anat"  # noqa: E731
    _save(mni, anat("01") / "sub-01_T1w.nii.gz")
    (anat("01") / "sub-01_T1w.json").write_text(json.dumps(
        {"RepetitionTime": 2.3, "EchoTime": 0.00298, "ManufacturersModelName": "Prisma"}))
    _save(head, anat("02") / "sub-02_T1w.nii.gz")
    head_data = np.asarray(head.dataobj)
    # pydeface's facemask is 1 on the tissue it keeps and 0 on the face it removes.
    defaced = np.where(np.asarray(face.dataobj) == 0, 0, head_data).astype(head_data.dtype)
    _save(nib.Nifti1Image(defaced, head.affine), anat("02") / "sub-02_acq-defaced_T1w.nii.gz")
    noisy = _rician(data, 60.0, seed=3).astype(np.int16)
    _save(nib.Nifti1Image(noisy, mni.affine), anat("03") / "sub-03_FLAIR.nii.gz")
    (anat("03") / "sub-03_FLAIR.json").write_text("{ not json")
    _save(nib.Nifti1Image(mni.get_fdata()[:, :, 90:100].astype(np.int16), mni.affine),
          anat("03") / "sub-03_acq-scout_T1w.nii.gz")
    thick = np.ascontiguousarray(data[:, :, ::7]).astype(np.int16)
    aff = mni.affine.copy()
    aff[2, 2] *= 7
    _save(nib.Nifti1Image(thick, aff), anat("03") / "sub-03_acq-thick_T2w.nii.gz")
    good = _save(mni, anat("04") / "sub-04_T1w.nii.gz")
    raw = good.read_bytes()
    good.write_bytes(raw[: len(raw) // 2])  # truncated gzip: the header still reads
    (anat("04") / "sub-04_T2w.nii.gz").write_bytes(b"")
    _save(nib.Nifti1Image(np.zeros((120, 140, 120), np.int16), mni.affine), anat("05") / "sub-05_T1w.nii")
    _save(nib.Nifti1Image(np.full((100, 120, 100), np.nan, np.float32), mni.affine),
          anat("05") / "sub-05_PDw.nii")
    small = data[::3, ::3, ::3]
    bold = np.stack([small + i for i in range(8)], axis=-1).astype(np.int16)
    baff = mni.affine.copy()
    baff[:3, :3] *= 3
    _save(nib.Nifti1Image(bold, baff), ds / "sub-01" / "func" / "sub-01_task-rest_bold.nii.gz")
    _dwi(ds / "sub-01" / "dwi", "sub-01_dwi")
    _dwi(ds / "sub-02" / "dwi", "sub-02_dwi")
    bvals = (ds / "sub-02" / "dwi" / "sub-02_dwi.bval").read_text().split()
    (ds / "sub-02" / "dwi" / "sub-02_dwi.bval").write_text(" ".join(bvals[:-3]) + "\n")
    _save(mni, ds / "derivatives" / "fmriprep" / "sub-01" / "anat" / "sub-01_desc-preproc_T1w.nii.gz")
    return ds


def write_dicom_series(out: Path, volume: np.ndarray, spacing: float, description: str,
                  image_type: list[str], slices: list[int], template: Path, seed: int) -> None:
    """Write axial slices ``slices`` of ``volume`` as one DICOM series, headers from ``template``."""
    import pydicom
    from pydicom.uid import generate_uid

    series_uid = generate_uid(entropy_srcs=[description, str(seed)])
    study_uid = generate_uid(entropy_srcs=["demo-study"])
    out.mkdir(parents=True, exist_ok=True)
    for number, k in enumerate(slices, start=1):
        ds = pydicom.dcmread(template)
        plane = np.ascontiguousarray(volume[:, :, k].T).astype(np.int16)
        ds.Rows, ds.Columns = plane.shape
        ds.PixelData = plane.tobytes()
        ds.PixelSpacing = [1.0, 1.0]
        ds.SliceThickness = spacing
        ds.ImagePositionPatient = [-90.0, -126.0, -72.0 + k * 1.0]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.SeriesInstanceUID = series_uid
        ds.StudyInstanceUID = study_uid
        ds.SOPInstanceUID = generate_uid(entropy_srcs=[series_uid, str(k)])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = number
        ds.SeriesDescription = description
        ds.ImageType = image_type
        ds.PatientID = "demo01"
        ds.SmallestImagePixelValue = int(plane.min())
        ds.LargestImagePixelValue = int(plane.max())
        ds.save_as(out / f"IM{number:04d}.dcm", enforce_file_format=True)


def make_dicom(root: Path) -> Path:
    """A hospital-style DICOM export: a T1 series, a localizer, a gappy series, test files."""
    from pydicom.data import get_testdata_file

    template = Path(get_testdata_file("MR_small.dcm"))
    volume = np.asarray(_mni().dataobj)
    tree = root / "export"
    primary = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    write_dicom_series(tree / "study1" / "series_t1", volume, 2.0, "T1 MPRAGE SAG", primary,
                  list(range(10, 180, 2)), template, 1)
    write_dicom_series(tree / "study1" / "series_loc", volume, 2.0, "AAHead_Scout",
                  ["ORIGINAL", "PRIMARY", "LOCALIZER"], [60, 90, 120], template, 2)
    gappy = [k for k in range(20, 170, 2) if not 80 <= k < 90]
    write_dicom_series(tree / "study1" / "series_flair", volume, 2.0, "AX T2 FLAIR", primary,
                  gappy, template, 3)
    shutil.copy(template, tree / "MR_small.dcm")
    (tree / "study1" / "notes.txt").write_text("not a DICOM file")
    (tree / "broken.dcm").write_bytes(b"\x00" * 200)
    return tree


def make_nifti(root: Path) -> Path:
    """A folder of loose clinical NIfTI files with names instead of BIDS entities."""
    folder = root / "clinical"
    mni = _mni()
    data = np.asarray(mni.dataobj)
    _save(mni, folder / "patient7" / "T1_MPRAGE.nii.gz")
    aff = mni.affine.copy()
    aff[2, 2] *= 3
    _save(nib.Nifti1Image(np.ascontiguousarray(data[:, :, ::3]), aff),
          folder / "patient7" / "AX_FLAIR_3mm.nii.gz")
    (folder / "patient7" / "AX_FLAIR_3mm.json").write_text(json.dumps(
        {"SeriesDescription": "AX FLAIR", "Manufacturer": "GE", "MagneticFieldStrength": 1.5}))
    five = np.zeros((40, 40, 40, 2, 2), np.int16)
    five[10:30, 10:30, 10:30] = 100
    _save(nib.Nifti1Image(five, np.diag([4.0, 4.0, 4.0, 1.0])), folder / "patient8" / "odd_5d.nii.gz")
    (folder / "patient8" / "garbage.nii.gz").write_bytes(os.urandom(4096))
    name = os.fsencode(folder / "patient8") + b"/T2_caf\xe9.nii.gz"
    nib.save(mni, os.fsdecode(name))
    return folder


def make_demo_collection(root: Path) -> dict[str, Path]:
    """Write the three demo sources under ``root``; returns ``{kind: path}``."""
    return {
        "bids": make_bids(root / "bids"),
        "dicom": make_dicom(root / "dicom"),
        "nifti": make_nifti(root / "nifti"),
    }


def _pretrain_smoke(out: Path) -> int:
    """A few CPU steps of the tiny MAE on the BIDS build, then export (needs the [pretrain] extra)."""
    try:
        from pretrain import cli as pretrain_cli
    except ImportError:
        print("pretrain extra not installed: skipping the pre-training smoke run")
        return 0
    run = out / "pretrain_run"
    steps = ["--max-steps", "6", "--patch-size", "32", "--batch-size", "2", "--workers", "0",
             "--model", "tiny", "--device", "cpu", "--no-progress"]
    print(f"\n=== pretrain {out / 'bids'} --run-dir {run} (tiny CPU smoke run)")
    code = pretrain_cli.main([str(out / "bids"), "--run-dir", str(run), *steps,
                              *(["--resume"] if (run / "checkpoints").exists() else [])])
    if code == 0:
        code = pretrain_cli.main(["export", str(run), "--out", str(run / "weights.pth")])
    return code


def main(argv: list[str] | None = None) -> int:
    """Build the demo collection in OUT/source, curate each part, report, pre-train briefly."""
    from curate import cli

    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0] if args else "demo_out")
    sources = out / "source"
    if not sources.exists():
        print(f"writing demo collection to {sources} ...")
        make_demo_collection(sources)
    code = 0
    for kind, path in make_paths(sources).items():
        print(f"\n=== curate build {path} {out / kind}")
        code |= cli.main(["build", str(path), str(out / kind)])
        code |= cli.main(["report", str(out / kind)])
    code |= _pretrain_smoke(out)
    print(f"\nOpen {out / 'bids' / 'reports' / 'index.html'} in a browser to look at the result.")
    return code


def make_paths(sources: Path) -> dict[str, Path]:
    """The demo sources' paths under ``sources``."""
    return {"bids": sources / "bids" / "ds-demo", "dicom": sources / "dicom" / "export",
            "nifti": sources / "nifti" / "clinical"}


if __name__ == "__main__":
    sys.exit(main())
